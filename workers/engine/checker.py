"""The checker: classifies every processing of a sentinel record, exactly.

Pure Python (no Django, no Kafka, no Redis), bounded memory, checkpointable.
The counters are DESIGN.md's "what every number means"; this module is their
reference implementation. State is kept per key = (run, partition).

Contract (what each counter means; all are exact integers):

- produced: records ``produce()`` was called for (a counter the caller feeds).
- acked / failed: sequence numbers whose *first* delivery report succeeded /
  carried an error. A record is never both: when both are reported the first
  report wins and the second is ignored, as is a repeated report.
- processed: every processing event of a registered run (first processings plus
  duplicates). Processing of an unregistered (or forgotten) run counts as
  foreign instead, and nothing else.
- duplicated: processings of a seq that had already been processed.
- reordered: first processing of seq s (not late) after some higher seq of the
  same key had been processed. Never counted as a loss plus a duplicate.
- lost: acked, not processed, and *passed* -- the consumer processed a higher
  seq of the same key, or any record of a newer (larger id) registered run on
  the same partition, at time t_pass -- and ``tick(now)`` has run with
  now >= t_pass + grace_seconds (and at or after the ack). A stalled consumer
  passes nothing, so it never makes anything lost; records stay pending.
- late: first processing of a seq that was declared lost (lost -1, late +1).
- phantom: records both failed and processed, in either order. A phantom may
  also be reordered.
- pending: acked, not processed, not lost.
- in_flight: produced - acked - failed (so acked + failed + in_flight == produced).
- aborted_read, foreign: counters the caller feeds (plus foreign processings).

Time: every ``now`` is seconds on one clock. Values are expected to be
non-decreasing; a smaller value than one already seen is treated as the latest
seen (time never runs backwards inside the checker), which keeps pass times in
order and makes tick() amortised O(work).

Run registration: ``register_run`` declares a producer run. Delivery reports
and produce counts (``produced``/``acked``/``failed``) come from our own
producer, so they register their run implicitly -- unless the run was
forgotten, in which case they are ignored (a forgotten run never comes back by
accident and never causes false losses).

Memory: per key, every seq below ``low`` is settled (processed and reported,
or lost, or failed and unprocessed). Below ``low`` only two interval sets are
kept: seqs currently lost and seqs failed-but-unprocessed; every other seq
below ``low`` was processed. From ``low`` upwards a run-length encoded window
(sorted segment starts + a state per segment) describes each seq; the last
segment is always "unknown" to infinity. Acked ranges are segments, not per-seq
entries, so in-order traffic keeps the window at a couple of segments.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from typing import Any

from workers.engine.documents import CHECKER_COUNTERS as COUNTERS
from workers.engine.offsets import DEFAULT_CAP, OFFSET_COUNTERS, PartitionOffsets

# Counters stored per key (pending is a stored gauge; in_flight is computed;
# foreign and aborted_read are per partition, independent of runs; the offset
# counters are kept by the partition's ``PartitionOffsets``).
_KEY_COUNTERS = tuple(
    name
    for name in COUNTERS
    if name not in ("aborted_read", "foreign", "pending", "in_flight", *OFFSET_COUNTERS)
)
# Cumulative counters kept per partition: those of forgotten runs, plus the
# run-independent ones.
_PART_COUNTERS = _KEY_COUNTERS + ("aborted_read", "foreign")

# Window states of a seq at or above ``low``.
UNKNOWN = 0  # no report, not processed
PEND = 1  # acked, not processed, not (yet) lost
PUNREP = 2  # processed, no delivery report yet
DONE = 3  # processed and reported (acked or failed): settled
LOST = 4  # acked, not processed, declared lost: settled
FAIL = 5  # failed, not processed: settled
_SETTLED = (False, False, False, True, True, True)

# Transition tables, indexed by the current state.
_ON_FIRST = (PUNREP, DONE, PUNREP, DONE, DONE, DONE)  # a processing
_ON_ACK = (PEND, PEND, DONE, DONE, LOST, FAIL)  # first report wins
_ON_FAIL = (FAIL, PEND, DONE, DONE, LOST, FAIL)
_ON_LOSE = (UNKNOWN, LOST, PUNREP, DONE, LOST, FAIL)

SEQ_LIMIT = 1 << 64  # sequence numbers are uint64 (the codec's width)
INF = 1 << 65  # above any sequence number, and above any range end
_SNAPSHOT_FORMAT = 1


class _Intervals:
    """Sorted disjoint half-open integer intervals [lo, hi) (parallel lists)."""

    __slots__ = ("los", "his")

    def __init__(self, pairs: Sequence[Sequence[int]] = ()) -> None:
        self.los: list[int] = [int(p[0]) for p in pairs]
        self.his: list[int] = [int(p[1]) for p in pairs]

    def append(self, lo: int, hi: int) -> None:
        """Add [lo, hi), which must lie at or above every interval already present."""
        his = self.his
        if his and his[-1] == lo:
            his[-1] = hi
        else:
            self.los.append(lo)
            his.append(hi)

    def take(self, lo: int, hi: int) -> int:
        """Remove [lo, hi) from the set; return how many members were removed."""
        los, his = self.los, self.his
        i = bisect_right(his, lo)  # first interval ending after lo
        if i == len(los) or los[i] >= hi:
            return 0
        j = bisect_left(los, hi, i)  # intervals i..j-1 overlap [lo, hi)
        removed = 0
        keep_lo: list[int] = []
        keep_hi: list[int] = []
        for k in range(i, j):
            a, b = los[k], his[k]
            if a < lo:
                keep_lo.append(a)
                keep_hi.append(lo)
            if b > hi:
                keep_lo.append(hi)
                keep_hi.append(b)
            removed += min(b, hi) - max(a, lo)
        los[i:j] = keep_lo
        his[i:j] = keep_hi
        return removed

    def count(self, lo: int, hi: int) -> int:
        """How many members of the set lie in [lo, hi)."""
        los, his = self.los, self.his
        i = bisect_right(his, lo)
        n = 0
        while i < len(los) and los[i] < hi:
            n += min(his[i], hi) - max(los[i], lo)
            i += 1
        return n

    def pairs(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self.los, self.his, strict=True)]


class _Key:
    """Everything the checker knows about one (run, partition)."""

    __slots__ = (
        "run",
        "partition",
        *_KEY_COUNTERS,
        "pending",
        # sequence state
        "low",
        "starts",
        "states",
        "lost_below",
        "fail_below",
        "max_p",
        # loss bookkeeping
        "passes",
        "tail_t",
        "expired_hi",
        "ripe",
        "first_t",
    )

    def __init__(self, run: int, partition: int) -> None:
        self.run = run
        self.partition = partition
        for name in _KEY_COUNTERS:
            setattr(self, name, 0)
        self.pending = 0
        self.low = 0
        # Window segments: seqs [starts[k], starts[k+1]) are in states[k]; the
        # last segment runs to infinity and is always UNKNOWN. starts[0] == low
        # and states[0] is unsettled (UNKNOWN, PEND or PUNREP).
        self.starts: list[int] = [0]
        self.states: list[int] = [UNKNOWN]
        self.lost_below = _Intervals()  # lost seqs below low
        self.fail_below = _Intervals()  # failed, unprocessed seqs below low
        self.max_p = -1  # highest processed seq
        # FIFO of [hi, t]: every seq < hi had been passed by time t. Pushed in
        # increasing hi and non-decreasing t, so tick() only looks at the front.
        self.passes: deque[list[Any]] = deque()
        self.tail_t: float | None = None  # when a newer run passed every seq
        self.expired_hi = 0  # every seq < expired_hi has t_pass + grace <= a past tick
        self.ripe: list[tuple[int, int]] = []  # acked after expiry: lose at next tick
        self.first_t: float | None = None  # first processing of this key

    # -- window -----------------------------------------------------------

    def transform(self, lo: int, hi: int, table: Sequence[int]) -> list[int]:
        """Map the state of every seq in [lo, hi) (lo >= low) through ``table``.

        Returns, per old state, how many seqs changed state. Adjacent segments
        with equal states are merged, so the window stays minimal.
        """
        starts, states = self.starts, self.states
        changed = [0, 0, 0, 0, 0, 0]
        i = bisect_right(starts, lo) - 1
        j = bisect_left(starts, hi, i + 1)  # segments i..j-1 overlap [lo, hi)
        nseg = len(starts)
        if j == i + 1:
            self._transform_one(i, lo, hi, table, changed)
            return changed
        any_change = False
        for k in range(i, j):
            st = states[k]
            if table[st] != st:
                s0 = starts[k]
                s1 = starts[k + 1] if k + 1 < nseg else INF
                changed[st] += (hi if hi < s1 else s1) - (lo if lo > s0 else s0)
                any_change = True
        if not any_change:
            return changed
        new_starts: list[int] = []
        new_states: list[int] = []
        last = states[i - 1] if i > 0 else -1

        def emit(start: int, state: int) -> None:
            nonlocal last
            if state != last:
                new_starts.append(start)
                new_states.append(state)
                last = state

        for k in range(i, j):
            s0, st = starts[k], states[k]
            s1 = starts[k + 1] if k + 1 < nseg else INF
            if s0 < lo:
                emit(s0, st)
            emit(lo if lo > s0 else s0, table[st])
            if hi < s1:
                emit(hi, st)
        if j < nseg and states[j] == last:
            j += 1  # segment j continues the last emitted one: drop its start
        starts[i:j] = new_starts
        states[i:j] = new_states
        return changed

    def _transform_one(
        self, i: int, lo: int, hi: int, table: Sequence[int], changed: list[int]
    ) -> None:
        """``transform`` when [lo, hi) lies inside segment i (the usual case)."""
        starts, states = self.starts, self.states
        st = states[i]
        ns = table[st]
        if ns == st:
            return
        changed[st] = hi - lo
        nxt = i + 1
        has_next = nxt < len(starts)
        left = starts[i] < lo  # part of segment i stays before lo
        right = not has_next or hi < starts[nxt]  # part stays after hi
        if left and right:
            starts[nxt:nxt] = (lo, hi)
            states[nxt:nxt] = (ns, st)
        elif left:  # [lo, end of segment i) changes: maybe it joins segment i+1
            if has_next and states[nxt] == ns:
                starts[nxt] = lo
            else:
                starts.insert(nxt, lo)
                states.insert(nxt, ns)
        elif right:  # [start of segment i, hi) changes: maybe it joins segment i-1
            if i > 0 and states[i - 1] == ns:
                starts[i] = hi
            else:
                starts.insert(nxt, hi)
                states.insert(nxt, st)
                states[i] = ns
        else:  # the whole segment changes: merge with equal neighbours
            join_prev = i > 0 and states[i - 1] == ns
            join_next = has_next and states[nxt] == ns
            if join_prev and join_next:
                del starts[i : i + 2]
                del states[i : i + 2]
            elif join_prev:
                del starts[i]
                del states[i]
            elif join_next:
                del starts[nxt]
                del states[nxt]
                states[i] = ns
            else:
                states[i] = ns

    def compact(self) -> None:
        """Move settled segments at the front of the window below ``low``."""
        starts, states = self.starts, self.states
        while _SETTLED[states[0]]:
            st, a, b = states[0], starts[0], starts[1]
            if st == LOST:
                self.lost_below.append(a, b)
            elif st == FAIL:
                self.fail_below.append(a, b)
            del starts[0]
            del states[0]
        self.low = starts[0]

    def processed_in(self, lo: int, hi: int) -> int:
        """How many seqs of [lo, hi) have been processed (at least once)."""
        n, low = 0, self.low
        if lo < low:
            top = hi if hi < low else low
            n += top - lo - self.lost_below.count(lo, top) - self.fail_below.count(lo, top)
        if hi > low:
            starts, states = self.starts, self.states
            lo = lo if lo > low else low
            k = bisect_right(starts, lo) - 1
            while k < len(starts) and starts[k] < hi:
                if states[k] in (PUNREP, DONE):
                    end = starts[k + 1] if k + 1 < len(starts) else INF
                    n += min(end, hi) - max(starts[k], lo)
                k += 1
        return n

    # -- snapshot ---------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {name: getattr(self, name) for name in _KEY_COUNTERS}
        doc.update(
            run=self.run,
            partition=self.partition,
            pending=self.pending,
            starts=list(self.starts),
            states=list(self.states),
            lost_below=self.lost_below.pairs(),
            fail_below=self.fail_below.pairs(),
            max_p=self.max_p,
            passes=[list(p) for p in self.passes],
            tail_t=self.tail_t,
            expired_hi=self.expired_hi,
            ripe=[list(r) for r in self.ripe],
            first_t=self.first_t,
        )
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> _Key:
        key = cls(int(doc["run"]), int(doc["partition"]))
        for name in _KEY_COUNTERS:
            setattr(key, name, int(doc[name]))
        key.pending = int(doc["pending"])
        key.starts = [int(s) for s in doc["starts"]]
        key.states = [int(s) for s in doc["states"]]
        key.low = key.starts[0]
        key.lost_below = _Intervals(doc["lost_below"])
        key.fail_below = _Intervals(doc["fail_below"])
        key.max_p = int(doc["max_p"])
        key.passes = deque([int(h), t] for h, t in doc["passes"])
        key.tail_t = doc["tail_t"]
        key.expired_hi = int(doc["expired_hi"])
        key.ripe = [(int(a), int(b)) for a, b in doc["ripe"]]
        key.first_t = doc["first_t"]
        return key


class Checker:
    """Exact delivery accounting for one sentinel (see the module docstring)."""

    def __init__(
        self, grace_seconds: float = 10.0, track_reads: bool = True, offsets_cap: int = DEFAULT_CAP
    ) -> None:
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds must be >= 0, got {grace_seconds!r}")
        self.grace_seconds = float(grace_seconds)
        # The offsets of processed records are of the acknowledged log (not so under
        # exactly-once, whose verifier reads the copier's output): ``PartitionOffsets``.
        self.track_reads = track_reads
        self.offsets_cap = offsets_cap
        self._offsets: dict[int, PartitionOffsets] = {}
        self._keys: dict[tuple[int, int], _Key] = {}
        self._by_partition: dict[int, list[_Key]] = {}
        self._registered: set[int] = set()
        self._forgotten: set[int] = set()
        # partition -> run -> time of the run's first processing on it.
        self._first_seen: dict[int, dict[int, float]] = {}
        # partition -> cumulative counters not held by a live key.
        self._part_static: dict[int, dict[str, int]] = {}
        self._foreign_unattributed = 0
        self._active: set[_Key] = set()  # keys tick() may have work for
        self._now = float("-inf")

    # -- runs -------------------------------------------------------------

    def register_run(self, run: int) -> None:
        """Declare a producer run; its processings count from now on.

        Re-registering a forgotten run brings it back with fresh state.
        """
        self._forgotten.discard(run)
        self._registered.add(run)

    def runs(self) -> list[int]:
        """Registered (not forgotten) runs, oldest first."""
        return sorted(self._registered)

    def forget_run(self, run: int) -> None:
        """Drop a finished run's state so memory stays bounded over time.

        Cumulative counters (produced, acked, ..., reordered) are kept in the
        per-partition totals so they never go backwards; the run's pending
        records are dropped (nothing waits for them any more), and its
        unreported records stay in in_flight (conservation holds). Afterwards
        the run's processings count as foreign and its reports are ignored
        (only the run id is remembered for that). Call it once the run is over
        and a newer run has been processed on every partition: an older run's
        key created after this call no longer sees this run as passing it.
        """
        self._registered.discard(run)
        self._forgotten.add(run)
        for (r, partition), key in list(self._keys.items()):
            if r != run:
                continue
            static = self._static(partition)
            for name in _KEY_COUNTERS:
                static[name] += getattr(key, name)
            del self._keys[(r, partition)]
            self._by_partition[partition].remove(key)
            self._active.discard(key)
        for seen in self._first_seen.values():
            seen.pop(run, None)

    # -- events -----------------------------------------------------------

    def produced(self, run: int, partition: int, count: int) -> None:
        """``count`` more records of (run, partition) were handed to ``produce()``."""
        key = self._report_key(run, partition)
        if key is not None:
            key.produced += count

    def acked(self, run: int, partition: int, first_seq: int, last_seq: int, now: float) -> None:
        """Delivery succeeded for seqs first_seq..last_seq (inclusive)."""
        self._report(run, partition, first_seq, last_seq, now, _ON_ACK)

    def failed(self, run: int, partition: int, first_seq: int, last_seq: int, now: float) -> None:
        """Delivery failed for seqs first_seq..last_seq (inclusive). Not a loss."""
        self._report(run, partition, first_seq, last_seq, now, _ON_FAIL)

    def foreign(self, count: int = 1, partition: int | None = None) -> None:
        """Count ``count`` foreign values (optionally attributed to ``partition``)."""
        if partition is None:
            self._foreign_unattributed += count
        else:
            self._static(partition)["foreign"] += count

    def aborted_read(self, run: int, partition: int, count: int = 1) -> None:
        """An aborted transaction's record reached the read_committed verifier.

        Counted per partition whatever the run: it is a fact about the topic.
        """
        self._static(partition)["aborted_read"] += count

    def processed(self, run: int, partition: int, seqs: Sequence[int], now: float) -> None:
        """The consumer processed ``seqs`` of (run, partition), in this order."""
        key = self._keys.get((run, partition))
        if key is None:
            if run not in self._registered:
                self._static(partition)["foreign"] += len(seqs)
                return
            key = self._new_key(run, partition)
        n = len(seqs)
        if n == 0:
            return
        if now > self._now:
            self._now = now
        else:
            now = self._now
        first = seqs[0]
        # Fast path, the common case: the next seqs in order, all acked and
        # unprocessed (one PEND segment at the front of the window). No
        # reorder, no duplicate, nothing new passed (everything below `first`
        # is settled), so only counters and the front segment change.
        starts = key.starts
        if (
            first == key.low
            and key.max_p < first
            and key.states[0] == PEND
            and starts[1] >= first + n
            and seqs[-1] == first + n - 1
            and _is_run(seqs, first, first + n)
        ):
            if key.first_t is None:
                self._first_processing(key, now)
            stop = first + n
            key.processed += n
            key.pending -= n
            key.max_p = stop - 1
            if starts[1] == stop:
                del starts[0]
                del key.states[0]
                key.compact()
            else:
                starts[0] = stop
                key.low = stop
            return
        if type(seqs) is not list:
            seqs = list(seqs)
        if min(seqs) < 0 or max(seqs) >= SEQ_LIMIT:  # before any state changes
            raise ValueError("sequence numbers must be within [0, 2**64)")
        if key.first_t is None:
            self._first_processing(key, now)
        self._processed_general(key, seqs, now)

    def ack_offsets(self, run: int, partition: int, segments: Sequence[Sequence[int]]) -> None:
        """Where delivery reports put records: per segment ``(seq, offset, count)``, seqs
        seq..seq+count-1 of (run, partition) at offsets offset..offset+count-1. Call it after
        ``acked`` for the same report; a negative offset (unknown) is ignored."""
        if run in self._forgotten:
            return
        po = self._partition_offsets(partition)
        processed = self._processed_fn(partition)
        for seq, offset, count in segments:
            po.ack(run, seq, offset, count, processed)

    def read_offsets(
        self, partition: int, session: int | None, segments: Sequence[Sequence[int]]
    ) -> None:
        """Where processed records were read: per segment ``(offset, count, run, seq)``, in
        offset order, read by consumer session ``session`` (None: unknown). Call it after
        ``processed`` for the same records."""
        po = self._partition_offsets(partition)
        processed = self._processed_fn(partition)
        for offset, count, run, seq in segments:
            po.read(session, offset, count, run, seq, processed)

    def tick(self, now: float) -> None:
        """Declare lost every pending seq whose pass is ``grace_seconds`` old."""
        if now > self._now:
            self._now = now
        else:
            now = self._now
        grace = self.grace_seconds
        for key in list(self._active):
            passes = key.passes
            expired = key.expired_hi
            while passes and passes[0][1] + grace <= now:
                hi = passes.popleft()[0]
                if hi > expired:
                    expired = hi
            if key.tail_t is not None and key.tail_t + grace <= now:
                expired = INF
                passes.clear()
            if expired > key.expired_hi:
                self._lose(key, max(key.expired_hi, key.low), min(expired, key.starts[-1]))
                key.expired_hi = expired
            if key.ripe:
                for lo, hi in key.ripe:
                    self._lose(key, max(lo, key.low), hi)
                key.ripe.clear()
            key.compact()
            if not passes and (key.tail_t is None or key.expired_hi == INF):
                self._active.discard(key)

    # -- reading ----------------------------------------------------------

    def partition_counts(self) -> dict[int, dict[str, int]]:
        """Every counter per Kafka partition, summed over runs (live and forgotten)."""
        out: dict[int, dict[str, int]] = {}
        for partition in set(self._by_partition) | set(self._part_static) | set(self._offsets):
            counts = dict.fromkeys(COUNTERS, 0)
            po = self._offsets.get(partition)
            if po is not None:
                counts.update(po.counts())
            for name, value in self._part_static.get(partition, {}).items():
                counts[name] += value
            for key in self._by_partition.get(partition, ()):
                for name in _KEY_COUNTERS:
                    counts[name] += getattr(key, name)
                counts["pending"] += key.pending
            counts["in_flight"] = counts["produced"] - counts["acked"] - counts["failed"]
            out[partition] = counts
        return dict(sorted(out.items()))

    def log_positions(self) -> dict[int, dict[str, Any]]:
        """Per partition with offsets seen: the highest offset acknowledged (``acked_to``) and
        read (``read_to``; -1: none) and the last truncation's [first, last] offsets."""
        return {
            p: {
                "acked_to": max(po.ack_his.values(), default=-1),
                "read_to": po.read_hi,
                "last_truncation": po.last_truncation,
            }
            for p, po in sorted(self._offsets.items())
        }

    def totals(self) -> dict[str, int]:
        """Every counter summed over partitions and runs."""
        total = dict.fromkeys(COUNTERS, 0)
        for counts in self.partition_counts().values():
            for name, value in counts.items():
                total[name] += value
        total["foreign"] += self._foreign_unattributed
        return total

    # -- checkpoint -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Complete state as a JSON-serialisable document (see ``restore``)."""
        return {
            "format": _SNAPSHOT_FORMAT,
            "grace_seconds": self.grace_seconds,
            "now": None if self._now == float("-inf") else self._now,
            "registered": sorted(self._registered),
            "forgotten": sorted(self._forgotten),
            "first_seen": [
                [p, [[r, t] for r, t in sorted(seen.items())]]
                for p, seen in sorted(self._first_seen.items())
            ],
            "part_static": [[p, dict(c)] for p, c in sorted(self._part_static.items())],
            "foreign_unattributed": self._foreign_unattributed,
            "keys": [key.to_doc() for _, key in sorted(self._keys.items())],
            "track_reads": self.track_reads,
            "offsets": [[p, po.to_doc()] for p, po in sorted(self._offsets.items())],
        }

    @classmethod
    def restore(cls, doc: dict[str, Any]) -> Checker:
        """Rebuild a checker from ``snapshot()``; it then behaves identically."""
        if doc.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported checker snapshot format {doc.get('format')!r}")
        checker = cls(doc["grace_seconds"], bool(doc.get("track_reads", True)))
        checker._now = float("-inf") if doc["now"] is None else float(doc["now"])
        checker._registered = {int(r) for r in doc["registered"]}
        checker._forgotten = {int(r) for r in doc["forgotten"]}
        checker._first_seen = {
            int(p): {int(r): t for r, t in seen} for p, seen in doc["first_seen"]
        }
        checker._part_static = {
            int(p): {name: int(counts.get(name, 0)) for name in _PART_COUNTERS}
            for p, counts in doc["part_static"]
        }
        checker._foreign_unattributed = int(doc["foreign_unattributed"])
        # Checkpoints written before offsets were tracked have none: nothing known yet.
        checker._offsets = {
            int(p): PartitionOffsets.from_doc(po, checker.offsets_cap)
            for p, po in doc.get("offsets", ())
        }
        for kdoc in doc["keys"]:
            key = _Key.from_doc(kdoc)
            checker._keys[(key.run, key.partition)] = key
            checker._by_partition.setdefault(key.partition, []).append(key)
            checker._active.add(key)  # tick() drops keys with nothing to do
        return checker

    # -- internals --------------------------------------------------------

    def _static(self, partition: int) -> dict[str, int]:
        static = self._part_static.get(partition)
        if static is None:
            static = self._part_static[partition] = dict.fromkeys(_PART_COUNTERS, 0)
        return static

    def _partition_offsets(self, partition: int) -> PartitionOffsets:
        po = self._offsets.get(partition)
        if po is None:
            po = self._offsets[partition] = PartitionOffsets(self.track_reads, self.offsets_cap)
        return po

    def _processed_fn(self, partition: int) -> Any:
        """``PartitionOffsets``' question: how many of run's seqs [lo, hi) were processed."""
        keys = self._keys

        def processed(run: int, lo: int, hi: int) -> int:
            key = keys.get((run, partition))
            if key is None or hi <= lo or lo < 0:
                return 0
            return key.processed_in(lo, hi)

        return processed

    def _new_key(self, run: int, partition: int) -> _Key:
        key = _Key(run, partition)
        self._keys[(run, partition)] = key
        self._by_partition.setdefault(partition, []).append(key)
        # A newer run that already processed on this partition passed all of us.
        newer = [t for r, t in self._first_seen.get(partition, {}).items() if r > run]
        if newer:
            key.tail_t = min(newer)
            self._active.add(key)
        return key

    def _report_key(self, run: int, partition: int) -> _Key | None:
        key = self._keys.get((run, partition))
        if key is None:
            if run in self._forgotten:
                return None
            self._registered.add(run)
            key = self._new_key(run, partition)
        return key

    def _first_processing(self, key: _Key, now: float) -> None:
        """First processing of key's run on its partition: it passes older runs."""
        key.first_t = now
        seen = self._first_seen.setdefault(key.partition, {})
        seen.setdefault(key.run, now)
        for other in self._by_partition[key.partition]:
            if other.run < key.run and other.tail_t is None:
                other.tail_t = now
                self._active.add(other)

    def _report(
        self,
        run: int,
        partition: int,
        first_seq: int,
        last_seq: int,
        now: float,
        table: Sequence[int],
    ) -> None:
        if not 0 <= first_seq <= last_seq < SEQ_LIMIT:
            raise ValueError(f"bad seq range {first_seq}..{last_seq}")
        key = self._report_key(run, partition)
        if key is None:
            return
        if now > self._now:
            self._now = now
        lo, hi = max(first_seq, key.low), last_seq + 1
        if hi <= lo:
            return  # all below low: settled, so already reported once
        changed = key.transform(lo, hi, table)
        new_reports = changed[UNKNOWN] + changed[PUNREP]
        if table is _ON_ACK:
            key.acked += new_reports
            key.pending += changed[UNKNOWN]
            if changed[UNKNOWN] and lo < key.expired_hi:
                # Passed long enough ago already: lost at the next tick.
                key.ripe.append((lo, min(hi, key.expired_hi)))
                self._active.add(key)
        else:
            key.failed += new_reports
            key.phantom += changed[PUNREP]
        key.compact()

    def _lose(self, key: _Key, lo: int, hi: int) -> None:
        if hi > lo:
            newly = key.transform(lo, hi, _ON_LOSE)[PEND]
            key.lost += newly
            key.pending -= newly

    def _processed_general(self, key: _Key, seqs: list[int], now: float) -> None:
        """Any batch: split into maximal runs of consecutive increasing seqs."""
        i, n = 0, len(seqs)
        while i < n:
            a = seqs[i]
            stop = a + 1
            i += 1
            while i < n and seqs[i] == stop:
                stop += 1
                i += 1
            self._process_run(key, a, stop, now)
        key.compact()

    def _process_run(self, key: _Key, a: int, stop: int, now: float) -> None:
        """Processing of the consecutive seqs [a, stop), in increasing order."""
        m = key.max_p
        if a <= m:
            # Seqs up to m: a higher seq (m) was processed before them.
            mid = stop if stop <= m + 1 else m + 1
            self._first_range(key, a, mid, True)
            if stop > mid:
                self._first_range(key, mid, stop, False)
        else:
            self._first_range(key, a, stop, False)
        if stop - 1 > m:
            key.max_p = stop - 1
            # Every seq below stop - 1 is now passed (those processed don't care).
            passes = key.passes
            if passes and passes[-1][1] == now:
                passes[-1][0] = stop - 1
            else:
                passes.append([stop - 1, now])
            self._active.add(key)

    def _first_range(self, key: _Key, a: int, stop: int, behind: bool) -> None:
        """Classify processings of [a, stop); ``behind``: a higher seq was processed."""
        n = stop - a
        key.processed += n
        firsts = late = phantom = reordered = 0
        low = key.low
        if a < low:
            below = stop if stop < low else low
            late = key.lost_below.take(a, below)
            phantom = key.fail_below.take(a, below)
            firsts = late + phantom
            if behind:
                reordered = phantom
        if stop > low:
            changed = key.transform(a if a > low else low, stop, _ON_FIRST)
            late += changed[LOST]
            phantom += changed[FAIL]
            fresh = changed[PEND] + changed[UNKNOWN] + changed[FAIL]
            firsts += fresh + changed[LOST]
            key.pending -= changed[PEND]
            if behind:
                reordered += fresh
        key.duplicated += n - firsts
        key.lost -= late
        key.late += late
        key.phantom += phantom
        key.reordered += reordered


def _is_run(seqs: Sequence[int], first: int, stop: int) -> bool:
    """True when ``seqs`` is exactly first, first+1, ..., stop-1 (C-speed compare)."""
    kind = type(seqs)
    if kind is list:
        return seqs == list(range(first, stop))
    if kind is range:
        return seqs.step == 1  # type: ignore[attr-defined]
    if kind is tuple:
        return seqs == tuple(range(first, stop))
    return list(seqs) == list(range(first, stop))
