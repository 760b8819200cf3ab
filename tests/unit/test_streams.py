"""Typed stream entries (``workers.engine.streams``): round trips, the exact bytes the acks and
ledger streams have always held, and a clear error for a malformed entry."""

from __future__ import annotations

import json

import pytest

from workers.engine.latency import LatencyHistogram
from workers.engine.streams import (
    AckReport,
    LedgerEntry,
    MalformedEntry,
    PartitionReport,
    to_ranges,
)

RUN = 1795785760930000001

# An acks entry as the producer has written them since the compact histogram (``"lat"``).
OLD_ACKS = {
    b"d": b'{"run":1795785760930000001,"p":{"3":{"n":7,"a":[[0,4]],"f":[[5,5]]},'
    b'"0":{"a":[[9,9]]}},"lat":"2:AgAAAAAAABBAmpmZmZmZH0DNzMzMzMwnQKUEAT4B"}'
}
# A ledger entry: one item (run, partition 2, seq 41, produced and processed µs), 3 foreign
# records and one aborted read (run, partition 1, seq 7), packed little-endian.
OLD_LEDGER = {
    b"d": bytes.fromhex("81ecef94a2e9eb180200000029000000000000004b795ff44161060008925ff441610600"),
    b"f": b"3",
    b"a": bytes.fromhex("81ecef94a2e9eb18010000000700000000000000"),
}


def test_it_reads_an_acks_entry_in_the_format_the_stream_holds():
    report = AckReport.from_fields(OLD_ACKS)

    assert report == AckReport(
        RUN,
        {3: PartitionReport(7, [[0, 4]], [[5, 5]]), 0: PartitionReport(0, [[9, 9]])},
        "2:AgAAAAAAABBAmpmZmZmZH0DNzMzMzMwnQKUEAT4B",
    )
    assert LatencyHistogram.load(report.latency).count == 2
    assert report.to_fields() == OLD_ACKS  # byte for byte, partitions in their order


def test_it_reads_a_ledger_entry_in_the_format_the_stream_holds():
    entry = LedgerEntry.from_fields(OLD_LEDGER)

    assert entry == LedgerEntry(
        [(RUN, 2, 41, 1795785760930123, 1795785760936456)], 3, [(RUN, 1, 7)]
    )
    assert entry.to_fields() == OLD_LEDGER


def test_it_reads_an_acks_entry_with_the_older_histogram_and_without_one():
    hist = LatencyHistogram()
    hist.record_many([4.0, 7.9])
    older = {b"d": b'{"run":5,"p":{"0":{"n":1}},"lat":' + _json(hist.to_dict()) + b"}"}
    assert LatencyHistogram.load(AckReport.from_fields(older).latency).count == 2
    assert AckReport.from_fields({b"d": b'{"run":5,"p":{}}'}) == AckReport(5, {})


def test_it_leaves_out_what_is_zero_or_empty_as_the_producer_always_did():
    report = AckReport(9, {1: PartitionReport(2), 0: PartitionReport(failed=[[3, 4]])})
    assert report.to_fields() == {b"d": b'{"run":9,"p":{"1":{"n":2},"0":{"f":[[3,4]]}}}'}
    assert LedgerEntry([]).to_fields() == {b"d": b""}
    assert LedgerEntry.from_fields({b"d": b""}) == LedgerEntry([])
    assert LedgerEntry.from_fields({}) == LedgerEntry([])  # the check runner always read it so


@pytest.mark.parametrize(
    "entry",
    [
        AckReport(RUN, {0: PartitionReport.of(3, [2, 0, 1], [7]), 5: PartitionReport()}),
        AckReport(1, {}, "2:AgAAAAAAABBAmpmZmZmZH0DNzMzMzMwnQKUEAT4B"),
    ],
)
def test_an_ack_report_round_trips(entry):
    assert AckReport.from_fields(entry.to_fields()) == entry


@pytest.mark.parametrize(
    "entry",
    [
        LedgerEntry([(RUN, p, s, 10 + s, 20 + s) for p in range(3) for s in range(4)]),
        LedgerEntry([(2**64 - 1, 2**32 - 1, 2**64 - 1, 0, 2**64 - 1)], foreign=12),
        LedgerEntry([], foreign=1, aborted=[(RUN, 0, 1), (RUN, 0, 2)]),
    ],
)
def test_a_ledger_entry_round_trips(entry):
    assert LedgerEntry.from_fields(entry.to_fields()) == entry


def test_it_makes_sorted_inclusive_ranges():
    assert to_ranges([3, 1, 2, 7, 7]) == [[1, 3], [7, 7]]
    assert to_ranges([]) == []
    assert PartitionReport.of(2, [5, 4], ()) == PartitionReport(2, [[4, 5]], [])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "without its 'd' field"),
        ({b"d": b"{not json"}, "'d' is not JSON"),
        ({b"d": b"\xff"}, "'d' is not JSON"),
        ({b"d": b"[1, 2]"}, "not an object with a 'p' object"),
        ({b"d": b'{"run": 1}'}, "not an object with a 'p' object"),
        ({b"d": b'{"run": "7", "p": {}}'}, "run id is '7', not an integer"),
        ({b"d": b'{"run": 7, "p": {"x": {}}}'}, "partition 'x' is not a number"),
        ({b"d": b'{"run": 7, "p": {"0": []}}'}, "partition 0: a partition's report is list"),
        ({b"d": b'{"run": 7, "p": {"0": {"n": 1.5}}}'}, "'n' (records produced) is 1.5"),
        ({b"d": b'{"run": 7, "p": {"0": {"a": [[1]]}}}'}, "'a' is [[1]], not a list of"),
        ({b"d": b'{"run": 7, "p": {"0": {"f": [[1, "2"]]}}}'}, "'f' is [[1, '2']], not a list"),
        ({b"d": b'{"run": 7, "p": {}, "lat": 3}'}, "'lat' is int"),
    ],
)
def test_it_names_what_is_wrong_with_a_malformed_acks_entry(fields, message):
    with pytest.raises(MalformedEntry) as raised:
        AckReport.from_fields(fields)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({b"d": b"\x00" * 37}, "'d' (processed records) holds 37 bytes, not whole 36-byte items"),
        ({b"d": b"", b"a": b"\x00" * 21}, "'a' (aborted reads) holds 21 bytes, not whole 20-byte"),
        ({b"d": b"", b"f": b"many"}, "'f' (foreign) is b'many', not a number"),
    ],
)
def test_it_names_what_is_wrong_with_a_malformed_ledger_entry(fields, message):
    with pytest.raises(MalformedEntry) as raised:
        LedgerEntry.from_fields(fields)
    assert message in str(raised.value)


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
