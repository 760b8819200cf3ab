"""The group engine (workers/engine/groups.py): lag, loss, skips, rewinds and statuses from
consecutive samples, with Burrow's known misses (a rewind of a healthy consumer, a stopped
consumer shown OK, an idle topic's astronomical time lag) each a case of its own."""

from __future__ import annotations

from workers.engine.groups import (
    DAY_S,
    EMPTY,
    LAGGING,
    LOST,
    OK,
    REWOUND,
    SKIPPED,
    STALLED,
    STOPPED,
    GroupObservation,
    GroupState,
    PartitionObservation,
    Policy,
    advance,
    topic_rollups,
    worst,
    worst_lags,
)

MEMBER = ("app-1@/10.0.0.1",)
POLICY = Policy(window=3, lagging_floor_s=5.0, stall_after_s=60.0)


def obs(
    t: float,
    committed: int,
    start: int = 0,
    end: int = 100,
    *,
    members: tuple[str, ...] = MEMBER,
    ts_ms: int | None = None,
    unread_from: int | None = None,
    epoch: int | None = 0,
    partition: int = 0,
    group: str = "billing",
) -> GroupObservation:
    part = PartitionObservation(
        "orders",
        partition,
        committed,
        start,
        end,
        unread_from=unread_from,
        unread_ts_ms=ts_ms,
        commit_epoch=epoch,
        assigned=bool(members),
    )
    return GroupObservation(group, t, "Stable" if members else "Empty", members, (part,))


def run(*samples: GroupObservation) -> tuple[GroupState, list[list]]:
    state = None
    found = []
    for sample in samples:
        state, events = advance(state, sample, POLICY)
        found.append(events)
    assert state is not None
    return state, found


def part(state: GroupState):
    return state.partitions["orders:0"]


def test_it_counts_lag_in_records_and_the_age_of_the_record_at_the_committed_offset() -> None:
    state, _ = run(obs(1000.0, 40, ts_ms=990_000))
    assert part(state).lag == 60
    assert part(state).lag_s == 10.0


def test_it_shows_zero_seconds_on_an_idle_topic_whatever_the_age_of_its_last_record() -> None:
    # kafka-lag-exporter's miss: extrapolated lag grows without bound when nothing is produced.
    state, _ = run(obs(1000.0, 100), obs(1_000_000.0, 100))
    assert part(state).lag == 0
    assert part(state).lag_s == 0.0
    assert part(state).status == OK


def test_it_takes_markers_at_the_end_of_the_log_as_nothing_to_read() -> None:
    # A read_committed group at offset 99, where 99 is a commit marker: no record left to read.
    state, events = run(obs(1000.0, 99, end=100, unread_from=100))
    assert part(state).lag == 0
    assert part(state).lag_s == 0.0
    assert events == [[]]


def test_it_counts_records_lost_to_retention_once_across_samples() -> None:
    state, found = run(
        obs(1.0, 10, members=()),
        obs(2.0, 10, start=50, members=()),
        obs(3.0, 10, start=50, members=()),
        obs(4.0, 10, start=70, members=()),
    )
    assert [[(e.kind, e.count, e.first, e.last) for e in f] for f in found] == [
        [],
        [(LOST, 40, 10, 50)],
        [],
        [(LOST, 20, 50, 70)],
    ]
    assert part(state).lost == 60
    assert part(state).lag == 30  # the records still there to read: 70..99


def test_it_counts_a_first_sample_below_the_log_start_as_lost() -> None:
    state, found = run(obs(1.0, 5, start=25, members=()))
    assert [(e.kind, e.count) for e in found[0]] == [(LOST, 20)]


def test_it_counts_a_rewind_of_a_healthy_consumer() -> None:
    # Burrow's miss (#714): a caught-up consumer rewound by 30 is still a rewind.
    state, found = run(obs(1.0, 100), obs(2.0, 70), obs(3.0, 100))
    assert [(e.kind, e.count, e.first, e.last) for e in found[1]] == [(REWOUND, 30, 70, 100)]
    assert "app-1" in found[1][0].detail
    assert part(state).rewound == 30
    assert found[2] == []


def test_it_says_when_the_members_changed_around_a_rewind() -> None:
    _, found = run(obs(1.0, 100), obs(2.0, 90, members=("app-2@/10.0.0.2",)))
    assert "members changed" in found[1][0].detail


def test_it_counts_an_administrative_forward_move_as_skipped() -> None:
    state, found = run(obs(1.0, 40, members=()), obs(2.0, 90, end=120, members=(), epoch=None))
    assert [(e.kind, e.count, e.first, e.last) for e in found[1]] == [(SKIPPED, 50, 40, 90)]
    assert "administrative" in found[1][0].detail
    assert part(state).skipped == 50


def test_it_counts_only_records_that_exist_when_a_group_is_moved_past_the_log_end() -> None:
    _, found = run(obs(1.0, 40, members=()), obs(2.0, 500, end=100, members=(), epoch=None))
    assert [(e.kind, e.count) for e in found[1]] == [(SKIPPED, 60)]


def test_it_takes_a_forward_move_with_members_or_a_leader_epoch_as_consumption() -> None:
    _, with_members = run(obs(1.0, 40), obs(2.0, 90))
    _, simple_consumer = run(obs(1.0, 40, members=()), obs(2.0, 90, members=(), epoch=3))
    assert with_members[1] == [] and simple_consumer[1] == []


def test_it_does_not_count_records_lost_and_then_skipped_twice() -> None:
    state, found = run(
        obs(1.0, 10, members=()),
        obs(2.0, 10, start=50, members=()),  # lost 10..50
        obs(3.0, 100, start=50, end=100, members=(), epoch=None),  # skipped only 50..100
    )
    assert [(e.kind, e.count) for f in found for e in f] == [(LOST, 40), (SKIPPED, 50)]


def test_it_does_not_count_records_read_before_a_rewind_as_skipped_or_lost_again() -> None:
    _, found = run(
        obs(1.0, 80, members=()),
        obs(2.0, 20, members=(), epoch=None),  # rewound 60
        obs(3.0, 20, start=60, members=()),  # 20..60 were read before: not lost
        obs(4.0, 90, start=60, members=(), epoch=None),  # only 80..90 never read
    )
    assert [(e.kind, e.count) for f in found for e in f] == [(REWOUND, 60), (SKIPPED, 10)]


def test_it_shows_a_group_without_members_and_with_lag_as_stopped() -> None:
    # Burrow's miss (#745): a stopped consumer with lag was shown OK.
    state, _ = run(obs(1.0, 50), obs(2.0, 60, members=()), obs(3.0, 60, members=()))
    assert part(state).status == STOPPED
    assert state.status == STOPPED


def test_it_shows_a_group_without_members_that_is_caught_up_as_empty() -> None:
    state, _ = run(obs(1.0, 100, members=()), obs(2.0, 100, members=()))
    assert state.status == EMPTY


def test_it_shows_members_that_commit_nothing_while_lag_waits_as_stalled() -> None:
    state, _ = run(obs(0.0, 50, ts_ms=0), obs(30.0, 50, ts_ms=0), obs(61.0, 50, ts_ms=0))
    assert part(state).status == STALLED


def test_it_shows_lag_growing_over_the_window_as_lagging() -> None:
    state, _ = run(
        obs(0.0, 10, end=20, ts_ms=0),
        obs(10.0, 15, end=40, ts_ms=5_000),
        obs(20.0, 20, end=60, ts_ms=10_000),
    )
    assert [x for x in part(state).lags] == [10, 25, 40]
    assert part(state).status == LAGGING


def test_it_does_not_flag_lag_that_grows_by_a_few_records_but_stays_young() -> None:
    state, _ = run(
        obs(0.0, 10, end=12, ts_ms=0),
        obs(10.0, 20, end=23, ts_ms=9_900),
        obs(20.0, 30, end=34, ts_ms=19_900),
    )
    assert part(state).status == OK


def test_it_does_not_flag_lag_that_went_down_within_the_window() -> None:
    state, _ = run(
        obs(0.0, 10, end=20, ts_ms=0),
        obs(10.0, 30, end=35, ts_ms=0),
        obs(20.0, 35, end=60, ts_ms=0),
    )
    assert part(state).status == OK


def test_it_keeps_a_bounded_history() -> None:
    state = None
    for i in range(100):
        state, _ = advance(state, obs(float(i), i, end=100 + 2 * i, ts_ms=0), POLICY)
    assert state is not None and len(part(state).lags) == POLICY.window


def test_it_drops_partitions_the_group_no_longer_commits() -> None:
    first, _ = advance(None, obs(1.0, 10, partition=0), POLICY)
    second, _ = advance(first, obs(2.0, 10, partition=1), POLICY)
    assert list(second.partitions) == ["orders:1"]


def test_it_starts_afresh_when_a_topic_is_made_again() -> None:
    state, found = run(obs(1.0, 500, start=400, end=600), obs(2.0, 500, start=0, end=3))
    assert found[1] == []
    assert part(state).frontier == 500 and part(state).lag == 0


def test_it_round_trips_its_state() -> None:
    state, _ = run(obs(1.0, 10, members=()), obs(2.0, 10, start=50, members=()))
    again = GroupState.from_fields(state.to_fields())
    assert again == state


def test_it_rolls_up_per_topic_with_the_worst_status() -> None:
    a, _ = run(obs(1.0, 100, group="a"))
    b, _ = run(obs(1.0, 50, members=(), group="b"), obs(2.0, 50, start=60, members=(), group="b"))
    rollup = topic_rollups([a, b])["orders"]
    assert (rollup.status, rollup.groups, rollup.lag, rollup.lost) == (STOPPED, 2, 40, 10)
    assert worst([OK, EMPTY, LAGGING]) == LAGGING
    assert a.summary()["status"] == OK and b.summary()["lost"] == 10


def test_it_keeps_the_worst_lag_of_each_of_the_last_seven_days() -> None:
    day = DAY_S
    # ts_ms=0: the unread record was written at the epoch, so lag_s is the sample's time.
    samples = [
        obs(2 * day + 100.0, 10, ts_ms=int((2 * day) * 1000)),  # day 2: 100 s behind
        obs(2 * day + 900.0, 10, ts_ms=int((2 * day) * 1000)),  # day 2: 900 s, the worst
        obs(3 * day + 50.0, 10, ts_ms=int((3 * day) * 1000)),  # day 3: 50 s
    ]
    state, _ = run(*samples)
    p = part(state)
    assert p.peaks == ((2, 900.0), (3, 50.0))
    assert p.worst_lag_s(3 * day + 60.0) == 900.0
    # Six days after day 3, day 2 is out of the window; day 3 still in it.
    assert p.worst_lag_s(9 * day) == 50.0
    assert p.worst_lag_s(10 * day) is None
    # A sample eight days on keeps no day older than the last seven.
    later, _ = advance(state, obs(11 * day, 10, ts_ms=int((11 * day - 5) * 1000)), POLICY)
    assert part(later).peaks == ((11, 5.0),)
    assert GroupState.from_fields(later.to_fields()) == later


def test_it_reads_a_state_saved_before_the_peaks_were_kept() -> None:
    state, _ = run(obs(1.0, 10, ts_ms=0))
    fields = state.to_fields()
    fields["partitions"] = [f[:15] for f in fields["partitions"]]  # the former layout
    assert part(GroupState.from_fields(fields)).peaks == ()


def test_it_gives_each_topics_groups_worst_lag_of_the_week_worst_first() -> None:
    a, _ = run(obs(100.0, 10, ts_ms=40_000, group="a"))  # 60 s behind
    b, _ = run(obs(100.0, 10, ts_ms=0, group="b"), obs(200.0, 100, end=100, group="b"))
    assert worst_lags([a, b], 200.0) == {"orders": [("b", 100.0), ("a", 60.0)]}


def test_a_deleted_topics_offsets_are_no_news_at_every_sample(caplog):
    """A group keeps its committed offsets of a deleted topic: reading that topic's offsets
    fails at every sample, which is logged at debug; any other failure is a warning."""
    from concurrent.futures import Future

    from confluent_kafka import KafkaError, KafkaException

    from workers.clients.groups import _results

    def failed(code):
        future = Future()
        future.set_exception(KafkaException(KafkaError(code)))
        return future

    ok = Future()
    ok.set_result(7)
    with caplog.at_level("DEBUG", logger="workers.clients.groups"):
        got = _results(
            {
                "gone": failed(KafkaError.UNKNOWN_TOPIC_OR_PART),
                "down": failed(KafkaError._TRANSPORT),
                "fine": ok,
            },
            1,
        )
    assert got == {"fine": 7}
    levels = {r.getMessage().split(":")[0]: r.levelname for r in caplog.records}
    assert levels == {"gone": "DEBUG", "down": "WARNING"}
