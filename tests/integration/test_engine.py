"""The sentinel engine end to end on the real local cluster and Redis.

Ground truth comes from outside the engine: an independent consumer reading the topics, and a
forger that writes records whose fate the test knows exactly.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewPartitions

from tests.support.sentinels import (
    Forger,
    SentinelProcesses,
    make_spec,
    redis_url,
    settled_after,
    stop_producers,
    stop_together,
)
from tests.support.waiting import wait_until
from workers.clients.kafka import read_to_end
from workers.engine import codec
from workers.engine.profiles import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    DEFAULT_PROFILES,
    EXACTLY_ONCE,
    SEMANTICS,
)
from workers.runtime.run import EXIT_STUCK
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ZERO_COUNTERS = ("lost", "duplicated", "reordered", "late", "phantom", "aborted_read", "foreign")
# Where in the log (workers/engine/offsets.py): nothing on a clean run, nothing left unchecked.
OFFSET_ANOMALIES = ("divergent", "rewound", "skipped", "truncated", "offsets_unchecked")


def read_topic(bootstrap: str, topic: str, isolation: str = "read_committed") -> Counter:
    """Every record in ``topic`` (all partitions, from the beginning), counted by identity."""
    seen: Counter = Counter()
    for msg in read_to_end(
        {"bootstrap.servers": bootstrap}, topic, isolation=isolation, timeout=120
    ):
        record = codec.decode(msg.value())
        if isinstance(record, codec.Record):
            seen[(record.run_id, record.partition, record.seq)] += 1
    return seen


def consumer_roles(spec) -> str:
    return "copier,verifier" if spec.eos else "consumer"


def assert_conserved(totals: dict[str, int]) -> None:
    in_flight = totals["produced"] - totals["acked"] - totals["failed"]
    assert in_flight >= 0, totals
    first = totals["processed"] - totals["duplicated"]
    # Every acked record is accounted for: processed once, pending, or lost.
    assert first + totals["lost"] + totals["pending"] >= totals["acked"] - totals["phantom"], totals


def test_it_holds_all_three_semantics_on_a_clean_run(tmp_path):
    """All three sentinels for 600 records each (about 10 s): HOLDING, nothing lost,
    duplicated or reordered, and the counts equal what an independent reader finds in the
    topics. Long clean runs are the soak's (tests/integration/test_soak.py and
    ``python -m workers.lab.soak``), not every test's."""
    sentinels = {s: SentinelProcesses(make_spec(s), tmp_path) for s in SEMANTICS}
    try:
        for procs in sentinels.values():
            procs.start("producer")
            procs.start(consumer_roles(procs.spec))
            procs.start("checker")
        for semantic, procs in sentinels.items():
            # 20 records/s on each of 3 partitions: about 10 s of records, counted, not timed.
            procs.wait_status(
                lambda d: d["totals"]["processed"] >= 600, 120, f"{semantic}: 600 records processed"
            )
        for semantic, procs in sentinels.items():
            doc = procs.wait_status(lambda d: d["verdict"] == "HOLDING", 30, f"{semantic} HOLDING")
            assert doc["verdict"] == "HOLDING", doc
        assert stop_producers(sentinels.values()) == [0] * len(sentinels)
        since = settled_after()
        for semantic, procs in sentinels.items():
            doc = procs.wait_settled(since=since)
            totals = doc["totals"]
            for name in ZERO_COUNTERS + OFFSET_ANOMALIES:
                assert totals[name] == 0, (semantic, name, totals)
            # ... and the offsets were there to check: every partition's reads have offsets,
            # and its delivery reports too except under acks=0 (its client knows none).
            positions = doc["offsets"]
            assert set(positions) == {"0", "1", "2"}, positions
            assert all(p["read_to"] >= 0 for p in positions.values()), positions
            acked_known = semantic != AT_MOST_ONCE
            assert all((p["acked_to"] >= 0) == acked_known for p in positions.values()), positions
            assert totals["produced"] == totals["acked"] + totals["failed"], totals
            assert totals["failed"] == 0, totals
            assert totals["processed"] == totals["acked"], totals
            assert_conserved(totals)
            spec = procs.spec
            truth = read_topic(spec.bootstrap_servers, spec.verified_topic)
            assert sum(truth.values()) == totals["processed"], (
                semantic,
                sum(truth.values()),
                totals,
            )
            assert max(truth.values()) == 1, f"{semantic}: the topic itself holds duplicates"
            per_partition = doc["partitions"]
            assert set(per_partition) == {"0", "1", "2"}
            assert all(p["processed"] > 0 for p in per_partition.values()), per_partition
            assert sum(p["processed"] for p in per_partition.values()) == totals["processed"]
            assert (
                doc["latency_ms"]["p50"] is not None
                and doc["latency_ms"]["p99"] >= doc["latency_ms"]["p50"]
            )
    finally:
        stop_together(sentinels.values())


def test_an_at_most_once_producer_at_full_speed_reports_no_offset(tmp_path):
    """Under acks=0 librdkafka's delivery reports carry no offset for most records and a
    made-up small number for others (it has no answer from the broker): the producer must
    record none, else a clean run counts thousands of divergent and truncated offsets."""
    spec = make_spec(AT_MOST_ONCE, rate_per_partition=0.0)  # as fast as it can
    procs = SentinelProcesses(spec, tmp_path)
    try:
        procs.start("producer")
        wait_until(
            lambda: sum(n for _i, r in acks(procs) for n in acked_counts(r)) > 20_000,
            90,
            "20,000 records reported delivered",
        )
    finally:
        procs.stop_all()
    reports = [r for _i, r in acks(procs)]
    assert sum(n for r in reports for n in acked_counts(r)) > 20_000
    assert [p.offsets for r in reports for p in r.partitions.values() if p.offsets] == []


def acks(procs):
    return procs.store.read_acks("0-0", 100_000)


def acked_counts(report):
    return [last - first + 1 for p in report.partitions.values() for first, last in p.acked]


def test_it_counts_forged_records_exactly(tmp_path):
    """A duplicate, a skipped sequence number and garbage bytes written straight into the topic."""
    spec = make_spec(AT_LEAST_ONCE, grace_seconds=2.0)
    procs = SentinelProcesses(spec, tmp_path)
    # The forged run is older than the sentinel's own: a newer run's records on a partition
    # pass an older run's (its records not processed then count as lost after the grace
    # period), so a forged run newer than the producer's could make the producer's records
    # acknowledged but not yet processed on a slow machine count as lost.
    forger = Forger(spec)
    try:
        procs.start("producer,consumer,checker")
        procs.wait_status(lambda d: d["totals"]["processed"] > 0, 90, "records flow")
        for seq in (0, 1, 2, 3, 3, 4, 6, 7, 8, 9):  # 3 twice, 5 never
            forger.write(1, seq)
        forger.write_raw(2, b"\x00garbage that is no sentinel record")
        forger.flush()
        # The delivery reports claim seqs 4 and 6 where the other one really is: two offsets
        # holding another record than acknowledged (divergent); 5 was never written (no offset).
        at = {seq: offsets[0] for (_p, seq), offsets in forger.offsets.items()}
        at[4], at[6] = at[6], at[4]
        forger.claim(1, 0, 9, at=at)
        doc = procs.wait_status(
            lambda d: (
                d["totals"]["lost"] >= 1
                and d["totals"]["foreign"] >= 1
                and d["totals"]["duplicated"] >= 1
                and d["totals"]["divergent"] >= 2
            ),
            60,
            "forged duplicate, loss, foreign record and divergent offsets counted",
        )
        totals = doc["totals"]
        assert (totals["duplicated"], totals["lost"], totals["foreign"]) == (1, 1, 1), totals
        assert totals["reordered"] == 0, totals
        assert doc["partitions"]["1"]["divergent"] == totals["divergent"] == 2, totals
        assert (totals["rewound"], totals["skipped"], totals["truncated"]) == (0, 0, 0), totals
        assert doc["verdict"] == "VIOLATED", doc
        assert doc["partitions"]["1"]["lost"] == 1 and doc["partitions"]["1"]["duplicated"] == 1
    finally:
        procs.stop_all()


def test_it_counts_a_consumer_seeking_backwards_as_rewound_exactly(tmp_path):
    """The consumer, in this process, seeks back five offsets on partition 0 within its
    session: exactly five records rewound (and duplicated), nothing else; a restart (a new
    session) re-reading from its committed offsets is no rewind."""
    from confluent_kafka import TopicPartition

    from workers.roles.consumer import SentinelConsumer

    spec = make_spec(AT_LEAST_ONCE, partitions=1)
    procs = SentinelProcesses(spec, tmp_path)
    consumer = SentinelConsumer(spec, SentinelStore(connect(redis_url()), spec.id))
    try:
        procs.start("producer")
        procs.start("checker")
        consumer.start()

        def processed_past(n: int) -> dict | None:
            consumer.step()
            doc = procs.status()
            return doc if doc and doc["totals"]["processed"] > n else None

        def more(what: str) -> None:
            target = procs.status()["totals"]["processed"] + 20
            wait_until(lambda: processed_past(target), 60, what)

        wait_until(lambda: processed_past(20), 90, "records processed")
        tp = TopicPartition(spec.topic, 0)
        (position,) = consumer.consumer.position([tp])
        consumer.consumer.seek(TopicPartition(spec.topic, 0, position.offset - 5))
        more("records processed after the seek")
        consumer.close()
        consumer.start()  # a new session, from the committed offsets
        more("records processed after the restart")
        assert procs.stop("producer") == 0
        since = time.time() + 1.5  # a status computed after the last delivery reports

        def settled() -> dict | None:
            doc = processed_past(0)
            ok = doc and doc["updated_at"] > since and doc["totals"]["pending"] == 0
            return doc if ok else None

        doc = wait_until(settled, 60, "the sentinel to settle")
        totals = doc["totals"]
        assert totals["rewound"] == 5, totals
        assert doc["partitions"]["0"]["rewound"] == 5, doc["partitions"]
        assert totals["duplicated"] >= 5, totals  # the rewind's five, and the restart's
        for name in ("divergent", "skipped", "truncated", "lost", "offsets_unchecked"):
            assert totals[name] == 0, (name, totals)
    finally:
        consumer.close()
        procs.stop_all()


@pytest.mark.parametrize("semantic", [AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE])
def test_it_survives_restarts_of_every_process_without_false_counts(semantic, tmp_path):
    spec = make_spec(semantic)
    procs = SentinelProcesses(spec, tmp_path)
    consumer_roles_ = consumer_roles(spec)
    try:
        procs.start("producer")
        procs.start(consumer_roles_)
        procs.start("checker")
        procs.wait_status(lambda d: d["totals"]["processed"] > 20, 90, "records flow")
        for roles in ("checker", consumer_roles_, "producer", consumer_roles_, "checker"):
            before = procs.status()["totals"]["processed"]
            assert procs.stop(roles) == 0
            procs.start(roles)
            procs.wait_status(
                lambda d, b=before: d["totals"]["processed"] > b + 20,
                60,
                f"progress after restarting {roles}",
            )
        procs.stop("producer")
        doc = procs.wait_settled()
        totals = doc["totals"]
        assert totals["lost"] == 0 and totals["duplicated"] == 0 and totals["reordered"] == 0, (
            totals
        )
        assert totals["foreign"] == 0 and totals["phantom"] == 0, totals
        # A restart is a new consumer session or producer run: no rewind, skip or divergence.
        for name in OFFSET_ANOMALIES:
            assert totals[name] == 0, (name, totals)
        assert totals["processed"] == totals["acked"], totals
        assert doc["runs"] == 2, "one run per producer start"
        truth = read_topic(spec.bootstrap_servers, spec.verified_topic)
        assert sum(truth.values()) == totals["processed"]
    finally:
        procs.stop_all()


def test_it_starts_a_new_run_and_counts_no_loss_when_redis_is_flushed(tmp_path):
    spec = make_spec(AT_LEAST_ONCE)
    procs = SentinelProcesses(spec, tmp_path)
    try:
        procs.start("all")
        procs.wait_status(lambda d: d["totals"]["processed"] > 50, 90, "records flow")
        first_run = procs.status()["run_id"]
        redis.Redis.from_url(redis_url()).flushdb()
        doc = procs.wait_status(
            lambda d: d["run_id"] not in (None, first_run) and d["totals"]["processed"] > 50,
            60,
            "a new run after the flush",
        )
        events = [e["kind"] for e in procs.store.events()]
        assert "state-lost" in events, events
        # Give the grace period time to pass several times over: still no loss.
        wait_until(
            lambda: time.time() - doc["updated_at"] > 4 * spec.grace_seconds, 30, "grace elapsed"
        )
        doc = procs.wait_status(lambda d: time.time() - d["updated_at"] < 3, 10, "fresh status")
        assert doc["totals"]["lost"] == 0 and doc["totals"]["duplicated"] == 0, doc
        assert doc["verdict"] in ("HOLDING", "DEGRADED"), doc
    finally:
        procs.stop_all()


def test_it_follows_added_partitions(tmp_path):
    spec = make_spec(AT_LEAST_ONCE, partitions=2)
    procs = SentinelProcesses(spec, tmp_path)
    try:
        procs.start("all")
        procs.wait_status(
            lambda d: set(d["partitions"]) == {"0", "1"}, 90, "two partitions checked"
        )
        admin = AdminClient({"bootstrap.servers": spec.bootstrap_servers})
        for future in admin.create_partitions([NewPartitions(spec.topic, 4)]).values():
            future.result(30)
        doc = procs.wait_status(
            lambda d: all(d["partitions"].get(p, {}).get("processed", 0) > 5 for p in ("2", "3")),
            60,
            "new partitions produced to and checked",
        )
        assert doc["totals"]["lost"] == 0 and doc["totals"]["duplicated"] == 0
    finally:
        procs.stop_all()


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_it_counts_records_of_an_aborted_transaction_only_when_the_verifier_can_see_them(
    isolation, tmp_path
):
    """The copier aborts one transaction (fault hook), then copies the batch again.

    A read_committed verifier never sees the aborted records: nothing lost, duplicated or
    aborted. A verifier misconfigured as read_uncommitted does see them: each is an aborted read
    (or, read before the abort was known, a processing whose committed copy then duplicates),
    and exactly-once is VIOLATED."""
    profile = DEFAULT_PROFILES[EXACTLY_ONCE].variant(
        f"eos-{isolation}", consumer={"isolation.level": isolation}
    )
    spec = make_spec(EXACTLY_ONCE, profile=profile)
    procs = SentinelProcesses(spec, tmp_path)
    try:
        procs.start("producer")
        procs.start("copier,verifier")
        procs.start("checker")
        procs.wait_status(lambda d: d["totals"]["processed"] > 30, 90, "records flow")
        procs.store.arm_fault("abort-transaction")
        wait_until(
            lambda: (
                "txn-aborted" in [e["kind"] for e in procs.store.events()]
                or procs.store.aborted_txns()
            ),
            30,
            "a transaction aborted by the fault hook",
        )
        aborted_tokens = procs.store.aborted_txns()
        assert len(aborted_tokens) == 1, aborted_tokens
        before = procs.status()["totals"]["processed"]
        procs.wait_status(
            lambda d: d["totals"]["processed"] > before + 30, 60, "progress after the abort"
        )
        assert procs.stop("producer") == 0
        doc = procs.wait_settled()
        totals = doc["totals"]
        assert totals["lost"] == 0, totals
        aborted_in_log = count_aborted_records(spec, aborted_tokens)
        assert aborted_in_log > 0, "the aborted transaction wrote records to the log"
        if isolation == "read_committed":
            assert totals["aborted_read"] == 0 and totals["duplicated"] == 0, totals
            assert doc["verdict"] == "HOLDING", doc
        else:
            # Each aborted record either arrived once its transaction was known aborted (an
            # aborted read), or before (processed, and its committed copy is then a duplicate).
            assert totals["aborted_read"] + totals["duplicated"] == aborted_in_log, (
                totals,
                aborted_in_log,
            )
            assert doc["verdict"] == "VIOLATED", doc
    finally:
        procs.stop_all()


def count_aborted_records(spec, tokens: set[str]) -> int:
    """Ground truth: records in the output log whose key (the copier's transaction token) is an
    aborted token."""
    count = 0
    conf = {"bootstrap.servers": spec.bootstrap_servers}
    for msg in read_to_end(conf, spec.output_topic_name, isolation="read_uncommitted", timeout=120):
        token = msg.key()
        if token is not None and token.decode() in tokens:
            count += 1
    return count


def restart_and_settle(procs: SentinelProcesses, roles: str) -> dict[str, int]:
    """Start ``roles`` again after a crash, see records flow, stop the producer, let the rest
    drain; every problem counter must be 0. Returns the settled totals."""
    before = procs.status()["totals"]["processed"]
    runs_before = set(procs.store.runs())
    procs.start(roles)

    # Progress alone may be records a killed producer left in flight: with the producer
    # restarted, wait for its new run too (registered after its SIGTERM handler is in place).
    def restarted(d: dict) -> bool:
        new_run = "producer" not in roles.split(",") or set(procs.store.runs()) - runs_before
        return d["totals"]["processed"] > before + 30 and bool(new_run)

    procs.wait_status(restarted, 90, "progress after the restart")
    assert procs.stop("producer") == 0
    totals = procs.wait_settled(90)["totals"]
    for name in ZERO_COUNTERS:
        assert totals[name] == 0, (name, totals)
    return totals


def test_a_copier_stuck_in_a_call_that_never_returns_exits_and_its_batch_is_copied_later(
    tmp_path,
):
    """librdkafka's send_offsets_to_transaction was once seen blocking for good. The fault hook
    blocks the copier mid-transaction the same way: the process must exit (a thread blocked in
    C cannot be stopped) so its worker restarts it, and the restarted copier must copy the
    stuck transaction's batch: nothing lost, nothing duplicated."""
    spec = make_spec(EXACTLY_ONCE)
    procs = SentinelProcesses(spec, tmp_path)
    try:
        procs.start("producer")
        procs.start("checker")
        copier = procs.start("copier,verifier", env={"DS_STEP_DEADLINE_S": "3"})
        procs.wait_status(lambda d: d["totals"]["processed"] > 30, 90, "records flow")
        procs.store.arm_fault("mid-transaction", action="hang")
        assert copier.wait(60) == EXIT_STUCK, procs.log_tail()
        procs.procs.pop("copier,verifier")
        kinds = [e["kind"] for e in procs.store.events(200)]
        assert "fault" in kinds and "stuck" in kinds, kinds
        stuck = next(e for e in procs.store.events(200) if e["kind"] == "stuck")
        assert "copier" in stuck["message"], stuck
        totals = restart_and_settle(procs, "copier,verifier")
        assert totals["processed"] == totals["acked"], totals
    finally:
        procs.stop_all()


def test_an_exactly_once_producer_killed_mid_transaction_counts_nothing_false(tmp_path):
    """The exactly-once sentinel producer is transactional. Killed after its transaction's
    records reached the log but before the commit, the restarted producer aborts that
    transaction: the records stay in the input topic, invisible to read_committed readers, never
    acked, and nothing is lost, duplicated or phantom."""
    spec = make_spec(EXACTLY_ONCE)
    procs = SentinelProcesses(spec, tmp_path)
    try:
        producer = procs.start("producer")
        procs.start("copier,verifier")
        procs.start("checker")
        procs.wait_status(lambda d: d["totals"]["processed"] > 30, 90, "records flow")
        procs.store.arm_fault("producer-before-commit")
        assert producer.wait(30) == -9, procs.log_tail()
        procs.procs.pop("producer")
        points = [e.get("point") for e in procs.store.events(200) if e["kind"] == "fault"]
        assert points == ["producer-before-commit"], points
        totals = restart_and_settle(procs, "producer")
        assert totals["failed"] == 0 and totals["processed"] == totals["acked"], totals
        committed = sum(read_topic(spec.bootstrap_servers, spec.topic).values())
        everything = sum(
            read_topic(spec.bootstrap_servers, spec.topic, "read_uncommitted").values()
        )
        assert committed == totals["acked"], (committed, totals)
        assert everything > committed, "the killed transaction's records are in the log"
        copied = sum(read_topic(spec.bootstrap_servers, spec.output_topic_name).values())
        assert copied == totals["processed"], (copied, totals)
    finally:
        procs.stop_all()


def role_children(pid: int) -> dict[str, int]:
    """The ``workers.runtime.run`` children of ``pid``, by the role on their command line."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"--roles" in argv:
                out[argv[argv.index(b"--roles") + 1].decode()] = int(child)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_the_processes_layout_runs_producer_and_checker_apart_and_fails_together(tmp_path):
    """How workers host a sentinel: the producer and the checker in child processes. Stopping
    the producer alone lets the rest drain with nothing lost; a child that dies stops the
    sentinel (non-zero exit, so its worker restarts it) and leaves no process behind."""
    spec = make_spec(AT_LEAST_ONCE)
    procs = SentinelProcesses(spec, tmp_path)
    try:
        main = procs.start("all", args=("--layout", "processes"))
        procs.wait_status(lambda d: d["totals"]["processed"] > 30, 90, "records flow")
        children = role_children(main.pid)
        assert set(children) == {"producer", "checker"}, children
        os.kill(children["producer"], signal.SIGTERM)
        totals = procs.wait_settled(90)["totals"]
        for name in ZERO_COUNTERS:
            assert totals[name] == 0, (name, totals)
        assert totals["processed"] == totals["acked"] > 30, totals
        assert main.poll() is None and alive(children["checker"]), procs.log_tail()
        os.kill(children["checker"], signal.SIGKILL)
        assert main.wait(60) != 0, procs.log_tail()
        procs.procs.pop("all")
        assert not any(alive(pid) for pid in children.values())
    finally:
        procs.stop_all()
