"""The entries of a sentinel's two Redis streams, as types.

- ``AckReport`` (``ds:{sid}:acks``): one flush of the producer's delivery reports, per
  partition the records produced and the acked / failed sequence ranges, with the
  produce-ack latency histogram of the same period;
- ``LedgerEntry`` (``ds:{sid}:ledger``): one processed batch, the durable effect of
  "processing", with the records that were not the sentinel's (foreign) and, under
  exactly-once, those read from a copier transaction known to be aborted.

``to_fields()`` gives the entry's fields as Redis stores them and ``from_fields()`` reads them
back; the bytes are the ones these streams have always held, so entries written before the
types existed read back the same. Nobody else parses the raw fields. A malformed entry raises
``MalformedEntry`` saying what is wrong, before anything of it is applied: it is never read
as records lost or processed.

Fields on the wire:

- acks: ``d``, JSON ``{"run": <run id>, "p": {"<partition>": {"n": <produced>, "a":
  [[first, last], ...], "f": [[first, last], ...], "o": [[seq, offset, count, epoch],
  ...]}}, "lat": <histogram>}`` without spaces, ``n`` / ``a`` / ``f`` / ``o`` only when not
  zero or empty, ``lat`` only when there is one (``LatencyHistogram.to_compact()``; entries of
  older versions hold a ``to_dict()`` dict). ``o``: where the acked records are in the log,
  seqs seq..seq+count-1 at offsets offset..offset+count-1, acknowledged under leader epoch
  ``epoch`` (-1: the client did not say); entries written before offsets were recorded have
  none (offsets unknown);
- ledger: ``d``, the items packed little-endian ``<QIQQQ`` (run, partition, seq, produced
  and processed timestamps in µs) one after the other; ``f``, the foreign count in decimal,
  only when not 0; ``a``, the aborted reads packed ``<QIQ`` (run, partition, seq), only when
  there are some; ``o``, for each item in the same order the offset it was read at, packed
  ``<q``; ``e``, likewise the record's leader epoch (-1: unknown) packed ``<i``; ``s``, the
  reading consumer session's id in decimal: all three absent from entries written before
  they existed (offsets, epochs and session unknown).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

LEDGER_ITEM = struct.Struct("<QIQQQ")  # run, partition, seq, produce_ts_us, processed_ts_us
ABORTED_ITEM = struct.Struct("<QIQ")  # run, partition, seq

# run, partition, seq, produced and processed timestamps (µs since the Unix epoch)
LedgerItem = tuple[int, int, int, int, int]
AbortedItem = tuple[int, int, int]  # run, partition, seq
Fields = Mapping[bytes, bytes]


class MalformedEntry(ValueError):
    """A stream entry whose fields are not in the format; the message says what is wrong."""


def to_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted inclusive ranges covering ``seqs``: [3, 1, 2, 7] -> [[1, 3], [7, 7]]."""
    ordered = sorted(set(seqs))
    if ordered and ordered[-1] - ordered[0] + 1 == len(ordered):
        return [[ordered[0], ordered[-1]]]  # no gap (a flush's in-order acks): at C speed
    out: list[list[int]] = []
    for seq in ordered:
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


@dataclass(slots=True)
class PartitionReport:
    """One partition's part of an ``AckReport``: records produced, and the inclusive sequence
    ranges reported delivered (``acked``) and failed."""

    produced: int = 0
    acked: list[list[int]] = field(default_factory=list)
    failed: list[list[int]] = field(default_factory=list)
    # Where acked records are: [seq, offset, count, leader epoch] (``offset_segments``).
    offsets: list[list[int]] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        produced: int,
        acked: Iterable[int],
        failed: Iterable[int],
        offsets: list[list[int]] | None = None,
    ) -> PartitionReport:
        """From the sequence numbers themselves, in any order."""
        return cls(produced, to_ranges(acked), to_ranges(failed), offsets or [])

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.produced:
            doc["n"] = self.produced
        if self.acked:
            doc["a"] = self.acked
        if self.failed:
            doc["f"] = self.failed
        if self.offsets:
            doc["o"] = self.offsets
        return doc

    @classmethod
    def from_doc(cls, doc: Any) -> PartitionReport:
        if not isinstance(doc, dict):
            raise MalformedEntry(f"a partition's report is {type(doc).__name__}, not an object")
        produced = doc.get("n", 0)
        if not _is_int(produced):
            raise MalformedEntry(f"'n' (records produced) is {produced!r}, not an integer")
        offsets = doc.get("o", [])
        if not isinstance(offsets, list) or not all(
            isinstance(r, list) and len(r) == 4 and all(_is_int(v) for v in r) for r in offsets
        ):
            raise MalformedEntry(f"'o' is {offsets!r}, not a list of [seq, offset, count, epoch]")
        return cls(produced, _ranges(doc, "a"), _ranges(doc, "f"), offsets)


def delivery_segments(
    seqs: list[int], offsets: list[int | None], epochs: list[int | None]
) -> list[list[int]]:
    """``offset_segments`` of a flush's delivery reports as the client gave them: an offset or
    epoch it did not know is None or negative (every offset under ``acks=0``; a retried
    record an idempotent producer learns was written already) and is left out, the others
    kept. ``epochs`` of another length than ``seqs`` count as unknown."""
    n = len(seqs)
    if not n or len(offsets) != n:
        return []
    if offsets[0] is None and offsets[-1] is None and offsets.count(None) == n:
        return []  # acks=0: checked at C speed, as every flush of it is
    if None in offsets:
        offsets = [-1 if o is None else o for o in offsets]
    if max(offsets) < 0:  # type: ignore[type-var]
        return []
    if len(epochs) != n:
        return offset_segments(seqs, offsets, None)  # type: ignore[arg-type]
    if None in epochs:
        epochs = [-1 if e is None else e for e in epochs]
    return offset_segments(seqs, offsets, epochs)  # type: ignore[arg-type]


def offset_segments(
    seqs: list[int], offsets: list[int], epochs: list[int] | None = None
) -> list[list[int]]:
    """``[seq, offset, count, epoch]`` segments for records ``seqs[i]`` delivered at
    ``offsets[i]`` (under ``epochs[i]``), in offset order: each segment is consecutive in
    both seq and offset, under one epoch. Unknown offsets (negative: ``acks=0``) are left
    out. In-order delivery (the usual case) is one segment, found at C speed."""
    n = len(seqs)
    if not n:
        return []
    first, off = seqs[0], offsets[0]
    ep = epochs[0] if epochs else -1
    if (
        off >= 0
        and offsets[-1] == off + n - 1
        and seqs[-1] == first + n - 1
        and offsets == list(range(off, off + n))
        and seqs == list(range(first, first + n))
        and (not epochs or epochs.count(ep) == n)
    ):
        return [[first, off, n, ep]]
    rows = sorted(zip(offsets, seqs, epochs or [-1] * n, strict=True))
    out: list[list[int]] = []
    for o, s, e in rows:
        if o < 0:
            continue
        if out:
            last = out[-1]
            if o == last[1] + last[2] and s == last[0] + last[2] and e == last[3]:
                last[2] += 1
                continue
        out.append([s, o, 1, e])
    return out


@dataclass(slots=True)
class AckReport:
    """One acks stream entry: the delivery reports of run ``run`` since the last one."""

    run: int
    partitions: dict[int, PartitionReport]
    # The produce-ack latency histogram (``LatencyHistogram.to_compact()``; older entries: its
    # ``to_dict()``), as written: ``LatencyHistogram.load`` reads both. None: no acks.
    latency: str | dict[str, Any] | None = None

    def to_fields(self) -> dict[bytes, bytes]:
        doc: dict[str, Any] = {
            "run": self.run,
            "p": {str(p): report.to_doc() for p, report in self.partitions.items()},
        }
        if self.latency:
            doc["lat"] = self.latency
        return {b"d": json.dumps(doc, separators=(",", ":")).encode()}

    @classmethod
    def from_fields(cls, fields: Fields) -> AckReport:
        raw = fields.get(b"d")
        if raw is None:
            raise MalformedEntry("acks entry without its 'd' field")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEntry(f"acks entry's 'd' is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("p"), dict):
            raise MalformedEntry("acks entry's 'd' is not an object with a 'p' object")
        run = doc.get("run")
        if not _is_int(run):
            raise MalformedEntry(f"acks entry's run id is {run!r}, not an integer")
        partitions = {}
        for key, report in doc["p"].items():
            if not key.isdigit():
                raise MalformedEntry(f"acks entry's partition {key!r} is not a number")
            try:
                partitions[int(key)] = PartitionReport.from_doc(report)
            except MalformedEntry as exc:
                raise MalformedEntry(f"acks entry, partition {key}: {exc}") from None
        latency = doc.get("lat")
        if latency is not None and not isinstance(latency, str | dict):
            raise MalformedEntry(f"acks entry's 'lat' is {type(latency).__name__}")
        return cls(run, partitions, latency)


@dataclass(slots=True)
class LedgerEntry:
    """One ledger stream entry: a processed batch (``items``), the records of it that were
    not the sentinel's (``foreign``), and under exactly-once the records read from a copier
    transaction known to be aborted (``aborted``)."""

    items: list[LedgerItem]
    foreign: int = 0
    aborted: list[AbortedItem] = field(default_factory=list)
    # Per item, in the same order: the offset it was read at, and its leader epoch (None or
    # -1: unknown). None: not recorded (entries written before offsets were).
    offsets: list[int] | None = None
    epochs: list[int | None] | None = None
    session: int | None = None  # the reading consumer session (a consumer start); None: unknown

    def to_fields(self) -> dict[bytes, bytes]:
        pack = LEDGER_ITEM.pack
        fields = {b"d": b"".join([pack(*item) for item in self.items])}
        if self.foreign:
            fields[b"f"] = str(self.foreign).encode()
        if self.aborted:
            fields[b"a"] = b"".join(ABORTED_ITEM.pack(*item) for item in self.aborted)
        n = len(self.items)
        if self.offsets is not None:
            if len(self.offsets) != n:
                raise ValueError(f"{len(self.offsets)} offsets for {n} items")
            fields[b"o"] = struct.pack(f"<{n}q", *self.offsets)
        if self.epochs is not None:
            if len(self.epochs) != n:
                raise ValueError(f"{len(self.epochs)} epochs for {n} items")
            epochs = self.epochs
            if None in epochs:
                epochs = [-1 if e is None else e for e in epochs]
            fields[b"e"] = struct.pack(f"<{n}i", *epochs)
        if self.session is not None:
            fields[b"s"] = str(self.session).encode()
        return fields

    @classmethod
    def from_fields(cls, fields: Fields) -> LedgerEntry:
        items = _unpack(LEDGER_ITEM, fields.get(b"d", b""), "'d' (processed records)")
        aborted = _unpack(ABORTED_ITEM, fields.get(b"a", b""), "'a' (aborted reads)")
        raw = fields.get(b"f", b"0")
        try:
            foreign = int(raw)
        except ValueError:
            raise MalformedEntry(f"ledger entry's 'f' (foreign) is {raw!r}, not a number") from None
        offsets = _per_item(fields, b"o", "q", len(items), "offsets read at")
        epochs = _per_item(fields, b"e", "i", len(items), "leader epochs")
        session = None
        if b"s" in fields:
            raw = fields[b"s"]
            try:
                session = int(raw)
            except ValueError:
                raise MalformedEntry(
                    f"ledger entry's 's' (consumer session) is {raw!r}, not a number"
                ) from None
        return cls(items, foreign, aborted, offsets, epochs, session)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ranges(doc: dict[str, Any], key: str) -> list[list[int]]:
    ranges = doc.get(key, [])
    if not isinstance(ranges, list) or not all(
        isinstance(r, list) and len(r) == 2 and _is_int(r[0]) and _is_int(r[1]) for r in ranges
    ):
        raise MalformedEntry(f"{key!r} is {ranges!r}, not a list of [first, last] ranges")
    return ranges


def _per_item(fields: Fields, key: bytes, code: str, n: int, what: str) -> list[Any] | None:
    """A field of one little-endian ``code`` value per item, or None when absent."""
    data = fields.get(key)
    if data is None:
        return None
    size = struct.calcsize(code)
    if len(data) != n * size:
        raise MalformedEntry(
            f"ledger entry's {key.decode()!r} ({what}) holds {len(data)} bytes, "
            f"not {n} {size}-byte values for its {n} records"
        )
    return list(struct.unpack(f"<{n}{code}", data))


def _unpack(layout: struct.Struct, data: bytes, what: str) -> list[Any]:
    if len(data) % layout.size:
        raise MalformedEntry(
            f"ledger entry's {what} holds {len(data)} bytes, not whole {layout.size}-byte items"
        )
    return list(layout.iter_unpack(data))
