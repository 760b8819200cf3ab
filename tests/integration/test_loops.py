"""Sentinel loops with no Kafka: the producer's saturation burst (a real client that no broker
answers), the consumer's processing while Redis is away, its at-least-once commit behind the
processing (a client stand-in)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from tests.support.waiting import wait_until
from workers.engine import codec
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES, EXACTLY_ONCE
from workers.engine.spec import SentinelSpec
from workers.engine.streams import LedgerEntry
from workers.roles.producer import SentinelProducer
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore


def queue_of(capacity: int, reports: list) -> Producer:
    """A real client whose local queue takes ``capacity`` records; no broker ever answers, so
    every record stays queued until ``purge()`` reports it (with its value) to ``reports``."""
    return Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "queue.buffering.max.messages": capacity,
            "log_level": 0,
            "on_delivery": lambda err, msg: reports.append((msg.partition(), msg.value())),
        }
    )


def queued(client: Producer, reports: list) -> list[tuple[int, bytes]]:
    client.purge(in_queue=True)
    client.poll(1)
    out, reports[:] = list(reports), []
    return out


class RefusesOne:
    """Takes every record of a batch but the ``index``-th, as librdkafka marks one it refused."""

    def __init__(self, index: int) -> None:
        self.index = index

    def produce_batch(self, topic: str, batch: list[dict], partition: int) -> int:
        batch[self.index]["_error"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
        return len(batch) - 1

    def poll(self, timeout: float = 0) -> int:
        return 0


@pytest.fixture
def producer(redis_url):
    spec = SentinelSpec(
        id=990_002,
        name="burst",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",
        topic="burst",
        partitions=3,
        record_size=80,
    )
    store = SentinelStore(connect(redis_url), spec.id)
    store.reset()
    loop = SentinelProducer(spec, store)
    loop.partitions, loop.run_id = 3, 77
    loop.next_seq = {0: 0, 1: 0, 2: 5}
    yield loop
    store.reset()


def test_a_burst_writes_consecutive_sequences_and_stops_cleanly_when_the_queue_is_full(producer):
    reports: list[tuple[int, bytes]] = []
    producer.producer = client = queue_of(250, reports)
    producer.produce_burst(100)
    # Partition 0: seqs 0-99, partition 1: 0-99, partition 2: 5-54, then the queue was full.
    assert producer.next_seq == {0: 100, 1: 100, 2: 55}
    assert dict(producer._produced) == {0: 100, 1: 100, 2: 50}
    assert not producer._failed
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for partition, value in queued(client, reports):
        assert len(value) == 80
        fields = codec.decode_fields(value, sentinel_id=990_002, partition=partition)
        assert isinstance(fields, tuple), fields
        _sid, run, _part, seq, produced_us = fields
        assert run == 77
        assert value == codec.encode_fields(990_002, 77, partition, seq, produced_us, 80)
        seen[partition].append(seq)
    assert seen == {0: list(range(100)), 1: list(range(100)), 2: list(range(5, 55))}

    producer.producer = client = queue_of(10, reports)
    producer.produce_burst(100)  # the next burst carries on exactly where the last one stopped
    assert [codec.decode(v).seq for _p, v in queued(client, reports)] == list(range(100, 110))
    assert producer.next_seq == {0: 110, 1: 100, 2: 55}


def test_a_record_refused_between_taken_ones_counts_as_failed_not_as_a_gap(producer):
    """The seqs after it were written: the refused one is produced and failed (never lost),
    and the next burst goes on after the batch."""
    producer.producer = RefusesOne(index=30)
    producer.produce_burst(100)
    assert producer.next_seq == {0: 100, 1: 100, 2: 105}
    assert dict(producer._produced) == {0: 100, 1: 100, 2: 100}
    assert dict(producer._failed) == {0: [30], 1: [30], 2: [35]}
    assert "record not produced" in producer.error and "MSG_SIZE_TOO_LARGE" in producer.error


def test_processing_retries_while_redis_is_away_and_gives_up_only_when_stopping(monkeypatch):
    """A consumed batch is appended to the ledger until Redis takes it (giving up would be a
    loss the cluster never caused); only a loop asked to stop gives up, after a grace period,
    instead of lingering forever once Redis is gone for good."""
    import threading

    from workers.roles import consumer as consumer_module
    from workers.roles.consumer import SentinelConsumer
    from workers.roles.loop import RestartRole

    monkeypatch.setattr(consumer_module, "LEDGER_RETRY_AT_SHUTDOWN_S", 0.5)
    spec = SentinelSpec(
        id=990_003,
        name="no-redis",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",
        topic="no-redis",
    )
    unreachable = SentinelStore(connect("redis://127.0.0.1:1/0"), spec.id)
    attempts: list[int] = []
    append_ledger = unreachable.append_ledger

    def counted(*args, **kwargs):
        attempts.append(1)
        return append_ledger(*args, **kwargs)

    monkeypatch.setattr(unreachable, "append_ledger", counted)
    consumer = SentinelConsumer(spec, unreachable)
    outcome: list[BaseException | None] = []

    def process() -> None:
        try:
            consumer.process(LedgerEntry([(1, 0, 0, 1, 2)]))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=process, daemon=True)
    worker.start()
    # A third attempt proves that two failures did not make it give up.
    wait_until(lambda: len(attempts) >= 3, 10, "a third attempt to append to the ledger")
    assert worker.is_alive() and not outcome, "it must keep retrying while not stopping"
    assert "processing ledger unavailable" in (consumer.error or "")
    consumer.shutdown.set()
    worker.join(10)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], RestartRole), outcome


def offline_spec(sid: int, name: str) -> SentinelSpec:
    """An at-least-once spec whose cluster never answers (for loops that need no Kafka)."""
    return SentinelSpec(
        id=sid,
        name=name,
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",
        topic=name,
    )


def test_it_clears_a_failed_steps_error_once_a_step_succeeds(redis_url):
    """A step that failed on Redis or Kafka reports its error (the verdict turns STALLED);
    the next step that succeeds ends it. Before, the error stayed until the process restarted,
    so a restart of Redis that lost nothing left every checker STALLED for good."""
    import threading

    import redis as redis_lib

    from workers.roles.loop import Loop

    spec = offline_spec(990_004, "flaky-step")
    errors_seen: list[str | None] = []

    class Flaky(Loop):
        role = "checker"

        def __init__(self) -> None:
            super().__init__(spec, SentinelStore(connect(redis_url), spec.id))
            self.steps = 0
            self.done = threading.Event()

        def step(self) -> None:
            self.steps += 1
            errors_seen.append(self.error)
            if self.steps == 1:
                raise redis_lib.ConnectionError("Connection closed by server.")
            if self.steps == 3:
                self.shutdown.set()
                self.done.set()

    loop = Flaky()
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    assert loop.done.wait(30), "the loop did not take three steps"
    thread.join(10)
    # Step 2 ran while the error of step 1 was still reported; step 3 after it was cleared.
    assert errors_seen == [None, "ConnectionError: Connection closed by server.", None]
    loop.store.reset()


def test_it_keeps_stepping_when_a_heartbeat_cannot_reach_redis():
    """A heartbeat is best effort: Redis restarting (connection refused, loading its data)
    must not end the role (it did: every sentinel restarted with each Redis restart)."""
    import threading

    from workers.roles.loop import Loop

    spec = offline_spec(990_005, "no-heartbeat")

    class Stepping(Loop):
        role = "checker"

        def __init__(self) -> None:
            super().__init__(spec, SentinelStore(connect("redis://127.0.0.1:1/0"), spec.id))
            self.steps = 0

        def step(self) -> None:
            self.steps += 1
            self._last_heartbeat = 0.0  # a heartbeat after every step
            if self.steps == 3:
                self.shutdown.set()

    loop = Stepping()
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and loop.steps == 3


def test_a_client_call_past_its_own_timeout_is_stuck_before_the_step_deadline(redis_url):
    """librdkafka's send_offsets_to_transaction was seen ignoring its 30 s timeout across a
    broker restart; the copier then waited for the whole step deadline (180 s) before its
    process was restarted. The copier bounds that call: once it is ``CALL_GRACE_S`` past its
    timeout, the runner reports the copier stuck, whatever the step deadline."""
    from workers.engine.profiles import EXACTLY_ONCE
    from workers.roles import copier as copier_module
    from workers.roles.loop import CALL_GRACE_S
    from workers.runtime.run import RoleRunner

    spec = replace(offline_spec(990_006, "bounded-call"), profile=DEFAULT_PROFILES[EXACTLY_ONCE])
    runner = RoleRunner(spec, SentinelStore(connect(redis_url), spec.id), ["copier"])
    [copier] = runner.loops
    seen: list[tuple[float | None, list[str]]] = []

    class Consumer:
        def assignment(self):
            return []

        def position(self, partitions):
            return partitions

        def consumer_group_metadata(self):
            return object()

    class Producer:
        def send_offsets_to_transaction(self, positions, group, timeout):
            deadline = copier.call_deadline
            copier.busy_since = time.monotonic()  # the step itself is young
            seen.append((deadline, runner.stuck(deadline_s=600)))
            copier.call_deadline = time.monotonic() - 1  # as if the call ran past its bound
            seen.append((None, runner.stuck(deadline_s=600)))

    copier.producer, copier.consumer = Producer(), Consumer()
    started = time.monotonic()
    copier.send_offsets_with_retries()

    (deadline, stuck_inside), (_, stuck_past) = seen
    bound = copier_module.SEND_OFFSETS_TIMEOUT_S + CALL_GRACE_S
    assert deadline is not None and 0 <= deadline - started - bound < 5
    assert stuck_inside == []
    assert len(stuck_past) == 1 and stuck_past[0].startswith("copier (a client call ")
    assert copier.call_deadline is None and runner.stuck(deadline_s=600) == []
    copier.store.reset()


@pytest.mark.parametrize("role", ["consumer", "verifier"])
def test_a_consuming_role_reads_partition_counts_through_a_client_of_its_own(
    redis_url, monkeypatch, role
):
    """The consumer's connections each hold a fetch the broker parks for up to
    fetch.wait.max.ms (500 ms) while no record comes, and a broker answers one connection's
    requests in order: a list_topics() on the consumer itself waited behind that fetch, with
    the loop blocked while other partitions' records queued (every 5 s, records ~500 ms late
    at 2 records/s per partition, docs/benchmarks.md). Partition counts must come from the
    role's own metadata client, never from the consumer."""
    from confluent_kafka.admin import AdminClient

    from workers.roles import consumer as consumer_module
    from workers.roles.consumer import SentinelConsumer
    from workers.roles.verifier import CommittedVerifier

    asked: list[object] = []

    def partition_count(client, topic):
        asked.append(client)
        return None  # unknown: nothing is assigned, nothing else is asked of the cluster

    monkeypatch.setattr(consumer_module, "partition_count", partition_count)
    spec = offline_spec(990_011, f"own-metadata-{role}")
    if role == "verifier":
        spec = replace(spec, profile=DEFAULT_PROFILES[EXACTLY_ONCE])
    store = SentinelStore(connect(redis_url), spec.id)
    store.reset()
    loop = (SentinelConsumer if role == "consumer" else CommittedVerifier)(spec, store)
    try:
        loop.start()
        loop.follow_partitions(force=True)
        assert len(asked) == 2
        assert all(isinstance(client, AdminClient) for client in asked), asked
        assert all(client is not loop.consumer for client in asked)
    finally:
        loop.close()
        store.reset()
    assert loop.metadata_client is None


class Read:
    """A record as the consumer's client returns it."""

    def __init__(self, sid: int, partition: int, offset: int) -> None:
        self.v = codec.encode_fields(sid, 7, partition, offset, 1, 64)
        self.p, self.o = partition, offset

    def value(self) -> bytes:
        return self.v

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def leader_epoch(self) -> int | None:
        return 0


class GatedCommits:
    """A consumer client whose synchronous commit waits for ``gate``: what each commit sent,
    how many batches the ledger held when it was sent, and the order of commits and close."""

    def __init__(self, ledger_len, fail_first: bool = False) -> None:
        self.ledger_len = ledger_len
        self.fail_first = fail_first
        self.gate = threading.Event()
        self.sent: list[tuple[dict[int, int], int]] = []
        self.order: list[str] = []

    def commit(self, offsets, asynchronous: bool) -> None:
        assert asynchronous is False
        self.sent.append(({tp.partition: tp.offset for tp in offsets}, self.ledger_len()))
        assert self.gate.wait(10)
        if self.fail_first and len(self.sent) == 1:
            self.order.append("commit failed")
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))
        self.order.append("commit")

    def close(self) -> None:
        self.order.append("close")


@pytest.fixture
def behind(redis_url):
    """An at-least-once consumer whose batches come from ``batches`` and whose client is a
    ``GatedCommits``."""
    from workers.roles.consumer import SentinelConsumer

    spec = offline_spec(990_012, "commit-behind")
    store = SentinelStore(connect(redis_url), spec.id)
    store.reset()

    class Fed(SentinelConsumer):
        batches: list[list[Read]] = []

        def poll_batch(self) -> list:
            return self.batches.pop(0) if self.batches else []

    loop = Fed(spec, store)
    loop.join_epoch()
    yield loop, lambda: len(store.read_ledger("0", 100))
    store.reset()


def reads(sid: int, partition: int, first: int, count: int) -> list[Read]:
    return [Read(sid, partition, o) for o in range(first, first + count)]


def test_at_least_once_commits_each_batch_after_its_processing_while_the_next_is_processed(behind):
    loop, ledger_len = behind
    loop.consumer = client = GatedCommits(ledger_len)
    loop.batches = [reads(loop.spec.id, 0, 0, 10), reads(loop.spec.id, 0, 10, 10)]
    loop.step()  # batch 1 processed, its commit sent and waiting
    wait_until(lambda: len(client.sent) == 1, 5, "the first batch's commit to be sent")
    second = threading.Thread(target=loop.step, daemon=True)
    second.start()
    wait_until(lambda: ledger_len() == 2, 5, "the second batch processed while the first commits")
    assert len(client.sent) == 1 and client.order == [], "no commit may go before the last one"
    client.gate.set()
    second.join(10)
    assert not second.is_alive()
    wait_until(lambda: len(client.order) == 2, 5, "the second batch's commit")
    # Each commit was sent once its batch was in the ledger, never before.
    assert client.sent == [({0: 10}, 1), ({0: 20}, 2)]
    assert loop.error is None
    loop.close()
    assert client.order == ["commit", "commit", "close"]


def test_a_failed_commit_behind_is_carried_by_the_next_one(behind):
    """Partition 1 moves only in the first batch, whose commit fails: the next commit
    carries it (else a restart would re-read it although nothing failed to process)."""
    loop, ledger_len = behind
    loop.consumer = client = GatedCommits(ledger_len, fail_first=True)
    client.gate.set()
    sid = loop.spec.id
    loop.batches = [reads(sid, 0, 0, 10) + reads(sid, 1, 0, 5), reads(sid, 0, 10, 10)]
    loop.step()
    loop.step()
    wait_until(lambda: len(client.order) == 2, 5, "the second batch's commit")
    assert "REQUEST_TIMED_OUT" in (loop.error or "")
    assert [offsets for offsets, _ in client.sent] == [{0: 10, 1: 5}, {0: 20, 1: 5}]
    loop.close()
    assert client.order == ["commit failed", "commit", "close"]


def test_a_stop_waits_for_the_commit_in_flight_before_closing_the_client(behind):
    loop, ledger_len = behind
    loop.consumer = client = GatedCommits(ledger_len)
    loop.batches = [reads(loop.spec.id, 0, 0, 10)]
    loop.step()
    closing = threading.Thread(target=loop.close, daemon=True)
    closing.start()
    wait_until(lambda: len(client.sent) == 1, 5, "the batch's commit to be sent")
    assert closing.is_alive() and client.order == []
    client.gate.set()
    closing.join(10)
    assert client.order == ["commit", "close"]
