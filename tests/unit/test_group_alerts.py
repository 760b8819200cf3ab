"""Group alert conditions against hand-built events and states (workers.engine.group_alerts)."""

from __future__ import annotations

from workers.engine.group_alerts import (
    GROUP_LOST,
    GROUP_REWOUND,
    GROUP_SKIPPED,
    counting_condition,
    matches,
    not_reading_since,
    partition_counts,
    patterns,
    stopped_condition,
)
from workers.engine.groups import (
    LOST,
    OK,
    REWOUND,
    SKIPPED,
    STALLED,
    STOPPED,
    GroupEvent,
    GroupState,
    PartitionState,
)


def ev(kind: str, group: str, partition: int, first: int, last: int, t: float = 100.0):
    return GroupEvent(kind, group, "orders", partition, last - first, first, last, t)


def part(partition: int, status: str, lag: int) -> PartitionState:
    return PartitionState("orders", partition, 10, 0, 10 + lag, 10, lag, None, status, 0.0, None)


def state(group: str, *parts: PartitionState, members: tuple[str, ...] = ()) -> GroupState:
    return GroupState(group, 100.0, "Empty", members, {p.key: p for p in parts})


def test_patterns_include_and_exclude_groups_by_glob() -> None:
    assert patterns("billing-*, orders\n search-?") == ["billing-*", "orders", "search-?"]
    assert matches("billing-eu", ["billing-*"], [])
    assert not matches("orders-eu", ["billing-*"], [])
    assert matches("anything", [], [])
    assert not matches("billing-test", ["*"], ["*-test"])
    assert not matches("Billing-eu", ["billing-*"], [])  # group names are case-sensitive


def test_a_counting_condition_sums_exactly_its_kind_and_group_per_partition() -> None:
    events = [
        ev(LOST, "billing", 0, 10, 50),
        ev(LOST, "billing", 0, 50, 60, t=130.0),
        ev(LOST, "billing", 2, 7, 9),
        ev(SKIPPED, "billing", 0, 60, 70),  # another kind
        ev(LOST, "search", 0, 0, 99),  # another group
    ]
    condition, parts = counting_condition(GROUP_LOST, "c1", "billing", events)
    assert condition.firing
    assert condition.counts == {LOST: 52}
    assert parts == {
        "orders:0": {"count": 50, "first": 10, "last": 60},
        "orders:2": {"count": 2, "first": 7, "last": 9},
    }
    assert condition.reason.startswith("group billing on cluster c1: 52 records lost to retention")
    assert "orders:0 (50, offsets 10-60), orders:2 (2, offsets 7-9)" in condition.reason


def test_a_counting_condition_grows_from_the_incidents_partitions_and_fires_only_on_new_events():
    before = {"orders:0": {"count": 40, "first": 10, "last": 50}}
    grown, parts = counting_condition(
        GROUP_LOST, "c1", "billing", [ev(LOST, "billing", 0, 50, 65)], before
    )
    assert grown.firing and grown.counts == {LOST: 55}
    assert parts == {"orders:0": {"count": 55, "first": 10, "last": 65}}
    assert before == {"orders:0": {"count": 40, "first": 10, "last": 50}}  # not mutated
    quiet, parts = counting_condition(GROUP_LOST, "c1", "billing", [], before)
    assert not quiet.firing and quiet.counts == {LOST: 40} and parts == before
    none, _ = counting_condition(GROUP_REWOUND, "c1", "billing", [ev(SKIPPED, "billing", 0, 1, 5)])
    assert not none.firing and none.counts == {}


def test_skipped_and_rewound_rules_count_their_own_kinds() -> None:
    events = [ev(SKIPPED, "g", 1, 100, 130), ev(REWOUND, "g", 1, 20, 100)]
    skipped, _ = counting_condition(GROUP_SKIPPED, "c", "g", events)
    rewound, _ = counting_condition(GROUP_REWOUND, "c", "g", events)
    assert skipped.counts == {SKIPPED: 30} and rewound.counts == {REWOUND: 80}


def test_partition_counts_add_to_what_was_counted_before() -> None:
    assert partition_counts([ev(LOST, "g", 1, 5, 8)], {"orders:1": {"count": 5, "first": 0, "last": 5}}) == {
        "orders:1": {"count": 8, "first": 0, "last": 8}
    }  # fmt: skip


def test_stopped_holds_only_after_for_s_of_an_unbroken_spell() -> None:
    stopped = state("billing", part(0, STOPPED, 40), part(1, OK, 0))
    since = not_reading_since(stopped, None, 1000.0)
    assert since == 1000.0
    assert not_reading_since(stopped, since, 1100.0) == 1000.0  # the spell goes on
    early, _ = stopped_condition("c1", stopped, since, 300, 1299.0)
    assert not early.firing
    held, parts = stopped_condition("c1", stopped, since, 300, 1300.0)
    assert held.firing and held.counts == {"lag": 40}
    assert parts == {"orders:0": {"status": STOPPED, "lag": 40}}
    assert held.reason.startswith("group billing on cluster c1: stopped for 300 s (0 members")
    reading = state("billing", part(0, OK, 0))
    assert not_reading_since(reading, since, 1400.0) is None  # the spell ended
    assert not stopped_condition("c1", reading, None, 300, 1400.0)[0].firing
    assert not_reading_since(None, since, 1400.0) is None  # the group is gone


def test_a_stall_counts_as_not_reading() -> None:
    stalled = state("g", part(0, STALLED, 7), members=("c-1@h",))
    condition, parts = stopped_condition("c", stalled, 0.0, 60, 60.0)
    assert condition.firing and parts == {"orders:0": {"status": STALLED, "lag": 7}}
    assert "stalled for 60 s (1 member, lag 7 records" in condition.reason
