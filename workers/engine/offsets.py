"""Where each record lives in the log: the offset-level anomaly counters of one partition.

Pure Python (no Django, Kafka client or Redis), bounded memory, checkpointable; the checker
(``workers.engine.checker``) keeps one ``PartitionOffsets`` per Kafka partition and feeds it
the offsets of delivery reports (``ack``) and of processed records (``read``). The record at
an offset is identified by (run, seq); a segment ``[a, b)`` of offsets holding one run's
consecutive seqs is stored as ``(a, b, run, d)`` with seq = offset + d, so in-order traffic
is one segment, whatever its length.

Counters (DESIGN.md, "Where in the log, and why"), all exact integers, per partition:

- divergent: offsets whose content disagrees with a delivery report: an offset acknowledged
  for one record is acknowledged again for another (the log was rewritten), or is read holding
  another record; or an acknowledged offset the reading passed without reading anything there
  while its record had been processed (read elsewhere).
- rewound: within one consumer session (``read``'s ``session``: a consumer start), records
  read at an offset at or below the highest one the session had read.
- skipped: acknowledged offsets inside a gap a session jumped over (it read ``x`` and next
  ``y > x + 1``), whose record was not processed. A new session starting elsewhere (a restart,
  a rebalance) is a session boundary, never a skip; offsets between reads that hold no
  acknowledged record (transaction markers, aborted or failed records, foreign records) are
  no skip either.
- truncated: offsets by which the partition's log end went back, as the delivery reports see
  it: a report of a run landing at or below the highest offset acknowledged to the same run
  before (one producer's reports of a partition come in offset order; two runs' reports may
  interleave, so they are not compared) (``last_truncation`` keeps the range).
- offsets_unchecked: acknowledged offsets that could not be checked because what was known
  about them was evicted (the bounds below) or forgotten: never an anomaly.

Offsets unknown (an ``acks=0`` delivery report, a ledger entry written before offsets were
recorded) are never fed here: unknown, not anomalous.

Bounds: each structure keeps at most ``cap`` segments or intervals; the oldest are evicted
and counted in ``offsets_unchecked`` (an acknowledged record never read there) or move
``floor`` up (everything known below it is dropped: a later report there is unchecked).
Reads that no report ever covers (a producer retry's duplicate, a failed report's record)
are dropped once a report of their run lands above them (a run's reports of a partition come
in offset order). The highest acknowledged offset is kept for the last ``RUNS_KEPT`` runs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from workers.engine.documents import OFFSET_COUNTERS

DEFAULT_CAP = 64
RUNS_KEPT = 4
_MIN = -(1 << 63)

# processed(run, first_seq, stop_seq) -> how many of those seqs have been processed
Processed = Callable[[int, int, int], int]
Piece = tuple[int, int, int, int]  # a, b, run, d


class Intervals:
    """Sorted disjoint half-open integer intervals [lo, hi) (parallel lists)."""

    __slots__ = ("los", "his")

    def __init__(self, pairs: Sequence[Sequence[int]] = ()) -> None:
        self.los: list[int] = [int(p[0]) for p in pairs]
        self.his: list[int] = [int(p[1]) for p in pairs]

    def __len__(self) -> int:
        return len(self.los)

    def add(self, lo: int, hi: int) -> None:
        """Add [lo, hi), merging with what it touches or overlaps."""
        los, his = self.los, self.his
        if not los or lo > his[-1]:  # the usual case: above everything
            los.append(lo)
            his.append(hi)
            return
        i = bisect_left(his, lo)  # first interval ending at or after lo
        j = bisect_right(los, hi, i)  # intervals i..j-1 touch [lo, hi]
        if i < j:
            lo, hi = min(lo, los[i]), max(hi, his[j - 1])
        los[i:j] = [lo]
        his[i:j] = [hi]

    def take(self, lo: int, hi: int) -> int:
        """Remove [lo, hi); return how many members were removed."""
        return sum(b - a for a, b in self.cut(lo, hi))

    def cut(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Remove [lo, hi); return the removed parts, in order."""
        los, his = self.los, self.his
        i = bisect_right(his, lo)
        if i == len(los) or los[i] >= hi:
            return []
        j = bisect_left(los, hi, i)
        removed, keep_lo, keep_hi = [], [], []
        for k in range(i, j):
            a, b = los[k], his[k]
            if a < lo:
                keep_lo.append(a)
                keep_hi.append(lo)
            if b > hi:
                keep_lo.append(hi)
                keep_hi.append(b)
            removed.append((max(a, lo), min(b, hi)))
        los[i:j] = keep_lo
        his[i:j] = keep_hi
        return removed

    def split(self, lo: int, hi: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """[lo, hi) as (parts inside the set, parts outside it), without changing the set."""
        los, his = self.los, self.his
        inside: list[tuple[int, int]] = []
        outside: list[tuple[int, int]] = []
        at = lo
        i = bisect_right(his, lo)
        while i < len(los) and los[i] < hi:
            a, b = max(los[i], lo), min(his[i], hi)
            if a > at:
                outside.append((at, a))
            inside.append((a, b))
            at = b
            i += 1
        if at < hi:
            outside.append((at, hi))
        return inside, outside

    def drop_first(self) -> tuple[int, int]:
        return self.los.pop(0), self.his.pop(0)

    def pairs(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self.los, self.his, strict=True)]


class Segments:
    """Sorted disjoint offset segments [a, b) of one run's consecutive seqs (seq = offset + d)."""

    __slots__ = ("a", "b", "run", "d")

    def __init__(self, rows: Sequence[Sequence[int]] = ()) -> None:
        self.a: list[int] = [int(r[0]) for r in rows]
        self.b: list[int] = [int(r[1]) for r in rows]
        self.run: list[int] = [int(r[2]) for r in rows]
        self.d: list[int] = [int(r[3]) for r in rows]

    def __len__(self) -> int:
        return len(self.a)

    def add(self, a: int, b: int, run: int, d: int) -> None:
        """Add [a, b), which overlaps nothing present; joins a neighbour of the same run and d."""
        sa, sb, sr, sd = self.a, self.b, self.run, self.d
        i = bisect_left(sa, a)
        if i and sb[i - 1] == a and sr[i - 1] == run and sd[i - 1] == d:
            if i < len(sa) and sa[i] == b and sr[i] == run and sd[i] == d:
                sb[i - 1] = sb[i]
                del sa[i], sb[i], sr[i], sd[i]
            else:
                sb[i - 1] = b
            return
        if i < len(sa) and sa[i] == b and sr[i] == run and sd[i] == d:
            sa[i] = a
            return
        sa.insert(i, a)
        sb.insert(i, b)
        sr.insert(i, run)
        sd.insert(i, d)

    def take(self, lo: int, hi: int) -> list[Piece]:
        """Remove the offsets [lo, hi); return the removed pieces, in order."""
        sa, sb, sr, sd = self.a, self.b, self.run, self.d
        i = bisect_right(sb, lo)
        if i == len(sa) or sa[i] >= hi:
            return []
        j = bisect_left(sa, hi, i)
        out: list[Piece] = []
        ka: list[int] = []
        kb: list[int] = []
        kr: list[int] = []
        kd: list[int] = []
        for k in range(i, j):
            a, b, r, d = sa[k], sb[k], sr[k], sd[k]
            if a < lo:
                ka.append(a), kb.append(lo), kr.append(r), kd.append(d)
            if b > hi:
                ka.append(hi), kb.append(b), kr.append(r), kd.append(d)
            out.append((max(a, lo), min(b, hi), r, d))
        sa[i:j], sb[i:j], sr[i:j], sd[i:j] = ka, kb, kr, kd
        return out

    def drop_first(self) -> Piece:
        return self.a.pop(0), self.b.pop(0), self.run.pop(0), self.d.pop(0)

    def rows(self) -> list[list[int]]:
        return [list(r) for r in zip(self.a, self.b, self.run, self.d, strict=True)]


def _uncovered(lo: int, hi: int, pieces: list[Piece]) -> list[tuple[int, int]]:
    """The parts of [lo, hi) outside ``pieces`` (sorted, disjoint, within [lo, hi))."""
    out, at = [], lo
    for a, b, _r, _d in pieces:
        if a > at:
            out.append((at, a))
        at = b
    if at < hi:
        out.append((at, hi))
    return out


class PartitionOffsets:
    """The offset-level truth of one partition (see the module docstring).

    ``track_reads``: the reads fed are of the log the reports are about. Under exactly-once
    the verifier reads the copier's output topic, not the acknowledged one: only ``rewound``
    is judged from its reads, and reports are checked against each other only."""

    __slots__ = (
        *OFFSET_COUNTERS,
        "track_reads",
        "cap",
        "unread",
        "unacked",
        "acked",
        "gaps",
        "floor",
        "ack_his",
        "read_hi",
        "session",
        "last",
        "last_truncation",
    )

    def __init__(self, track_reads: bool = True, cap: int = DEFAULT_CAP) -> None:
        for name in OFFSET_COUNTERS:
            setattr(self, name, 0)
        self.track_reads = track_reads
        self.cap = cap
        self.unread = Segments()  # acknowledged there, not read there yet
        self.unacked = Segments()  # read there, no report for it yet
        self.acked = Intervals()  # offsets acknowledged (at or above floor)
        self.gaps = Intervals()  # offsets a session jumped over (at or above floor)
        self.floor = 0  # below: nothing known; a report there is unchecked
        self.ack_his: dict[int, int] = {}  # run -> highest offset acknowledged to it
        self.read_hi = -1  # highest offset read, any session
        self.session: int | None = None  # the session reading now, and its highest offset
        self.last = -1
        self.last_truncation: list[int] | None = None  # [first, last] offsets, inclusive

    # -- events -----------------------------------------------------------------------------

    def ack(self, run: int, seq: int, a: int, n: int, processed: Processed) -> None:
        """A delivery report: ``run``'s seqs seq..seq+n-1 are at offsets a..a+n-1."""
        if n <= 0 or a < 0:
            return
        b, d = a + n, seq - a
        hi = self.ack_his.get(run, -1)
        if a <= hi:  # the log end went back to a
            self.truncated += hi + 1 - a
            self.last_truncation = [a, hi]
        self.ack_his[run] = b - 1
        if len(self.ack_his) > RUNS_KEPT:
            del self.ack_his[min(self.ack_his)]
        if a < self.floor:
            self.offsets_unchecked += min(b, self.floor) - a
            if b <= self.floor:
                return
            a = self.floor
        # Acknowledged before, for another record: that one is gone from there.
        again = self.acked.take(a, b)
        self.acked.add(a, b)
        if again:
            self.divergent += again
            self.unread.take(a, b)
        if not self.track_reads:
            self._bound()
            return
        # The run's reads with no report below this one will never get one (a run's reports
        # come in offset order): forgotten.
        for lo, hi, r, rd in self.unacked.take(_MIN, a):
            if r != run:
                self.unacked.add(lo, hi, r, rd)
        read = self.unacked.take(a, b)
        for lo, hi, r, rd in read:
            if r != run or rd != d:
                self.divergent += hi - lo
        for lo, hi in _uncovered(a, b, read):
            if hi - 1 <= self.read_hi:
                self._passed(lo, hi, run, d, processed)
            elif lo <= self.read_hi:
                self._passed(lo, self.read_hi + 1, run, d, processed)
                self.unread.add(self.read_hi + 1, hi, run, d)
            else:
                self.unread.add(lo, hi, run, d)
        self._bound()

    def read(
        self, session: int | None, a: int, n: int, run: int, seq: int, processed: Processed
    ) -> None:
        """Records seq..seq+n-1 of ``run`` were read (and processed) at offsets a..a+n-1 by
        consumer session ``session`` (None: unknown, an older entry: no session judgement)."""
        if n <= 0 or a < 0:
            return
        b, d = a + n, seq - a
        gap: tuple[int, int] | None = None
        if session is not None and session == self.session:
            if a <= self.last:
                self.rewound += min(b, self.last + 1) - a
            elif a > self.last + 1:
                gap = (self.last + 1, a)
            self.last = max(self.last, b - 1)
        else:
            self.session, self.last = session, b - 1
        if not self.track_reads:
            self.read_hi = max(self.read_hi, b - 1)
            return
        if gap is not None and gap[1] > self.floor:
            lo = max(gap[0], self.floor)
            self.gaps.add(lo, gap[1])
            for pa, pb, r, pd in self.unread.take(lo, gap[1]):
                self._passed(pa, pb, r, pd, processed)
        if b > self.floor:
            a = max(a, self.floor)
            acked = self.unread.take(a, b)
            for lo, hi, r, ad in acked:
                if r != run or ad != d:
                    self.divergent += hi - lo
                    # That acknowledgement is judged (rewritten): the record read there awaits
                    # its own report, which then counts nothing again for the same offset.
                    self.acked.take(lo, hi)
                    self.unacked.take(lo, hi)
                    self.unacked.add(lo, hi, run, d)
            for lo, hi in _uncovered(a, b, acked):
                _inside, outside = self.acked.split(lo, hi)  # inside: reported and settled
                for ua, ub in outside:
                    self.unacked.take(ua, ub)
                    self.unacked.add(ua, ub, run, d)
        if b - 1 > self.read_hi:
            self.read_hi = b - 1
        # Acknowledged offsets below this read, never read: passed (a session boundary).
        for pa, pb, r, pd in self.unread.take(_MIN, a):
            self._passed(pa, pb, r, pd, processed)
        self._bound()

    # -- reading ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in OFFSET_COUNTERS}

    # -- internals --------------------------------------------------------------------------

    def _passed(self, lo: int, hi: int, run: int, d: int, processed: Processed) -> None:
        """Acknowledged offsets [lo, hi) the reading went past without reading them there."""
        in_gap, outside = self.gaps.split(lo, hi)
        for a, b in outside:
            self.divergent += processed(run, a + d, b + d)
        for a, b in in_gap:
            elsewhere = processed(run, a + d, b + d)
            self.divergent += elsewhere
            self.skipped += b - a - elsewhere

    def _raise_floor(self, floor: int) -> None:
        if floor <= self.floor:
            return
        self.floor = floor
        self.acked.take(_MIN, floor)
        self.gaps.take(_MIN, floor)
        self.unacked.take(_MIN, floor)
        for a, b, _r, _d in self.unread.take(_MIN, floor):
            self.offsets_unchecked += b - a

    def _bound(self) -> None:
        cap = self.cap
        while len(self.unread) > cap:
            a, b, _r, _d = self.unread.drop_first()
            self.offsets_unchecked += b - a
            self._raise_floor(b)
        for held in (self.unacked, self.acked, self.gaps):
            while len(held) > cap:
                self._raise_floor(held.drop_first()[1])

    # -- snapshot ---------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """The state as JSON-ready data; zero counters and empty or default parts are left
        out (a checkpoint holds one per partition, written every second it changed)."""
        doc: dict[str, Any] = {k: v for k, v in self.counts().items() if v}
        parts = {
            "unread": self.unread.rows(),
            "unacked": self.unacked.rows(),
            "acked": self.acked.pairs(),
            "gaps": self.gaps.pairs(),
            "ack_his": [[r, h] for r, h in sorted(self.ack_his.items())],
            "last_truncation": self.last_truncation,
            "floor": self.floor,
        }
        doc.update((k, v) for k, v in parts.items() if v)
        if self.session is not None:
            doc["session"] = self.session
        if not self.track_reads:
            doc["track_reads"] = False
        doc["read_hi"], doc["last"] = self.read_hi, self.last
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], cap: int = DEFAULT_CAP) -> PartitionOffsets:
        po = cls(bool(doc.get("track_reads", True)), cap)
        for name in OFFSET_COUNTERS:
            setattr(po, name, int(doc.get(name, 0)))
        po.unread = Segments(doc.get("unread", ()))
        po.unacked = Segments(doc.get("unacked", ()))
        po.acked = Intervals(doc.get("acked", ()))
        po.gaps = Intervals(doc.get("gaps", ()))
        po.floor = int(doc.get("floor", 0))
        po.ack_his = {int(r): int(h) for r, h in doc.get("ack_his", ())}
        po.read_hi = int(doc["read_hi"])
        session = doc.get("session")
        po.session = None if session is None else int(session)
        po.last = int(doc["last"])
        po.last_truncation = doc.get("last_truncation")
        return po


def read_segments(run: int, seqs: list[int], offsets: list[int]) -> list[tuple[int, int, int, int]]:
    """``(offset, count, run, seq)`` segments of records ``seqs[i]`` of ``run`` read at
    ``offsets[i]`` (in reading order), each consecutive in both; unknown (negative) offsets are
    left out. A batch read in order (the usual case) is one segment, found at C speed."""
    n = len(seqs)
    if not n:
        return []
    first, off = seqs[0], offsets[0]
    if (
        off >= 0
        and offsets[-1] == off + n - 1
        and seqs[-1] == first + n - 1
        and offsets == list(range(off, off + n))
        and seqs == list(range(first, first + n))
    ):
        return [(off, n, run, first)]
    out: list[list[int]] = []
    for o, s in zip(offsets, seqs, strict=True):
        if o < 0:
            continue
        if out:
            last = out[-1]
            if o == last[0] + last[1] and s == last[3] + last[1]:
                last[1] += 1
                continue
        out.append([o, 1, run, s])
    return [(o, c, r, s) for o, c, r, s in out]
