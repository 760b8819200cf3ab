"""The dashboard's metrics readers (dashboard.metrics): ranges, downsampling, grid, partitions."""

from __future__ import annotations

import math
import time

import pytest

from dashboard.metrics import overview, partitions, timeline
from dashboard.metrics import windows as metrics
from dashboard.models import MetricWindow, ScenarioRun
from tests.support.dashboard_data import (
    hist,
    minute,
    seed_windows,
    status_doc,
    window,
)
from workers.engine.documents import Window
from workers.engine.streams import LedgerEntry
from workers.runtime.checkrunner import CheckRunner
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

# On SQLite too (both_databases): rollups read with a plain cursor, whose JSON and datetime columns
# each backend hands back differently (metrics/windows.py).
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture
def store(sentinels, redis_url):
    return SentinelStore(connect(redis_url), sentinels["at-least-once"].pk)


@pytest.mark.parametrize(
    ("range_name", "native", "step"),
    [("live", 1, 1), ("15m", 1, 1), ("1h", 1, 5), ("24h", 60, 120), ("7d", 60, 900)],
)
def test_it_picks_a_nice_step_under_a_thousand_points(range_name, native, step):
    span = metrics.RANGES[range_name]
    assert metrics.choose_step(span, native) == step
    assert span / step <= metrics.MAX_POINTS


def test_it_sums_windows_into_buckets_and_leaves_gaps_empty():
    windows = [
        Window(100, 1, {"processed": 10, "lost": 1, "pending": 3}, {}, {}, "HOLDING"),
        Window(101, 1, {"processed": 20, "pending": 5}, {}, {}, "VIOLATED"),
        Window(110, 1, {"processed": 4}, {}, {}, "HOLDING"),
    ]
    series = metrics.build_series(windows, since=100, until=114, step=5)
    assert series["t"] == [100, 105, 110]
    assert series["processed_per_s"] == [15.0, None, 4.0]  # 30 records over 2 covered seconds
    assert series["lost"] == [1, None, 0]
    assert series["pending"] == [5, None, None]  # a level: the bucket's last value
    assert series["verdict"] == ["VIOLATED", None, "HOLDING"]


def test_it_takes_p50_weighted_and_p99_as_the_worst_window_within_a_bucket():
    windows = [
        Window(0, 1, {}, {"p50": 10.0, "p99": 20.0, "count": 1}, {}, ""),
        Window(1, 1, {}, {"p50": 40.0, "p99": 90.0, "count": 3}, {}, ""),
    ]
    series = metrics.build_series(windows, since=0, until=1, step=2)
    assert series["e2e_p50"] == [32.5]
    assert series["e2e_p99"] == [90.0]


def test_it_reads_an_hour_from_the_one_second_windows_in_redis(store):
    now = time.time()
    outside = window(store.sid, now - 7200, processed=999)
    recent = [
        window(store.sid, now - 30 + i, processed=30, produced=30, e2e=(12.0,)) for i in range(30)
    ]
    seed_windows(store, [outside, *recent])
    data = metrics.windows_for_range(store.sid, "1h", now=now)
    assert data["source"] == "redis"
    assert data["step"] == 1  # the axis starts at the data: 30 s of it, in one-second points
    assert data["data_since"] == pytest.approx(now - 31, abs=0.01)
    assert data["series"]["t"][0] == math.floor(now - 31)
    assert data["windows"] == 30
    rates = [v for v in data["series"]["processed_per_s"] if v is not None]
    assert rates and set(rates) == {30.0}
    assert {v for v in data["series"]["e2e_p99"] if v is not None} == {12.0}
    assert data["points"] <= metrics.MAX_POINTS


def test_it_reads_24_hours_from_rollups_topped_up_with_recent_windows(store, sentinels):
    now = time.time()
    sentinel = sentinels["at-least-once"]
    last_rolled = minute(now).timestamp() - 120
    MetricWindow.objects.bulk_create(
        MetricWindow(
            sentinel=sentinel,
            start=minute(last_rolled - 60 * i),
            counts={"processed": 1800, "lost": 1 if i == 5 else 0},
            latency={"e2e": {"p50": 10.0, "p99": 30.0, "count": 1800}},
        )
        for i in range(100)
    )
    # Not rolled up yet: after the last row (and one from before it, already in a row).
    seed_windows(
        store,
        [
            window(store.sid, last_rolled - 30, processed=30),
            window(store.sid, last_rolled + 90, processed=30),
        ],
    )
    data = metrics.windows_for_range(sentinel.pk, "24h", now=now)
    assert data["source"] == "database+redis"
    assert data["windows"] == 101
    assert data["step"] == 60  # 100 minutes of data, not 24 hours: one-minute points
    assert sum(v or 0 for v in data["series"]["lost"]) == 1
    assert max(v or 0 for v in data["series"]["e2e_p99"]) == 30.0


def test_it_reads_a_range_longer_than_the_one_second_retention_from_the_rollups(
    store, sentinels, monkeypatch
):
    monkeypatch.setattr(metrics, "W1_RETENTION_S", 600)  # DS_W1_RETENTION_S=600
    now = time.time()
    sentinel = sentinels["at-least-once"]
    last_rolled = minute(now).timestamp() - 120
    MetricWindow.objects.bulk_create(
        MetricWindow(
            sentinel=sentinel,
            start=minute(last_rolled - 60 * i),
            counts={"processed": 60, "lost": 1 if i == 3 else 0},
        )
        for i in range(10)
    )
    seed_windows(store, [window(store.sid, last_rolled + 90, processed=30)])
    data = metrics.windows_for_range(sentinel.pk, "15m", now=now)
    assert data["source"] == "database+redis"
    assert data["step"] == metrics.ROLLUP_RESOLUTION_S
    assert data["windows"] == 11
    assert sum(v or 0 for v in data["series"]["lost"]) == 1
    # Without rollups, only the retained seconds are read from Redis.
    other = SentinelStore(store.r, sentinels["at-most-once"].pk)
    seed_windows(
        other,
        [window(other.sid, now - 700, processed=1), window(other.sid, now - 100, processed=1)],
    )
    data = metrics.windows_for_range(other.sid, "15m", now=now)
    assert data["source"] == "database+redis"
    assert data["windows"] == 1


def test_it_starts_a_young_sentinels_week_where_its_data_starts(store, sentinels):
    now = time.time()
    sentinel = sentinels["at-least-once"]
    seed_windows(store, [window(store.sid, now - 600 + i, processed=30) for i in range(600)])
    data = metrics.windows_for_range(sentinel.pk, "7d", now=now)
    assert data["since"] == now - 7 * 86400
    assert data["data_since"] == pytest.approx(now - 601, abs=0.01)
    assert data["step"] == metrics.ROLLUP_RESOLUTION_S
    assert data["series"]["t"][0] >= now - 601 - 60
    drawn = [v for v in data["series"]["processed_per_s"] if v is not None]
    assert len(drawn) >= 10 and set(drawn) == {30.0}  # a line, not one dot in an empty week


def test_it_opens_on_the_shortest_range_holding_the_moment():
    now = 1_800_000_000.0
    assert metrics.range_containing(None, now) == "live"
    assert metrics.range_containing(now - 200, now) == "15m"
    assert metrics.range_containing(now - 890, now) == "1h"  # a minute to spare
    assert metrics.range_containing(now - 5 * 3600, now) == "24h"
    assert metrics.range_containing(now - 3 * 86400, now) == "7d"
    assert metrics.range_containing(now - 8 * 86400, now) == "live"


def test_it_refuses_an_unknown_range():
    with pytest.raises(metrics.UnknownRange, match="unknown range 'forever'"):
        metrics.windows_for_range(1, "forever")


def test_it_summarizes_a_range_with_exact_percentiles_from_the_histograms(store):
    now = time.time()
    seed_windows(
        store,
        [
            window(store.sid, now - 3, processed=2, duplicated=1, e2e=(10.0, 20.0)),
            window(store.sid, now - 2, processed=1, pending=4, e2e=(1000.0,)),
        ],
    )
    summary = metrics.summarize(store.sid, "15m", now=now)
    assert summary["counts"]["processed"] == 3
    assert summary["counts"]["duplicated"] == 1
    assert summary["counts"]["pending"] == 4
    expected = hist(10.0, 20.0, 1000.0)
    assert summary["latency_ms"]["e2e"]["p50"] == pytest.approx(expected.percentile(50), rel=1e-3)
    assert summary["latency_ms"]["e2e"]["max"] == 1000.0
    assert summary["latency_ms"]["e2e"]["count"] == 3


def test_it_gives_sparklines_of_the_last_minute_in_one_round_trip(store, sentinels):
    now = time.time()
    seed_windows(store, [window(store.sid, now - 90, processed=1)])
    seed_windows(store, [window(store.sid, now - 2, processed=25, seconds=0.5)])
    other = sentinels["at-most-once"].pk
    lines = overview.sparklines([store.sid, other])
    assert lines[store.sid] == [[pytest.approx(now - 2), 50.0]]
    assert lines[other] == []


def test_it_groups_the_overview_by_cluster_and_topic_with_a_column_per_semantic(sentinels):
    docs = [status_doc(s) for s in sentinels.values()]
    docs.append({**status_doc(sentinels["at-least-once"]), "id": 99, "name": "alo-acks1"})
    grid = overview.overview_grid(docs)
    assert [g["cluster"] for g in grid] == ["local"]
    rows = {row["topic"]: row["cells"] for row in grid[0]["rows"]}
    assert list(rows) == sorted(rows)
    alo = rows["sentinel.at-least-once"]
    assert alo[0] == [] and alo[2] == []
    assert [c["name"] for c in alo[1]] == ["at-least-once", "alo-acks1"]
    first = alo[1][0]
    assert first["throughput"] == "1.0"  # 300 processed over the 300 s verdict window
    assert first["p99"] == "42.5 ms"
    assert first["processed"] == "900"


def test_it_flags_partitions_with_recent_events_or_replica_trouble(sentinels, redis_url):
    sentinel = sentinels["at-least-once"]
    store = SentinelStore(connect(redis_url), sentinel.pk)
    seed_windows(
        store,
        [window(sentinel.pk, time.time() - 5, partitions={"1": {"lost": 2, "processed": 5}})],
    )
    metadata = {
        "error": None,
        "partitions": {
            "0": {"leader": 1, "leader_host": "h1:9092", "replicas": [1, 2, 3], "isr": [1, 2, 3]},
            "1": {"leader": 2, "leader_host": "h2:9092", "replicas": [2, 3, 1], "isr": [2, 3, 1]},
            "2": {"leader": 3, "leader_host": "h3:9092", "replicas": [3, 1, 2], "isr": [3]},
        },
        "updated_at": time.time(),
    }
    table = partitions.partition_table(sentinel, status_doc(sentinel, metadata=metadata))
    rows = {row["partition"]: row for row in table["rows"]}
    assert rows["0"]["problems"] == []
    assert rows["0"]["counts"]["processed"] == 300
    assert rows["1"]["problems"] == ["2 lost in the last 5 min"]
    assert rows["2"]["problems"] == ["under-replicated: 1/3 in sync"]
    assert rows["2"]["leader_host"] == "h3:9092"


def test_it_flags_a_partition_without_leader_or_missing_from_the_metadata(sentinels):
    sentinel = sentinels["at-least-once"]
    metadata = {
        "error": None,
        "partitions": {
            "1": {"leader": -1, "leader_host": "", "replicas": [1, 2, 3], "isr": []},
        },
        "updated_at": time.time(),
    }
    table = partitions.partition_table(sentinel, status_doc(sentinel, metadata=metadata))
    rows = {row["partition"]: row for row in table["rows"]}
    assert table["error"] is None
    assert rows["0"]["problems"] == ["partition not in the topic's metadata"]
    assert rows["0"]["counts"]["processed"] == 300
    assert rows["1"]["problems"] == ["no leader"]


def test_it_shows_the_checkers_metadata_error_with_rows_from_the_totals(sentinels):
    sentinel = sentinels["at-most-once"]
    error = "Failed to get metadata: Local: Broker transport failure"
    metadata = {"error": error, "partitions": {}, "updated_at": time.time()}
    table = partitions.partition_table(sentinel, status_doc(sentinel, metadata=metadata))
    assert table["error"] == error
    assert [row["partition"] for row in table["rows"]] == ["0"]
    assert table["rows"][0]["problems"] == []  # no metadata is not a missing partition
    assert table["rows"][0]["leader"] is None


@pytest.mark.parametrize("metadata", ["absent", None])
def test_it_says_when_the_checker_has_put_no_metadata_in_the_status(sentinels, metadata):
    sentinel = sentinels["at-least-once"]
    doc = status_doc(sentinel) if metadata == "absent" else status_doc(sentinel, metadata=None)
    table = partitions.partition_table(sentinel, doc)
    assert table["error"] == "no cluster metadata from the sentinel's checker yet"
    assert [row["partition"] for row in table["rows"]] == ["0"]
    assert table["rows"][0]["counts"]["processed"] == 300
    assert table["rows"][0]["problems"] == []


def test_it_lists_verdict_changes_and_scenario_runs_in_the_timeline(store, sentinels):
    sentinel = sentinels["at-least-once"]
    run = ScenarioRun.objects.create(scenario="broker-kill", state="passed", cluster=None)
    ScenarioRun.objects.filter(pk=run.pk).update(started=minute(time.time() - 600))
    store.event("verdict", "verdict HOLDING -> VIOLATED", verdict="VIOLATED", previous="HOLDING")
    store.event("state-lost", "sentinel state in Redis was lost; counting starts afresh")
    store.event("stuck", "stuck, exiting so the sentinel is restarted: copier (181 s in one step)")
    events = timeline.timeline(sentinel)
    assert [e["label"] for e in events] == [
        "stuck, restarted",
        "sentinel state lost",
        "verdict change",
        "scenario run",
    ]
    assert "copier" in events[0]["message"]
    assert events[2]["verdict"] == "VIOLATED"
    assert events[1]["at"].tzinfo is not None
    assert events[3]["message"].endswith(": passed")
    assert events[3]["url"] == f"/scenarios/runs/{run.pk}/"


def test_it_shows_each_partitions_p99_from_the_checker_so_a_slow_broker_shows(sentinels, redis_url):
    sentinel = sentinels["at-least-once"]
    runner = CheckRunner(sentinel.to_spec(), SentinelStore(connect(redis_url), sentinel.pk))
    runner.known_runs.add(7)
    now = time.time()
    now_us = int(now * 1e6)
    delays_ms = {0: 4.0, 1: 250.0, 2: 5.0}  # partition 1's leader is slow
    items = [
        (7, p, s, now_us - int(ms * 1000), now_us) for p, ms in delays_ms.items() for s in range(20)
    ]
    runner.apply_ledger(LedgerEntry(items), now)
    doc = runner.status(now)

    rows = {row["partition"]: row for row in partitions.partition_table(sentinel, doc)["rows"]}
    assert rows["1"]["p99"] == pytest.approx(250.0, rel=0.01)
    assert rows["0"]["p99"] == pytest.approx(4.0, rel=0.01)
    assert rows["2"]["p99"] == pytest.approx(5.0, rel=0.01)
