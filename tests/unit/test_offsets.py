"""The offset-level counters (workers/engine/offsets.py): examples, and a property test against
a brute-force reference that keeps one dict entry per offset, forever."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.engine.checker import Checker
from workers.engine.documents import FORBIDDEN, OFFSET_COUNTERS
from workers.engine.offsets import PartitionOffsets, read_segments
from workers.engine.streams import (
    AckReport,
    LedgerEntry,
    PartitionReport,
    delivery_segments,
    offset_segments,
)
from workers.engine.verdict import evaluate

RUN = 7


def nothing_processed(run: int, lo: int, hi: int) -> int:
    return 0


def counts(po: PartitionOffsets) -> dict[str, int]:
    return {k: v for k, v in po.counts().items() if v}


# -- examples -----------------------------------------------------------------------------------


def test_in_order_traffic_is_clean_whichever_comes_first_and_stays_one_segment() -> None:
    po = PartitionOffsets()
    po.ack(RUN, 0, 100, 50, nothing_processed)  # acked before it is read
    po.read(1, 100, 50, RUN, 0, nothing_processed)
    po.read(1, 150, 50, RUN, 50, nothing_processed)  # read before it is acked
    po.ack(RUN, 50, 150, 50, nothing_processed)
    for k in range(100, 1000, 10):  # many small batches, interleaved
        po.read(1, 100 + k, 10, RUN, k, nothing_processed)
        po.ack(RUN, k, 100 + k, 10, nothing_processed)
    assert counts(po) == {}
    assert len(po.unread) == len(po.unacked) == 0 and len(po.acked) == 1


def test_an_acknowledged_offset_holding_another_record_is_divergent() -> None:
    po = PartitionOffsets()
    po.ack(RUN, 0, 0, 10, nothing_processed)
    po.read(1, 0, 5, RUN, 0, nothing_processed)
    po.read(1, 5, 1, 99, 0, nothing_processed)  # offset 5 holds another run's record
    po.read(1, 6, 4, RUN, 6, nothing_processed)
    assert counts(po) == {"divergent": 1}
    # ... and the same when the read comes first
    po = PartitionOffsets()
    po.read(1, 0, 3, RUN, 0, nothing_processed)
    po.ack(RUN, 0, 0, 2, nothing_processed)
    po.ack(RUN, 5, 2, 1, nothing_processed)  # offset 2 was read holding seq 2, acked for 5
    assert counts(po) == {"divergent": 1}


def test_a_rewritten_offset_read_before_its_new_report_is_divergent_once() -> None:
    """An unclean election: offsets 0..9 acknowledged to run 1 are destroyed and rewritten by
    run 2; the consumer reads run 2's records there before their reports arrive. Each
    destroyed acknowledgement counts once, whichever of the read and the report comes first."""
    po = PartitionOffsets()
    po.ack(RUN, 0, 0, 10, nothing_processed)
    po.read(1, 0, 4, RUN + 1, 0, nothing_processed)  # read first, for 0..3
    po.ack(RUN + 1, 0, 0, 10, nothing_processed)  # then the reports for 0..9
    po.read(1, 4, 6, RUN + 1, 4, nothing_processed)  # read after them, for 4..9
    assert counts(po) == {"divergent": 10}


def test_an_offset_acknowledged_twice_is_divergent_and_the_log_end_going_back_truncated() -> None:
    po = PartitionOffsets(track_reads=False)
    po.ack(RUN, 0, 0, 100, nothing_processed)
    po.ack(RUN, 100, 90, 20, nothing_processed)  # the log end went back from 100 to 90
    assert counts(po) == {"divergent": 10, "truncated": 10}
    assert po.last_truncation == [90, 99]
    po.read(1, 0, 5, RUN, 0, nothing_processed)  # another topic's offsets: rewinds only
    po.read(1, 3, 5, RUN, 3, nothing_processed)
    assert po.read_hi == 7 and counts(po) == {"divergent": 10, "truncated": 10, "rewound": 2}
    # Another run's report below it is no truncation (two producers' reports interleave).
    po.ack(RUN, 120, 111, 5, nothing_processed)
    po.ack(RUN + 1, 0, 110, 1, nothing_processed)
    assert counts(po) == {"divergent": 10, "truncated": 10, "rewound": 2}


def test_a_rewind_within_a_session_counts_and_a_new_session_does_not() -> None:
    po = PartitionOffsets()
    po.ack(RUN, 0, 0, 20, nothing_processed)
    po.read(1, 0, 10, RUN, 0, nothing_processed)
    po.read(1, 7, 5, RUN, 7, nothing_processed)  # 7, 8, 9 again
    assert counts(po) == {"rewound": 3}
    po.read(2, 5, 10, RUN, 5, nothing_processed)  # a restart reads from its commit: no rewind
    po.read(None, 0, 3, RUN, 0, nothing_processed)  # an entry without a session: not judged
    assert counts(po) == {"rewound": 3}


def test_a_session_jumping_over_acknowledged_offsets_skipped_them_but_not_over_markers() -> None:
    po = PartitionOffsets()
    po.ack(RUN, 0, 0, 5, nothing_processed)
    po.ack(RUN, 5, 6, 5, nothing_processed)  # offset 5: a transaction marker, never acked
    po.read(1, 0, 5, RUN, 0, nothing_processed)
    po.read(1, 6, 5, RUN, 5, nothing_processed)
    assert counts(po) == {}
    po.ack(RUN, 10, 11, 10, nothing_processed)
    po.read(1, 11, 2, RUN, 10, nothing_processed)
    po.read(1, 16, 5, RUN, 15, nothing_processed)  # jumped over 13..15
    assert counts(po) == {"skipped": 3}
    po.read(1, 25, 1, RUN, 30, nothing_processed)  # jumped over 21..24: acked later
    po.ack(RUN, 20, 21, 4, nothing_processed)
    assert counts(po) == {"skipped": 7}


def test_a_restart_jumping_ahead_is_no_skip_but_a_record_read_elsewhere_is_divergent() -> None:
    processed = {(RUN, 3)}
    po = PartitionOffsets()
    po.ack(RUN, 0, 0, 10, nothing_processed)
    po.read(1, 0, 3, RUN, 0, nothing_processed)
    # A new session starts at 6: 3..5 passed at a session boundary; seq 3 (acked at 3) was
    # processed (read elsewhere) while nothing was read at 3.
    po.read(2, 6, 4, RUN, 6, lambda run, lo, hi: sum((run, s) in processed for s in range(lo, hi)))
    assert counts(po) == {"divergent": 1}


def test_memory_is_bounded_and_what_is_evicted_is_counted_unchecked() -> None:
    po = PartitionOffsets(cap=4)
    for k in range(10):  # a stalled consumer; every report a segment of its own
        po.ack(RUN, 10 * k, 20 * k, 10, nothing_processed)
    assert len(po.unread) <= 4 and len(po.acked) <= 4
    assert po.offsets_unchecked == 60 and po.floor == 110
    po.ack(RUN, 0, 50, 5, nothing_processed)  # a report below the floor: unchecked
    assert po.offsets_unchecked == 65


def test_the_checker_sums_them_per_partition_and_restores_them() -> None:
    checker = Checker(grace_seconds=0)
    checker.acked(RUN, 0, 0, 9, now=1.0)
    checker.ack_offsets(RUN, 0, [(0, 100, 10)])
    checker.processed(RUN, 0, list(range(10)), now=1.0)
    checker.read_offsets(0, 5, [(100, 5, RUN, 0), (103, 5, RUN, 3)])
    assert checker.partition_counts()[0]["rewound"] == 2
    restored = Checker.restore(json.loads(json.dumps(checker.snapshot())))
    assert restored.snapshot() == checker.snapshot()
    assert restored.totals()["rewound"] == 2
    # A checkpoint written before offsets were tracked restores with none known.
    old = checker.snapshot()
    del old["offsets"], old["track_reads"]
    assert Checker.restore(old).totals()["rewound"] == 0


def test_each_semantic_forbids_what_it_does_not_give_up() -> None:
    def verdict(semantic: str, counter: str) -> str:
        return evaluate(
            semantic,
            {counter: 1},
            latency_p99_ms=None,
            slo_p99_ms=100,
            last_progress_age_s=0,
            stall_after_s=60,
        )[0].value

    for counter in ("divergent", "rewound", "skipped", "truncated"):
        assert verdict("exactly-once", counter) == "VIOLATED"
    assert verdict("at-least-once", "rewound") == "DEGRADED"
    assert [verdict("at-least-once", c) for c in ("divergent", "skipped", "truncated")] == [
        "VIOLATED"
    ] * 3
    assert verdict("at-most-once", "rewound") == "VIOLATED"
    assert [verdict("at-most-once", c) for c in ("divergent", "skipped", "truncated")] == [
        "DEGRADED"
    ] * 3
    assert "offsets_unchecked" not in {c for f in FORBIDDEN.values() for c in f}
    assert verdict("exactly-once", "offsets_unchecked") == "HOLDING"


# -- stream entries -----------------------------------------------------------------------------


def test_old_stream_entries_decode_with_offsets_unknown() -> None:
    old_ack = AckReport.from_fields({b"d": b'{"run":7,"p":{"0":{"n":3,"a":[[0,2]]}}}'})
    assert old_ack.partitions[0].offsets == []
    old_ledger = LedgerEntry(items=[(7, 0, 1, 10, 20)])
    fields = old_ledger.to_fields()
    assert set(fields) == {b"d"}  # the bytes older versions wrote
    entry = LedgerEntry.from_fields(fields)
    assert entry.offsets is None and entry.epochs is None and entry.session is None


def test_new_stream_entries_round_trip() -> None:
    report = AckReport(7, {0: PartitionReport.of(3, [0, 1, 2], [], [[0, 100, 3, 4]])})
    assert AckReport.from_fields(report.to_fields()) == report
    entry = LedgerEntry([(7, 0, 1, 10, 20), (7, 0, 2, 10, 20)], 1, [], [100, 101], [4, None], 9)
    back = LedgerEntry.from_fields(entry.to_fields())
    assert back.offsets == [100, 101] and back.epochs == [4, -1]
    assert back.session == 9 and back.foreign == 1


def test_malformed_offsets_are_refused_with_a_message() -> None:
    import pytest

    from workers.engine.streams import MalformedEntry

    with pytest.raises(MalformedEntry, match="'o'"):
        AckReport.from_fields({b"d": b'{"run":7,"p":{"0":{"o":[[0,1]]}}}'})
    fields = LedgerEntry([(7, 0, 1, 10, 20)], offsets=[5], epochs=[0]).to_fields()
    fields[b"o"] = fields[b"o"] * 2
    with pytest.raises(MalformedEntry, match="'o' .* holds 16 bytes, not 1 8-byte values"):
        LedgerEntry.from_fields(fields)
    with pytest.raises(MalformedEntry, match="'s'"):
        LedgerEntry.from_fields({b"d": b"", b"s": b"x"})


def test_segments_of_reports_and_reads() -> None:
    assert offset_segments([0, 1, 2], [10, 11, 12], [3, 3, 3]) == [[0, 10, 3, 3]]
    assert offset_segments([0, 1, 2, 3], [10, 11, 13, 14], None) == [[0, 10, 2, -1], [2, 13, 2, -1]]
    assert offset_segments([1, 0], [11, 10], [0, 1]) == [[0, 10, 1, 1], [1, 11, 1, 0]]
    assert offset_segments([0, 1], [-1, -1], None) == []
    # the producer's flush: acks=0 gives no offsets; a retry's unknown offset is left out
    assert delivery_segments([0, 1], [None, None], [None, None]) == []
    assert delivery_segments([0, 1, 2], [10, None, 12], [1, 1, None]) == [
        [0, 10, 1, 1],
        [2, 12, 1, -1],
    ]
    assert delivery_segments([0, 1], [10, 11], []) == [[0, 10, 2, -1]]
    assert read_segments(RUN, [0, 1, 2], [5, 6, 7]) == [(5, 3, RUN, 0)]
    assert read_segments(RUN, [0, 1, 5, 6, 0], [5, 6, 7, 8, 9]) == [
        (5, 2, RUN, 0),
        (7, 2, RUN, 5),
        (9, 1, RUN, 0),
    ]


# -- the reference model ------------------------------------------------------------------------


class Reference:
    """``PartitionOffsets``' contract, one dict entry per offset and nothing ever evicted."""

    def __init__(self, track_reads: bool) -> None:
        self.track_reads = track_reads
        self.c = dict.fromkeys(OFFSET_COUNTERS, 0)
        self.unread: dict[int, tuple[int, int]] = {}
        self.unacked: dict[int, tuple[int, int]] = {}
        self.acked: set[int] = set()
        self.gaps: set[int] = set()
        self.floor = 0
        self.ack_his: dict[int, int] = {}
        self.read_hi = -1
        self.session: int | None = None
        self.last = -1

    def raise_floor(self, floor: int) -> None:
        if floor <= self.floor:
            return
        self.floor = floor
        self.acked = {x for x in self.acked if x >= floor}
        self.gaps = {x for x in self.gaps if x >= floor}
        self.unacked = {x: i for x, i in self.unacked.items() if x >= floor}
        for x in [x for x in self.unread if x < floor]:
            del self.unread[x]
            self.c["offsets_unchecked"] += 1

    def passed(self, x: int, ident: tuple[int, int], processed: set) -> None:
        if ident in processed:
            self.c["divergent"] += 1
        elif x in self.gaps:
            self.c["skipped"] += 1

    def ack(self, run: int, seq: int, a: int, n: int, processed: set) -> None:
        b = a + n
        if a <= self.ack_his.get(run, -1):
            self.c["truncated"] += self.ack_his[run] + 1 - a
        self.ack_his[run] = b - 1
        if len(self.ack_his) > 4:
            del self.ack_his[min(self.ack_his)]
        self.c["offsets_unchecked"] += max(0, min(b, self.floor) - a)
        lo = max(a, self.floor)
        for x in range(lo, b):
            if x in self.acked:
                self.c["divergent"] += 1
                self.unread.pop(x, None)
            self.acked.add(x)
        if not self.track_reads or lo >= b:
            return
        for x in [x for x, i in self.unacked.items() if x < lo and i[0] == run]:
            del self.unacked[x]
        for x in range(lo, b):
            ident = (run, seq + x - a)
            if x in self.unacked:
                self.c["divergent"] += self.unacked.pop(x) != ident
            elif x <= self.read_hi:
                self.passed(x, ident, processed)
            else:
                self.unread[x] = ident

    def read(self, session: int | None, a: int, n: int, run: int, seq: int, processed: set) -> None:
        b = a + n
        gap = None
        if session is not None and session == self.session:
            if a <= self.last:
                self.c["rewound"] += min(b, self.last + 1) - a
            elif a > self.last + 1:
                gap = (self.last + 1, a)
            self.last = max(self.last, b - 1)
        else:
            self.session, self.last = session, b - 1
        if not self.track_reads:
            return
        if gap is not None:
            for x in range(max(gap[0], self.floor), gap[1]):
                self.gaps.add(x)
            for x in range(max(gap[0], self.floor), gap[1]):
                if x in self.unread:
                    self.passed(x, self.unread.pop(x), processed)
        lo = max(a, self.floor) if b > self.floor else a
        for x in range(lo, b):
            ident = (run, seq + x - a)
            if x in self.unread:
                if self.unread.pop(x) != ident:  # rewritten: judged once, for this offset
                    self.c["divergent"] += 1
                    self.acked.discard(x)
                    self.unacked[x] = ident
            elif x not in self.acked:
                self.unacked[x] = ident
        self.read_hi = max(self.read_hi, b - 1)
        for x in sorted(x for x in self.unread if x < lo):
            self.passed(x, self.unread.pop(x), processed)


runs = st.sampled_from((1, 2, 3))
offs = st.integers(0, 30)
lengths = st.integers(1, 5)
seqs = st.integers(0, 20)
ack_op = st.tuples(st.just("ack"), runs, seqs, offs, lengths)
read_op = st.tuples(st.just("read"), st.sampled_from((None, 1, 2)), offs, lengths, runs, seqs)
# A realistic stretch: records acked and read where they were written, in order.
in_order = st.tuples(st.just("flow"), runs, st.integers(0, 3), lengths)
ops = st.lists(st.one_of(ack_op, read_op, in_order), max_size=40)


def apply(po: PartitionOffsets, ref: Reference, op: tuple, processed: set, at: list[int]) -> None:
    def count(run: int, lo: int, hi: int) -> int:
        return sum((run, s) in processed for s in range(lo, hi))

    if op[0] == "ack":
        _, run, seq, a, n = op
        po.ack(run, seq, a, n, count)
        ref.ack(run, seq, a, n, processed)
    elif op[0] == "read":
        _, session, a, n, run, seq = op
        processed.update((run, s) for s in range(seq, seq + n))
        po.read(session, a, n, run, seq, count)
        ref.read(session, a, n, run, seq, processed)
    else:
        _, run, session, n = op
        a = at[0]
        at[0] += n
        po.ack(run, a, a, n, count)
        ref.ack(run, a, a, n, processed)
        processed.update((run, s) for s in range(a, a + n))
        po.read(session, a, n, run, a, count)
        ref.read(session, a, n, run, a, processed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, track_reads=st.booleans())
def test_it_matches_the_brute_force_reference(ops: list[tuple], track_reads: bool) -> None:
    po, ref = PartitionOffsets(track_reads, cap=10_000), Reference(track_reads)
    processed: set[tuple[int, int]] = set()
    at = [0]
    for op in ops:
        apply(po, ref, op, processed, at)
        assert po.counts() == ref.c, op


@settings(max_examples=100, deadline=None)
@given(ops=ops, cut=st.integers(0, 40))
def test_it_continues_identically_after_restore(ops: list[tuple], cut: int) -> None:
    po, ref = PartitionOffsets(cap=10_000), Reference(True)
    processed: set[tuple[int, int]] = set()
    at = [0]
    for k, op in enumerate(ops):
        if k == cut:
            po = PartitionOffsets.from_doc(json.loads(json.dumps(po.to_doc())), cap=10_000)
        apply(po, ref, op, processed, at)
    assert po.counts() == ref.c


@settings(max_examples=100, deadline=None)
@given(ops=ops)
def test_it_never_holds_more_than_its_cap(ops: list[tuple]) -> None:
    po, ref = PartitionOffsets(cap=2), Reference(True)
    processed: set[tuple[int, int]] = set()
    at = [0]
    for op in ops:
        apply(po, ref, op, processed, at)
        assert max(len(po.unread), len(po.unacked), len(po.acked), len(po.gaps)) <= 2


def test_a_forbidden_offset_counter_growing_is_a_violation_to_page_for() -> None:
    from workers.engine import alerts

    grown = alerts.forbidden_increase("at-least-once", {"divergent": 3, "rewound": 9}, {})
    assert grown == {"divergent": 3}  # rewinds are what at-least-once gives up
    status = {"semantic": "at-least-once", "cluster": "local", "topic": "t"}
    reason = alerts.violation_reason(status, grown, {"2": {"divergent": 3}}, 0.0)
    assert "3 offsets holding another record than acknowledged on partition 2" in reason


def test_the_consumer_decode_gives_offsets_and_epochs_of_the_valid_records_only() -> None:
    from workers.engine import codec

    class Msg:
        def __init__(self, value: bytes, offset: int, epoch: int | None) -> None:
            self.v, self.o, self.e = value, offset, epoch

        def value(self) -> bytes:
            return self.v

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return self.o

        def leader_epoch(self) -> int | None:
            return self.e

    good = [codec.encode_fields(5, RUN, 0, seq, 1, 100) for seq in (0, 1)]
    msgs = [Msg(good[0], 10, 2), Msg(b"garbage", 11, 2), Msg(good[1], 12, None)]
    offsets: list[int] = []
    epochs: list[int | None] = []
    items, foreign = codec.decode_messages(msgs, 5, 99, offsets, epochs)
    assert [i[2] for i in items] == [0, 1] and foreign == 1
    assert offsets == [10, 12] and epochs == [2, None]
