"""Latency histogram: percentiles within the relative error, merging, JSON and compact round
trips; recent latency per partition in bounded memory."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.engine.latency import RELATIVE_ERROR, LatencyHistogram, RecentLatency


def exact_percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the definition LatencyHistogram.percentile documents."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def assert_close(got: float | None, want: float) -> None:
    assert got is not None
    assert abs(got - want) <= RELATIVE_ERROR * want + 1e-12, (got, want)


def test_it_is_empty_at_first() -> None:
    hist = LatencyHistogram()
    assert hist.percentile(50) is None
    assert hist.summary() == {"p50": None, "p99": None, "max": None, "count": 0}


@pytest.mark.parametrize("seed", range(5))
def test_it_reports_percentiles_within_the_relative_error(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(1.0, 2.0) for _ in range(5000)]
    values = [min(max(v, 0.01), 3_600_000.0) for v in values]
    hist = LatencyHistogram()
    hist.record_many(values)
    for q in (1, 10, 25, 50, 75, 90, 99, 99.9):
        assert_close(hist.percentile(q), exact_percentile(values, q))
    assert hist.percentile(0) == min(values)
    assert hist.percentile(100) == max(values)
    assert hist.count == 5000
    assert hist.sum == pytest.approx(sum(values))


@settings(max_examples=200)
@given(values=st.lists(st.floats(0.01, 3_600_000.0), min_size=1, max_size=200), q=st.floats(0, 100))
def test_it_stays_within_the_relative_error_for_any_data(values: list[float], q: float) -> None:
    hist = LatencyHistogram()
    hist.record_many(values)
    assert_close(hist.percentile(q), exact_percentile(values, q))


def test_it_summarises_p50_p99_max_and_count() -> None:
    hist = LatencyHistogram()
    hist.record_many([1.0] * 98 + [50.0, 200.0])
    summary = hist.summary()
    assert summary["count"] == 100
    assert summary["max"] == 200.0
    assert_close(summary["p50"], 1.0)
    assert_close(summary["p99"], 50.0)


def test_it_merges_to_the_same_histogram_as_recording_everything() -> None:
    rng = random.Random(7)
    a_values = [rng.uniform(0.5, 50) for _ in range(1000)]
    b_values = [rng.uniform(10, 5000) for _ in range(1000)]
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    a.record_many(a_values)
    b.record_many(b_values)
    both.record_many(a_values + b_values)
    a.merge(b)
    assert a.count == both.count
    assert a.min == both.min and a.max == both.max
    assert a.sum == pytest.approx(both.sum)
    for q in (1, 50, 90, 99):
        assert a.percentile(q) == both.percentile(q)


def test_it_merges_an_empty_histogram_as_a_no_op() -> None:
    hist = LatencyHistogram()
    hist.record(3.0)
    hist.merge(LatencyHistogram())
    assert hist.summary() == {"p50": 3.0, "p99": 3.0, "max": 3.0, "count": 1}


def test_it_round_trips_through_json() -> None:
    hist = LatencyHistogram()
    hist.record_many([0.02, 1.5, 1.5, 300.0, 4_000_000.0])
    doc = json.loads(json.dumps(hist.to_dict()))
    again = LatencyHistogram.from_dict(doc)
    assert again == hist
    assert again.summary() == hist.summary()


def test_it_keeps_memory_bounded() -> None:
    hist = LatencyHistogram()
    hist.record_many(10 ** (i / 1000) for i in range(-2000, 6600))  # 0.01 ms .. ~1 h
    assert len(hist.to_dict()["buckets"]) < 2000


@settings(max_examples=300)
@given(values=st.lists(st.floats(-10.0, 8_000_000.0), max_size=100))
def test_record_many_builds_the_same_histogram_as_record(values: list[float]) -> None:
    one_by_one, batched = LatencyHistogram(), LatencyHistogram()
    for value in values:
        one_by_one.record(value)
    batched.record_many(values)
    assert batched.to_dict()["buckets"] == one_by_one.to_dict()["buckets"]
    assert (batched.count, batched.min, batched.max) == (
        one_by_one.count,
        one_by_one.min,
        one_by_one.max,
    )
    assert batched.sum == pytest.approx(one_by_one.sum)


@settings(max_examples=300)
@given(
    values=st.lists(
        st.floats(0.64, 3_600_000.0)
        | st.integers(64, 400_000).map(lambda u: u / 100.0)  # on whole units: bucket bounds
        | st.integers(64, 400_000).map(lambda u: math.nextafter(u / 100.0, 0.0)),
        min_size=1,
        max_size=300,
    )
)
def test_record_many_counts_by_whole_unit_where_bounds_are_whole_units(values: list[float]) -> None:
    """The producer's case (every latency at least 0.64 ms): counted by whole unit, the same
    histogram as one by one, values just below a bucket's bound included."""
    one_by_one, batched = LatencyHistogram(), LatencyHistogram()
    for value in values:
        one_by_one.record(value)
    batched.record_many(values)
    assert batched.to_dict()["buckets"] == one_by_one.to_dict()["buckets"]
    assert batched.count == len(values)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_record_many_refuses_non_finite_values_and_records_nothing(bad: float) -> None:
    hist = LatencyHistogram()
    with pytest.raises(ValueError):
        hist.record_many([1.0, bad, 2.0])
    assert hist.count == 0 and hist.to_dict()["buckets"] == []


def test_it_clamps_out_of_range_values_but_keeps_them_exact_in_min_and_max() -> None:
    hist = LatencyHistogram()
    hist.record_many([-3.0, 0.001, 7_200_000.0])
    assert hist.min == 0.0
    assert hist.max == 7_200_000.0
    assert hist.percentile(100) == 7_200_000.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_it_refuses_non_finite_values(bad: float) -> None:
    with pytest.raises(ValueError):
        LatencyHistogram().record(bad)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_it_refuses_percentiles_outside_0_to_100(q: float) -> None:
    hist = LatencyHistogram()
    hist.record(1.0)
    with pytest.raises(ValueError):
        hist.percentile(q)


def test_it_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError):
        LatencyHistogram.from_dict({"v": 2})


@settings(max_examples=200)
@given(values=st.lists(st.floats(-10.0, 8_000_000.0), max_size=200))
def test_it_round_trips_through_the_compact_form(values: list[float]) -> None:
    hist = LatencyHistogram()
    hist.record_many(values)
    text = hist.to_compact()
    again = LatencyHistogram.from_compact(json.loads(json.dumps(text)))
    assert again == hist  # count, min, max and sum exactly, every bucket
    assert LatencyHistogram.load(text) == hist
    assert LatencyHistogram.load(hist.to_dict()) == hist  # the older form still reads


def test_it_takes_a_fraction_of_the_json_size_in_the_compact_form() -> None:
    hist = LatencyHistogram()
    rng = random.Random(7)
    hist.record_many(rng.lognormvariate(2.0, 0.6) for _ in range(30))  # a default sentinel's second
    json_size = len(json.dumps(hist.to_dict(), separators=(",", ":")))
    assert len(hist.to_compact()) < json_size / 2


@pytest.mark.parametrize("bad", ["", "2:", "2:!!!", "1:AA", "2:AQ", "2:Ag" + "A" * 40, {"v": 9}])
def test_it_refuses_a_corrupt_compact_form(bad: object) -> None:
    with pytest.raises(ValueError):
        LatencyHistogram.load(bad)  # type: ignore[arg-type]


def test_it_keeps_recent_latency_per_key_over_half_to_one_span_and_forgets_the_rest() -> None:
    recent = RecentLatency(60.0)
    recent.record_many(0, [5.0], 1000.0)
    recent.record_many(1, [100.0], 1010.0)
    recent.record_many(0, [7.0], 1035.0)  # a new generation began at 1030 or later
    hists = recent.histograms(1040.0)
    assert (hists[0].count, hists[0].max, hists[1].max) == (2, 7.0, 100.0)
    # At 1070 the generation of 1000-1030 is older than a span: only 1035's record is left.
    hists = recent.histograms(1070.0)
    assert list(hists) == [0] and (hists[0].count, hists[0].max) == (1, 7.0)
    assert recent.histograms(1200.0) == {}  # nothing recorded for a whole span
    # Memory: at most two histograms per key however many records went in.
    for t in range(2000):
        recent.record_many(t % 3, [float(t % 97) + 1], 2000.0 + t / 10)
    assert len(recent.newer) <= 3 and len(recent.older) <= 3
