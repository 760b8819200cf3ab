"""Cluster events from two samples (workers/engine/clusterevents.py): one test per kind, the
unclean election told from a clean one, nothing from an unchanged cluster or from what was not
known."""

from __future__ import annotations

import copy

import pytest

from workers.engine.clusterevents import KINDS, carry, diff, severity

T = "sentinel.at-least-once"


def part(leader=1, epoch=4, replicas=(1, 2, 3), isr=(1, 2, 3), start=0, end=100):
    return {"leader": leader, "epoch": epoch, "replicas": list(replicas), "isr": list(isr),
            "start": start, "end": end}  # fmt: skip


def sample(at=100.0, partitions=None, *, min_isr=2, unclean=False, topic_id="tid", brokers=None):
    return {
        "at": at,
        "brokers": brokers if brokers is not None else {
            b: {"host": f"h:{b}", "reachable": True, "since": None, "error": None, "in_metadata": True}
            for b in ("1", "2", "3")
        },
        "topics": {
            T: {
                "id": topic_id,
                "min_isr": min_isr,
                "unclean": unclean,
                "partitions": partitions if partitions is not None else {"0": part(), "1": part(2)},
            }
        },
    }  # fmt: skip


def later(before, at=103.0, **changes):
    """``before`` ``at`` a later time with partition 0's fields changed."""
    after = copy.deepcopy(before)
    after["at"] = at
    after["topics"][T]["partitions"]["0"].update(changes)
    return after


def kinds(events):
    return [e["kind"] for e in events]


def test_no_events_from_an_unchanged_cluster_nor_from_a_first_sample():
    first = sample()
    assert diff(None, first) == []
    assert diff(first, later(first)) == []


def test_every_event_says_where_when_and_before_and_after():
    first = sample()
    (event,) = diff(first, later(first, leader=2, epoch=5, isr=[1, 2, 3]))
    assert event == {
        "at": 103.0,
        "since": 100.0,
        "kind": "leader-change",
        "topic": T,
        "partition": 0,
        "broker": None,
        "before": {"leader": 1, "epoch": 4},
        "after": {"leader": 2, "epoch": 5, "preferred": False},
        "count": None,
        "text": f"{T} p0 leader 1 → 2 (epoch 4 → 5)",
    }


def test_a_broker_stopped_leader_change_with_isr_shrink_and_clean():
    first = sample()
    events = diff(first, later(first, leader=2, epoch=5, isr=[2, 3]))
    assert kinds(events) == ["leader-change", "isr-shrink"]
    assert events[1]["before"] == {"isr": [1, 2, 3]}
    assert events[1]["after"] == {"isr": [2, 3], "left": [1]}
    assert events[1]["text"] == f"{T} p0 ISR [1, 2, 3] → [2, 3] ([1] left)"


def test_a_leader_re_elected_with_a_new_epoch_is_a_leader_change():
    first = sample()
    (event,) = diff(first, later(first, epoch=6))
    assert (
        event["kind"] == "leader-change"
        and event["before"]["leader"] == 1 == event["after"]["leader"]
    )
    assert event["text"] == f"{T} p0 leader 1 → 1 (epoch 4 → 6), the preferred replica"


def test_isr_expand_and_preferred_leader_back():
    first = sample(partitions={"0": part(leader=2, epoch=5, isr=(2, 3))})
    events = diff(first, later(first, leader=1, epoch=6, isr=[2, 3, 1]))
    assert kinds(events) == ["leader-change", "isr-expand"]
    assert events[0]["after"]["preferred"] is True
    assert events[1]["after"]["joined"] == [1]


def test_offline_partition_and_back():
    first = sample(partitions={"0": part(isr=(1,))})
    offline = later(first, leader=-1, epoch=None, isr=[1])
    (event,) = diff(first, offline)
    assert event["kind"] == "offline" and event["after"] == {"leader": None, "isr": [1]}
    assert severity("offline") == "bad"
    kept = carry(first, offline)  # the leader epoch was not known while offline: the last one stays
    assert kept["topics"][T]["partitions"]["0"]["epoch"] == 4
    back = later(kept, at=106.0, leader=1, epoch=5, isr=[1])
    assert kinds(diff(kept, back)) == ["leader-change"]  # the last in-sync replica: clean


def test_unclean_election_a_leader_from_outside_the_last_isr_seen():
    first = sample(partitions={"0": part(leader=1, isr=(1,))}, min_isr=1, unclean=True)
    offline = later(first, leader=-1, epoch=None)
    kept = carry(first, offline)
    events = diff(kept, later(kept, at=106.0, leader=2, epoch=5, isr=[2]))
    assert kinds(events) == ["leader-change", "unclean-election", "isr-shrink", "isr-expand"]
    unclean = events[1]
    assert unclean["before"] == {"leader": None, "epoch": 4, "isr": [1]}
    assert unclean["after"] == {"leader": 2, "epoch": 5, "isr": [2], "unclean_enabled": True}
    assert (
        "broker 2 became leader from outside the last ISR seen [1] (epoch 4 → 5" in unclean["text"]
    )


def test_unclean_election_after_an_outage_whose_samples_showed_the_isr_empty():
    """Kafka 4.1 (KIP-966) empties a leaderless partition's ISR: a sample taken during the
    outage shows leader none and ISR []. The election that ends it is told against the ISR
    seen with the last leader, kept through the outage by ``carry``."""
    first = sample(partitions={"0": part(leader=1, isr=(1,))}, min_isr=1, unclean=True)
    offline = later(first, leader=-1, epoch=None, isr=[])
    kept = carry(first, offline)
    assert kept["topics"][T]["partitions"]["0"]["last_led"] == {"leader": 1, "isr": [1]}
    still = carry(kept, later(kept, at=106.0, leader=-1, epoch=None, isr=[]))
    assert still["topics"][T]["partitions"]["0"]["last_led"] == {"leader": 1, "isr": [1]}
    events = diff(still, later(still, at=109.0, leader=2, epoch=5, isr=[2]))
    assert "unclean-election" in kinds(events), kinds(events)
    unclean = next(e for e in events if e["kind"] == "unclean-election")
    assert "broker 2 became leader from outside the last ISR seen [1]" in unclean["text"]
    # The old leader back in sync and elected again after the outage: clean.
    back = diff(still, later(still, at=109.0, leader=1, epoch=5, isr=[1]))
    assert "unclean-election" not in kinds(back)
    # And once a leader is seen again, nothing of the outage is carried.
    read = later(still, at=109.0, leader=2, epoch=5, isr=[2])
    del read["topics"][T]["partitions"]["0"]["last_led"]  # a reader's sample has none
    assert "last_led" not in carry(still, read)["topics"][T]["partitions"]["0"]


def test_unclean_election_straight_from_a_live_leader():
    first = sample(partitions={"0": part(leader=1, isr=(1,))}, min_isr=1)
    events = diff(first, later(first, leader=3, epoch=5, isr=[3]))
    assert "unclean-election" in kinds(events)
    assert events[1]["after"]["unclean_enabled"] is False
    assert "KIP-966" in events[1]["text"]


def test_a_preferred_election_after_an_unseen_isr_growth_is_not_unclean():
    # Between the samples replica 1 caught up, joined the ISR and was elected back.
    first = sample(partitions={"0": part(leader=2, epoch=5, isr=(2, 3))})
    events = diff(first, later(first, leader=1, epoch=6, isr=[2, 3, 1]))
    assert "unclean-election" not in kinds(events)


def test_an_unclean_election_whose_old_leader_is_back_in_sync_by_the_next_sample():
    """Between two samples: leader 1 alone in the ISR dies, 3 is elected from outside it, and
    1 comes back, truncates its log to 3's and joins the ISR. The ISRs alone read like the
    preferred election above; the high watermark went back, which no clean election does."""
    first = sample(partitions={"0": part(leader=1, epoch=4, isr=(1,), end=188)}, unclean=True)
    events = diff(first, later(first, leader=3, epoch=5, isr=[3, 1], end=57))
    assert "unclean-election" in kinds(events), kinds(events)
    assert "end-offset-back" in kinds(events)


def test_under_min_isr_and_restored():
    first = sample(partitions={"0": part(isr=(1, 2))}, min_isr=2)
    under = later(first, isr=[1])
    assert kinds(diff(first, under)) == ["isr-shrink", "under-min-isr"]
    assert diff(first, under)[1]["after"] == {"isr": [1], "min_isr": 2}
    assert kinds(diff(under, later(under, at=106.0, isr=[1, 3]))) == [
        "isr-expand", "min-isr-restored",
    ]  # fmt: skip


def test_min_isr_unknown_says_nothing_about_it():
    first = sample(partitions={"0": part(isr=(1, 2))}, min_isr=None)
    assert kinds(diff(first, later(first, isr=[1]))) == ["isr-shrink"]


def test_log_start_jump_counts_the_records_deleted():
    first = sample()
    (event,) = diff(first, later(first, start=40))
    assert event["kind"] == "log-start-jump" and event["count"] == 40
    assert event["before"] == {"start": 0} and event["after"] == {"start": 40}
    assert event["text"] == f"{T} p0 log start 0 → 40: 40 records deleted"


def test_end_offset_going_back_counts_the_offsets_truncated():
    first = sample()
    (event,) = diff(first, later(first, end=93))
    assert event["kind"] == "end-offset-back" and event["count"] == 7
    assert event["text"] == f"{T} p0 high watermark went back 100 → 93: 7 offsets truncated"
    assert diff(first, later(first, end=150)) == []  # moving forward is no event


def test_offsets_not_known_are_not_compared_and_the_last_known_carries():
    first = sample()
    unknown = later(first, start=None, end=None)
    assert diff(first, unknown) == []
    kept = carry(first, unknown)
    assert kinds(diff(kept, later(kept, at=106.0, start=0, end=90))) == ["end-offset-back"]


def test_a_topic_not_read_carries_over_and_makes_no_event():
    first = sample()
    blind = {**first, "at": 103.0, "topics": {}}
    assert diff(first, blind) == []
    assert carry(first, blind)["topics"] == first["topics"]


def test_topic_recreated_compares_nothing_else():
    first = sample()
    again = later(first, end=0, start=0, leader=3, epoch=0)
    again["topics"][T]["id"] = "other"
    (event,) = diff(first, again)
    assert event["kind"] == "topic-recreated" and event["after"] == {"id": "other"}
    assert carry(first, again)["topics"][T]["partitions"]["0"]["end"] == 0


def test_partitions_added():
    first = sample()
    more = copy.deepcopy(first)
    more["at"] = 103.0
    more["topics"][T]["partitions"]["2"] = part(3)
    (event,) = diff(first, more)
    assert event["kind"] == "partitions-added" and event["after"] == {"partitions": 3}


def test_broker_unreachable_and_back():
    first = sample()
    down = copy.deepcopy(first)
    down["at"] = 103.0
    down["brokers"]["2"].update(reachable=False, error="Connection refused", since=102.0)
    (event,) = diff(first, down)
    assert event["kind"] == "broker-unreachable" and event["broker"] == "2"
    assert event["partition"] is None and event["after"] == {
        "reachable": False,
        "error": "Connection refused",
    }
    assert event["text"] == "broker 2 (h:2) unreachable: Connection refused"
    (back,) = diff(down, {**first, "at": 106.0})
    assert back["kind"] == "broker-back" and severity("broker-back") == "good"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_is_documented(kind):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    assert f"`{kind}`" in doc
