"""The explanation of an anomaly by the events around it (workers.engine.explain)."""

from __future__ import annotations

import pytest

from workers.engine.explain import (
    ACKS_BELOW_ALL,
    CONSUMER_SESSION,
    LEADER_CHANGE,
    NOTHING_SEEN,
    NOTHING_TEXT,
    OFFLINE,
    READ_UNCOMMITTED,
    RETENTION,
    RETRIES_WITHOUT_IDEMPOTENCE,
    TRUNCATION,
    UNCLEAN_ELECTION,
    Anomaly,
    explain,
    sentinel_event,
)

T0 = 1_800_000_000.0  # the first affected record's time


def event(kind, at, *, topic="t", partition=0, since=None, text=None, **extra):
    return {
        "at": at,
        "since": since if since is not None else at - 3,
        "kind": kind,
        "topic": topic,
        "partition": partition,
        "text": text or f"{kind} on {topic} p{partition}",
        **extra,
    }


UNCLEAN = event(
    "unclean-election",
    T0 - 5,
    text="t p0: broker 3 became leader from outside the last ISR seen [2] (epoch 7 → 8)",
)


def test_an_unclean_election_on_the_partition_explains_the_loss_in_words():
    lost = Anomaly("lost", "t", 0, T0, 40)
    leader = event("leader-change", T0 - 5, text="t p0 leader 2 → 3 (epoch 7 → 8)")
    got = explain(lost, [leader, UNCLEAN])
    assert got.cause == UNCLEAN_ELECTION
    assert got.evidence == UNCLEAN
    assert got.text.startswith("unclean leader election ")  # what the on-call engineer reads
    assert "broker 3 became leader from outside the last ISR seen [2]" in got.text
    assert got.text.endswith("(40 lost on p0)")
    assert "UTC" in got.text
    # Both considered, the unclean election first.
    assert [c["cause"] for c in got.candidates] == [UNCLEAN_ELECTION, LEADER_CHANGE]


def test_records_deleted_ahead_of_the_reader_explain_the_loss_as_retention():
    jump = event("log-start-jump", T0 + 4, text="t p0 log start 900 → 1234: 334 records deleted")
    got = explain(Anomaly("lost", "t", 0, T0, 334), [jump])
    assert got.cause == RETENTION
    assert "log start 900 → 1234" in got.text
    assert got.text.startswith("records deleted before they were read")


def test_a_truncated_log_explains_divergent_offsets():
    back = event("end-offset-back", T0 - 1, text="t p0 high watermark went back 1234 → 1194")
    assert explain(Anomaly("divergent", "t", 0, T0, 40), [back]).cause == TRUNCATION


@pytest.mark.parametrize(
    "other",
    [
        event("unclean-election", T0 - 5, partition=1),  # another partition
        event("unclean-election", T0 - 5, topic="other"),  # another topic
        event("unclean-election", T0 - 200),  # long before the window
        event("unclean-election", T0 + 60),  # long after it
        event("isr-expand", T0),  # explains no loss
    ],
)
def test_nothing_outside_the_partition_or_the_window_is_named_as_the_cause(other):
    got = explain(Anomaly("lost", "t", 0, T0, 3), [other])
    assert (got.cause, got.text, got.evidence) == (NOTHING_SEEN, NOTHING_TEXT, None)
    assert got.candidates == []


def test_duplicates_after_a_consumer_session_change_are_redelivery():
    session = event("consumer-session", T0 + 2, partition=None, text="consumer restarted")
    got = explain(
        Anomaly("duplicated", "t", 0, T0, 7),
        [session],
        producer={"enable.idempotence": "true", "acks": "all"},
    )
    assert got.cause == CONSUMER_SESSION
    assert "committed offset was behind the last processed record" in got.text


def test_duplicates_with_retries_and_no_idempotence_are_explained_by_the_configuration():
    producer = {"enable.idempotence": "false", "acks": "all", "retries": "5"}
    got = explain(Anomaly("duplicated", "t", 2, T0, 3), [], producer=producer)
    assert got.cause == RETRIES_WITHOUT_IDEMPOTENCE
    assert got.evidence is None
    assert got.text.startswith("producer retries without idempotence")
    # The same duplicates from an idempotent producer: nothing is invented.
    idempotent = {**producer, "enable.idempotence": "true"}
    assert explain(Anomaly("duplicated", "t", 2, T0, 3), [], producer=idempotent).cause == (
        NOTHING_SEEN
    )


def test_an_event_on_the_partition_beats_the_configuration_and_the_topic():
    producer = {"enable.idempotence": "false", "retries": "5"}
    on_topic = event("consumer-session", T0, partition=None)
    on_partition = event("consumer-session", T0 + 1, partition=0)
    got = explain(Anomaly("duplicated", "t", 0, T0, 3), [on_topic, on_partition], producer=producer)
    assert got.evidence == on_partition
    assert [c["place"] for c in got.candidates] == ["partition", "topic", "client"]


def test_the_nearer_of_two_events_of_one_kind_wins_and_one_spanning_the_record_is_nearest():
    far = event("leader-change", T0 - 50, since=T0 - 52)
    spanning = event("leader-change", T0 + 2, since=T0 - 2)  # happened between its samples
    assert explain(Anomaly("lost", "t", 0, T0, 1), [far, spanning]).evidence == spanning


def test_a_read_uncommitted_consumer_explains_an_aborted_read():
    got = explain(
        Anomaly("aborted_read", "t", 0, T0, 2), [], consumer={"isolation.level": "read_uncommitted"}
    )
    assert got.cause == READ_UNCOMMITTED


def test_a_stall_is_explained_by_the_partition_going_offline():
    offline = event("offline", T0 + 1, text="t p0 offline: no leader (was 2)")
    assert explain(Anomaly("stalled", "t", 0, T0, 0), [offline]).cause == OFFLINE


def test_a_stall_is_explained_by_its_partition_going_offline_while_it_lasts():
    """A stall lasts: the partition seen without a leader 20 s into it explains it better than
    a broker found unreachable as it began (the whole cluster's event)."""
    unreachable = event("broker-unreachable", T0 + 1, topic=None, partition=None)
    offline = event("offline", T0 + 20, text="t p0 offline: no leader (was 1)")
    got = explain(Anomaly("stalled", "t", 0, T0), [unreachable, offline], after_s=40)
    assert got.cause == OFFLINE
    assert got.text.endswith("(stalled on p0)")
    # Records are different: a loss at T0 is nearer the broker going away than the later event.
    lost = explain(Anomaly("lost", "t", 0, T0, 5), [unreachable, offline], after_s=40)
    assert [c["kind"] for c in lost.candidates] == ["broker-unreachable", "offline"]


def test_acks_below_all_explain_a_loss_only_when_a_leader_failed_or_moved():
    """acks=0 or 1 loses records when their leader fails: without a leader event in the window
    the configuration explains nothing (an at-most-once consumer's restart past its commit
    does), with one it names the configuration."""
    producer = {"acks": "0"}
    restart = event("consumer-session", T0 + 3, partition=None)
    got = explain(Anomaly("lost", "t", 0, T0, 5), [restart], producer=producer)
    assert got.cause == CONSUMER_SESSION
    assert got.text.startswith("the consumer restarted after committing records")
    moved = event("leader-change", T0 + 8, text="t p0 leader 3 → 1")
    got = explain(Anomaly("lost", "t", 0, T0, 5), [moved], producer=producer)
    assert got.cause == ACKS_BELOW_ALL and got.text.startswith("producer acks=0: ")
    assert explain(Anomaly("lost", "t", 0, T0, 5), [], producer=producer).cause == NOTHING_SEEN


def test_a_consumers_first_start_explains_no_duplicate():
    """The sentinel's consumer started before anything was processed (``fresh``): it cannot
    have re-read anything, so the producer's retries explain the duplicates, not that start."""
    first = {
        "ts": T0 - 10,
        "kind": "consumer-session",
        "message": "consumer started",
        "fresh": True,
    }
    retries = {"ts": T0 + 2, "since": T0 - 3, "kind": "producer-retries", "message": "5 retried"}
    events = [sentinel_event(first, "t"), sentinel_event(retries, "t")]
    got = explain(Anomaly("duplicated", "t", 0, T0, 2), events)
    assert got.cause == RETRIES_WITHOUT_IDEMPOTENCE
    assert [c["kind"] for c in got.candidates] == ["producer-retries"]
    restart = {**first, "fresh": False}
    got = explain(Anomaly("duplicated", "t", 0, T0, 2), [sentinel_event(restart, "t")])
    assert got.cause == CONSUMER_SESSION


def test_a_cluster_wide_event_counts_for_every_topic():
    unreachable = event("broker-unreachable", T0 - 1, topic=None, partition=None)
    got = explain(Anomaly("stalled", "t", 0, T0, 0), [unreachable])
    assert got.candidates[0]["place"] == "cluster"


def test_a_sentinel_event_becomes_an_event_on_its_topic():
    doc = {"ts": T0 - 1, "kind": "fenced", "message": "producer was fenced"}
    assert sentinel_event(doc, "t") == {
        "at": T0 - 1,
        "kind": "fenced",
        "topic": "t",
        "partition": None,
        "text": "producer was fenced",
    }
    assert explain(Anomaly("duplicated", "t", 0, T0, 1), [sentinel_event(doc, "t")]).cause == (
        "fenced"
    )


def test_an_explanation_is_plain_json():
    import json

    got = explain(Anomaly("lost", "t", 0, T0, 40), [UNCLEAN]).to_dict()
    assert json.loads(json.dumps(got)) == got
