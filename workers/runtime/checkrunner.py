"""Feeds the pure checker from Redis and publishes the sentinel's status document.

Reads the acks stream and the processing ledger in order, applies them to a
``workers.engine.checker.Checker``, and about once a second:

- checkpoints the checker together with the stream ids it has consumed (one MULTI), then trims
  the streams up to there, so a restart replays exactly what was not yet counted;
- computes the verdict over the recent window and writes the status document.

A thread of its own (``MetadataRefresher``) fetches the topic's cluster metadata (leaders,
replicas, in-sync replicas) every few seconds for the status document's ``metadata`` field, so
that no page asks Kafka and an unreachable cluster never delays a step.

If Redis loses the sentinel's state (its epoch is gone or replaced: ``workers.store.epoch``), the
checker starts afresh in the new epoch: records of runs begun before it (still in the topics,
or written by a producer that has not noticed yet) count for nothing, neither as lost nor
duplicated nor foreign; the role that began the epoch records a ``state-lost`` event.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

from workers.clients.kafka import (
    METADATA_REFRESH_S,
    admin_for,
    connect_error,
    describe,
    topic_metadata,
)
from workers.engine import brokerhealth
from workers.engine.checker import Checker
from workers.engine.codec import run_started_ms
from workers.engine.documents import (
    CHECKPOINT_INTERVAL_S,
    COUNTERS,
    GAUGES,
    LATENCY_BUCKETS_S,
    LATENCY_WINDOW_S,
    PARTITION_EVENT_COUNTERS,
    STATUS_VERSION,
    VERDICT_EVENT,
    VERDICT_UPDATE,
    VERDICT_WINDOW_S,
    W1_RETENTION_S,
    WINDOW_UPDATE,
    Window,
    as_read,
    compact,
    latency_buckets,
    summary,
    verdict_entered,
)
from workers.engine.latency import LatencyHistogram, RecentLatency
from workers.engine.offsets import read_segments
from workers.engine.spec import SentinelSpec
from workers.engine.streams import AckReport, LedgerEntry
from workers.engine.verdict import evaluate
from workers.roles.loop import Loop
from workers.runtime.publish import LivePublisher
from workers.store.epoch import StateLost, epoch_started_ms
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)

READ_COUNT = 200
# How long one metadata fetch may wait for an unreachable cluster.
METADATA_TIMEOUT_S = 2.0
# How long a connection attempt to one broker may take (each is tried every refresh).
CONNECT_TIMEOUT_S = 1.0


class MetadataRefresher:
    """Fetches the sentinel topic's metadata every ``interval`` seconds in a daemon thread.

    ``latest`` is the last result of ``workers.clients.kafka.topic_metadata`` with the time it
    was fetched (``updated_at``), None before the first fetch ends. The admin client is made
    in the thread, on its first fetch, so a runner that is never started needs no cluster."""

    def __init__(
        self,
        spec: SentinelSpec,
        interval: float = METADATA_REFRESH_S,
        timeout: float = METADATA_TIMEOUT_S,
    ) -> None:
        self.spec = spec
        self.interval = interval
        self.timeout = timeout
        self.latest: dict[str, Any] | None = None
        self.brokers: dict[str, dict[str, Any]] = {}  # workers.engine.brokerhealth.track
        self._admin: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"{self.spec.name}-metadata", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread without waiting: a fetch in progress ends within ``timeout``, and
        the runner's last checkpoint should not wait for it (the thread is a daemon)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.fetch()
            self._stop.wait(self.interval)

    def fetch(self) -> dict[str, Any]:
        try:
            if self._admin is None:
                self._admin = admin_for(self.spec, quiet=True)
            result = topic_metadata(self._admin, self.spec.topic, self.timeout)
        except Exception as exc:  # e.g. a client property librdkafka refuses: say so, go on
            result = {"error": describe(exc), "partitions": {}}
        now = time.time()
        if "brokers" in result:
            seen = result["brokers"]
        else:
            # The metadata did not come (the cluster, or this client, did not answer): that
            # says nothing of who is in it, so nobody left it; the connections below say who
            # answers. The next fetch asks with a fresh client: librdkafka's could stay stuck
            # on a killed broker's connection while the others answered.
            seen = {bid: b["host"] for bid, b in self.brokers.items() if b.get("in_metadata")}
            self._admin = None
        # Every broker ever seen is tried, so one that left the metadata is still shown.
        known = {**{bid: b["host"] for bid, b in self.brokers.items()}, **seen}
        failures = {
            bid: connect_error(host, CONNECT_TIMEOUT_S) for bid, host in known.items() if host
        }
        self.brokers = brokerhealth.track(self.brokers, seen, failures, now)
        self.latest = {**result, "brokers": self.brokers, "updated_at": now}
        return self.latest


class CheckRunner(Loop):
    """The checker's loop: each step reads what the roles wrote and, about once a second,
    checkpoints, writes the status document and a window (a ``Loop`` like the roles: the same
    start retries, error handling, heartbeat and stuck-step watchdog)."""

    role = "checker"

    def __init__(
        self, spec: SentinelSpec, store: SentinelStore, publisher: LivePublisher | None = None
    ) -> None:
        super().__init__(spec, store)
        self.publisher = publisher
        self.sec_e2e = LatencyHistogram()
        self.sec_ack = LatencyHistogram()
        self.prev_totals: dict[str, int] | None = None
        self.prev_parts: dict[int, dict[str, int]] = {}
        self.verdict: str | None = None
        # The verdict the last status document gave, and since when (``verdict_since``).
        self.entered: dict[str, Any] | None = None
        self.checker = self.new_checker()
        self.acks_id = "0-0"
        self.ledger_id = "0-0"
        self.epoch: str | None = None
        self.known_runs: set[int] = set()
        self.earlier_runs: set[int] = set()  # runs begun before the epoch: they count for nothing
        self.e2e = LatencyHistogram()
        self.ack_latency = LatencyHistogram()
        self.recent_e2e: deque[tuple[float, LatencyHistogram]] = deque()
        # Per partition, so that a slow broker shows up as its partitions (the detail page).
        self.partition_e2e = RecentLatency(LATENCY_WINDOW_S)
        self.history: deque[tuple[float, dict[str, int]]] = deque()
        self.last_progress = time.time()
        self._last_processed = 0
        self._last_checkpoint = 0.0
        self._saved: tuple | None = None  # what the last checkpoint wrote
        self.metadata = MetadataRefresher(spec)

    # -- state -----------------------------------------------------------------------------
    def new_checker(self) -> Checker:
        # Under exactly-once the ledger's offsets are the verifier's, of the copier's output
        # topic, not of the acknowledged log: only rewinds are judged from them.
        return Checker(grace_seconds=self.spec.grace_seconds, track_reads=not self.spec.eos)

    def load(self) -> None:
        self.epoch = self.join_epoch()
        doc, self.acks_id, self.ledger_id = self.store.load_checkpoint()
        if doc is not None:
            self.checker = Checker.restore(doc["checker"])
            self.e2e = LatencyHistogram.load(doc["e2e"])
            self.ack_latency = LatencyHistogram.load(doc["ack"])
        self.known_runs = set(self.checker.runs())
        self._last_processed = self.checker.totals()["processed"]
        previous = self.store.status()
        if previous and previous.get("incarnation", "") == self.spec.incarnation:
            # A restart keeps the time the verdict was entered (a silent checker's as read).
            self.entered = as_read(previous, time.time())

    def on_state_lost(self, reason: str) -> None:
        """Start afresh in the new epoch: what was counted belonged to the lost state."""
        log.warning("sentinel %s: %s; the checker starts afresh", self.spec.name, reason)
        self.epoch = self.join_epoch()
        self.checker = self.new_checker()
        self.acks_id = self.ledger_id = "0-0"
        self.known_runs.clear()
        self.earlier_runs.clear()
        self.e2e, self.ack_latency = LatencyHistogram(), LatencyHistogram()
        self.sec_e2e, self.sec_ack = LatencyHistogram(), LatencyHistogram()
        self.recent_e2e.clear()
        self.partition_e2e = RecentLatency(LATENCY_WINDOW_S)
        self.history.clear()
        # The next window starts from zero again: never a negative increase.
        self.prev_totals, self.prev_parts = None, {}
        self._last_processed = 0
        self._saved = None  # the next checkpoint is written whatever it holds

    def checkpoint(self) -> None:
        """Save the checker's state with the stream positions it covers, only when it changed.

        An idle or stalled sentinel's state stays the same apart from the checker's clock
        (``now``, the last tick), and a restart from an older clock ticks again to the same
        result, so rewriting it every second (~1 MB at 1,000 partitions) would buy nothing."""
        doc = {
            "checker": self.checker.snapshot(),
            "e2e": self.e2e.to_compact(),
            "ack": self.ack_latency.to_compact(),
        }
        unchanged = {**doc["checker"], "now": None}
        state = (self.acks_id, self.ledger_id, doc["e2e"], doc["ack"], unchanged)
        if state == self._saved:
            return
        self.store.save_checkpoint(doc, self.acks_id, self.ledger_id)
        self._saved = state

    # -- reading ---------------------------------------------------------------------------
    def learn_run(self, run: int) -> bool:
        if run in self.known_runs:
            return True
        if self.store.run_registered(run):
            self.known_runs.add(run)
            self.checker.register_run(run)
            return True
        if run_started_ms(run) < epoch_started_ms(self.epoch):
            self.earlier_runs.add(run)
        return False

    def apply_acks(self, report: AckReport, now: float) -> None:
        run = report.run
        if not self.learn_run(run):
            # A run Redis no longer knows (its state was flushed): its records are foreign
            # when they arrive, and it must never be tracked, or it would turn into losses.
            return
        for partition, entry in report.partitions.items():
            if entry.produced:
                self.checker.produced(run, partition, entry.produced)
            for first, last in entry.acked:
                self.checker.acked(run, partition, first, last, now)
            for first, last in entry.failed:
                self.checker.failed(run, partition, first, last, now)
            if entry.offsets:
                self.checker.ack_offsets(run, partition, [o[:3] for o in entry.offsets])
        if report.latency is not None:
            hist = LatencyHistogram.load(report.latency)
            self.ack_latency.merge(hist)
            self.sec_ack.merge(hist)

    def apply_ledger(self, entry: LedgerEntry, now: float) -> None:
        # Per record: a set lookup, two list appends and a subtraction; the latency histograms
        # are filled once per entry and partition (record_many), not once per record.
        # With offsets, one more append per record: where it was read (the offsets' checks).
        foreign = entry.foreign
        groups: dict[tuple[int, int], tuple[list[int], list[int], list[int]]] = {}
        known, unknown = self.known_runs, set()
        earlier = self.earlier_runs
        offsets = entry.offsets
        if offsets is None:
            offsets = [-1] * len(entry.items)
        for (run, partition, seq, produced_us, processed_us), offset in zip(
            entry.items, offsets, strict=True
        ):
            if run not in known and (run in unknown or not self.learn_run(run)):
                unknown.add(run)  # asked Redis once per entry, not once per record
                if run not in earlier:  # a run from before the state was lost: not foreign
                    foreign += 1
                continue
            group = groups.get((run, partition))
            if group is None:
                group = groups[(run, partition)] = ([], [], [])
            group[0].append(seq)
            group[1].append(processed_us - produced_us)
            group[2].append(offset)
        delays_ms: list[float] = []
        reads: dict[int, list[tuple[int, int, int, int]]] = {}
        for (run, partition), (seqs, delays_us, offs) in groups.items():
            self.checker.processed(run, partition, seqs, now)
            ms = [d / 1000.0 for d in delays_us]  # negatives (clock skew) count as 0
            self.partition_e2e.record_many(partition, ms, now)
            delays_ms.extend(ms)
            if entry.offsets is not None:
                reads.setdefault(partition, []).extend(read_segments(run, seqs, offs))
        if entry.offsets is not None and len(reads) < len(groups):
            # A partition read records of two runs: their segments in reading order.
            for partition in {p for _r, p in groups}:
                reads[partition] = ordered_reads(entry, partition, groups)
        for partition, segments in reads.items():
            self.checker.read_offsets(partition, entry.session, segments)
        for run, partition, _seq in entry.aborted:
            if run in known or self.learn_run(run) or run not in earlier:
                self.checker.aborted_read(run, partition, 1)
        if foreign:
            self.checker.foreign(foreign)
        if delays_ms:
            window = LatencyHistogram()
            window.record_many(delays_ms)
            self.e2e.merge(window)
            self.sec_e2e.merge(window)
            if self.recent_e2e and self.recent_e2e[-1][0] == now:
                # One histogram per read, not per entry: the status merges the last minute's
                # every second (600 histograms at ten entries a second).
                self.recent_e2e[-1][1].merge(window)
            else:
                self.recent_e2e.append((now, window))

    def read_all(self) -> None:
        """Apply every acks and ledger entry written since the last read."""
        while True:
            epoch, acks, ledger = self.store.read_streams(self.acks_id, self.ledger_id, READ_COUNT)
            if epoch != self.epoch:
                raise StateLost("the sentinel's state epoch in Redis is gone or was replaced")
            now = time.time()
            # Acks first: they were read after the ledger, so they cover its records (the
            # checker's fast path); the ledger entries are applied in order after them.
            for entry_id, report in acks:
                self.apply_acks(report, now)
                self.acks_id = entry_id
            for entry_id, entry in ledger:
                self.apply_ledger(entry, now)
                self.ledger_id = entry_id
            if len(acks) < READ_COUNT and len(ledger) < READ_COUNT:
                return

    # -- loop ------------------------------------------------------------------------------
    def step(self) -> None:
        """Once a cut is due (every ``CHECKPOINT_INTERVAL_S``): read everything the roles
        wrote since the last step, tick, checkpoint, write the status document and a window.

        Reading at the cut and not as entries arrive changes nothing the status or a window
        shows (nothing was written between cuts, and latency comes from the records' own
        stamps), and costs one Redis round trip a second instead of four per ledger entry
        (ten entries a second at the default rate), most of a light sentinel's Python time
        in a shared host (docs/benchmarks.md, "Density")."""
        due = self._last_checkpoint + CHECKPOINT_INTERVAL_S - time.time()
        if due > 0:
            self.busy_since = None  # waiting for the cut is not being stuck in a step
            if self.shutdown.wait(due):
                return
            self.busy_since = time.monotonic()
        self.read_all()
        now = time.time()
        self.checker.tick(now)
        self._last_checkpoint = now
        self.checkpoint()
        status = self.status(now)
        self.store.set_status(status)
        self.emit_window(now, status)

    def start(self) -> None:
        self.load()
        if self.publisher is not None:
            self.publisher.start()
        self.metadata.start()

    def close(self) -> None:
        self.metadata.stop()
        try:
            self.checkpoint()
            self.store.set_status(self.status(time.time()))
        except StateLost:  # nothing of ours to save: Redis lost it as we stopped
            pass
        finally:
            if self.publisher is not None:
                self.publisher.stop()

    # -- windows ---------------------------------------------------------------------------
    def emit_window(self, now: float, status: dict[str, Any]) -> None:
        """Store the counter increases since the last window (~1 s) and publish them live."""
        totals, parts = status["totals"], self.checker.partition_counts()
        counts, partitions = (
            delta(totals, self.prev_totals),
            {str(p): d for p, c in parts.items() if (d := event_delta(c, self.prev_parts.get(p)))},
        )
        if self.prev_totals is None:
            # The first window after a (re)start would hold everything since the beginning.
            counts, partitions = dict.fromkeys(totals, 0), {}
        for gauge in GAUGES:
            counts[gauge] = totals[gauge]  # a level, never a difference
        window = Window(
            start=round(now, 3) - CHECKPOINT_INTERVAL_S,
            seconds=CHECKPOINT_INTERVAL_S,
            sentinel=self.spec.id,
            verdict=status["verdict"],
            counts=counts,
            partitions=partitions,
            e2e=window_summary(self.sec_e2e),
            ack=window_summary(self.sec_ack),
            hist={"e2e": self.sec_e2e.to_compact(), "ack": self.sec_ack.to_compact()},
        )
        self.prev_totals, self.prev_parts = dict(totals), {p: dict(c) for p, c in parts.items()}
        self.sec_e2e, self.sec_ack = LatencyHistogram(), LatencyHistogram()
        self.store.append_window(window.to_doc(sparse=True), retention_s=W1_RETENTION_S)
        self.publish(window.to_doc(hist=False), status)

    def publish(self, window: dict[str, Any], status: dict[str, Any]) -> None:
        changed = status["verdict"] != self.verdict
        if changed:
            self.store.event(
                VERDICT_EVENT,
                f"verdict {self.verdict or 'none'} -> {status['verdict']}",
                verdict=status["verdict"],
                previous=self.verdict,
                reasons=status["reasons"],
            )
        previous, self.verdict = self.verdict, status["verdict"]
        if self.publisher is None:
            return
        self.publisher.offer(
            self.spec.id,
            WINDOW_UPDATE,
            {"sentinel": self.spec.id, "window": window, "status": compact(status)},
        )
        if changed:
            self.publisher.offer(
                self.spec.id,
                VERDICT_UPDATE,
                {
                    "sentinel": self.spec.id,
                    "verdict": status["verdict"],
                    "previous": previous,
                    "reasons": status["reasons"],
                    "t": window["t"],
                },
            )

    # -- status ----------------------------------------------------------------------------
    def recent_latency(self, now: float) -> LatencyHistogram:
        while self.recent_e2e and self.recent_e2e[0][0] < now - LATENCY_WINDOW_S:
            self.recent_e2e.popleft()
        merged = LatencyHistogram()
        for _ts, hist in self.recent_e2e:
            merged.merge(hist)
        return merged

    def window_delta(self, now: float, totals: dict[str, int]) -> dict[str, int]:
        """Counter increases over the verdict window (totals when the window is younger);
        gauges (``GAUGES``) are their level now, never a difference."""
        self.history.append((now, dict(totals)))
        while len(self.history) > 1 and self.history[1][0] <= now - VERDICT_WINDOW_S:
            self.history.popleft()
        base = self.history[0][1]
        if self.history[0][0] > now - VERDICT_WINDOW_S:
            return dict(totals)
        return {k: totals[k] if k in GAUGES else totals.get(k, 0) - base.get(k, 0) for k in totals}

    def status(self, now: float) -> dict[str, Any]:
        totals = self.checker.totals()
        if totals["processed"] != self._last_processed:
            self._last_processed = totals["processed"]
            self.last_progress = now
        health = self.store.health()
        errors = [
            f"{role}: {h['error']}"
            for role, h in health.items()
            if h.get("error") and h["error"] != "stopped"
        ]
        stale = [
            role for role, h in health.items() if now - h.get("ts", 0) > self.spec.stall_after_s
        ]
        if stale:
            errors.append("not running: " + ", ".join(sorted(stale)))
        recent = self.recent_latency(now)
        delta = self.window_delta(now, totals)
        verdict, reasons = evaluate(
            self.spec.semantic,
            delta,
            latency_p99_ms=recent.percentile(99) if recent.count else None,
            slo_p99_ms=self.spec.slo_p99_ms,
            last_progress_age_s=now - self.last_progress,
            stall_after_s=self.spec.stall_after_s,
            error="; ".join(errors) or None,
        )
        verdict_text = str(verdict.value if hasattr(verdict, "value") else verdict)
        since = verdict_entered(self.entered, verdict_text, now)
        self.entered = {"verdict": verdict_text, "verdict_since": since}
        runs = self.store.runs()
        return {
            "version": STATUS_VERSION,
            "id": self.spec.id,
            "incarnation": self.spec.incarnation,
            "name": self.spec.name,
            "semantic": self.spec.semantic,
            "cluster": self.spec.cluster,
            "topic": self.spec.topic,
            "run_id": max(runs) if runs else None,
            "runs": len(runs),
            "verdict": verdict_text,
            "verdict_since": since,
            "reasons": reasons,
            "totals": {k: totals.get(k, 0) for k in COUNTERS},
            "window": {
                "seconds": VERDICT_WINDOW_S,
                "counts": {k: delta.get(k, 0) for k in COUNTERS},
            },
            "latency_ms": summary(self.e2e),
            "recent_latency_ms": summary(recent),
            "produce_ack_latency_ms": summary(self.ack_latency),
            "latency_buckets": {
                "le_s": list(LATENCY_BUCKETS_S),
                "e2e": latency_buckets(self.e2e),
                "ack": latency_buckets(self.ack_latency),
            },
            "partitions": {
                str(p): {k: counts.get(k, 0) for k in COUNTERS}
                for p, counts in sorted(self.checker.partition_counts().items())
            },
            "offsets": {str(p): pos for p, pos in self.checker.log_positions().items()},
            "partition_latency_ms": {
                str(p): {**summary(h), "count": h.count}
                for p, h in sorted(self.partition_e2e.histograms(now).items())
            },
            "metadata": self.metadata.latest,
            "errors": errors,
            "last_progress_at": self.last_progress,
            "updated_at": now,
            "checker_pid": os.getpid(),
        }


def ordered_reads(
    entry: LedgerEntry, partition: int, groups: dict[tuple[int, int], Any]
) -> list[tuple[int, int, int, int]]:
    """``read_segments`` of one partition's records of every known run, in reading order."""
    assert entry.offsets is not None
    out: list[tuple[int, int, int, int]] = []
    for (run, part, seq, _p, _q), offset in zip(entry.items, entry.offsets, strict=True):
        if part != partition or (run, part) not in groups or offset < 0:
            continue
        if out:
            o, c, r, s = out[-1]
            if r == run and offset == o + c and seq == s + c:
                out[-1] = (o, c + 1, r, s)
                continue
        out.append((offset, 1, run, seq))
    return out


def window_summary(hist: LatencyHistogram) -> dict[str, Any]:
    """A window's latency summary: p50, p99 and max to the microsecond, and the count."""
    return {**summary(hist), "count": hist.count}


def delta(current: dict[str, int], previous: dict[str, int] | None) -> dict[str, int]:
    previous = previous or {}
    return {k: current.get(k, 0) - previous.get(k, 0) for k in COUNTERS}


def event_delta(current: dict[str, int], previous: dict[str, int] | None) -> dict[str, int]:
    """The non-zero increases of a partition's problem counters (``PARTITION_EVENT_COUNTERS``)."""
    previous = previous or {}
    out = {}
    for k in PARTITION_EVENT_COUNTERS:
        if d := current.get(k, 0) - previous.get(k, 0):
            out[k] = d
    return out
