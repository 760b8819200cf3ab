"""The scenario lab's explanations of what its probes counted (explain.explain_fault)."""

from __future__ import annotations

from workers.engine import explain

T0 = 1_796_000_000.0


def session(at: float) -> dict:
    doc = {"ts": at, "kind": "consumer-session", "message": "consumer started (session 1f)"}
    return explain.sentinel_event(doc, "t")


def test_each_counted_anomaly_is_explained_on_the_partition_that_counted_most():
    why = explain.explain_fault(
        {"duplicated": 40, "lost": 0, "processed": 900, "reordered": 3},
        {"0": {"duplicated": 10}, "2": {"duplicated": 30}},
        "t",
        T0,
        [session(T0 + 4)],
        {"acks": "all", "enable.idempotence": "true", "sasl.password": "secret"},
        {"enable.auto.commit": "false"},
    )
    assert list(why) == ["duplicated"]  # nothing else explainable was counted
    assert why["duplicated"]["cause"] == explain.CONSUMER_SESSION
    assert why["duplicated"]["partition"] == 2
    assert why["duplicated"]["candidates"][0]["cause"] == explain.CONSUMER_SESSION
    # 40 in all, 30 of them on p2 (not "40 on p2").
    assert why["duplicated"]["text"].endswith("(40 duplicated, 30 of them on p2)")
    assert "secret" not in str(why)


def test_a_loss_after_a_consumer_restart_says_what_the_restart_did_to_it():
    """At-most-once committed a batch, then crashed: the loss is the records between."""
    why = explain.explain_fault(
        {"lost": 12}, {"1": {"lost": 12}}, "t", T0, [session(T0 + 3)], {}, {}
    )
    assert why["lost"]["cause"] == explain.CONSUMER_SESSION
    assert why["lost"]["text"].startswith("the consumer restarted after committing records")


def test_events_up_to_half_a_minute_after_the_fault_explain_it_and_later_ones_do_not():
    late = explain.sentinel_event(
        {"ts": T0 + 45, "kind": "consumer-session", "message": "consumer started"}, "t"
    )
    why = explain.explain_fault({"duplicated": 5}, {}, "t", T0, [late], {}, {})
    assert why["duplicated"]["cause"] == explain.NOTHING_SEEN
    assert why["duplicated"]["partition"] is None
    in_time = explain.sentinel_event({**{"ts": T0 + 25}, "kind": "run", "message": "run 2"}, "t")
    assert (
        explain.explain_fault({"duplicated": 5}, {}, "t", T0, [in_time], {}, {})["duplicated"][
            "cause"
        ]
        == explain.PRODUCER_RESTART
    )


def test_what_followed_the_fault_explains_it_as_well_as_what_came_before():
    """The lab anchors an anomaly at its fault: the crashed consumer's restart 3 s after it
    explains the duplicates better than the producer's restart 10 s before; a producer's first
    run (``fresh``) explains nothing at all."""
    before = explain.sentinel_event({"ts": T0 - 10, "kind": "run", "message": "run 2"}, "t")
    first = explain.sentinel_event(
        {"ts": T0 - 20, "kind": "run", "message": "run 1", "fresh": True}, "t"
    )
    why = explain.explain_fault(
        {"duplicated": 7}, {}, "t", T0, [first, before, session(T0 + 3)], {}, {}
    )
    assert why["duplicated"]["cause"] == explain.CONSUMER_SESSION
    why = explain.explain_fault({"duplicated": 7}, {}, "t", T0, [first], {}, {})
    assert why["duplicated"]["cause"] == explain.NOTHING_SEEN
