"""Sentinel record codec: a compact, versioned, checksummed binary layout.

Pure Python (no Django, no Kafka). Layout, big-endian, version 1::

    offset  size  field
    0       2     magic b"DS"
    2       1     version (1)
    3       4     sentinel_id     uint32
    7       8     run_id          uint64
    15      4     partition       uint32
    19      8     seq             uint64
    27      8     produce_ts_us   uint64 (microseconds since the Unix epoch)
    35      4     crc32 of bytes [0, 35)
    39      ...   zero padding up to the configured record size (optional)

``decode`` never raises: whatever arrives on a sentinel topic is either a
``Record`` or a ``Foreign`` explaining why it is not one, so the consumer can
count it and carry on.
"""

from __future__ import annotations

import secrets
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAGIC = b"DS"
VERSION = 1

# Precompiled: the consumer decodes every record, so avoid re-parsing formats.
_BODY = struct.Struct(">2sBIQIQQ")
_CRC = struct.Struct(">I")
#: For the producer's inlined hot loop: ``BODY.pack(...) + CRC.pack(crc32(body)) + padding``
#: is exactly ``encode_fields`` (tests/unit/test_codec.py holds them equal).
BODY, CRC = _BODY, _CRC
_FULL = struct.Struct(">2sBIQIQQI")

#: Bytes before the optional padding; the smallest valid record.
HEADER_SIZE = _FULL.size  # 39
_BODY_SIZE = _BODY.size  # 35

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_RUN_TIME_BITS = 48
_RUN_RAND_BITS = 16


@dataclass(frozen=True, slots=True)
class Record:
    """One sentinel record as produced: who wrote it, where, and when."""

    sentinel_id: int
    run_id: int
    partition: int
    seq: int
    produce_ts_us: int


@dataclass(frozen=True, slots=True)
class Foreign:
    """Something on a sentinel topic that is not a valid record (of this sentinel).

    ``reason`` is one of: "empty", "not-bytes", "bad-magic", "truncated",
    "unknown-version", "bad-checksum", "unknown-sentinel", "partition-mismatch".
    """

    reason: str


# Shared instances: foreign values carry no per-record data, so reuse them.
_EMPTY = Foreign("empty")
_NOT_BYTES = Foreign("not-bytes")
_BAD_MAGIC = Foreign("bad-magic")
_TRUNCATED = Foreign("truncated")
_UNKNOWN_VERSION = Foreign("unknown-version")
_BAD_CHECKSUM = Foreign("bad-checksum")
_UNKNOWN_SENTINEL = Foreign("unknown-sentinel")
_PARTITION_MISMATCH = Foreign("partition-mismatch")


def encode(record: Record, size: int = HEADER_SIZE) -> bytes:
    """Serialise ``record`` into exactly ``size`` bytes (header plus zero padding).

    Raises ValueError if ``size`` < HEADER_SIZE or a field does not fit its width
    (uint32 for sentinel_id and partition, uint64 for run_id, seq, produce_ts_us).
    """
    if size < HEADER_SIZE:
        raise ValueError(f"record size {size} is smaller than the header ({HEADER_SIZE} bytes)")
    fields = (
        ("sentinel_id", record.sentinel_id, _U32),
        ("run_id", record.run_id, _U64),
        ("partition", record.partition, _U32),
        ("seq", record.seq, _U64),
        ("produce_ts_us", record.produce_ts_us, _U64),
    )
    for name, value, limit in fields:
        if not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{name}={value!r} does not fit in {limit.bit_length()} unsigned bits")
    body = _BODY.pack(
        MAGIC,
        VERSION,
        record.sentinel_id,
        record.run_id,
        record.partition,
        record.seq,
        record.produce_ts_us,
    )
    out = body + _CRC.pack(zlib.crc32(body))
    if size > HEADER_SIZE:
        out += bytes(size - HEADER_SIZE)
    return out


#: Byte offsets of fields readers may peek at without a full decode.
RUN_OFFSET = 7
SEQ_OFFSET = 19
#: The run, partition and seq, read in one call at ``RUN_OFFSET`` (the producer's delivery
#: reports read them so).
RUN_PARTITION_SEQ = struct.Struct(">QIQ")
_PADDING: dict[int, bytes] = {}


def encode_fields(
    sentinel_id: int,
    run_id: int,
    partition: int,
    seq: int,
    produce_ts_us: int,
    size: int = HEADER_SIZE,
) -> bytes:
    """Hot-loop variant of ``encode`` for the producer: no Record, no range checks.

    The caller guarantees the widths (the producer's own ids and counters); ``encode`` is the
    validating version and produces the same bytes.
    """
    body = _BODY.pack(MAGIC, VERSION, sentinel_id, run_id, partition, seq, produce_ts_us)
    return body + _CRC.pack(zlib.crc32(body)) + padding(size)


def padding(size: int) -> bytes:
    """The zero bytes after the header of a record of ``size`` bytes (cached)."""
    pad = _PADDING.get(size)
    if pad is None:
        pad = _PADDING[size] = bytes(max(0, size - HEADER_SIZE))
    return pad


def decode_fields(
    value: object,
    *,
    sentinel_id: int | None = None,
    partition: int | None = None,
) -> tuple[int, int, int, int, int] | Foreign:
    """Hot-loop variant of ``decode``: returns a plain tuple instead of a Record.

    The tuple is ``(sentinel_id, run_id, partition, seq, produce_ts_us)``.
    Same validation and the same never-raise contract as ``decode``.
    """
    if value is None:
        return _EMPTY
    try:
        # bytes, bytearray, memoryview and anything else exporting a buffer.
        n = len(value)  # type: ignore[arg-type]
        if n == 0:
            return _EMPTY
        if n < HEADER_SIZE:
            return _short_reason(bytes(value[:3]))  # type: ignore[index]
        magic, version, sid, run, part, seq, ts, crc = _FULL.unpack_from(value)  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - the contract is "never raises"
        return _NOT_BYTES
    if magic != MAGIC:
        return _BAD_MAGIC
    if version != VERSION:
        return _UNKNOWN_VERSION
    try:
        if zlib.crc32(memoryview(value)[:_BODY_SIZE]) != crc:  # type: ignore[arg-type]
            return _BAD_CHECKSUM
    except Exception:  # noqa: BLE001 - an odd buffer type: still never raise
        return _NOT_BYTES
    if sentinel_id is not None and sid != sentinel_id:
        return _UNKNOWN_SENTINEL
    if partition is not None and part != partition:
        return _PARTITION_MISMATCH
    return (sid, run, part, seq, ts)


def decode_messages(
    msgs: Iterable[Any],
    sentinel_id: int,
    stamp: int,
    offsets: list[int] | None = None,
    epochs: list[int | None] | None = None,
) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """The consumer's batch decode. ``msgs`` are Kafka messages (``value()``, ``partition()``);
    returns ``(run_id, partition, seq, produce_ts_us, stamp)`` for each valid record of sentinel
    ``sentinel_id`` (``stamp``: the batch's processing time, the ledger's last field) and how
    many were anything else (foreign). With ``offsets`` and ``epochs``, appends to them, for
    each valid record in the same order, the offset it was read at (``offset()``) and its
    leader epoch (``leader_epoch()``: None when unknown).

    Accepts exactly what ``decode_fields(value, sentinel_id=..., partition=...)`` accepts
    (tests/unit/test_codec.py holds them equal), with the checks inlined: this is every
    consumer's hot loop at saturation. Never raises on any value."""
    out: list[tuple[int, int, int, int, int]] = []
    append = out.append
    where = offsets.append if offsets is not None else None
    epoch = epochs.append if epochs is not None else None
    foreign = 0
    unpack, crc32, magic_ok, version_ok = _FULL.unpack_from, zlib.crc32, MAGIC, VERSION
    header, body_size = HEADER_SIZE, _BODY_SIZE
    for msg in msgs:
        value, partition = msg.value(), msg.partition()
        if type(value) is not bytes or len(value) < header:  # None, odd buffers, short: slow path
            fields = decode_fields(value, sentinel_id=sentinel_id, partition=partition)
            if type(fields) is tuple:
                append((*fields[1:], stamp))
                if where is not None:
                    where(msg.offset())
                    epoch(msg.leader_epoch())  # type: ignore[misc]
            else:
                foreign += 1
            continue
        magic, version, sid, run, part, seq, ts, crc = unpack(value)
        if (
            magic != magic_ok
            or version != version_ok
            or sid != sentinel_id
            or part != partition
            or crc32(value[:body_size]) != crc
        ):
            foreign += 1
            continue
        append((run, part, seq, ts, stamp))
        if where is not None:
            where(msg.offset())
            epoch(msg.leader_epoch())  # type: ignore[misc]
    return out, foreign


def _short_reason(prefix: bytes) -> Foreign:
    """Classify a value shorter than the header by what its first bytes say."""
    if not MAGIC.startswith(prefix[:2]):
        return _BAD_MAGIC
    if len(prefix) >= 3 and prefix[2] != VERSION:
        return _UNKNOWN_VERSION
    return _TRUNCATED


def decode(
    value: bytes | bytearray | memoryview | None,
    *,
    sentinel_id: int | None = None,
    partition: int | None = None,
) -> Record | Foreign:
    """Parse one Kafka record value. Never raises, whatever ``value`` is.

    Checks, in order: empty/None, magic, version, length, checksum, then (only
    when given) that the record belongs to ``sentinel_id`` and was written for
    ``partition`` (the partition it was read from). Padding after the header is
    not inspected: its length is a producer setting, not part of the identity.
    """
    fields = decode_fields(value, sentinel_id=sentinel_id, partition=partition)
    if isinstance(fields, Foreign):
        return fields
    return Record(*fields)


def new_run_id(now_ms: int | None = None, rand: int | None = None) -> int:
    """A 64-bit producer run id: start time (ms) in the high 48 bits, 16 random bits below.

    Run ids therefore order by start time, and two runs started in the same
    millisecond still differ with high probability. Raises ValueError when an
    explicit ``now_ms`` or ``rand`` does not fit its bits.
    """
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    if rand is None:
        rand = secrets.randbits(_RUN_RAND_BITS)
    if not 0 <= now_ms < (1 << _RUN_TIME_BITS):
        raise ValueError(f"now_ms={now_ms} does not fit in {_RUN_TIME_BITS} bits")
    if not 0 <= rand < (1 << _RUN_RAND_BITS):
        raise ValueError(f"rand={rand} does not fit in {_RUN_RAND_BITS} bits")
    return (now_ms << _RUN_RAND_BITS) | rand


def run_started_ms(run_id: int) -> int:
    """The start time in ms since the epoch encoded in ``run_id``."""
    return run_id >> _RUN_RAND_BITS
