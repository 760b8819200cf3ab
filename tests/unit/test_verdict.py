"""Verdict rules: each branch, and which one wins."""

from __future__ import annotations

import pytest

from workers.engine.verdict import Verdict, evaluate


def judge(semantic: str, error: str | None = None, **kwargs: object) -> tuple[Verdict, list[str]]:
    options: dict = {
        "latency_p99_ms": 20.0,
        "slo_p99_ms": 100.0,
        "last_progress_age_s": 1.0,
        "stall_after_s": 30.0,
        "thresholds": None,
    }
    totals = {k: kwargs.pop(k) for k in list(kwargs) if k not in options}
    options.update(kwargs)
    return evaluate(semantic, totals, error=error, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("semantic", ["at-most-once", "at-least-once", "exactly-once"])
def test_it_holds_when_nothing_happened(semantic: str) -> None:
    assert judge(semantic, processed=1000, acked=1000) == (Verdict.HOLDING, [])


@pytest.mark.parametrize(
    "semantic, counter",
    [
        ("at-most-once", "duplicated"),
        ("at-most-once", "aborted_read"),
        ("at-least-once", "lost"),
        ("exactly-once", "lost"),
        ("exactly-once", "duplicated"),
        ("exactly-once", "aborted_read"),
    ],
)
def test_it_is_violated_when_the_guarantee_breaks(semantic: str, counter: str) -> None:
    verdict, reasons = judge(semantic, **{counter: 1})
    assert verdict is Verdict.VIOLATED
    assert len(reasons) == 1 and semantic in reasons[0]


@pytest.mark.parametrize(
    "semantic, counter",
    [
        ("at-most-once", "lost"),
        ("at-least-once", "duplicated"),
        ("at-most-once", "reordered"),
        ("at-least-once", "reordered"),
        ("exactly-once", "reordered"),
        ("at-least-once", "late"),
        ("exactly-once", "phantom"),
    ],
)
def test_it_is_degraded_by_allowed_events_above_the_default_threshold(
    semantic: str, counter: str
) -> None:
    verdict, reasons = judge(semantic, **{counter: 1})
    assert verdict is Verdict.DEGRADED
    assert len(reasons) == 1


def test_it_holds_while_allowed_events_stay_within_their_thresholds() -> None:
    thresholds = {"lost": 5, "reordered": 10}
    assert judge("at-most-once", lost=5, reordered=10, thresholds=thresholds) == (
        Verdict.HOLDING,
        [],
    )
    verdict, _ = judge("at-most-once", lost=6, reordered=10, thresholds=thresholds)
    assert verdict is Verdict.DEGRADED


def test_it_never_lets_a_threshold_allow_a_violation() -> None:
    verdict, _ = judge("at-least-once", lost=1, thresholds={"lost": 100})
    assert verdict is Verdict.VIOLATED


def test_it_is_degraded_by_latency_over_the_slo() -> None:
    assert judge("at-least-once", latency_p99_ms=100.0)[0] is Verdict.HOLDING
    verdict, reasons = judge("at-least-once", latency_p99_ms=100.5)
    assert verdict is Verdict.DEGRADED
    assert "latency p99 100.5 ms over SLO 100 ms" in reasons


def test_it_holds_without_a_latency_sample() -> None:
    assert judge("exactly-once", latency_p99_ms=None)[0] is Verdict.HOLDING


def test_it_is_stalled_without_progress() -> None:
    verdict, reasons = judge("at-least-once", last_progress_age_s=30.0)
    assert verdict is Verdict.STALLED
    assert reasons == ["no progress for 30 s (stall after 30 s)"]


def test_it_is_not_stalled_without_progress_information() -> None:
    assert judge("at-least-once", last_progress_age_s=None)[0] is Verdict.HOLDING


def test_it_is_stalled_by_an_error_and_says_which() -> None:
    assert judge("exactly-once", error="cluster unreachable") == (
        Verdict.STALLED,
        ["cluster unreachable"],
    )


def test_it_prefers_stalled_over_degraded() -> None:
    verdict, reasons = judge("at-least-once", duplicated=3, error="sentinel down")
    assert verdict is Verdict.STALLED
    assert reasons == ["sentinel down"]


def test_it_prefers_violated_over_stalled_and_still_reports_the_stall() -> None:
    verdict, reasons = judge("exactly-once", duplicated=2, error="cluster unreachable")
    assert verdict is Verdict.VIOLATED
    assert reasons == ["2 duplicated under exactly-once", "cluster unreachable"]


def test_it_lists_every_reason() -> None:
    verdict, reasons = judge("at-most-once", lost=3, reordered=2, late=1, latency_p99_ms=500.0)
    assert verdict is Verdict.DEGRADED
    assert len(reasons) == 4


def test_it_refuses_an_unknown_semantic() -> None:
    with pytest.raises(ValueError):
        judge("maybe-once")


def test_it_refuses_an_unknown_threshold() -> None:
    with pytest.raises(ValueError):
        judge("at-least-once", thresholds={"lsot": 3})


def test_it_is_a_string_enum() -> None:
    assert Verdict.VIOLATED == "VIOLATED"
    assert str(Verdict.HOLDING) == "HOLDING"


def test_a_verdict_keeps_the_time_it_was_entered_until_it_changes() -> None:
    from workers.engine.documents import verdict_entered

    assert verdict_entered(None, "HOLDING", 100.0) == 100.0
    held = {"verdict": "HOLDING", "verdict_since": 100.0}
    assert verdict_entered(held, "HOLDING", 160.0) == 100.0
    assert verdict_entered(held, "VIOLATED", 160.0) == 160.0
    # A document from before the field, or one from the future (a clock gone back): now.
    assert verdict_entered({"verdict": "HOLDING"}, "HOLDING", 160.0) == 160.0
    assert (
        verdict_entered({"verdict": "HOLDING", "verdict_since": 999.0}, "HOLDING", 160.0) == 160.0
    )


def test_a_silent_checker_is_stalled_since_its_last_report() -> None:
    from workers.engine.documents import STALE_AFTER_S, as_read

    doc = {"verdict": "HOLDING", "verdict_since": 50.0, "reasons": [], "updated_at": 100.0}
    fresh = as_read(doc, 100.0 + STALE_AFTER_S)
    assert (fresh["verdict"], fresh["verdict_since"]) == ("HOLDING", 50.0)
    silent = as_read(doc, 100.0 + STALE_AFTER_S + 1)
    assert (silent["verdict"], silent["verdict_since"]) == ("STALLED", 100.0)
