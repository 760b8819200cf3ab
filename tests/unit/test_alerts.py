"""Alert conditions and integration bodies, pure."""

from __future__ import annotations

from workers.engine import alerts
from workers.engine.alerts import Notice

STATUS = {"semantic": "at-most-once", "cluster": "local", "topic": "t", "verdict": "HOLDING"}


def test_it_counts_only_forbidden_increases_and_starts_afresh_after_a_state_loss():
    before = {"lost": 5, "duplicated": 1, "aborted_read": 0}
    assert alerts.forbidden_increase("at-most-once", {"lost": 9, "duplicated": 1}, before) == {}
    assert alerts.forbidden_increase("at-least-once", {"lost": 9}, before) == {"lost": 4}
    # Totals went down: the state was lost; what is there now is new.
    assert alerts.forbidden_increase("exactly-once", {"duplicated": 2}, {"duplicated": 7}) == {
        "duplicated": 2
    }


def test_it_says_where_and_since_when_in_words():
    reason = alerts.violation_reason(
        {**STATUS, "semantic": "at-least-once", "topic": "sentinel.at-least-once"},
        {"lost": 1037},
        {"2": {"lost": 1000}, "10": {"lost": 30}, "3": {"lost": 7}},
        52931.0,
    )
    assert reason == (
        "at-least-once on cluster local, topic sentinel.at-least-once: 1,037 acknowledged "
        "records lost on partitions 2, 3, 10 since 14:42:11 UTC"
    )


def test_p99_fires_only_after_every_one_of_the_consecutive_minutes():
    assert alerts.p99_condition(STATUS, [900.0, 1200.0, 1300.0], 3, 1000).firing is False
    assert alerts.p99_condition(STATUS, [1100.0, None, 1300.0], 3, 1000).firing is False
    assert alerts.p99_condition(STATUS, [1200.0, 1300.0], 3, 1000).firing is False
    fired = alerts.p99_condition(STATUS, [800.0, 1100.0, 1200.0, 1300.0], 3, 1000)
    assert fired.firing
    assert fired.reason.endswith(
        "above the SLO of 1,000 ms for 3 consecutive minutes (1,100, 1,200, 1,300 ms)"
    )


def test_loss_rate_compares_lost_to_acked_over_the_window():
    def window(acked, lost):
        return {**STATUS, "window": {"counts": {"acked": acked, "lost": lost}}}

    assert alerts.loss_rate_condition(window(1000, 10), 1.0).firing is False
    assert alerts.loss_rate_condition(window(0, 0), 1.0).firing is False
    fired = alerts.loss_rate_condition(window(1000, 11), 1.0)
    assert fired.firing and "1.10 % of acknowledged records lost" in fired.reason


def test_stalled_and_degraded_hold_for_their_duration_first():
    stalled = {**STATUS, "verdict": "STALLED", "reasons": ["cluster unreachable"]}
    assert alerts.verdict_condition(alerts.STALLED, stalled, 100.0, 60, 159.0).firing is False
    assert alerts.verdict_condition(alerts.STALLED, stalled, 100.0, 60, 160.0).firing is True
    assert alerts.verdict_condition(alerts.DEGRADED, stalled, 100.0, 60, 999.0).firing is False


def trigger(**fields) -> Notice:
    """A violation's trigger notice, ``fields`` overriding its defaults."""
    base = {
        "event": alerts.TRIGGER,
        "dedup_key": "k",
        "rule": "violated",
        "severity": "critical",
        "cluster": "c",
        "topic": "t",
        "semantic": "at-least-once",
        "sentinel": "s",
        "summary": "",
        "started_at": 0.0,
    }
    return Notice(**{**base, **fields})


def test_the_pagerduty_summary_fits_its_limit_and_acknowledge_carries_no_payload():
    notice = trigger(semantic="at-most-once", summary="x" * 5000)
    body = alerts.pagerduty_body(notice, "key")
    assert len(body["payload"]["summary"]) == alerts.PAGERDUTY_SUMMARY_MAX
    ack = alerts.pagerduty_body(Notice(**{**notice.__dict__, "event": alerts.ACKNOWLEDGE}), "key")
    assert ack == {"routing_key": "key", "event_action": "acknowledge", "dedup_key": "k"}


def test_every_semantic_gets_the_rules_the_issue_names():
    kinds = {s: [r.kind for r in alerts.default_rules(s)] for s in ("at-most-once", "exactly-once")}
    assert kinds["at-most-once"] == [
        "violated",
        "stalled",
        "degraded",
        "p99_slo",
        "loss_rate",
        "lint_error",
    ]
    assert kinds["exactly-once"] == ["violated", "stalled", "degraded", "p99_slo", "lint_error"]
    stalled = alerts.default_rules("at-least-once")[1]
    assert (stalled.kind, stalled.for_s, stalled.severity) == ("stalled", 60, "critical")


def test_every_notification_body_carries_the_explanation_of_a_violation():
    notice = trigger(
        summary="40 lost",
        cause="retention",
        explanation="records deleted before they were read: log start 900 → 1234",
    )
    pagerduty = alerts.pagerduty_body(notice, "key")["payload"]["custom_details"]
    assert pagerduty["explanation"] == notice.explanation and pagerduty["cause"] == "retention"
    annotations = alerts.alertmanager_body(notice, "r")["alerts"][0]["annotations"]
    assert annotations["explanation"] == notice.explanation and annotations["cause"] == "retention"
    assert f"Why: {notice.explanation}" in alerts.slack_body(notice)["text"]
    # A notice without one (a state's incident) says nothing of a cause.
    plain = Notice(**{**notice.__dict__, "cause": "", "explanation": ""})
    assert "explanation" not in alerts.pagerduty_body(plain, "key")["payload"]["custom_details"]
    assert "explanation" not in alerts.alertmanager_body(plain, "r")["alerts"][0]["annotations"]
    assert "Why:" not in alerts.slack_body(plain)["text"]


def test_a_group_incidents_notice_names_the_group_and_its_partitions_in_every_body():
    parts = {"orders:2": {"count": 3, "first": 7, "last": 10}, "orders:0": {"count": 40, "first": 10, "last": 50}}  # fmt: skip
    notice = trigger(rule="group_lost", topic="orders", semantic="", sentinel="", group="billing",
                     summary="group billing on cluster c: 43 records lost", counts={"lost": 43},
                     partitions=parts)  # fmt: skip
    words = "orders:0 (40, offsets 10-50), orders:2 (3, offsets 7-10)"  # the largest first
    assert f"Partitions: {words}" in alerts.slack_body(notice)["text"]
    details = alerts.pagerduty_body(notice, "key")["payload"]["custom_details"]
    assert details == {"group": "billing", "partitions": parts, "counts": {"lost": 43}}
    body = alerts.alertmanager_body(notice, "r")
    alert = body["alerts"][0]
    assert alert["labels"]["group"] == "billing" and "sentinel" not in alert["labels"]
    assert alert["annotations"]["partitions"] == words
    assert body["groupLabels"] == {"alertname": "DeliverySentinelGroupLost", "cluster": "c",
                                   "group": "billing"}  # fmt: skip
    # A sentinel's notice is as it was: no group label, no partitions.
    plain = alerts.alertmanager_body(trigger(), "r")
    assert "group" not in plain["alerts"][0]["labels"]
    assert "partitions" not in plain["alerts"][0]["annotations"]
    assert plain["groupLabels"] == {"alertname": "DeliverySentinelViolated", "sentinel": "s"}
