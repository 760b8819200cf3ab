"""Rolls one-second windows (Redis) up into one-minute ``MetricWindow`` rows, and prunes them.

Run by Celery beat (``dashboard.tasks.rollup_windows`` every minute, ``prune_windows`` hourly).
Only complete minutes are rolled up, each exactly once (a unique constraint backs that up).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.utils import timezone

from dashboard.models import MetricWindow, Sentinel
from workers.engine.documents import COUNTERS, W1_RETENTION_S
from workers.engine.latency import LatencyHistogram
from workers.store import SentinelStore, connect

SEVERITY = {"": 0, "HOLDING": 1, "DEGRADED": 2, "STALLED": 3, "VIOLATED": 4}


def merge_windows(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One window for a list of consecutive windows: counter sums, merged latency, worst verdict."""
    counts = dict.fromkeys(COUNTERS, 0)
    partitions: dict[str, dict[str, int]] = defaultdict(dict)
    e2e, ack = LatencyHistogram(), LatencyHistogram()
    verdict = ""
    for w in windows:
        for k in COUNTERS:
            counts[k] += w["counts"].get(k, 0)
        for p, c in w.get("partitions", {}).items():  # sparse: only non-zero problem counters
            acc = partitions[p]
            for k, n in c.items():
                acc[k] = acc.get(k, 0) + n
        hist = w.get("hist", {})
        if hist.get("e2e"):
            e2e.merge(LatencyHistogram.from_dict(hist["e2e"]))
        if hist.get("ack"):
            ack.merge(LatencyHistogram.from_dict(hist["ack"]))
        if SEVERITY.get(w.get("verdict", ""), 0) > SEVERITY[verdict]:
            verdict = w["verdict"]
    if windows:
        counts["pending"] = windows[-1]["counts"].get("pending", 0)  # a level, not a sum
    return {
        "counts": counts,
        "partitions": dict(partitions),
        "latency": {"e2e": e2e.summary(), "ack": ack.summary()},
        "hist": {"e2e": e2e.to_dict(), "ack": ack.to_dict()},
        "verdict": verdict,
    }


def rollup_sentinel(sentinel: Sentinel, store: SentinelStore, now: float | None = None) -> int:
    """Create the missing one-minute windows of ``sentinel`` up to the last complete minute."""
    now = time.time() if now is None else now
    end = int(now // 60 * 60)
    last = MetricWindow.objects.filter(sentinel=sentinel, resolution=60).order_by("-start").first()
    start = int(last.start.timestamp()) + 60 if last else int((now - W1_RETENTION_S) // 60 * 60)
    if start >= end:
        return 0
    by_minute: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for window in store.windows(since=start, until=end - 0.001):
        by_minute[int(window["t"] // 60 * 60)].append(window)
    rows = []
    for minute, windows in sorted(by_minute.items()):
        merged = merge_windows(windows)
        rows.append(
            MetricWindow(
                sentinel=sentinel,
                start=dt.datetime.fromtimestamp(minute, tz=dt.UTC),
                resolution=60,
                **merged,
            )
        )
    MetricWindow.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def rollup_all(now: float | None = None) -> int:
    client = connect(settings.REDIS_URL)
    return sum(rollup_sentinel(s, SentinelStore(client, s.pk), now) for s in Sentinel.objects.all())


def prune(now: dt.datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.METRIC_RETENTION_DAYS)
    deleted, _ = MetricWindow.objects.filter(start__lt=cutoff).delete()
    return deleted
