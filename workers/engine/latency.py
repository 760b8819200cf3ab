"""Mergeable, bounded-memory latency histogram (log-linear buckets).

Pure Python. Values are milliseconds. Buckets are HdrHistogram-style: each power
of two of the value (in units of ``RESOLUTION_MS``) is split into ``SUB_BUCKETS``
equal-width linear sub-buckets, so a bucket is at most 1/64 of its lower bound
wide and the midpoint reported for it is within 0.8% of any value in it
(the documented bound is ``RELATIVE_ERROR`` = 1%). Values from 0.01 ms to one
hour use about 1,900 buckets at most; only non-empty buckets are stored.

Exact extras: count, min, max and sum are kept exactly, and every percentile is
clamped to [min, max], so p0 and p100 are exact.
"""

from __future__ import annotations

import base64
import math
import struct
from collections import Counter
from collections.abc import Iterable
from typing import Any

RESOLUTION_MS = 0.01  # values below this share bucket 0
MAX_MS = 3_600_000.0  # values above one hour share the top bucket
SUB_BITS = 6
SUB_BUCKETS = 1 << SUB_BITS  # 64 linear sub-buckets per power of two
RELATIVE_ERROR = 0.01

_frexp = math.frexp
_FORMAT = 1
# The compact form (``to_compact``): this prefix, then url-safe base64 (no padding) of varints.
_COMPACT_PREFIX = "2:"
_EXTRAS = struct.Struct("<ddd")  # min, max, sum: exact
_TOP_INDEX = 0  # replaced below, once _index exists


def _index(ms: float) -> int:
    """Bucket index of a (non-negative, finite) value. Monotonic in ``ms``."""
    units = ms / RESOLUTION_MS
    if units < 1.0:
        return 0
    if ms > MAX_MS:
        return _TOP_INDEX
    mant, exp = _frexp(units)  # units = mant * 2**exp, mant in [0.5, 1)
    # exp >= 1 here. Sub-bucket: position of units inside [2**(exp-1), 2**exp).
    return 1 + ((exp - 1) << SUB_BITS) + int((mant * 2.0 - 1.0) * SUB_BUCKETS)


def _bounds(index: int) -> tuple[float, float]:
    """[lower, upper) of bucket ``index`` in ms."""
    if index == 0:
        return 0.0, RESOLUTION_MS
    i = index - 1
    exp1, sub = divmod(i, SUB_BUCKETS)  # exp1 = exp - 1
    base = float(1 << exp1)
    lower = base * (1.0 + sub / SUB_BUCKETS)
    upper = base * (1.0 + (sub + 1) / SUB_BUCKETS)
    return lower * RESOLUTION_MS, upper * RESOLUTION_MS


_TOP_INDEX = _index(MAX_MS)
# From here up, bucket bounds are whole units (``SUB_BUCKETS`` sub-buckets of a power of two
# at least ``SUB_BUCKETS`` units wide); values at or above ``_TOP_UNITS`` share the top bucket.
_WHOLE_UNITS = float(SUB_BUCKETS)
_TOP_UNITS = MAX_MS / RESOLUTION_MS


def _index_of_units(units: float) -> int:
    """``_index`` of a value already in units of ``RESOLUTION_MS``, from ``_WHOLE_UNITS`` up to
    below ``_TOP_UNITS``."""
    mant, exp = _frexp(units)
    return 1 + ((exp - 1) << SUB_BITS) + int((mant * 2.0 - 1.0) * SUB_BUCKETS)


class LatencyHistogram:
    """Latency distribution in ms with ~1% relative error and exact count/min/max/sum.

    Negative inputs (clock skew between producer and consumer hosts) are recorded
    as 0; NaN and infinities raise ValueError rather than poisoning the sums.
    """

    __slots__ = ("_buckets", "count", "min", "max", "sum")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.min: float | None = None
        self.max: float | None = None
        self.sum = 0.0

    def record(self, ms: float) -> None:
        """Add one observation (ms)."""
        ms = float(ms)
        if not math.isfinite(ms):
            raise ValueError(f"latency must be finite, got {ms!r}")
        if ms < 0.0:
            ms = 0.0
        idx = _index(ms)
        buckets = self._buckets
        buckets[idx] = buckets.get(idx, 0) + 1
        self.count += 1
        self.sum += ms
        if self.min is None or ms < self.min:
            self.min = ms
        if self.max is None or ms > self.max:
            self.max = ms

    def record_many(self, values: Iterable[float]) -> None:
        """Add many observations (ms); the same histogram as calling ``record`` for each.

        The producer's hot path at saturation (one ack latency per record): min / max / sum run
        once over the batch, and where every value is at least ``_WHOLE_UNITS`` units (0.64 ms:
        any ack latency) they are counted by whole unit, so a value costs a fraction of a
        ``record`` call (``bench/producer_bench.py``). Nothing is recorded if any value is not
        finite."""
        vals = [float(ms) for ms in values]
        if not vals:
            return
        if not math.isfinite(sum(vals)):  # any NaN or infinity makes the sum one
            bad = next((v for v in vals if not math.isfinite(v)), None)
            if bad is not None:
                raise ValueError(f"latency must be finite, got {bad!r}")
            for ms in vals:  # finite values whose sum overflows: one by one
                self.record(ms)
            return
        if min(vals) < 0.0:
            vals = [ms if ms > 0.0 else 0.0 for ms in vals]
        total = sum(vals)
        buckets = self._buckets
        get = buckets.get
        res = RESOLUTION_MS
        units = [ms / res for ms in vals]  # as ``_index`` computes them, to the last bit
        if min(units) >= _WHOLE_UNITS and max(units) < _TOP_UNITS:
            # Every value where the buckets' bounds are whole units (a bucket there is at
            # least one unit wide): truncating to whole units never crosses a bound, so the
            # values are counted by whole unit at C speed and each distinct one is placed once
            # (a second's acks spread over a few thousand units, not 100,000).
            for whole, n in Counter(map(int, units)).items():
                idx = _index_of_units(whole)
                buckets[idx] = get(idx, 0) + n
        else:
            for ms in vals:
                idx = _index(ms)
                buckets[idx] = get(idx, 0) + 1
        low, high = min(vals), max(vals)
        self.count += len(vals)
        self.sum += total
        if self.min is None or low < self.min:
            self.min = low
        if self.max is None or high > self.max:
            self.max = high

    def merge(self, other: LatencyHistogram) -> None:
        """Add every observation of ``other`` into this histogram (in place)."""
        buckets = self._buckets
        for idx, n in other._buckets.items():
            buckets[idx] = buckets.get(idx, 0) + n
        self.count += other.count
        self.sum += other.sum
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q``-th percentile, ``q`` in [0, 100]; None when empty.

        Nearest rank: the value at rank ceil(q/100 * count) (at least 1) in sorted
        order, reported as its bucket midpoint clamped to [min, max]; ranks 1 and
        ``count`` (p0, p100) are the exact min and max.
        """
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be within [0, 100], got {q!r}")
        if self.count == 0:
            return None
        assert self.min is not None and self.max is not None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        # The extremes are kept exactly: report them exactly.
        if rank == 1:
            return self.min
        if rank >= self.count:
            return self.max
        seen = 0
        for idx in sorted(self._buckets):
            seen += self._buckets[idx]
            if seen >= rank:
                lower, upper = _bounds(idx)
                return min(max((lower + upper) / 2.0, self.min), self.max)
        return self.max  # unreachable when counts are consistent

    def summary(self) -> dict[str, float | int | None]:
        """``{"p50", "p99", "max", "count"}``; the values are None when empty."""
        return {
            "p50": self.percentile(50),
            "p99": self.percentile(99),
            "max": self.max,
            "count": self.count,
        }

    def cumulative(self, bounds_ms: Iterable[float]) -> list[int]:
        """Observations at or below each of ``bounds_ms`` (ascending), as Prometheus ``le``
        buckets count them. A stored bucket counts below a bound when its midpoint does, so an
        observation within ``RELATIVE_ERROR`` of a bound may land on either side of it. The
        counts of a histogram that only grows only grow (bucket membership is fixed)."""
        marks = sorted(((lo + hi) / 2.0, n) for lo, hi, n in self._bucket_bounds())
        out, i, seen = [], 0, 0
        for bound in bounds_ms:
            while i < len(marks) and marks[i][0] <= bound:
                seen += marks[i][1]
                i += 1
            out.append(seen)
        return out

    def _bucket_bounds(self) -> list[tuple[float, float, int]]:
        return [(*_bounds(idx), n) for idx, n in self._buckets.items()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state; ``from_dict(to_dict())`` is an equal histogram."""
        return {
            "v": _FORMAT,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "sum": self.sum,
            "buckets": [[idx, n] for idx, n in sorted(self._buckets.items())],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LatencyHistogram:
        """Rebuild a histogram written by ``to_dict``. Raises ValueError on another format."""
        if doc.get("v") != _FORMAT:
            raise ValueError(f"unsupported latency histogram format {doc.get('v')!r}")
        hist = cls()
        hist._buckets = {int(idx): int(n) for idx, n in doc["buckets"]}
        hist.count = int(doc["count"])
        hist.min = doc["min"]
        hist.max = doc["max"]
        hist.sum = float(doc["sum"])
        return hist

    def to_compact(self) -> str:
        """The same state as ``to_dict`` in a short string, for documents kept by the thousand
        (the one-second windows): ``"2:"`` and url-safe base64 of unsigned LEB128 varints:
        the count, then (when not empty) min, max and sum as three little-endian doubles, then
        per non-empty bucket the distance of its index from the previous one and its count.
        A typical one-second window's histogram takes a quarter of its ``to_dict`` JSON."""
        out = bytearray()
        _put_varint(out, self.count)
        if self.count:
            out += _EXTRAS.pack(self.min, self.max, self.sum)
        previous = 0
        for idx in sorted(self._buckets):
            _put_varint(out, idx - previous)
            _put_varint(out, self._buckets[idx])
            previous = idx
        return _COMPACT_PREFIX + base64.urlsafe_b64encode(bytes(out)).decode().rstrip("=")

    @classmethod
    def from_compact(cls, text: str) -> LatencyHistogram:
        """Rebuild a histogram written by ``to_compact``. Raises ValueError on anything else."""
        if not isinstance(text, str) or not text.startswith(_COMPACT_PREFIX):
            raise ValueError("not a compact latency histogram")
        body = text[len(_COMPACT_PREFIX) :]
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            hist = cls()
            hist.count, pos = _get_varint(data, 0)
            if hist.count:
                hist.min, hist.max, hist.sum = _EXTRAS.unpack_from(data, pos)
                pos += _EXTRAS.size
            idx, buckets = 0, {}
            while pos < len(data):
                step, pos = _get_varint(data, pos)
                n, pos = _get_varint(data, pos)
                idx += step
                buckets[idx] = n
        except (ValueError, IndexError, struct.error) as exc:
            raise ValueError(f"corrupt compact latency histogram: {exc}") from exc
        if sum(buckets.values()) != hist.count:
            raise ValueError("corrupt compact latency histogram: bucket counts do not add up")
        hist._buckets = buckets
        return hist

    @classmethod
    def load(cls, data: str | dict[str, Any]) -> LatencyHistogram:
        """A histogram from either stored form: ``to_compact``'s string or ``to_dict``'s dict
        (windows written before the compact form existed)."""
        return cls.from_compact(data) if isinstance(data, str) else cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LatencyHistogram({self.summary()})"


class RecentLatency:
    """Per key (a partition), the latency of about the last ``span_s`` seconds, in bounded
    memory: two generations of histograms per key, each covering half the span. When the
    newer generation is ``span_s / 2`` old it becomes the older one and the oldest is dropped,
    so a summary covers between ``span_s / 2`` and ``span_s`` seconds. Memory: at most two
    histograms per key (each a few tens of buckets in practice, ~1,900 at most), whatever the
    rate; a key with nothing recorded for ``span_s`` is forgotten."""

    def __init__(self, span_s: float) -> None:
        self.half = span_s / 2.0
        self.started = 0.0  # when the newer generation began
        self.newer: dict[Any, LatencyHistogram] = {}
        self.older: dict[Any, LatencyHistogram] = {}

    def _turn(self, now: float) -> None:
        if now - self.started < self.half:
            return
        # Two half-spans without a turn: the newer generation is too old to keep as well.
        self.older = self.newer if now - self.started < 2 * self.half else {}
        self.newer, self.started = {}, now

    def record_many(self, key: Any, values: Iterable[float], now: float) -> None:
        """Add observations (ms) made at ``now`` to ``key``'s recent latency (straight into
        its histogram: the check runner calls this per partition of every ledger entry)."""
        self._turn(now)
        current = self.newer.get(key)
        if current is None:
            current = self.newer[key] = LatencyHistogram()
        current.record_many(values)

    def histograms(self, now: float) -> dict[Any, LatencyHistogram]:
        """Per key with observations in the span, their histogram (a new one: merging into
        it changes nothing here)."""
        self._turn(now)
        out = {}
        for key in self.older.keys() | self.newer.keys():
            merged = out[key] = LatencyHistogram()
            for generation in (self.older, self.newer):
                if (hist := generation.get(key)) is not None:
                    merged.merge(hist)
        return out


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]  # IndexError on a truncated varint
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
