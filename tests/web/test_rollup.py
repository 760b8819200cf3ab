"""One-minute rollups of one-second windows, and pruning."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dashboard.models import MetricWindow, ensure_defaults
from dashboard.rollup import merge_windows, prune, rollup_sentinel
from workers.engine.documents import COUNTERS
from workers.engine.latency import LatencyHistogram
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

# On SQLite too (both_databases): bulk inserts that skip existing rows (ignore_conflicts on a unique
# constraint), minute boundaries stored as datetimes, deletes by age.
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def window(
    t: float,
    processed: int,
    *,
    lost: int = 0,
    pending: int = 0,
    verdict: str = "HOLDING",
    latencies=(),
):
    hist = LatencyHistogram()
    hist.record_many(latencies)
    counts = dict.fromkeys(COUNTERS, 0)
    counts.update(processed=processed, lost=lost, pending=pending)
    return {
        "t": t,
        "seconds": 1.0,
        "verdict": verdict,
        "counts": counts,
        "partitions": {"0": {"lost": lost}} if lost else {},
        "hist": {"e2e": hist.to_dict(), "ack": LatencyHistogram().to_dict()},
    }


def test_it_sums_counters_keeps_the_last_pending_and_the_worst_verdict():
    merged = merge_windows(
        [
            window(0, 5, pending=3, latencies=[10, 20]),
            window(1, 7, lost=1, pending=1, verdict="VIOLATED", latencies=[30]),
        ]
    )
    assert merged["counts"]["processed"] == 12 and merged["counts"]["lost"] == 1
    assert merged["counts"]["pending"] == 1
    assert merged["verdict"] == "VIOLATED"
    assert merged["partitions"] == {"0": {"lost": 1}}
    assert merged["latency"]["e2e"]["count"] == 3
    assert merged["latency"]["e2e"]["max"] == pytest.approx(30, rel=0.02)


def test_it_rolls_up_complete_minutes_once(redis_url):
    sentinel = ensure_defaults()[0]
    store = SentinelStore(connect(redis_url), sentinel.pk)
    store.reset()
    now = dt.datetime.now(tz=dt.UTC).timestamp()
    minute = int(now // 60 * 60) - 120  # two complete minutes ago
    try:
        for i in range(90):  # 60 s in the first minute, 30 s in the next
            store.append_window(window(minute + i + 0.5, 2), retention_s=3600)
        # The stream ids are the append times; windows() selects by them, so stamp them
        # as if they had been written at their own second.
        entries = store.windows(since=0)
        assert len(entries) == 90
        store.r.delete(store.key("w1"))
        for w in entries:
            store.r.xadd(store.key("w1"), {"d": json.dumps(w)}, id=f"{int(w['t'] * 1000)}-0")
        created = rollup_sentinel(sentinel, store, now=minute + 120 + 5)
        assert created == 2
        rows = list(MetricWindow.objects.filter(sentinel=sentinel).order_by("start"))
        assert [r.counts["processed"] for r in rows] == [120, 60]
        assert rows[0].start.timestamp() == minute
        assert rollup_sentinel(sentinel, store, now=minute + 120 + 5) == 0
    finally:
        store.reset()


def test_it_prunes_windows_past_the_retention(settings):
    sentinel = ensure_defaults()[0]
    now = dt.datetime.now(tz=dt.UTC)
    old = MetricWindow.objects.create(sentinel=sentinel, start=now - dt.timedelta(days=31))
    new = MetricWindow.objects.create(sentinel=sentinel, start=now - dt.timedelta(days=1))
    settings.METRIC_RETENTION_DAYS = 30
    assert prune(now) == 1
    assert not MetricWindow.objects.filter(pk=old.pk).exists()
    assert MetricWindow.objects.filter(pk=new.pk).exists()
