"""Property tests: the checker against a brute-force reference on random histories.

The reference below is deliberately naive: one dict entry per (run, partition,
seq), the full processing log kept forever, and full scans everywhere. It is a
direct transcription of the counter definitions in workers/engine/checker.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.engine.checker import COUNTERS, Checker

GRACE = 2.0
RUNS = (10, 20, 30)
PARTITIONS = (0, 1)
MAX_SEQ = 16


@dataclass
class _Rec:
    acked: bool = False
    failed: bool = False
    nproc: int = 0
    lost: bool = False


class Reference:
    """Obviously-correct (and slow) model of the checker's contract."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.registered: set[int] = set()
        self.recs: dict[tuple[int, int, int], _Rec] = {}
        self.log: list[tuple[int, int, int, float]] = []  # processings of registered runs
        self.extra: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.foreign_unattributed = 0
        self.now = float("-inf")

    def _clock(self, now: float) -> float:
        self.now = max(self.now, now)
        return self.now

    def _rec(self, run: int, partition: int, seq: int) -> _Rec:
        return self.recs.setdefault((run, partition, seq), _Rec())

    def register_run(self, run: int) -> None:
        self.registered.add(run)

    def produced(self, run: int, partition: int, count: int) -> None:
        self.registered.add(run)
        self.extra[partition]["produced"] += count

    def report(self, run: int, partition: int, first: int, last: int, now: float, ok: bool) -> None:
        self.registered.add(run)
        self._clock(now)
        for seq in range(first, last + 1):
            rec = self._rec(run, partition, seq)
            if not rec.acked and not rec.failed:  # the first report wins
                rec.acked, rec.failed = ok, not ok

    def processed(self, run: int, partition: int, seqs: list[int], now: float) -> None:
        if not seqs:
            return
        if run not in self.registered:
            self.extra[partition]["foreign"] += len(seqs)
            return
        now = self._clock(now)
        for seq in seqs:
            rec = self._rec(run, partition, seq)
            if rec.nproc == 0:
                if rec.lost:
                    rec.lost = False
                    self.extra[partition]["late"] += 1
                elif any(r == run and p == partition and s > seq for r, p, s, _ in self.log):
                    self.extra[partition]["reordered"] += 1
            rec.nproc += 1
            self.log.append((run, partition, seq, now))

    def t_pass(self, run: int, partition: int, seq: int) -> float | None:
        times = [
            t for r, p, s, t in self.log if p == partition and ((r == run and s > seq) or r > run)
        ]
        return min(times, default=None)

    def tick(self, now: float) -> None:
        now = self._clock(now)
        for (run, partition, seq), rec in self.recs.items():
            if rec.acked and rec.nproc == 0 and not rec.lost:
                t = self.t_pass(run, partition, seq)
                if t is not None and t + self.grace <= now:
                    rec.lost = True

    def partition_counts(self) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        for partition in {p for _, p, _ in self.recs} | set(self.extra):
            c = dict.fromkeys(COUNTERS, 0)
            for name, value in self.extra[partition].items():
                c[name] += value
            for (_, p, _), rec in self.recs.items():
                if p != partition:
                    continue
                c["acked"] += rec.acked
                c["failed"] += rec.failed
                c["processed"] += rec.nproc
                c["duplicated"] += max(0, rec.nproc - 1)
                c["lost"] += rec.lost
                c["phantom"] += rec.failed and rec.nproc > 0
                c["pending"] += rec.acked and rec.nproc == 0 and not rec.lost
            c["in_flight"] = c["produced"] - c["acked"] - c["failed"]
            out[partition] = c
        return out

    def first_processings(self) -> int:
        return sum(1 for rec in self.recs.values() if rec.nproc > 0)


def _nonzero(counts: dict[int, dict[str, int]]) -> dict[int, dict[str, int]]:
    return {p: c for p, c in counts.items() if any(c.values())}


def _totals(counts: dict[int, dict[str, int]], unattributed: int) -> dict[str, int]:
    total = dict.fromkeys(COUNTERS, 0)
    for c in counts.values():
        for name, value in c.items():
            total[name] += value
    total["foreign"] += unattributed
    return total


# Skewed towards one key, so that events on the same seqs interact often.
runs = st.sampled_from((RUNS[0], RUNS[0], RUNS[0], RUNS[1], RUNS[2]))
parts = st.sampled_from((PARTITIONS[0], PARTITIONS[0], PARTITIONS[1]))
seqs = st.integers(0, MAX_SEQ - 1)


@st.composite
def seq_range(draw: st.DrawFn) -> tuple[int, int]:
    first = draw(seqs)
    return first, draw(st.integers(first, min(MAX_SEQ - 1, first + 6)))


@st.composite
def processing(draw: st.DrawFn) -> list[int]:
    """A batch in consumer order: mostly ascending, with drops, repeats and swaps."""
    start = draw(seqs)
    batch = list(range(start, min(MAX_SEQ, start + draw(st.integers(1, 8)))))
    batch = [s for s in batch if not draw(st.booleans()) or draw(st.integers(0, 4))]  # drops
    for _ in range(draw(st.integers(0, 2))):
        if len(batch) >= 2:
            i = draw(st.integers(0, len(batch) - 2))
            batch[i], batch[i + 1] = batch[i + 1], batch[i]
    if batch and draw(st.integers(0, 3)) == 0:
        batch.append(draw(st.sampled_from(batch)))  # a repeat
    return batch


_acked = st.tuples(st.just("acked"), runs, parts, seq_range())
_processed = st.tuples(st.just("processed"), runs, parts, processing())
_inorder = st.tuples(
    st.just("inorder"),
    runs,
    parts,
    st.integers(1, 6),
    st.booleans(),  # acks before processing?
    st.none() | st.integers(0, 5),  # offset of a seq whose delivery failed
    st.none() | st.integers(0, 5),  # offset of a seq the consumer skips
    st.booleans(),  # does the consumer see the failed record anyway (a phantom)?
)
# The consumer rewinds (a crash before commit) and processes seqs again.
_replay = st.tuples(st.just("replay"), runs, parts, st.integers(1, 12), st.integers(1, 8))
_advance = st.tuples(st.just("advance"), st.sampled_from((0.0, 0.5, 1.0, 1.5, 2.0, 3.0)))
_tick = st.tuples(st.just("tick"))
# Repeated entries weight the draw towards the events that interact.
operation = st.one_of(
    _acked,
    _acked,
    _processed,
    _processed,
    _processed,
    _inorder,
    _inorder,
    _replay,
    _advance,
    _advance,
    _tick,
    _tick,
    st.tuples(st.just("failed"), runs, parts, seq_range()),
    st.tuples(st.just("register"), runs),
    st.tuples(st.just("produced"), runs, parts, st.integers(0, 8)),
    st.tuples(st.just("foreign"), st.integers(1, 3), st.sampled_from((None, 0, 1))),
    st.tuples(st.just("aborted"), runs, parts, st.integers(1, 2)),
    st.tuples(st.just("snapshot")),
)


def _apply(op: tuple, checker: Checker, ref: Reference, now: float, cursor: dict) -> Checker:
    kind = op[0]
    if kind == "register":
        checker.register_run(op[1])
        ref.register_run(op[1])
    elif kind == "produced":
        checker.produced(*op[1:])
        ref.produced(*op[1:])
    elif kind in ("acked", "failed"):
        _, run, part, (first, last) = op
        getattr(checker, kind)(run, part, first, last, now)
        ref.report(run, part, first, last, now, kind == "acked")
    elif kind == "processed":
        checker.processed(op[1], op[2], op[3], now)
        ref.processed(op[1], op[2], op[3], now)
    elif kind == "inorder":
        # The common case: the next seqs of a key, acked then processed in order
        # (or processed first, acked right after) -- exercises the fast paths.
        _, run, part, n, ack_first, fail_at, skip_at, sees_failed = op
        first = cursor.get((run, part), 0)
        cursor[(run, part)] = first + n
        skipped = {
            first + off for off in (skip_at, None if sees_failed else fail_at) if off is not None
        }
        batch = [seq for seq in range(first, first + n) if seq not in skipped]
        steps = ["ack", "proc"] if ack_first else ["proc", "ack"]
        for step in steps:
            if step == "ack":
                for seq in range(first, first + n):
                    ok = fail_at is None or seq != first + fail_at
                    getattr(checker, "acked" if ok else "failed")(run, part, seq, seq, now)
                    ref.report(run, part, seq, seq, now, ok)
            else:
                checker.processed(run, part, batch, now)
                ref.processed(run, part, batch, now)
    elif kind == "replay":
        _, run, part, back, n = op
        start = max(0, cursor.get((run, part), 0) - back)
        checker.processed(run, part, list(range(start, start + n)), now)
        ref.processed(run, part, list(range(start, start + n)), now)
    elif kind == "tick":
        checker.tick(now)
        ref.tick(now)
    elif kind == "foreign":
        checker.foreign(op[1], partition=op[2])
        if op[2] is None:
            ref.foreign_unattributed += op[1]
        else:
            ref.extra[op[2]]["foreign"] += op[1]
    elif kind == "aborted":
        checker.aborted_read(op[1], op[2], op[3])
        ref.extra[op[2]]["aborted_read"] += op[3]
    elif kind == "snapshot":
        doc = json.loads(json.dumps(checker.snapshot()))
        checker = Checker.restore(doc)
    return checker


def _check_state_is_minimal(checker: Checker) -> None:
    """The memory bound: a minimal window, an unsettled front, sorted interval sets."""
    for key in checker.snapshot()["keys"]:
        starts, states = key["starts"], key["states"]
        assert starts == sorted(set(starts))
        assert all(a != b for a, b in zip(states, states[1:], strict=False))  # merged
        assert states[0] in (0, 1, 2)  # unknown, pending, processed-unreported
        assert states[-1] == 0  # unknown from the last start on
        for name in ("lost_below", "fail_below"):
            flat = [x for pair in key[name] for x in pair]
            assert flat == sorted(flat) and all(a < b for a, b in key[name])
            assert all(b <= starts[0] for _, b in key[name])


def _check(checker: Checker, ref: Reference) -> None:
    _check_state_is_minimal(checker)
    expected = _nonzero(ref.partition_counts())
    assert _nonzero(checker.partition_counts()) == expected
    totals = checker.totals()
    assert totals == _totals(expected, ref.foreign_unattributed)
    # Conservation, as DESIGN.md states it.
    assert totals["processed"] == ref.first_processings() + totals["duplicated"]
    assert totals["acked"] + totals["failed"] + totals["in_flight"] == totals["produced"]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    initial=st.sets(runs, max_size=3),
    ops=st.lists(operation, min_size=20, max_size=80),
)
def test_it_matches_the_brute_force_reference(initial: set[int], ops: list[tuple]) -> None:
    checker, ref = Checker(grace_seconds=GRACE), Reference(GRACE)
    for run in sorted(initial):
        checker.register_run(run)
        ref.register_run(run)
    now, cursor = 0.0, {}
    for op in ops:
        if op[0] == "advance":
            now += op[1]
            continue
        checker = _apply(op, checker, ref, now, cursor)
        _check(checker, ref)
    # Finally let every grace period run out: whatever is passed and acked is lost.
    now += 10 * GRACE
    checker.tick(now)
    ref.tick(now)
    _check(checker, ref)


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(operation, max_size=40), cut=st.integers(0, 40))
def test_it_continues_identically_after_restore(ops: list[tuple], cut: int) -> None:
    def run(with_restore: bool) -> dict:
        checker, ref = Checker(grace_seconds=GRACE), Reference(GRACE)
        checker.register_run(RUNS[0])
        ref.register_run(RUNS[0])
        now, cursor = 0.0, {}
        for i, op in enumerate(ops):
            if with_restore and i == cut:
                checker = Checker.restore(json.loads(json.dumps(checker.snapshot())))
            if op[0] == "advance":
                now += op[1]
                continue
            checker = _apply(op, checker, ref, now, cursor)
        checker.tick(now + 10 * GRACE)
        return checker.snapshot()

    assert run(True) == run(False)
