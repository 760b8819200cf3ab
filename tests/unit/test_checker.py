"""Unit tests of each counter definition, with tiny hand-made delivery histories."""

from __future__ import annotations

import json

import pytest

from workers.engine.checker import COUNTERS, Checker

RUN = 1_000
NEWER = 2_000
P = 0


def counts(**nonzero: int) -> dict[str, int]:
    """The full counter dict: every counter 0 except those given."""
    unknown = set(nonzero) - set(COUNTERS)
    assert not unknown, unknown
    return {name: nonzero.get(name, 0) for name in COUNTERS}


def checker(grace: float = 10.0, runs: tuple[int, ...] = (RUN,)) -> Checker:
    c = Checker(grace_seconds=grace)
    for run in runs:
        c.register_run(run)
    return c


def sent(
    c: Checker, first: int, last: int, now: float = 0.0, run: int = RUN, part: int = P
) -> None:
    """Produce and ack seqs first..last."""
    c.produced(run, part, last - first + 1)
    c.acked(run, part, first, last, now)


def test_it_counts_in_order_processing_of_acked_records() -> None:
    c = checker()
    sent(c, 0, 999)
    for start in range(0, 1000, 100):
        c.processed(RUN, P, list(range(start, start + 100)), now=1.0)
    c.tick(100.0)
    assert c.totals() == counts(produced=1000, acked=1000, processed=1000)


def test_it_counts_records_in_flight_and_pending() -> None:
    c = checker()
    c.produced(RUN, P, 10)
    c.acked(RUN, P, 0, 5, now=0.0)
    c.failed(RUN, P, 6, 6, now=0.0)
    c.processed(RUN, P, [0, 1], now=0.0)
    assert c.totals() == counts(produced=10, acked=6, failed=1, processed=2, pending=4, in_flight=3)


def test_it_counts_every_reprocessing_as_a_duplicate() -> None:
    c = checker()
    sent(c, 0, 4)
    c.processed(RUN, P, [0, 1, 2, 3, 4], now=0.0)
    c.processed(RUN, P, [3, 4], now=1.0)  # a rewind after a crash before commit
    c.processed(RUN, P, [4], now=2.0)
    assert c.totals() == counts(produced=5, acked=5, processed=8, duplicated=3)


def test_it_counts_a_duplicate_of_a_record_processed_before_its_ack() -> None:
    c = checker()
    c.processed(RUN, P, [0, 0], now=0.0)
    c.acked(RUN, P, 0, 0, now=0.0)
    c.processed(RUN, P, [0], now=0.0)
    assert c.totals() == counts(acked=1, processed=3, duplicated=2, in_flight=-1)


def test_it_declares_a_skipped_record_lost_only_after_the_grace_period() -> None:
    c = checker(grace=10.0)
    sent(c, 0, 2)
    c.processed(RUN, P, [0, 2], now=5.0)  # 1 is skipped: passed at t=5
    c.tick(14.9)
    assert c.totals()["lost"] == 0
    assert c.totals()["pending"] == 1
    c.tick(15.0)
    assert c.totals() == counts(produced=3, acked=3, processed=2, lost=1)
    c.tick(100.0)  # declared once, not again
    assert c.totals()["lost"] == 1


def test_it_never_declares_the_last_records_lost_before_they_are_passed() -> None:
    c = checker(grace=1.0)
    sent(c, 0, 9)
    c.processed(RUN, P, [0, 1, 2], now=0.0)
    c.tick(1_000.0)  # nothing above 2 has been passed: 3..9 are still pending
    assert c.totals() == counts(produced=10, acked=10, processed=3, pending=7)


def test_it_never_loses_records_of_a_stalled_consumer() -> None:
    c = checker(grace=1.0)
    sent(c, 0, 99)
    for now in range(0, 3600, 60):
        c.tick(float(now))
    assert c.totals() == counts(produced=100, acked=100, pending=100)


def test_it_loses_a_record_acked_after_it_was_passed_at_the_next_tick() -> None:
    c = checker(grace=10.0)
    c.acked(RUN, P, 0, 0, now=0.0)
    c.acked(RUN, P, 2, 2, now=0.0)
    c.processed(RUN, P, [0, 2], now=0.0)  # 1 passed at t=0, not acked yet
    c.tick(20.0)
    assert c.totals()["lost"] == 0
    c.acked(RUN, P, 1, 1, now=30.0)  # its delivery report arrives late
    assert c.totals()["pending"] == 1
    c.tick(30.0)
    assert c.totals() == counts(acked=3, processed=2, lost=1, in_flight=-3)


def test_it_moves_a_lost_record_to_late_when_it_is_processed_after_all() -> None:
    c = checker(grace=1.0)
    sent(c, 0, 2)
    c.processed(RUN, P, [0, 2], now=0.0)
    c.tick(1.0)
    assert c.totals()["lost"] == 1
    c.processed(RUN, P, [1], now=2.0)
    assert c.totals() == counts(produced=3, acked=3, processed=3, late=1)
    c.processed(RUN, P, [1], now=3.0)  # and again: now a duplicate
    assert c.totals() == counts(produced=3, acked=3, processed=4, late=1, duplicated=1)


def test_it_counts_late_records_from_anywhere_in_a_lost_range() -> None:
    c = checker(grace=1.0)
    sent(c, 0, 9)
    c.processed(RUN, P, [0, 9], now=0.0)
    c.tick(1.0)  # 1..8 lost, one range
    c.processed(RUN, P, [5], now=2.0)
    c.processed(RUN, P, [2, 8, 1], now=2.0)
    c.processed(RUN, P, [5, 2], now=2.0)  # duplicates now
    assert c.totals() == counts(produced=10, acked=10, processed=8, lost=4, late=4, duplicated=2)
    c.processed(RUN, P, [3, 4, 6, 7], now=3.0)
    assert c.totals() == counts(produced=10, acked=10, processed=12, late=8, duplicated=2)


def test_it_counts_a_reorder_and_not_a_loss_plus_a_duplicate() -> None:
    c = checker(grace=10.0)
    sent(c, 0, 3)
    c.processed(RUN, P, [0, 2, 1, 3], now=0.0)
    c.tick(100.0)
    assert c.totals() == counts(produced=4, acked=4, processed=4, reordered=1)


def test_it_counts_a_reorder_across_batches_within_the_grace_period() -> None:
    c = checker(grace=10.0)
    sent(c, 0, 4)
    c.processed(RUN, P, [0, 3, 4], now=0.0)
    c.tick(9.0)
    c.processed(RUN, P, [1, 2], now=9.5)
    c.tick(100.0)
    assert c.totals() == counts(produced=5, acked=5, processed=5, reordered=2)


def test_it_counts_a_phantom_processed_before_its_failure_report() -> None:
    c = checker()
    c.produced(RUN, P, 2)
    c.acked(RUN, P, 0, 0, now=0.0)
    c.processed(RUN, P, [0, 1], now=0.0)
    c.failed(RUN, P, 1, 1, now=1.0)
    assert c.totals() == counts(produced=2, acked=1, failed=1, processed=2, phantom=1)


def test_it_counts_a_phantom_processed_after_its_failure_report() -> None:
    c = checker()
    c.produced(RUN, P, 2)
    c.acked(RUN, P, 0, 0, now=0.0)
    c.failed(RUN, P, 1, 1, now=0.0)
    c.processed(RUN, P, [0, 1], now=1.0)
    assert c.totals() == counts(produced=2, acked=1, failed=1, processed=2, phantom=1)


def test_it_counts_a_phantom_that_is_also_reordered() -> None:
    c = checker()
    c.failed(RUN, P, 0, 0, now=0.0)
    c.acked(RUN, P, 1, 5, now=0.0)
    c.processed(RUN, P, [1, 2, 3, 4, 5], now=0.0)
    c.processed(RUN, P, [0], now=1.0)
    assert c.totals() == counts(
        acked=5, failed=1, processed=6, phantom=1, reordered=1, in_flight=-6
    )


def test_it_never_counts_a_failed_record_as_lost() -> None:
    c = checker(grace=1.0)
    c.produced(RUN, P, 3)
    c.acked(RUN, P, 0, 0, now=0.0)
    c.failed(RUN, P, 1, 1, now=0.0)
    c.acked(RUN, P, 2, 2, now=0.0)
    c.processed(RUN, P, [0, 2], now=0.0)
    c.tick(100.0)
    assert c.totals() == counts(produced=3, acked=2, failed=1, processed=2)


def test_it_lets_the_first_delivery_report_win() -> None:
    c = checker(grace=1.0)
    c.acked(RUN, P, 0, 1, now=0.0)
    c.failed(RUN, P, 1, 2, now=0.0)  # 1 was acked first: ignored for 1
    c.acked(RUN, P, 2, 2, now=0.0)  # 2 failed first: ignored
    c.acked(RUN, P, 0, 0, now=0.0)  # a repeated report: ignored
    c.processed(RUN, P, [0, 3], now=0.0)
    c.tick(5.0)
    assert c.totals() == counts(acked=2, failed=1, processed=1 + 1, lost=1, in_flight=-3)


def test_it_loses_an_older_runs_tail_once_a_newer_run_is_processed() -> None:
    c = checker(grace=10.0, runs=(RUN, NEWER))
    sent(c, 0, 4, run=RUN)
    c.processed(RUN, P, [0, 1], now=0.0)
    c.tick(100.0)
    assert c.totals()["lost"] == 0  # the old run's consumer is merely slow
    sent(c, 0, 1, run=NEWER)
    c.processed(NEWER, P, [0], now=100.0)  # the consumer moved on to the new run
    c.tick(109.0)
    assert c.totals()["lost"] == 0
    c.tick(110.0)
    assert c.totals() == counts(produced=7, acked=7, processed=3, lost=3, pending=1)
    # Other partitions of the old run are not passed by it.
    assert c.partition_counts()[P]["lost"] == 3


def test_it_passes_an_older_run_only_on_the_same_partition() -> None:
    c = checker(grace=1.0, runs=(RUN, NEWER))
    sent(c, 0, 1, run=RUN, part=1)
    c.processed(NEWER, 0, [0], now=0.0)
    c.tick(100.0)
    assert c.partition_counts()[1]["lost"] == 0
    assert c.partition_counts()[1]["pending"] == 2


def test_it_passes_an_older_run_whose_reports_arrive_after_the_newer_run() -> None:
    c = checker(grace=1.0, runs=(RUN, NEWER))
    c.processed(NEWER, P, [0], now=0.0)
    c.acked(RUN, P, 0, 2, now=5.0)  # the old run's delivery reports, late
    c.tick(5.0)
    assert c.totals()["lost"] == 3


def test_it_counts_processing_of_an_unregistered_run_as_foreign_and_nothing_else() -> None:
    c = checker(grace=1.0)
    sent(c, 0, 1, run=RUN)
    c.processed(NEWER, P, [0, 1, 2], now=0.0)  # NEWER never registered
    c.tick(100.0)
    assert c.totals() == counts(produced=2, acked=2, foreign=3, pending=2)


def test_it_counts_foreign_values_and_aborted_reads_per_partition() -> None:
    c = checker()
    c.foreign()
    c.foreign(2, partition=3)
    c.aborted_read(RUN, 3, 4)
    assert c.totals() == counts(foreign=3, aborted_read=4)
    assert c.partition_counts() == {3: counts(foreign=2, aborted_read=4)}


def test_it_registers_a_run_from_its_delivery_reports() -> None:
    c = Checker()
    c.acked(RUN, P, 0, 0, now=0.0)
    c.processed(RUN, P, [0], now=0.0)
    assert c.runs() == [RUN]
    assert c.totals() == counts(acked=1, processed=1, in_flight=-1)


def test_it_sums_counters_per_partition_over_runs() -> None:
    c = checker(runs=(RUN, NEWER))
    sent(c, 0, 1, run=RUN, part=0)
    sent(c, 0, 2, run=NEWER, part=0)
    sent(c, 0, 3, run=NEWER, part=1)
    c.processed(RUN, 0, [0, 1], now=0.0)
    c.processed(NEWER, 1, [0, 0], now=0.0)
    assert c.partition_counts() == {
        0: counts(produced=5, acked=5, processed=2, pending=3),
        1: counts(produced=4, acked=4, processed=2, duplicated=1, pending=3),
    }


def test_it_forgets_a_run_but_keeps_its_cumulative_counts() -> None:
    c = checker(grace=1.0, runs=(RUN, NEWER))
    sent(c, 0, 3, run=RUN)
    c.processed(RUN, P, [0, 0, 2], now=0.0)
    c.tick(1.0)  # 1 lost; 3 pending
    c.forget_run(RUN)
    assert c.runs() == [NEWER]
    assert c.totals() == counts(produced=4, acked=4, processed=3, duplicated=1, lost=1)
    # Afterwards its reports are ignored and its processings are foreign.
    c.acked(RUN, P, 4, 9, now=2.0)
    c.processed(RUN, P, [3], now=2.0)
    assert c.totals() == counts(produced=4, acked=4, processed=3, duplicated=1, lost=1, foreign=1)
    assert c.snapshot()["keys"] == []


def test_it_continues_identically_after_a_snapshot_restore() -> None:
    def history(restore_at: int | None) -> dict[str, int]:
        c = checker(grace=2.0, runs=(RUN, NEWER))
        steps = [
            lambda c: sent(c, 0, 9),
            lambda c: c.failed(RUN, P, 10, 10, now=0.0),
            lambda c: c.processed(RUN, P, [0, 1, 3, 2, 5], now=1.0),
            lambda c: c.tick(3.0),  # 4 lost
            lambda c: c.processed(RUN, P, [10, 5], now=3.5),  # phantom, duplicate
            lambda c: c.tick(6.0),  # 6..9 lost too
            lambda c: c.processed(RUN, P, [4, 6], now=7.0),  # late
            lambda c: c.processed(NEWER, P, [0], now=8.0),
            lambda c: c.acked(RUN, P, 11, 12, now=8.0),
            lambda c: c.tick(10.0),  # the newer run passed 11, 12
        ]
        for i, step in enumerate(steps):
            if i == restore_at:
                c = Checker.restore(json.loads(json.dumps(c.snapshot())))
            step(c)
        return c.totals()

    expected = counts(
        produced=10,
        acked=12,
        failed=1,
        processed=10,
        duplicated=1,
        lost=5,
        late=2,
        phantom=1,
        reordered=1,
        in_flight=-3,
    )
    assert history(None) == expected
    for restore_at in range(10):
        assert history(restore_at) == expected, restore_at


def test_it_snapshots_to_plain_json() -> None:
    c = checker(grace=1.0)
    sent(c, 0, 5)
    c.processed(RUN, P, [0, 2], now=0.0)
    doc = c.snapshot()
    assert json.loads(json.dumps(doc)) == doc
    assert Checker.restore(doc).snapshot() == doc


def test_it_refuses_a_snapshot_of_another_format() -> None:
    with pytest.raises(ValueError):
        Checker.restore({"format": 99})


def test_it_keeps_state_small_for_in_order_traffic() -> None:
    c = checker(grace=1.0)
    for batch in range(2000):
        first = batch * 500
        c.acked(RUN, P, first, first + 499, now=batch * 0.01)
        c.processed(RUN, P, list(range(first, first + 500)), now=batch * 0.01)
        if batch % 10 == 0:
            c.tick(batch * 0.01)
    (key,) = c.snapshot()["keys"]
    assert key["starts"] == [1_000_000]  # one "unknown from here on" segment
    assert key["lost_below"] == [] and key["fail_below"] == []
    assert c.totals() == counts(acked=1_000_000, processed=1_000_000, in_flight=-1_000_000)


def test_it_keeps_state_small_when_processing_precedes_delivery_reports() -> None:
    c = checker(grace=1.0)
    for batch in range(200):
        first = batch * 100
        c.processed(RUN, P, list(range(first, first + 100)), now=float(batch))
        c.acked(RUN, P, first, first + 99, now=float(batch))
        c.tick(float(batch))
    (key,) = c.snapshot()["keys"]
    assert key["starts"] == [20_000]
    assert len(key["passes"]) <= 2


def test_it_compacts_losses_into_ranges() -> None:
    c = checker(grace=1.0)
    sent(c, 0, 9_999)
    # The consumer skips 100..199 and every 1000th record.
    seqs = [s for s in range(10_000) if not (100 <= s < 200 or s % 1000 == 999)]
    c.processed(RUN, P, seqs, now=0.0)
    c.tick(1.0)
    (key,) = c.snapshot()["keys"]
    assert c.totals()["lost"] == 100 + 9  # 100..199 and 999, 1999, ..., 8999
    assert c.totals()["pending"] == 1  # 9999: nothing above it was processed
    assert len(key["lost_below"]) == 1 + 9
    assert key["starts"] == [9_999, 10_000]


def test_it_treats_a_clock_going_backwards_as_the_latest_time() -> None:
    c = checker(grace=10.0)
    sent(c, 0, 2)
    c.tick(100.0)
    c.processed(RUN, P, [0, 2], now=50.0)  # taken as t=100
    c.tick(105.0)
    assert c.totals()["lost"] == 0
    c.tick(110.0)
    assert c.totals()["lost"] == 1


@pytest.mark.parametrize(
    ("first", "last"),
    [(-1, 3), (5, 4), (0, 1 << 64)],
)
def test_it_rejects_bad_sequence_ranges(first: int, last: int) -> None:
    c = checker()
    with pytest.raises(ValueError):
        c.acked(RUN, P, first, last, now=0.0)


def test_it_rejects_negative_sequence_numbers_without_counting_anything() -> None:
    c = checker()
    with pytest.raises(ValueError):
        c.processed(RUN, P, [3, -1], now=0.0)
    assert c.totals() == counts()


def test_it_accepts_ranges_and_tuples_as_batches() -> None:
    c = checker()
    sent(c, 0, 9)
    c.processed(RUN, P, range(0, 5), now=0.0)
    c.processed(RUN, P, (5, 6, 7), now=0.0)
    c.processed(RUN, P, (9, 8), now=0.0)
    assert c.totals() == counts(produced=10, acked=10, processed=10, reordered=1)
