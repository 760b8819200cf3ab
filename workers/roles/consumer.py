"""Consuming roles: the assigned-partitions base class, and the at-most-once /
at-least-once consumer whose "processing" is the ledger write.

What "processing" means: appending the record to the Redis processing ledger
(``SentinelStore.append_ledger``), a durable effect that outlives the process. The commit
strategy decides whether the Kafka offset commit comes before it (at-most-once) or after it
(at-least-once).

At-least-once commits a batch behind its processing, never ahead of it: the commit of batch N
is sent once N is in the ledger, and runs (in a thread of its own) while batch N+1 is read,
decoded and written; N+1's crash point and commit come after N's commit came back. The
synchronous commit was most of the loop's time at saturation (16 ms of a 41 ms step), now
mostly hidden. A crash can then re-read two batches instead of one; at-least-once allows it,
and the checker counts it."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from workers.clients.kafka import (
    METADATA_REFRESH_S,
    admin_for,
    consume_batch,
    describe,
    partition_count,
)
from workers.engine import codec
from workers.engine.documents import CONSUMER_SESSION_EVENT
from workers.engine.profiles import COMMIT_BEFORE_PROCESS
from workers.engine.spec import SentinelSpec
from workers.engine.streams import LedgerEntry
from workers.roles.faults import FaultHook, batch_ranges
from workers.roles.loop import Loop, RestartRole, now_us
from workers.store.epoch import StateLost
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)


LEDGER_RETRY_AT_SHUTDOWN_S = 20.0


class AssignedConsumer(Loop):
    """Base for loops that consume every partition of one topic with ``assign()``.

    A sentinel has exactly one consumer (a lease enforces it), so group rebalancing would only
    add session-timeout stalls to every restart; ``assign()`` with committed (or stored) offsets
    keeps restarts immediate. New partitions are picked up from metadata.
    """

    source_topic = ""
    # How long one poll waits for a first record when none is there. A batch does not wait to
    # fill (``consume_batch``), so this bounds only how soon an idle loop looks at metadata,
    # its heartbeat and its shutdown flag; it adds nothing to a record's latency. At the default
    # rate (a record per partition every 100 ms) 50 ms timed out between most batches: a
    # wake-up and a step for nothing, per sentinel, ten times a second.
    poll_timeout_s = 0.5

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.consumer: Consumer | None = None
        # Partition counts come from a client of their own. The consumer's connections each
        # hold a fetch the broker parks for up to fetch.wait.max.ms (500 ms) while no record
        # comes, and a broker answers one connection's requests in order: its list_topics()
        # waited behind that fetch, with this loop blocked in it while the other partitions'
        # records queued up (every 5 s, records ~500 ms late at 2 records/s per partition).
        self.metadata_client: AdminClient | None = None
        self.assigned = 0
        self._last_metadata = 0.0
        # Identifies this consumer's reading between two starts (the ledger's session: within
        # one, offsets read only go forward; a restart may legitimately re-read or jump).
        self.session = 0

    def consumer_conf(self) -> dict[str, Any]:
        return self.spec.consumer_conf(error_cb=self.on_client_error)

    def start(self) -> None:
        self.join_epoch()
        self.session = secrets.randbits(63)
        self.consumer = Consumer(self.consumer_conf())
        # Quiet: the consumer's own error_cb already reports an unreachable cluster.
        self.metadata_client = admin_for(self.spec, quiet=True)
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
        assert self.consumer is not None and self.metadata_client is not None
        now = time.monotonic()
        if not force and now - self._last_metadata < METADATA_REFRESH_S:
            return
        self._last_metadata = now
        count = partition_count(self.metadata_client, self.source_topic)
        if count is None or count <= self.assigned:
            return
        new = list(range(self.assigned, count))
        starts = self.start_offsets(new)
        self.consumer.incremental_assign(starts)
        first = self.assigned == 0
        self.assigned = count
        if first:  # this session's first reads: where it resumes, for the explanations
            self.note_session(starts)

    def note_session(self, starts: list[TopicPartition]) -> None:
        """A new session's first assignment (``starts``: where it resumes); nothing here."""

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

    def decode_batch(self, msgs: list[Any]) -> LedgerEntry:
        """The ledger entry of a batch: valid records of this sentinel with the offsets they
        were read at, by this session; the rest counts as foreign."""
        offsets: list[int] = []
        epochs: list[int | None] = []
        items, foreign = codec.decode_messages(msgs, self.spec.id, now_us(), offsets, epochs)
        return LedgerEntry(items, foreign, offsets=offsets, epochs=epochs, session=self.session)

    def process(
        self, entry: LedgerEntry, *, offsets: dict[int, int] | None = None, topic: str = ""
    ) -> None:
        """Append ``entry`` to the ledger (with the verifier's ``offsets`` of ``topic``, in the
        same transaction), retrying until Redis takes it.

        The batch is already consumed (and under at-most-once committed): giving up here would
        turn our own infrastructure trouble into a loss the cluster never caused. Only when
        the loop is asked to stop does it give up, ``LEDGER_RETRY_AT_SHUTDOWN_S`` later, so a
        sentinel stopping without Redis ends instead of lingering.
        """
        backoff, stop_by, lost = 0.2, None, None
        while True:
            try:
                if lost is not None:
                    # Redis lost the state: the batch goes into the new epoch all the same
                    # (records of a run begun since count; those of older runs do not).
                    self.on_state_lost(lost)
                    lost = None
                self.store.append_ledger(entry, offsets=offsets, topic=topic)
                return
            except StateLost as exc:
                lost = str(exc)
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
                            len(entry.items),
                            self.error,
                        )
                        raise RestartRole(self.error) from exc
                time.sleep(backoff)
                self.progress()
                backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        self.metadata_client = None  # an AdminClient has no close(); it ends when dropped
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
        # At-least-once: the commit in flight (its future and offsets), and the thread it runs in.
        self._in_flight: tuple[Future, list[TopicPartition]] | None = None
        self._committer: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._uncommitted = {}  # a restart reads again from the committed offsets
        super().start()

    def close(self) -> None:
        # What was processed is committed before the client goes (a clean stop re-reads
        # nothing); a commit that fails here is re-read after the restart: duplicates only.
        with contextlib.suppress(KafkaException):
            self.await_commit()
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
        super().close()

    def note_session(self, starts: list[TopicPartition]) -> None:
        """The ``consumer-session`` event: this start and the offsets it resumes from (a
        restart re-reads what was processed past them and not committed)."""
        offsets = {tp.partition: tp.offset for tp in starts}
        where = ", ".join(
            f"p{p} {o}" if o >= 0 else f"p{p} ({'earliest' if o == OFFSET_BEGINNING else 'latest'})"
            for p, o in sorted(offsets.items())
        )
        try:
            # Nothing ever processed in this state: this start can re-read nothing processed,
            # so it explains no duplicate (``fresh``; the ledger's entries-added outlives trims).
            fresh = self.store.stream_added("ledger") == 0
            self.store.event(
                CONSUMER_SESSION_EVENT,
                f"consumer started (session {self.session:x}), reading from {where}"
                + (" (nothing processed before)" if fresh else ""),
                session=str(self.session),
                offsets={str(p): o for p, o in offsets.items()},
                fresh=fresh,
            )
        except redis.RedisError as exc:  # evidence for an explanation, not worth a restart
            log.warning("consumer session event not recorded: %s", exc)

    def step(self) -> None:
        msgs = self.poll_batch()
        if not msgs:
            if self._in_flight is not None and self._in_flight[0].done():
                self.await_commit()  # a failure is reported now, not at the next record
            return
        if self.commit_first:
            if not self.commit(msgs):
                return
            # Decoded after the commit: decoding stamps the processing time, and at-most-once
            # processes only once the commit came back, so its latency includes the commit.
            entry = self.decode_batch(msgs)
            batch = self.fault_detail(entry.items)
            self.fault.at("after-commit", detail=batch)
            self.process(entry)
            self.fault.at("after-process", detail=batch)
        else:
            entry = self.decode_batch(msgs)
            batch = self.fault_detail(entry.items)
            self.process(entry)
            # Every batch before this one is committed (or back in _uncommitted after a failed
            # commit): a crash at this point re-reads exactly this batch.
            committed = self.await_commit()
            self.fault.at("after-process", detail=batch)
            self.commit_behind(msgs)
            if self.fault.armed("after-commit"):  # the point is after this commit came back
                committed = self.await_commit()
                if committed:
                    self.fault.at("after-commit", detail=batch)
            if not committed:
                return
        self.error = None

    @staticmethod
    def fault_detail(items: list) -> Any:
        """What a crash at a fault point affects, for the scenario lab (computed only if armed)."""
        return lambda: {"batch": len(items), "ranges": batch_ranges(items)}

    def to_commit(self, msgs: list[Any]) -> list[TopicPartition]:
        """The offsets to commit once ``msgs`` are consumed: each partition that moved since
        the last successful commit, past its last record read."""
        for msg in msgs:
            self._uncommitted[msg.partition()] = msg.offset() + 1
        return [TopicPartition(self.source_topic, p, o) for p, o in self._uncommitted.items()]

    def commit_behind(self, msgs: list[Any]) -> None:
        """At-least-once: send the commit of everything processed up to ``msgs`` (processed
        already) and return; ``await_commit`` takes its outcome."""
        assert self.consumer is not None and self._in_flight is None
        offsets = self.to_commit(msgs)
        self._uncommitted = {}
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{self.spec.id}")
        future = self._committer.submit(self.consumer.commit, offsets=offsets, asynchronous=False)
        self._in_flight = (future, offsets)

    def await_commit(self) -> bool:
        """Wait for the commit in flight, if any; False when it failed. Its offsets then go
        back into ``_uncommitted`` (where no later batch moved past them), so the next
        commit carries them."""
        if self._in_flight is None:
            return True
        future, offsets = self._in_flight
        self._in_flight = None
        try:
            future.result()
            return True
        except KafkaException as exc:
            self.on_client_error(exc.args[0])
            for tp in offsets:
                self._uncommitted[tp.partition] = max(
                    self._uncommitted.get(tp.partition, tp.offset), tp.offset
                )
            return False

    def commit(self, msgs: list[Any]) -> bool:
        """Synchronously commit what was consumed since the last successful commit; on failure
        under at-most-once, rewind so nothing is skipped.

        Only the partitions that moved are committed (``commit()`` without offsets sends every
        assigned partition: at 1,000 partitions that is 1,000 offsets a batch for the group
        coordinator to write, and 1,000 TopicPartition objects back under the GIL)."""
        assert self.consumer is not None
        offsets = self.to_commit(msgs)
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
