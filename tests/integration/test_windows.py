"""One-second windows and checkpoints: what the check runner stores, and what that costs;
per-partition latency in the status document."""

from __future__ import annotations

import time

import pytest

from workers.engine.documents import Window, merge_windows
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.engine.streams import AckReport, LedgerEntry, MalformedEntry, PartitionReport
from workers.runtime.checkrunner import CheckRunner
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

PARTITIONS = 1000
RUN = 4242


@pytest.fixture
def runner(redis_url):
    spec = SentinelSpec(
        id=990_001,
        name="windows",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",
        topic="windows",
    )
    store = SentinelStore(connect(redis_url), spec.id)
    store.reset()
    runner = CheckRunner(spec, store)
    runner.load()
    runner.checker.register_run(RUN)
    yield runner
    store.reset()


def one_second(runner: CheckRunner, second: int, now: float) -> None:
    """Every partition produces, acks and processes 10 records (seqs of that second)."""
    first, last = 10 * second, 10 * second + 9
    for p in range(PARTITIONS):
        runner.checker.produced(RUN, p, 10)
        runner.checker.acked(RUN, p, first, last, now)
        runner.checker.processed(RUN, p, range(first, last + 1), now)


def test_a_healthy_window_carries_no_per_partition_data_and_a_problem_is_kept(runner):
    now = time.time()
    one_second(runner, 0, now)
    runner.emit_window(now, runner.status(now))
    one_second(runner, 1, now + 1)
    runner.emit_window(now + 1, runner.status(now + 1))
    one_second(runner, 2, now + 2)
    runner.checker.processed(RUN, 3, [25], now + 2)  # partition 3 processes seq 25 again
    runner.emit_window(now + 2, runner.status(now + 2))

    first, healthy, with_duplicate = runner.store.windows(now - 1)
    assert first["partitions"] == {}  # the first window after a start holds no increases
    assert healthy["counts"]["processed"] == 10 * PARTITIONS
    assert healthy["partitions"] == {}
    assert with_duplicate["counts"]["duplicated"] == 1
    assert with_duplicate["partitions"] == {"3": {"duplicated": 1}}
    # The stored size does not depend on the partition count (it did: ~70 KB per window).
    sizes = [len(fields[b"d"]) for _id, fields in runner.store.r.xrange(runner.store.key("w1"))]
    assert max(sizes) < 4096, sizes


def processed(partition: int, seqs: range, delay_ms: float, now: float) -> list[tuple]:
    """Ledger items of ``partition`` processed at ``now``, each ``delay_ms`` after its produce."""
    now_us = int(now * 1e6)
    return [(RUN, partition, seq, now_us - int(delay_ms * 1000), now_us) for seq in seqs]


def test_it_stores_latency_histograms_compactly_and_still_reads_the_old_form(runner):
    now = time.time()
    runner.known_runs.add(RUN)
    runner.emit_window(now, runner.status(now))
    items = [it for p in range(3) for it in processed(p, range(10), 5.0 + p, now + 1)]
    runner.apply_ledger(LedgerEntry(items), now + 1)
    runner.emit_window(now + 1, runner.status(now + 1))

    doc = runner.store.windows(now - 1)[-1]
    assert isinstance(doc["hist"]["e2e"], str)
    new = Window.from_doc(doc)
    assert new.histogram("e2e").count == 30 and new.histogram("e2e").max == pytest.approx(7.0)
    # A window written before the compact form (a running Redis keeps an hour of them).
    old = dict(doc, hist={k: new.histogram(k).to_dict() for k in ("e2e", "ack")})
    assert Window.from_doc(old).histogram("e2e") == new.histogram("e2e")
    merged = merge_windows([Window.from_doc(old), new])
    assert merged.histogram("e2e").count == 60


def test_it_reports_each_partitions_recent_latency_so_a_slow_broker_shows(runner):
    now = time.time()
    runner.known_runs.add(RUN)
    for second in range(5):
        t = now + second
        seqs = range(10 * second, 10 * second + 10)
        items = [*processed(0, seqs, 4.0, t), *processed(1, seqs, 6.0, t)]
        items += processed(2, seqs, 180.0, t)  # partition 2's leader is slow
        runner.apply_ledger(LedgerEntry(items), t)

    latency = runner.status(now + 5)["partition_latency_ms"]
    assert set(latency) == {"0", "1", "2"}
    assert latency["0"]["p99"] == pytest.approx(4.0, rel=0.01)
    assert latency["1"]["p99"] == pytest.approx(6.0, rel=0.01)
    assert latency["2"]["p99"] == pytest.approx(180.0, rel=0.01)
    assert latency["2"]["count"] == 50
    # A minute later without records from partition 2, it is no longer reported.
    runner.apply_ledger(LedgerEntry(processed(0, range(50, 60), 4.0, now + 70)), now + 70)
    assert set(runner.status(now + 70)["partition_latency_ms"]) == {"0"}


def test_it_writes_the_checker_checkpoint_only_when_it_changed(runner):
    store, now = runner.store, time.time()
    runner.known_runs.add(RUN)
    runner.checker.produced(RUN, 0, 10)
    runner.checkpoint()
    written = store.r.hget(store.key("checker"), "state")
    store.r.hset(store.key("checker"), "state", b"marker")  # would be overwritten by a write
    runner.checker.tick(now + 1)  # only the checker's clock moves
    runner.checkpoint()
    assert store.r.hget(store.key("checker"), "state") == b"marker"

    runner.checker.acked(RUN, 0, 0, 9, now + 2)
    runner.checkpoint()
    rewritten = store.r.hget(store.key("checker"), "state")
    assert rewritten not in (b"marker", written)
    doc, _acks, _ledger = store.load_checkpoint()
    assert doc["checker"]["keys"][0]["run"] == RUN


def test_it_reads_everything_written_since_the_last_cut_in_one_step(runner, monkeypatch):
    """The check runner reads the streams once per cut, all of them even past one read's
    count, acks after the ledger, and counts every record exactly once."""
    monkeypatch.setattr("workers.runtime.checkrunner.READ_COUNT", 2)
    producer, consumer = runner.store.for_writer(), runner.store.for_writer()
    producer.register_run(RUN, {"started": time.time()})
    now = time.time()
    for batch in range(5):  # 5 ledger entries and 5 acks entries: three reads of two
        seqs = range(3 * batch, 3 * batch + 3)
        consumer.append_ledger(LedgerEntry(processed(0, seqs, 4.0, now)))
        producer.append_acks(AckReport(RUN, {0: PartitionReport(3, [[seqs[0], seqs[-1]]])}))
    runner._last_checkpoint = 0.0  # a cut is due

    runner.step()
    totals = runner.store.status()["totals"]
    assert (totals["produced"], totals["acked"], totals["processed"]) == (15, 15, 15)
    assert (totals["pending"], totals["lost"], totals["duplicated"]) == (0, 0, 0)
    assert runner.recent_latency(time.time()).count == 15

    consumer.append_ledger(LedgerEntry(processed(0, range(14, 15), 4.0, now)))  # one record again
    runner._last_checkpoint = 0.0
    runner.step()
    totals = runner.store.status()["totals"]
    assert (totals["processed"], totals["duplicated"]) == (16, 1)


def test_a_malformed_stream_entry_stops_the_read_and_nothing_counts_lost(runner):
    """An entry the check runner cannot read stops its step with an error naming the entry,
    before anything of the read is applied, and again at the next step: read past, the
    records after it would pass the ones in it, and those would turn into losses."""
    producer, consumer = runner.store.for_writer(), runner.store.for_writer()
    producer.register_run(RUN, {"started": time.time()})
    now = time.time()
    producer.append_acks(AckReport(RUN, {0: PartitionReport(9, [[0, 8]])}))
    consumer.append_ledger(LedgerEntry(processed(0, range(0, 3), 4.0, now)))
    bad = runner.store.r.xadd(runner.store.key("ledger"), {"d": b"\x00" * 37}).decode()
    consumer.append_ledger(LedgerEntry(processed(0, range(6, 9), 4.0, now)))

    for _step in range(2):
        runner._last_checkpoint = 0.0  # a cut is due
        with pytest.raises(
            MalformedEntry, match=f"holds 37 bytes, .* \\(entry {bad} of ds:990001:ledger\\)"
        ):
            runner.step()
        assert (runner.acks_id, runner.ledger_id) == ("0-0", "0-0")
    assert runner.checker.totals()["processed"] == 0 and runner.checker.totals()["lost"] == 0
    assert runner.store.status() is None and runner.store.load_checkpoint()[0] is None


def test_it_waits_for_the_next_cut_and_stops_without_reading(runner):
    producer = runner.store.for_writer()
    producer.register_run(RUN, {"started": time.time()})
    producer.append_acks(AckReport(RUN, {0: PartitionReport(1, [[0, 0]])}))
    runner._last_checkpoint = time.time()  # the next cut is a second away
    runner.shutdown.set()
    runner.busy_since = time.monotonic()  # as Loop.run sets it for every step

    runner.step()  # returns at once: asked to stop while waiting
    assert runner.store.status() is None and runner.acks_id == "0-0"
    assert runner.busy_since is None  # waiting for the cut is not a step stuck
