"""The sentinel's Kafka-facing loops: producer, consumer, exactly-once copier and verifier.

Each loop is a small class with a ``shutdown`` flag and a ``step()`` that does one unit of
work, so a host (a test, ``python -m workers.runtime.run``, a Celery worker) can run it in a thread or
a process. librdkafka clients are created in ``start()``, inside the process that runs the loop
(never before a fork).

What "processing" means: appending the record to the Redis processing ledger
(``SentinelStore.append_ledger``), a durable effect that outlives the process. The commit
strategy decides whether the Kafka offset commit comes before it (at-most-once) or after it
(at-least-once). Under exactly-once a transactional copier moves records from the input topic
to the output topic, and a ``read_committed`` verifier processes the output exactly once by
storing its offsets in the same Redis transaction as its ledger entry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import struct
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from workers.engine import codec
from workers.engine.latency import LatencyHistogram
from workers.engine.profiles import COMMIT_BEFORE_PROCESS
from workers.engine.spec import SentinelSpec
from workers.store import SentinelStore, to_ranges

log = logging.getLogger(__name__)

ACK_FLUSH_INTERVAL_S = 0.1
# Each flush writes one acks entry for every partition with news; with many partitions a
# longer interval keeps that cost per record, not per partition (0.5 s at 1,000 partitions).
ACK_FLUSH_INTERVAL_MAX_S = 1.0
ACK_FLUSH_PARTITIONS_PER_S = 2000


def ack_flush_interval(partitions: int) -> float:
    return min(
        ACK_FLUSH_INTERVAL_MAX_S, max(ACK_FLUSH_INTERVAL_S, partitions / ACK_FLUSH_PARTITIONS_PER_S)
    )


METADATA_REFRESH_S = 5.0
HEARTBEAT_INTERVAL_S = 1.0
TXN_HEADER = "ds-txn"
SEND_OFFSETS_ATTEMPTS = 3
LEDGER_RETRY_AT_SHUTDOWN_S = 20.0
_U64 = struct.Struct(">Q")


def now_us() -> int:
    return time.time_ns() // 1000


class RestartRole(Exception):
    """Raised by a step whose clients are in a state it cannot go on from (e.g. an abort that
    failed with the consumer already past the batch): the loop closes its clients and starts
    afresh from what Kafka and Redis hold, as a process restart would."""


class Loop:
    """A long-running unit of sentinel work: ``start()``, ``step()`` until ``shutdown``, ``close()``.

    ``busy_since`` is when the current step began (``time.monotonic()``), or None between
    steps; retry loops inside a step call ``progress()``. A step that stays busy for minutes is
    stuck in a call that never returns (librdkafka's ``send_offsets_to_transaction`` was seen
    to block for good when the group coordinator stopped): ``python -m workers.runtime.run`` exits
    then, so the worker restarts the sentinel (see ``SentinelHost.stuck``).
    """

    role = "loop"

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        self.spec = spec
        self.store = store
        self.shutdown = threading.Event()
        self.error: str | None = None
        self.busy_since: float | None = None
        self._last_heartbeat = 0.0

    def start(self) -> None:  # pragma: no cover - overridden
        pass

    def step(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        pass

    def heartbeat(self, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_INTERVAL_S:
            self._last_heartbeat = now
            self.store.heartbeat(
                self.role, self.error, pid=os.getpid(), host=socket.gethostname(), **extra
            )

    def on_client_error(self, err: KafkaError) -> None:
        """librdkafka's error_cb: connectivity trouble is reported as STALLED, never as loss."""
        self.error = f"{err.name()}: {err.str()}"
        log.warning("%s %s: %s", self.role, self.spec.name, self.error)

    def progress(self) -> None:
        """Inside a step: still working (a retry came back), not stuck."""
        self.busy_since = time.monotonic()

    def run(self) -> None:
        if not self.start_with_retries():
            return
        try:
            while not self.shutdown.is_set():
                self.busy_since = time.monotonic()
                try:
                    self.step()
                except (KafkaException, redis.RedisError) as exc:
                    # Cluster or Redis trouble: report it (the verdict becomes STALLED), wait, go on.
                    self.error = describe(exc)
                    log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                    self.busy_since = None
                    self.shutdown.wait(1.0)
                except RestartRole as exc:
                    self.error = f"restarting: {exc}"
                    log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                    self.busy_since = None
                    with contextlib.suppress(Exception):
                        self.close()
                    if not self.start_with_retries():
                        return
                self.busy_since = None
                self.heartbeat()
        finally:
            self.busy_since = None
            self.close()
            with contextlib.suppress(redis.RedisError):
                self.store.heartbeat(self.role, "stopped", pid=os.getpid())

    def start_with_retries(self) -> bool:
        """``start()`` until it succeeds (backing off to 30 s) or shutdown; False on shutdown."""
        backoff = 1.0
        while not self.shutdown.is_set():
            try:
                self.start()
                return True
            except (KafkaException, TimeoutError, redis.RedisError) as exc:
                self.error = f"cannot start: {describe(exc)}"
                log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                with contextlib.suppress(redis.RedisError):
                    self.store.heartbeat(self.role, self.error, pid=os.getpid())
                self.shutdown.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        return False


def describe(exc: BaseException) -> str:
    """A readable one-line message: librdkafka's own words for Kafka errors."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err = exc.args[0]
        return f"{err.name()}: {err.str()}"
    return f"{type(exc).__name__}: {exc}"


def admin_for(spec: SentinelSpec) -> AdminClient:
    return AdminClient({**spec.client, "bootstrap.servers": spec.bootstrap_servers})


def ensure_topic(admin: AdminClient, spec: SentinelSpec, topic: str, partitions: int) -> int:
    """Create ``topic`` if missing (sentinel defaults) and grow it to ``partitions``; its count."""
    md = admin.list_topics(topic=topic, timeout=10)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        new = NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=spec.replication_factor,
            config={
                "min.insync.replicas": str(spec.min_insync_replicas),
                "unclean.leader.election.enable": "false",
            },
        )
        for future in admin.create_topics([new]).values():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        return wait_for_partitions(admin, topic, partitions)
    current = len(meta.partitions)
    if current < partitions:
        for future in admin.create_partitions([NewPartitions(topic, partitions)]).values():
            future.result(timeout=30)
        return wait_for_partitions(admin, topic, partitions)
    return current


def wait_for_partitions(
    admin: AdminClient, topic: str, partitions: int, timeout: float = 30
) -> int:
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        ready = meta is not None and meta.error is None and len(meta.partitions) >= partitions
        if ready and all(p.leader >= 0 for p in meta.partitions.values()):
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for every partition after {timeout}s")
        time.sleep(0.2)


def partition_count(client: Producer | Consumer | AdminClient, topic: str) -> int | None:
    """Current partition count of ``topic`` from metadata, or None when it is unknown."""
    try:
        meta = client.list_topics(topic=topic, timeout=5).topics.get(topic)
    except KafkaException:
        return None
    if meta is None or meta.error is not None:
        return None
    return len(meta.partitions)


# Under a backlog a batch takes what is already fetched, up to this many times batch_size.
BATCH_GROWTH = 8


def consume_batch(consumer: Consumer, batch_size: int, timeout: float) -> list[Any]:
    """One batch: up to ``batch_size`` records within ``timeout``; when that comes back full
    (a backlog), also what the client has already fetched, up to ``BATCH_GROWTH`` times as much.

    Each batch costs one synchronous commit (or one transaction), whose latency does not
    depend on the batch's size: a fixed batch caps a consumer at batch_size / commit latency
    (500 / 33 ms on the 2-core test machine at 1,000 partitions, just above the 10,000
    records/s a sentinel of that size produces), so a backlog could never drain. Growing the
    batch only while records are waiting keeps latency and the crash-time batch small when
    the consumer keeps up."""
    msgs = consumer.consume(num_messages=batch_size, timeout=timeout)
    while len(msgs) >= batch_size and len(msgs) < batch_size * BATCH_GROWTH:
        more = consumer.consume(num_messages=batch_size, timeout=0)
        msgs.extend(more)
        if len(more) < batch_size:
            break
    return msgs


def read_to_end(
    conf: dict[str, Any], topic: str, *, isolation: str, timeout: float = 60
) -> Iterator[Any]:
    """Every record of ``topic``, all partitions from the beginning up to their current end.

    For ground truth (tests, the scenario lab): a throwaway consumer, no commits. Raises
    TimeoutError when some partition was not read to its end within ``timeout`` seconds."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"ds-read-to-end-{time.time_ns()}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        remaining = set(meta.partitions)
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end in {timeout:.0f}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                remaining.discard(msg.partition())
                continue
            yield msg
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------
# Producer
# ---------------------------------------------------------------------------------------


class SentinelProducer(Loop):
    """Writes sequence-numbered records to every partition of the sentinel topic.

    Every ``start()`` is a new run with its own id; sequence numbers restart at 0 per partition.
    Delivery reports are folded into acked / failed ranges and appended to the acks stream
    every ~100 ms (longer with many partitions, see ``ack_flush_interval``), with the
    produce-ack latency histogram of the same period.

    Under exactly-once the producer is transactional (its own ``transactional.id``), one
    transaction per acks flush: a record counts as acked only once its transaction committed, and
    as failed if it aborted (the read_committed copier never sees it). An idempotent producer
    alone could write a batch twice after an epoch bump (seen in a rolling restart,
    librdkafka#4953), a duplicate the semantic does not allow. A record whose transaction was
    open when the process died stays in flight: neither acked nor failed, never lost.
    """

    role = "producer"

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.run_id = 0
        self.epoch: str | None = None
        self.partitions = 0
        self.next_seq: dict[int, int] = {}
        self._credit = 0.0  # records due per partition (every partition has the same rate)
        self._acked: dict[int, list[int]] = defaultdict(list)
        self._failed: dict[int, list[int]] = defaultdict(list)
        self._produced: dict[int, int] = defaultdict(int)
        self._ack_seconds: list[float] = []  # delivery latencies, into a histogram per flush
        self._last_flush = 0.0
        self._last_tick = 0.0
        self._last_metadata = 0.0
        self.producer: Producer | None = None
        self.transactional = spec.eos
        self._in_txn = False
        self._txn_acked: dict[int, list[int]] = defaultdict(list)  # delivered, not yet committed
        self.fenced = False
        self.fault = FaultHook(store)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        admin = admin_for(self.spec)
        self.partitions = ensure_topic(admin, self.spec, self.spec.topic, self.spec.partitions)
        extra: dict[str, Any] = {"on_delivery": self._on_delivery, "error_cb": self.on_client_error}
        if self.transactional:
            extra["transactional.id"] = self.spec.producer_transactional_id
        self.producer = Producer(self.spec.producer_conf(**extra))
        # A restart (RestartRole) begins afresh: close() sent what the last run had.
        self.run_id, self._in_txn, self._txn_acked = 0, False, defaultdict(list)
        self._acked, self._failed, self._produced = (
            defaultdict(list),
            defaultdict(list),
            defaultdict(int),
        )
        if self.transactional:
            # Fences a previous instance and aborts the transaction it left open.
            self.producer.init_transactions(60)
        self.new_run("started")
        self._last_tick = time.monotonic()

    def new_run(self, reason: str) -> None:
        """Begin a new run: fresh id, sequences from 0, registered before the first record."""
        if self.producer is not None and self.run_id:
            self.producer.flush(10)
            self.flush_acks(force=True)
        self.epoch, created = self.store.ensure_epoch()
        self.run_id = codec.new_run_id()
        self.next_seq = {p: 0 for p in range(self.partitions)}
        self._credit = 0.0
        self.store.register_run(
            self.run_id,
            {
                "started": time.time(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "reason": reason,
            },
        )
        self.store.event("run", f"producer run {self.run_id} {reason}", run=self.run_id)
        log.info("sentinel %s: producer run %s %s", self.spec.name, self.run_id, reason)

    def close(self) -> None:
        if self.producer is not None and not self.fenced:
            remaining = self.producer.flush(8)
            if remaining:
                log.warning(
                    "sentinel %s: %d records still in flight at shutdown", self.spec.name, remaining
                )
            try:
                self.flush_acks(force=True)
            except (KafkaException, RestartRole) as exc:
                log.warning("sentinel %s: last transaction: %s", self.spec.name, exc)
        self.producer = None

    # -- work ------------------------------------------------------------------------------
    def step(self) -> None:
        assert self.producer is not None
        now = time.monotonic()
        if now - self._last_metadata >= METADATA_REFRESH_S:
            self._last_metadata = now
            self.follow_partitions()
            self.check_epoch()
        elapsed, self._last_tick = now - self._last_tick, now
        if self.spec.rate_per_partition > 0:
            self.produce_due(elapsed)
            # Serve delivery reports until the next record is due (at most 50 ms).
            due_in = (1.0 - self._credit) / self.spec.rate_per_partition
            self.producer.poll(min(0.05, max(0.001, due_in)))
        else:
            self.produce_burst()
            self.producer.poll(0)
        self.flush_acks()

    def produce_due(self, elapsed: float) -> None:
        """``rate`` records a second to every partition. One credit for all partitions, so a
        step with nothing due costs nothing: at 1,000 partitions, walking every partition on
        every step was a quarter of the process's Python time."""
        rate = self.spec.rate_per_partition
        self._credit += rate * elapsed
        count = int(self._credit)
        if not count:
            return
        self._credit -= count
        count = min(count, max(1, int(rate)))  # after a stall: at most one second's worth
        self.begin_transaction()
        for partition in range(self.partitions):
            for _ in range(count):
                if not self.produce_one(partition):
                    break

    def produce_burst(self, per_partition: int = 100) -> None:
        """``per_partition`` records to every partition as fast as the client takes them
        (``rate_per_partition=0``, the benchmark's saturation mode): ``produce_one`` inlined,
        since at saturation the producer's Python time per record is the pipeline's limit."""
        assert self.producer is not None
        self.begin_transaction()
        produce, topic = self.producer.produce, self.spec.topic
        pack, crc, crc_pack, time_ns = codec.BODY.pack, zlib.crc32, codec.CRC.pack, time.time_ns
        magic, version, sid, run = codec.MAGIC, codec.VERSION, self.spec.id, self.run_id
        pad = codec.padding(self.spec.record_size)
        for partition in range(self.partitions):
            first = seq = self.next_seq[partition]
            end, full = first + per_partition, False
            while seq < end:
                body = pack(magic, version, sid, run, partition, seq, time_ns() // 1000)
                try:
                    produce(topic, body + crc_pack(crc(body)) + pad, partition=partition)
                except BufferError:
                    self.producer.poll(0.05)
                    full = True
                    break
                except KafkaException as exc:  # not enqueued: not produced, not counted
                    self.error = str(exc)
                    full = True
                    break
                seq += 1
            self.next_seq[partition] = seq
            self._produced[partition] += seq - first
            if full:
                return

    def produce_one(self, partition: int) -> bool:
        """Produce the next record of ``partition``; False when the local queue is full."""
        assert self.producer is not None
        seq = self.next_seq[partition]
        value = codec.encode_fields(
            self.spec.id, self.run_id, partition, seq, now_us(), self.spec.record_size
        )
        try:
            self.producer.produce(self.spec.topic, value=value, partition=partition)
        except BufferError:
            self.producer.poll(0.05)
            return False
        except KafkaException as exc:
            # Not even enqueued: nothing was produced, so nothing is counted.
            self.error = str(exc)
            return False
        self.next_seq[partition] = seq + 1
        self._produced[partition] += 1
        return True

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # Runs inside poll()/flush() on this loop's own thread, so no lock. Only the run id and
        # seq are read, at fixed offsets of our own records: this is the hot path at saturation.
        value = msg.value()
        if value is None or len(value) < codec.HEADER_SIZE:
            return
        if _U64.unpack_from(value, codec.RUN_OFFSET)[0] != self.run_id:
            return  # a previous run's straggler: that run's ranges are closed
        seq = _U64.unpack_from(value, codec.SEQ_OFFSET)[0]
        if err is None:
            (self._txn_acked if self.transactional else self._acked)[msg.partition()].append(seq)
            latency = msg.latency()
            if latency is not None:
                self._ack_seconds.append(latency)
        else:
            self._failed[msg.partition()].append(seq)
            self.error = f"delivery failed: {err.str()}"

    # -- transactions (exactly-once) --------------------------------------------------------
    def begin_transaction(self) -> None:
        if self.transactional and not self._in_txn:
            assert self.producer is not None
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                self.transaction_failed(exc.args[0])
            self._in_txn = True

    def end_transaction(self) -> None:
        """Commit the open transaction: its delivered records become acked (aborted: failed)."""
        if not self._in_txn:
            return
        assert self.producer is not None
        try:
            # Every delivery report of the transaction is served before the commit.
            self.producer.flush(30)
            self.fault.at("producer-before-commit")
            commit_transaction_with_retries(self.producer, self.progress)
        except KafkaException as exc:
            err = exc.args[0]
            if not err.txn_requires_abort():
                self.transaction_failed(err)
            self.abort_transaction(err)
        else:
            for partition, seqs in self._txn_acked.items():
                self._acked[partition].extend(seqs)
        self._in_txn, self._txn_acked = False, defaultdict(list)

    def abort_transaction(self, err: KafkaError) -> None:
        assert self.producer is not None
        try:
            self.producer.abort_transaction(30)
        except KafkaException as exc:
            self.transaction_failed(exc.args[0])
        for partition, seqs in self._txn_acked.items():
            self._failed[partition].extend(seqs)
        self.error = f"producer transaction aborted: {err.str()}"
        self.store.event("producer-txn-aborted", f"producer transaction aborted: {err.str()}")

    def transaction_failed(self, err: KafkaError) -> None:
        """A transactional error the producer cannot go on from. The open transaction's records
        stay in flight (their outcome is unknown); a new producer starts a new run."""
        self._in_txn, self._txn_acked = False, defaultdict(list)
        if err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            self.fenced = True
            self.error = f"fenced: {err.str()}"
            self.store.event("fenced", f"producer was fenced: {err.str()}")
            self.shutdown.set()
            raise RestartRole(self.error)  # ends the step; the loop sees the shutdown
        raise RestartRole(f"producer transaction: {err.name()}: {err.str()}")

    def flush_acks(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < ack_flush_interval(self.partitions):
            return
        self._last_flush = now
        if self.transactional:
            self.end_transaction()
        acked, failed, produced = self._acked, self._failed, self._produced
        self._acked, self._failed, self._produced = (
            defaultdict(list),
            defaultdict(list),
            defaultdict(int),
        )
        seconds, self._ack_seconds = self._ack_seconds, []
        latency = LatencyHistogram()
        latency.record_many([s * 1000.0 for s in seconds])
        parts: dict[int, dict[str, Any]] = {}
        for partition in set(acked) | set(failed) | set(produced):
            entry: dict[str, Any] = {}
            if produced.get(partition):
                entry["n"] = produced[partition]
            if acked.get(partition):
                entry["a"] = to_ranges(acked[partition])
            if failed.get(partition):
                entry["f"] = to_ranges(failed[partition])
            parts[partition] = entry
        if parts:
            self.store.append_acks(self.run_id, parts, latency.to_dict() if latency.count else None)
            if acked:
                self.error = None if not failed else self.error

    def follow_partitions(self) -> None:
        count = partition_count(self.producer, self.spec.topic)
        if count is not None and count > self.partitions:
            log.info("sentinel %s: topic grew to %d partitions", self.spec.name, count)
            for partition in range(self.partitions, count):
                self.next_seq[partition] = 0
            self.partitions = count

    def check_epoch(self) -> None:
        """Redis lost our state (flushed): start a new run rather than report the old one lost."""
        if self.store.epoch() != self.epoch or not self.store.run_registered(self.run_id):
            self.store.event("state-lost", "sentinel state in Redis was lost; starting a new run")
            self.new_run("after Redis lost the sentinel state")


# ---------------------------------------------------------------------------------------
# Consumers
# ---------------------------------------------------------------------------------------


class AssignedConsumer(Loop):
    """Base for loops that consume every partition of one topic with ``assign()``.

    A sentinel has exactly one consumer (a lease enforces it), so group rebalancing would only
    add session-timeout stalls to every restart; ``assign()`` with committed (or stored) offsets
    keeps restarts immediate. New partitions are picked up from metadata.
    """

    source_topic = ""
    # How long one poll waits for a batch to fill: the floor of end-to-end latency.
    poll_timeout_s = 0.05

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.consumer: Consumer | None = None
        self.assigned = 0
        self._last_metadata = 0.0

    def consumer_conf(self) -> dict[str, Any]:
        return self.spec.consumer_conf(error_cb=self.on_client_error)

    def start(self) -> None:
        self.consumer = Consumer(self.consumer_conf())
        self.assigned = 0
        self.follow_partitions(force=True)

    def start_offsets(self, partitions: list[int]) -> list[TopicPartition]:
        """Where each partition starts: the group's committed offset, else auto.offset.reset.

        Fetched here, synchronously, instead of leaving it to librdkafka's own fetch after
        assign(): when that fetch failed (the group coordinator moving while brokers restart),
        partitions were seen to stay without a position and nothing was consumed. A failure
        here raises, and the loop retries with back-off."""
        assert self.consumer is not None
        wanted = [TopicPartition(self.source_topic, p) for p in partitions]
        reset = self.reset_offset()
        out = []
        for tp in self.consumer.committed(wanted, timeout=10):
            if tp.error is not None:
                raise KafkaException(tp.error)
            out.append(
                TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else reset)
            )
        return out

    def reset_offset(self) -> int:
        value = str(self.consumer_conf().get("auto.offset.reset", "largest")).lower()
        return OFFSET_BEGINNING if value in ("earliest", "smallest", "beginning") else OFFSET_END

    def follow_partitions(self, force: bool = False) -> None:
        assert self.consumer is not None
        now = time.monotonic()
        if not force and now - self._last_metadata < METADATA_REFRESH_S:
            return
        self._last_metadata = now
        count = partition_count(self.consumer, self.source_topic)
        if count is None or count <= self.assigned:
            return
        new = list(range(self.assigned, count))
        self.consumer.incremental_assign(self.start_offsets(new))
        self.assigned = count

    def poll_batch(self) -> list[Any]:
        assert self.consumer is not None
        self.follow_partitions()
        msgs = consume_batch(self.consumer, self.spec.batch_size, self.poll_timeout_s)
        good = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                self.on_client_error(err)
        return good

    def decode_batch(self, msgs: list[Any]) -> tuple[list[tuple[int, int, int, int, int]], int]:
        """Ledger items for valid records of this sentinel; the rest counts as foreign."""
        return codec.decode_messages(msgs, self.spec.id, now_us())

    def process(self, items: list, **kwargs: Any) -> None:
        """Append to the ledger, retrying until Redis takes it.

        The batch is already consumed (and under at-most-once committed): giving up here would
        turn our own infrastructure trouble into a loss the cluster never caused. Only when
        the loop is asked to stop does it give up, ``LEDGER_RETRY_AT_SHUTDOWN_S`` later, so a
        sentinel stopping without Redis ends instead of lingering.
        """
        backoff, stop_by = 0.2, None
        while True:
            try:
                self.store.append_ledger(items, **kwargs)
                return
            except redis.RedisError as exc:
                self.error = f"processing ledger unavailable: {describe(exc)}"
                log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                if self.shutdown.is_set():
                    # Asked to stop while Redis is away: keep trying for a while, then stop
                    # rather than linger forever. The batch was not processed: under
                    # at-most-once (already committed) that is a loss, and counted as one.
                    stop_by = stop_by or time.monotonic() + LEDGER_RETRY_AT_SHUTDOWN_S
                    if time.monotonic() >= stop_by:
                        log.error(
                            "%s %s: stopping with %d records not processed: %s",
                            self.role,
                            self.spec.name,
                            len(items),
                            self.error,
                        )
                        raise RestartRole(self.error) from exc
                time.sleep(backoff)
                self.progress()
                backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            consumer.close()


class SentinelConsumer(AssignedConsumer):
    """At-most-once / at-least-once processing with the profile's commit strategy."""

    role = "consumer"

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.source_topic = spec.topic
        self.commit_first = spec.profile.commit_strategy == COMMIT_BEFORE_PROCESS
        self.fault = FaultHook(store)
        self._uncommitted: dict[int, int] = {}  # partition -> next offset, not yet committed

    def start(self) -> None:
        self._uncommitted = {}  # a restart reads again from the committed offsets
        super().start()

    def step(self) -> None:
        msgs = self.poll_batch()
        if not msgs:
            return
        items, foreign = self.decode_batch(msgs)
        # What a crash at a fault point affects, for the scenario lab (computed only if armed).
        batch = lambda: {"batch": len(items), "ranges": batch_ranges(items)}  # noqa: E731
        if self.commit_first:
            if not self.commit(msgs):
                return
            self.fault.at("after-commit", detail=batch)
            self.process(items, foreign=foreign)
            self.fault.at("after-process", detail=batch)
        else:
            self.process(items, foreign=foreign)
            self.fault.at("after-process", detail=batch)
            if not self.commit(msgs):
                return
            self.fault.at("after-commit", detail=batch)
        self.error = None

    def commit(self, msgs: list[Any]) -> bool:
        """Synchronously commit what was consumed since the last successful commit; on failure
        under at-most-once, rewind so nothing is skipped.

        Only the partitions that moved are committed (``commit()`` without offsets sends every
        assigned partition: at 1,000 partitions that is 1,000 offsets a batch for the group
        coordinator to write, and 1,000 TopicPartition objects back under the GIL)."""
        assert self.consumer is not None
        for msg in msgs:
            self._uncommitted[msg.partition()] = msg.offset() + 1
        offsets = [TopicPartition(self.source_topic, p, o) for p, o in self._uncommitted.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self._uncommitted.clear()
            return True
        except KafkaException as exc:
            self.on_client_error(exc.args[0])
            if self.commit_first:
                # At-most-once must not process what it could not commit; re-read it later.
                self._uncommitted.clear()
                firsts: dict[int, int] = {}
                for msg in msgs:
                    firsts.setdefault(msg.partition(), msg.offset())
                for partition, offset in firsts.items():
                    self.consumer.seek(TopicPartition(self.source_topic, partition, offset))
            # At-least-once keeps the processed positions for the next commit.
            return False


class TransactionalCopier(AssignedConsumer):
    """Exactly-once consume-transform-produce: input topic -> output topic, one transaction a batch.

    Each output record carries a header with its transaction token, so a record from an
    aborted transaction is recognisable if it ever reaches the read_committed verifier.
    """

    role = "copier"
    # Each batch is a transaction: a longer poll keeps transactions per second reasonable.
    poll_timeout_s = 0.1

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.source_topic = spec.topic
        self.producer: Producer | None = None
        self.instance = codec.new_run_id()
        self.txn_seq = 0
        self.fenced = False
        self.fault = FaultHook(store)

    def consumer_conf(self) -> dict[str, Any]:
        return self.spec.consumer_conf(
            error_cb=self.on_client_error,
            **{"group.id": self.spec.group_id + ".copier", "isolation.level": "read_committed"},
        )

    def start(self) -> None:
        admin = admin_for(self.spec)
        count = ensure_topic(admin, self.spec, self.spec.topic, self.spec.partitions)
        ensure_topic(admin, self.spec, self.spec.output_topic_name, count)
        self.producer = Producer(
            self.spec.producer_conf(
                **{"transactional.id": self.spec.transactional_id, "error_cb": self.on_client_error}
            )
        )
        # Fences any previous instance with this transactional.id and aborts its open transaction.
        self.producer.init_transactions(60)
        # Only now: a previous instance still alive could commit its "open" transaction until
        # init_transactions() fenced it (a false aborted read and loss otherwise).
        self.recover_previous_transaction()
        super().start()

    def recover_previous_transaction(self) -> None:
        """A previous instance died mid-transaction: that transaction can only have aborted.

        A token marked "open" never reached commit_transaction(), so the coordinator aborts it
        when this instance calls init_transactions(). One marked "committing" may or may not
        have committed, so it is not claimed either way.
        """
        state, token = self.store.txn_state()
        if state == "open" and token:
            self.store.add_aborted_txn(token)
            self.store.event(
                "txn-aborted", f"copier transaction {token} was left open and is aborted"
            )

    def follow_partitions(self, force: bool = False) -> None:
        before = self.assigned
        super().follow_partitions(force)
        if self.assigned > before and not force and self.producer is not None:
            ensure_topic(
                admin_for(self.spec), self.spec, self.spec.output_topic_name, self.assigned
            )

    def step(self) -> None:
        assert self.producer is not None and self.consumer is not None
        msgs = self.poll_batch()
        if not msgs:
            return
        self.txn_seq += 1
        token = f"{self.instance}:{self.txn_seq}"
        self.store.set_txn_state("open", token)
        try:
            self.producer.begin_transaction()
            for msg in msgs:
                self.produce_copy(msg, token)
            self.fault.at("mid-transaction", batch=len(msgs), token=token)
            self.send_offsets_with_retries()
            if self.fault.at("abort-transaction", kill=False, batch=len(msgs), token=token):
                self.producer.flush(10)  # the records reach the log, then the abort marks them
                raise_abortable()
            self.store.set_txn_state("committing", token)
            self.commit_transaction()
            self.store.set_txn_state("committed", token)
            self.error = None
        except KafkaException as exc:
            self.handle_txn_error(exc.args[0], token, msgs)

    def produce_copy(self, msg: Any, token: str) -> None:
        assert self.producer is not None
        while True:
            try:
                self.producer.produce(
                    self.spec.output_topic_name,
                    value=msg.value(),
                    partition=msg.partition(),
                    headers=[(TXN_HEADER, token.encode())],
                )
                return
            except BufferError:
                self.producer.poll(0.05)

    def send_offsets_with_retries(self) -> None:
        """Add the batch's positions to the transaction; librdkafka: a retriable error "may
        be retried". After ``SEND_OFFSETS_ATTEMPTS`` the error goes to ``handle_txn_error``,
        which aborts the transaction and reads the batch again."""
        assert self.producer is not None and self.consumer is not None
        positions = self.consumer.position(self.consumer.assignment())
        group = self.consumer.consumer_group_metadata()
        for attempt in range(1, SEND_OFFSETS_ATTEMPTS + 1):
            try:
                self.producer.send_offsets_to_transaction(positions, group, 30)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == SEND_OFFSETS_ATTEMPTS:
                    raise
                self.error = f"retrying send_offsets_to_transaction: {exc.args[0].str()}"
                self.progress()

    def commit_transaction(self) -> None:
        assert self.producer is not None
        commit_transaction_with_retries(self.producer, self.progress)

    def handle_txn_error(self, err: KafkaError, token: str, msgs: list[Any]) -> None:
        assert self.producer is not None
        if err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            # Another instance owns the transactional.id now: stop and let the lease hand over.
            self.fenced = True
            self.error = f"fenced: {err.str()}"
            self.store.event("fenced", f"copier instance {self.instance} was fenced: {err.str()}")
            self.shutdown.set()
            return
        if err.txn_requires_abort() or err.code() == KafkaError._STATE or err.retriable():
            # Retriable here means before the commit (begin, produce, send_offsets after its
            # retries): the transaction may be open with this batch in it. Carrying on would
            # fail the next begin_transaction, and only the next batch would be read again.
            self.abort_and_rewind(token, msgs, err)
            return
        raise KafkaException(err)

    def abort_and_rewind(self, token: str, msgs: list[Any], err: KafkaError) -> None:
        """Abort the batch's transaction and read the batch again from its first offsets."""
        assert self.producer is not None
        try:
            self.producer.abort_transaction(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:  # _STATE: no transaction was open
                # The consumer is past the batch and its transaction is in an unknown state:
                # start again from the committed offsets (init_transactions aborts it).
                raise RestartRole(f"abort_transaction failed: {describe(exc)}") from exc
        else:
            self.store.add_aborted_txn(token)
        self.store.set_txn_state("aborted", token)
        self.rewind(msgs)
        self.error = f"transaction aborted, batch read again: {err.str()}"

    def rewind(self, msgs: list[Any]) -> None:
        """After an abort, read the batch again from its first offsets."""
        assert self.consumer is not None
        firsts: dict[int, int] = {}
        for msg in msgs:
            firsts.setdefault(msg.partition(), msg.offset())
        for partition, offset in firsts.items():
            self.consumer.seek(TopicPartition(self.source_topic, partition, offset))

    def close(self) -> None:
        super().close()
        if self.producer is not None:
            producer, self.producer = self.producer, None
            if not self.fenced:
                producer.flush(10)


def commit_transaction_with_retries(producer: Producer, progress: Callable[[], None]) -> None:
    """``commit_transaction``; a retriable error leaves the outcome to a retry of the same call
    (librdkafka's rule). Anything else is raised for the caller to abort or give up."""
    while True:
        try:
            producer.commit_transaction(30)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise
            progress()


def batch_ranges(items: list[tuple[int, int, int, int, int]]) -> dict[str, list[list[int]]]:
    """``{"run:partition": [[first, last], ...]}`` of a batch of ledger items."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for run, partition, seq, _produced, _processed in items:
        seqs[f"{run}:{partition}"].append(seq)
    return {key: to_ranges(values) for key, values in seqs.items()}


def raise_abortable() -> None:
    """Used by the ``abort-transaction`` fault: behave as if the broker demanded an abort."""
    raise KafkaException(
        KafkaError(
            KafkaError._STATE, "fault injection: abort this transaction", txn_requires_abort=True
        )
    )


class CommittedVerifier(AssignedConsumer):
    """Reads the copier's output ``read_committed`` and processes each record exactly once.

    Offsets live in Redis, written in the same transaction as the ledger entry, so a crash
    can neither skip nor repeat a processing: what the ledger shows is what Kafka delivered.
    """

    role = "verifier"

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.source_topic = spec.output_topic_name
        self.offsets: dict[int, int] = {}
        self.aborted_tokens: set[str] = set()
        self._aborted_refresh = 0.0

    def consumer_conf(self) -> dict[str, Any]:
        return self.spec.consumer_conf(
            error_cb=self.on_client_error,
            **{"group.id": self.spec.group_id + ".verifier", "enable.auto.commit": "false"},
        )

    def start(self) -> None:
        self.offsets = self.store.stored_offsets(self.source_topic)
        super().start()

    def start_offsets(self, partitions: list[int]) -> list[TopicPartition]:
        return [
            TopicPartition(self.source_topic, p, self.offsets.get(p, OFFSET_BEGINNING))
            for p in partitions
        ]

    def step(self) -> None:
        msgs = self.poll_batch()
        if not msgs:
            return
        self.refresh_aborted()
        clean, aborted = [], []
        for msg in msgs:
            token = dict(msg.headers() or []).get(TXN_HEADER)
            if token is not None and token.decode() in self.aborted_tokens:
                aborted.append(msg)
            else:
                clean.append(msg)
        items, foreign = self.decode_batch(clean)
        aborted_items = []
        for msg in aborted:
            record = codec.decode(msg.value(), sentinel_id=self.spec.id)
            if isinstance(record, codec.Record):
                aborted_items.append((record.run_id, record.partition, record.seq))
            else:
                foreign += 1
        for msg in msgs:
            self.offsets[msg.partition()] = msg.offset() + 1
        self.process(
            items,
            foreign=foreign,
            aborted=aborted_items,
            offsets=self.offsets,
            topic=self.source_topic,
        )
        self.error = None

    def refresh_aborted(self) -> None:
        now = time.monotonic()
        if now - self._aborted_refresh >= 1.0:
            self._aborted_refresh = now
            self.aborted_tokens = self.store.aborted_txns()


# ---------------------------------------------------------------------------------------
# Fault hooks (armed by the scenario lab)
# ---------------------------------------------------------------------------------------


class FaultHook:
    """Deterministic crash points in the consumer loops, armed through Redis.

    ``ds:{id}:fault`` holds ``point`` and ``after`` (how many passes through the point to let
    by first). When the point is reached the armed count is consumed atomically and the
    process SIGKILLs itself, so the crash lands exactly between two steps of the loop. Armed
    with ``action="hang"`` the step blocks for good instead, as a client call that never
    returns would (what the stuck-step watchdog of ``workers.runtime.run`` is there for).
    """

    def __init__(self, store: SentinelStore) -> None:
        self.store = store
        self.key = store.key("fault")
        self._checked = 0.0
        self._armed: str | None = None

    def at(
        self, point: str, kill: bool = True, detail: Callable[[], dict] | None = None, **extra: Any
    ) -> bool:
        """At crash point ``point``: die (or, with ``kill=False``, return True) if it is armed.

        ``detail`` (e.g. the batch in hand) goes into the ``fault`` event, so a scenario knows
        exactly which records the crash affected."""
        now = time.monotonic()
        if now - self._checked >= 0.2:
            self._checked = now
            armed = self.store.r.hget(self.key, "point")
            self._armed = armed.decode() if armed else None
        if self._armed != point:
            return False
        remaining = self.store.r.hincrby(self.key, "after", -1)
        if remaining >= 0:
            return False
        action = (self.store.r.hget(self.key, "action") or b"kill").decode()
        self.store.r.delete(self.key)
        self._armed = None
        info = {**extra, **(detail() if detail is not None else {})}
        self.store.event(
            "fault", f"fault injected at {point}", point=point, pid=os.getpid(), **info
        )
        if action == "hang":
            threading.Event().wait()
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)
        return True

    @staticmethod
    def arm(store: SentinelStore, point: str, after: int = 0, action: str = "kill") -> None:
        store.r.hset(store.key("fault"), mapping={"point": point, "after": after, "action": action})
