"""Record codec: round trips, exact layout, and never raising on garbage."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.engine import codec
from workers.engine.codec import (
    HEADER_SIZE,
    Foreign,
    Record,
    decode,
    decode_fields,
    encode,
    new_run_id,
    run_started_ms,
)

REC = Record(
    sentinel_id=7,
    run_id=0x0123_4567_89AB_CDEF,
    partition=3,
    seq=42,
    produce_ts_us=1_700_000_000_000_000,
)

records = st.builds(
    Record,
    sentinel_id=st.integers(0, 2**32 - 1),
    run_id=st.integers(0, 2**64 - 1),
    partition=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**64 - 1),
    produce_ts_us=st.integers(0, 2**64 - 1),
)


def test_it_has_a_39_byte_header() -> None:
    assert HEADER_SIZE == 39
    assert len(encode(REC)) == 39


def test_it_writes_the_documented_layout() -> None:
    data = encode(REC)
    body = struct.pack(">2sBIQIQQ", b"DS", 1, 7, REC.run_id, 3, 42, REC.produce_ts_us)
    assert data == body + struct.pack(">I", zlib.crc32(body))


def test_it_pads_with_zeros_to_the_requested_size() -> None:
    data = encode(REC, size=100)
    assert len(data) == 100
    assert data[HEADER_SIZE:] == bytes(100 - HEADER_SIZE)
    assert decode(data) == REC


def test_it_refuses_a_size_smaller_than_the_header() -> None:
    with pytest.raises(ValueError):
        encode(REC, size=HEADER_SIZE - 1)


@pytest.mark.parametrize(
    "field, value",
    [
        ("sentinel_id", 2**32),
        ("partition", -1),
        ("seq", 2**64),
        ("run_id", -5),
        ("produce_ts_us", 2**64),
    ],
)
def test_it_refuses_fields_that_do_not_fit(field: str, value: int) -> None:
    fields = {
        "sentinel_id": 1,
        "run_id": 1,
        "partition": 1,
        "seq": 1,
        "produce_ts_us": 1,
        field: value,
    }
    with pytest.raises(ValueError):
        encode(Record(**fields))


@settings(max_examples=200)
@given(record=records, pad=st.integers(0, 64))
def test_it_round_trips_any_record(record: Record, pad: int) -> None:
    data = encode(record, size=HEADER_SIZE + pad)
    assert decode(data) == record
    assert decode(memoryview(data)) == record
    assert decode(bytearray(data)) == record
    assert decode_fields(data) == (
        record.sentinel_id,
        record.run_id,
        record.partition,
        record.seq,
        record.produce_ts_us,
    )


def test_it_checks_sentinel_and_partition_only_when_asked() -> None:
    data = encode(REC)
    assert decode(data, sentinel_id=7, partition=3) == REC
    assert decode(data, sentinel_id=8) == Foreign("unknown-sentinel")
    assert decode(data, partition=4) == Foreign("partition-mismatch")
    assert decode(data, sentinel_id=8, partition=4) == Foreign("unknown-sentinel")


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "empty"),
        (b"", "empty"),
        (b"X", "bad-magic"),
        (b"D", "truncated"),
        (b"DS", "truncated"),
        (b"DS\x01", "truncated"),
        (b"DS\x02", "unknown-version"),
        (encode(REC)[:-1], "truncated"),
        (b"XS" + encode(REC)[2:], "bad-magic"),
        (b"DS\x09" + encode(REC)[3:], "unknown-version"),
        (encode(REC)[:20] + b"\xff" + encode(REC)[21:], "bad-checksum"),
        (encode(REC)[:-1] + bytes([encode(REC)[-1] ^ 1]), "bad-checksum"),
        ("DS" + "x" * 50, "not-bytes"),
        (12345, "not-bytes"),
        (object(), "not-bytes"),
    ],
)
def test_it_names_why_a_value_is_foreign(value: object, reason: str) -> None:
    assert decode(value) == Foreign(reason)  # type: ignore[arg-type]


@settings(max_examples=500)
@given(value=st.binary(max_size=80))
def test_it_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    result = decode(value, sentinel_id=1, partition=0)
    assert isinstance(result, Record | Foreign)


@settings(max_examples=300)
@given(record=records, flip=st.integers(0, HEADER_SIZE * 8 - 1))
def test_it_detects_any_single_bit_flip_in_the_header(record: Record, flip: int) -> None:
    data = bytearray(encode(record))
    data[flip // 8] ^= 1 << (flip % 8)
    assert isinstance(decode(bytes(data)), Foreign)


def test_it_orders_run_ids_by_start_time() -> None:
    early = new_run_id(now_ms=1_700_000_000_000, rand=0xFFFF)
    late = new_run_id(now_ms=1_700_000_000_001, rand=0)
    assert early < late
    assert run_started_ms(early) == 1_700_000_000_000
    assert late & 0xFFFF == 0
    assert early == (1_700_000_000_000 << 16) | 0xFFFF


def test_it_makes_run_ids_that_fit_in_64_bits_and_differ() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert all(0 < run < 2**64 for run in ids)
    assert len(ids) > 1


@pytest.mark.parametrize("now_ms, rand", [(-1, 0), (2**48, 0), (0, 2**16), (0, -1)])
def test_it_refuses_run_id_parts_that_do_not_fit(now_ms: int, rand: int) -> None:
    with pytest.raises(ValueError):
        new_run_id(now_ms=now_ms, rand=rand)


def test_it_encodes_the_same_bytes_on_the_producers_fast_path():
    record = codec.Record(7, codec.new_run_id(), 3, 12345, 1_795_000_000_000_000)
    for size in (codec.HEADER_SIZE, 64, 200):
        fast = codec.encode_fields(7, record.run_id, 3, 12345, record.produce_ts_us, size)
        assert fast == codec.encode(record, size)
    value = codec.encode(record)
    assert int.from_bytes(value[codec.RUN_OFFSET : codec.RUN_OFFSET + 8], "big") == record.run_id
    assert int.from_bytes(value[codec.SEQ_OFFSET : codec.SEQ_OFFSET + 8], "big") == 12345
    assert codec.RUN_PARTITION_SEQ.unpack_from(value, codec.RUN_OFFSET) == (record.run_id, 3, 12345)


values = st.one_of(
    st.binary(max_size=80),
    st.none(),
    st.builds(lambda r, pad: codec.encode(r, HEADER_SIZE + pad), records, st.integers(0, 8)),
    st.builds(
        lambda r, at: (lambda v: v[:at] + bytes([v[at] ^ 1]) + v[at + 1 :])(codec.encode(r)),
        records,
        st.integers(0, HEADER_SIZE - 1),
    ),
)


class Message:
    """What decode_messages reads of a confluent_kafka Message."""

    def __init__(self, value: object, partition: int) -> None:
        self._value, self._partition = value, partition

    def value(self) -> object:
        return self._value

    def partition(self) -> int:
        return self._partition


@settings(max_examples=300)
@given(
    batch=st.lists(st.tuples(values, st.integers(0, 3)), max_size=20),
    sid=st.integers(0, 3),
)
def test_decode_messages_accepts_exactly_what_decode_fields_accepts(batch, sid) -> None:
    # Small sentinel ids and partitions so that matches happen; forge some that match.
    batch = batch + [(codec.encode(Record(sid, 9, p, p, 1)), p) for p in range(2)]
    want, want_foreign = [], 0
    for value, partition in batch:
        fields = decode_fields(value, sentinel_id=sid, partition=partition)
        if isinstance(fields, tuple):
            want.append((*fields[1:], 555))
        else:
            want_foreign += 1
    got, foreign = codec.decode_messages([Message(v, p) for v, p in batch], sid, 555)
    assert (got, foreign) == (want, want_foreign)
