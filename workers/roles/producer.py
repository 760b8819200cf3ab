"""The sentinel producer: sequence-numbered records to every partition, delivery reports
folded into acked / failed ranges on the acks stream."""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from collections import defaultdict
from typing import Any

import redis
from confluent_kafka import (
    KafkaError,
    KafkaException,
    Producer,
)

from workers.clients.kafka import (
    METADATA_REFRESH_S,
    admin_for,
    commit_transaction_with_retries,
    ensure_topic,
    partition_count,
    records_ever_written,
)
from workers.engine import codec
from workers.engine.clientstats import STATS_INTERVAL_MS, ClientStatsWatch
from workers.engine.documents import RUN_EVENT
from workers.engine.latency import LatencyHistogram
from workers.engine.spec import SentinelSpec
from workers.engine.streams import AckReport, PartitionReport, delivery_segments
from workers.roles.faults import FaultHook
from workers.roles.loop import Loop, RestartRole, now_us
from workers.store.epoch import StateLost
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)


# Under exactly-once each flush commits the producer's transaction: its records are invisible
# to read_committed readers until then, so this interval is end-to-end latency.
ACK_FLUSH_INTERVAL_S = 0.1
# Without transactions a flush only reports delivery, which the checker reads at its
# one-second cut: flushing more often than twice a second was Redis round trips for nothing.
ACK_REPORT_INTERVAL_S = 0.5
# Each flush writes one acks entry for every partition with news; with many partitions a
# longer interval keeps that cost per record, not per partition (0.5 s at 1,000 partitions).
ACK_FLUSH_INTERVAL_MAX_S = 1.0
ACK_FLUSH_PARTITIONS_PER_S = 2000
# How often the producer asks whether it is to drain (``SentinelStore.request_drain``): one
# Redis read a second, for something only the soak asks.
DRAIN_CHECK_S = 1.0


def ack_flush_interval(partitions: int, transactional: bool = True) -> float:
    shortest = ACK_FLUSH_INTERVAL_S if transactional else ACK_REPORT_INTERVAL_S
    return min(ACK_FLUSH_INTERVAL_MAX_S, max(shortest, partitions / ACK_FLUSH_PARTITIONS_PER_S))


_RUN_PARTITION_SEQ, _RUN_OFFSET = codec.RUN_PARTITION_SEQ, codec.RUN_OFFSET
_HEADER_SIZE = codec.HEADER_SIZE

AFTER_STATE_LOSS = "after Redis lost the sentinel state"


class SentinelProducer(Loop):
    """Writes sequence-numbered records to every partition of the sentinel topic.

    Every ``start()`` is a new run with its own id; sequence numbers restart at 0 per partition.
    Delivery reports are folded into acked / failed ranges and appended to the acks stream
    every ~500 ms, ~100 ms under exactly-once (longer with many partitions, see
    ``ack_flush_interval``), with the produce-ack latency histogram of the same period.

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
        self.partitions = 0
        self.next_seq: dict[int, int] = {}
        self._credit = 0.0  # records due per partition (every partition has the same rate)
        self._acked: dict[int, list[int]] = defaultdict(list)
        # Parallel to _acked: the offset and leader epoch each record was acknowledged at.
        self._ack_offsets: dict[int, list[int]] = defaultdict(list)
        self._ack_epochs: dict[int, list[int | None]] = defaultdict(list)
        # Under acks=0 a delivery report's offset is not the record's: none is recorded (the
        # reports then carry no offsets, which the checker reads as unknown, never an anomaly).
        self._offsets_known = not spec.profile.acks_zero
        self._failed: dict[int, list[int]] = defaultdict(list)
        self._produced: dict[int, int] = defaultdict(int)
        self._ack_seconds: list[float] = []  # delivery latencies, into a histogram per flush
        # Reports taken from the above but not yet on the acks stream (Redis failed): sent
        # again as they were, oldest first, so that a report is never dropped nor made twice.
        self._unsent: list[AckReport] = []
        self._last_flush = 0.0
        self._last_tick = 0.0
        self._last_metadata = 0.0
        self.producer: Producer | None = None
        self.transactional = spec.eos
        self._in_txn = False
        self._txn_acked: dict[int, list[int]] = defaultdict(list)  # delivered, not yet committed
        self._txn_offsets: dict[int, list[int]] = defaultdict(list)
        self._txn_epochs: dict[int, list[int | None]] = defaultdict(list)
        self.fenced = False
        self.fault = FaultHook(store)
        self.draining = False  # asked to stop cleanly (``SentinelStore.request_drain``)
        self._drain_checked = 0.0
        # The client's latest statistics, not yet read (``note_stats``), and what it said before.
        self._stats: str | None = None
        self._stats_watch = ClientStatsWatch()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.store.drain_state() is not None:  # drained before this start: stays stopped
            self.draining = True
            self.shutdown.set()
            self.store.mark_drained()  # nothing of this process is in flight
            return
        admin = admin_for(self.spec)
        self.partitions = ensure_topic(admin, self.spec, self.spec.topic, self.spec.partitions)
        extra: dict[str, Any] = {
            "on_delivery": self._on_delivery,
            "error_cb": self.on_client_error,
            "stats_cb": self._on_stats,
        }
        if self.transactional:
            extra["transactional.id"] = self.spec.producer_transactional_id
        conf = self.spec.producer_conf(**extra)
        conf.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
        idempotent = self.transactional or str(conf.get("enable.idempotence")).lower() == "true"
        retries = str(conf.get("retries", conf.get("message.send.max.retries", ""))) != "0"
        self._stats = None
        self._stats_watch = ClientStatsWatch(
            idempotent=idempotent, retries_on=retries, since=time.time()
        )
        self.producer = Producer(conf)
        # A restart (RestartRole) begins afresh: close() sent what the last run had.
        self.run_id, self._in_txn = 0, False
        self.forget_reports()
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
        self.join_epoch()
        first = not self.store.runs()  # the state's first run: it follows no other
        if first and self.topic_holds_records():
            # The first run of an epoch on a topic with records: the state was there and is
            # gone (Redis restarted empty while no role of ours was running to notice).
            self.note_state_lost("none in Redis for a topic that already holds records")
        run = codec.new_run_id()
        meta = {"started": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
        self.store.register_run(run, {**meta, "reason": reason})
        self.run_id = run
        self.next_seq = {p: 0 for p in range(self.partitions)}
        self._credit = 0.0
        self.store.event(
            RUN_EVENT, f"producer run {self.run_id} {reason}", run=self.run_id, fresh=first
        )
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
            except (KafkaException, RestartRole, StateLost) as exc:
                log.warning("sentinel %s: last transaction: %s", self.spec.name, exc)
        self.producer = None
        if self.draining:
            self.store.mark_drained()

    def drain(self) -> None:
        """Stop cleanly, the other roles going on: the loop ends, ``close()`` sends what is
        in flight and writes the last delivery reports, then says the drain is done."""
        log.info("sentinel %s: producer draining", self.spec.name)
        self.draining = True
        self.shutdown.set()

    def drain_requested(self, now: float) -> bool:
        if now - self._drain_checked < DRAIN_CHECK_S:
            return False
        self._drain_checked = now
        return self.store.drain_state() is not None

    # -- work ------------------------------------------------------------------------------
    def step(self) -> None:
        assert self.producer is not None
        if not self.run_id:  # the new run after a state loss is not registered yet
            self.new_run(AFTER_STATE_LOSS)
        now = time.monotonic()
        if self.drain_requested(now):
            self.drain()
            return
        if now - self._last_metadata >= METADATA_REFRESH_S:
            self._last_metadata = now
            self.follow_partitions()
        elapsed, self._last_tick = now - self._last_tick, now
        if self.spec.rate_per_partition > 0:
            self.produce_due(elapsed)
            # Serve delivery reports until the next record or the next acks flush is due (at
            # most 50 ms). Waking for the flush on time matters under exactly-once, where the
            # flush commits the transaction: a step that overslept it kept the records
            # invisible to read_committed readers longer than the commit interval says.
            due_in = (1.0 - self._credit) / self.spec.rate_per_partition
            flush_in = (
                self._last_flush
                + ack_flush_interval(self.partitions, self.transactional)
                - time.monotonic()
            )
            self.producer.poll(min(0.05, max(0.001, min(due_in, flush_in))))
        else:
            self.produce_burst()
            self.producer.poll(0)
        self.flush_acks()
        if self._stats is not None:
            self.note_stats()

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
        (``rate_per_partition=0``, the benchmark's saturation mode), one ``produce_batch`` per
        partition: at saturation the producer's time per record is the pipeline's limit, and
        a batch takes the partition's queue once instead of once per record."""
        assert self.producer is not None
        self.begin_transaction()
        produce_batch, topic = self.producer.produce_batch, self.spec.topic
        pack, crc, crc_pack, time_ns = codec.BODY.pack, zlib.crc32, codec.CRC.pack, time.time_ns
        magic, version, sid, run = codec.MAGIC, codec.VERSION, self.spec.id, self.run_id
        pad = codec.padding(self.spec.record_size)
        for partition in range(self.partitions):
            first = self.next_seq[partition]
            batch = []
            for seq in range(first, first + per_partition):
                body = pack(magic, version, sid, run, partition, seq, time_ns() // 1000)
                batch.append({"value": body + crc_pack(crc(body)) + pad})
            try:
                queued = produce_batch(topic, batch, partition=partition)
            except KafkaException as exc:  # nothing enqueued: not produced, not counted
                self.error = str(exc)
                return
            if queued == len(batch):
                self.next_seq[partition] = first + queued
                self._produced[partition] += queued
                continue
            if self.refused(partition, first, batch):
                return

    def refused(self, partition: int, first: int, batch: list[dict[str, Any]]) -> bool:
        """Account for a batch the client took only in part (librdkafka marks each record it
        refused with ``_error``; a full queue refuses the rest of the batch). Records after
        the last one taken are not produced: their seqs are produced later. A refused record
        before a taken one was written by nobody: it counts as produced and failed, so that
        no gap in the seqs reads as a loss. True when the rest of the batch was refused."""
        taken = [i for i, m in enumerate(batch) if "_error" not in m]
        count = taken[-1] + 1 if taken else 0
        for i in range(count):
            err = batch[i].get("_error")
            if err is not None:
                self._failed[partition].append(first + i)
                self.error = f"record not produced: {err.name()}: {err.str()}"
        self.next_seq[partition] = first + count
        self._produced[partition] += count
        if count == len(batch):
            return False
        err = batch[count]["_error"]
        if err.code() == KafkaError._QUEUE_FULL:
            assert self.producer is not None
            self.producer.poll(0.05)
        else:
            self.error = f"record not produced: {err.name()}: {err.str()}"
        return True

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

    def _on_stats(self, document: str) -> None:
        """librdkafka's statistics (served by ``poll``, in this thread): kept for ``step``."""
        self._stats = document

    def note_stats(self) -> None:
        """What the client's statistics say that grew (epoch bumps, request timeouts, retries
        without idempotence), on the sentinel's timeline: evidence for the explanations."""
        document, self._stats = self._stats, None
        for kind, message, extra in self._stats_watch.observe(document or "", time.time()):
            log.info("sentinel %s: %s", self.spec.name, message)
            try:
                self.store.event(kind, message, **extra)
            except redis.RedisError as exc:  # evidence, not worth a restart
                log.warning("sentinel %s: %s event not recorded: %s", self.spec.name, kind, exc)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # Runs inside poll()/flush() on this loop's own thread, so no lock. Only the run id and
        # seq are read, at fixed offsets of our own records: this is the hot path at saturation.
        value = msg.value()
        if value is None or len(value) < _HEADER_SIZE:
            return
        run, _partition, seq = _RUN_PARTITION_SEQ.unpack_from(value, _RUN_OFFSET)
        if run != self.run_id:
            return  # a previous run's straggler: that run's ranges are closed
        if err is None:
            partition = msg.partition()
            if self.transactional:
                self._txn_acked[partition].append(seq)
                self._txn_offsets[partition].append(msg.offset())
                self._txn_epochs[partition].append(msg.leader_epoch())
            else:
                self._acked[partition].append(seq)
                if self._offsets_known:
                    self._ack_offsets[partition].append(msg.offset())
                    self._ack_epochs[partition].append(msg.leader_epoch())
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
                self._ack_offsets[partition].extend(self._txn_offsets[partition])
                self._ack_epochs[partition].extend(self._txn_epochs[partition])
        self._in_txn = False
        self._forget_transaction()

    def _forget_transaction(self) -> None:
        self._txn_acked = defaultdict(list)
        self._txn_offsets, self._txn_epochs = defaultdict(list), defaultdict(list)

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
        self._in_txn = False
        self._forget_transaction()
        if err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            self.fenced = True
            self.error = f"fenced: {err.str()}"
            self.store.event("fenced", f"producer was fenced: {err.str()}")
            self.shutdown.set()
            raise RestartRole(self.error)  # ends the step; the loop sees the shutdown
        raise RestartRole(f"producer transaction: {err.name()}: {err.str()}")

    def flush_acks(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < ack_flush_interval(
            self.partitions, self.transactional
        ):
            return
        self._last_flush = now
        if self.transactional:
            self.end_transaction()
        acked, failed, produced = self._acked, self._failed, self._produced
        ack_offsets, ack_epochs = self._ack_offsets, self._ack_epochs
        self._acked, self._failed, self._produced = (
            defaultdict(list),
            defaultdict(list),
            defaultdict(int),
        )
        self._ack_offsets, self._ack_epochs = defaultdict(list), defaultdict(list)
        seconds, self._ack_seconds = self._ack_seconds, []
        latency = LatencyHistogram()
        latency.record_many([s * 1000.0 for s in seconds])
        parts = {
            partition: PartitionReport.of(
                produced.get(partition, 0),
                acked.get(partition, ()),
                failed.get(partition, ()),
                delivery_segments(
                    acked.get(partition, []),
                    ack_offsets.get(partition, []),
                    ack_epochs.get(partition, []),
                ),
            )
            for partition in set(acked) | set(failed) | set(produced)
        }
        if parts:
            compact = latency.to_compact() if latency.count else None
            self._unsent.append(AckReport(self.run_id, parts, compact))
        while self._unsent:
            self.store.append_acks(self._unsent[0])
            self._unsent.pop(0)
        if acked:
            self.error = None if not failed else self.error

    def follow_partitions(self) -> None:
        count = partition_count(self.producer, self.spec.topic)
        if count is not None and count > self.partitions:
            log.info("sentinel %s: topic grew to %d partitions", self.spec.name, count)
            for partition in range(self.partitions, count):
                self.next_seq[partition] = 0
            self.partitions = count

    def topic_holds_records(self) -> bool:
        try:
            return records_ever_written(admin_for(self.spec), self.spec.topic) > 0
        except KafkaException as exc:  # not knowing is no reason for an alarm
            log.warning("sentinel %s: cannot read the topic's offsets: %s", self.spec.name, exc)
            return False

    def on_state_lost(self, reason: str) -> None:
        """Redis lost the state: what this run reported is gone with it, and the records not
        yet reported belong to a run Redis no longer knows. A new run starts in the new epoch
        (the old run's records still arriving count for nothing: they predate the epoch)."""
        log.warning("sentinel %s: %s; starting a new run", self.spec.name, reason)
        self.forget_reports()
        self.run_id = 0  # no run until the new one is registered (step() retries it)
        self.new_run(AFTER_STATE_LOSS)

    def forget_reports(self) -> None:
        """Drop the delivery reports not yet on the acks stream."""
        self._unsent = []
        self._acked, self._failed, self._produced = (
            defaultdict(list),
            defaultdict(list),
            defaultdict(int),
        )
        self._ack_offsets, self._ack_epochs = defaultdict(list), defaultdict(list)
        self._forget_transaction()
        self._ack_seconds = []
