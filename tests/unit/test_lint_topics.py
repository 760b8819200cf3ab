"""Topic and cluster lint on plain facts: each rule fires on the facts that break it, names the
setting and its source, and a healthy topic on a healthy cluster can hold every semantic."""

from __future__ import annotations

from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SEMANTICS
from workers.engine.lint.topics import (
    CAN_HOLD,
    CANNOT_HOLD,
    DEFAULT,
    METADATA,
    ONE_FAILURE_AWAY,
    STATIC_BROKER,
    TOPIC_OVERRIDE,
    ClusterFacts,
    PartitionFacts,
    Setting,
    TopicFacts,
    has_errors,
    lint_cluster,
    lint_report,
    lint_topic,
    verdict,
)

BROKERS = (1, 2, 3)
GOOD_BROKER = {
    "min.insync.replicas": Setting("2", STATIC_BROKER),
    "transaction.state.log.replication.factor": Setting("3", STATIC_BROKER),
    "transaction.state.log.min.isr": Setting("2", STATIC_BROKER),
    "offsets.topic.replication.factor": Setting("3", STATIC_BROKER),
}


def parts(n: int = 3, rf: int = 3, isr: int | None = None, leaders=None) -> tuple:
    out = []
    for p in range(n):
        replicas = tuple(BROKERS[(p + i) % 3] for i in range(rf))
        leader = leaders[p] if leaders else replicas[0]
        out.append(PartitionFacts(p, leader, replicas, replicas[: isr if isr else rf]))
    return tuple(out)


def cluster(configs=None, topics=None, brokers=BROKERS) -> ClusterFacts:
    return ClusterFacts("c", brokers, {**GOOD_BROKER, **(configs or {})}, topics or {})


def rules(topic: TopicFacts, c: ClusterFacts | None = None) -> dict[str, object]:
    return {f.rule: f for f in lint_topic(topic, c or cluster())}


def test_it_finds_a_well_configured_topic_clean_for_every_semantic() -> None:
    c = cluster()
    topic = TopicFacts("good", parts())
    for sem in SEMANTICS:
        assert verdict(lint_topic(topic, c) + lint_cluster(c), sem)["verdict"] == CAN_HOLD


def test_it_flags_replication_factor_one_as_an_error_for_durable_semantics() -> None:
    found = rules(TopicFacts("t", parts(rf=1)))
    f = found["topic.rf-1"]
    assert (f.value, f.source) == ("1", METADATA)
    assert verdict(list(found.values()), AT_LEAST_ONCE)["verdict"] == CANNOT_HOLD
    assert verdict(list(found.values()), AT_MOST_ONCE)["verdict"] == CAN_HOLD
    assert "topic.rf-1" not in rules(TopicFacts("t", parts(rf=1)), cluster(brokers=(1,)))


def test_it_names_the_source_of_min_insync_replicas() -> None:
    override = TopicFacts("t", parts(), {"min.insync.replicas": Setting("1", TOPIC_OVERRIDE)})
    f = rules(override)["topic.min-isr-1"]
    assert (f.value, f.source) == ("1", TOPIC_OVERRIDE)
    inherited = rules(
        TopicFacts("t", parts()), cluster({"min.insync.replicas": Setting("1", DEFAULT)})
    )
    assert inherited["topic.min-isr-1"].source == DEFAULT


def test_it_flags_min_insync_replicas_at_or_above_the_replication_factor() -> None:
    at = TopicFacts("t", parts(), {"min.insync.replicas": Setting("3", TOPIC_OVERRIDE)})
    above = TopicFacts("t", parts(), {"min.insync.replicas": Setting("4", TOPIC_OVERRIDE)})
    assert "topic.min-isr-ge-rf" in rules(at)
    assert "capped" in rules(above)["topic.min-isr-ge-rf"].message
    assert "topic.min-isr-ge-rf" not in rules(TopicFacts("t", parts()))


def test_it_flags_unclean_leader_election_from_topic_or_broker() -> None:
    topic = TopicFacts(
        "t", parts(), {"unclean.leader.election.enable": Setting("true", TOPIC_OVERRIDE)}
    )
    assert rules(topic)["topic.unclean-election"].source == TOPIC_OVERRIDE
    broker = cluster({"unclean.leader.election.enable": Setting("true", STATIC_BROKER)})
    assert rules(TopicFacts("t", parts()), broker)["topic.unclean-election"].source == STATIC_BROKER


def test_it_flags_under_replicated_partitions_and_isr_at_the_minimum() -> None:
    found = rules(TopicFacts("t", parts(isr=2)))
    assert found["topic.under-replicated"].partitions == (0, 1, 2)
    assert found["topic.isr-at-min"].partitions == (0, 1, 2)
    assert verdict(list(found.values()), EXACTLY_ONCE)["verdict"] == ONE_FAILURE_AWAY


def test_it_flags_offline_partitions_and_too_few_brokers() -> None:
    found = rules(TopicFacts("t", parts(n=1, leaders=[-1])), cluster(brokers=(1, 2)))
    assert {"topic.offline", "topic.fewer-brokers-than-rf"} <= set(found)


def test_an_offline_partition_means_no_semantic_can_hold_while_it_is_offline() -> None:
    offline = rules(TopicFacts("t", parts(n=1, leaders=[-1])))["topic.offline"]
    for semantic in (AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE):
        assert verdict([offline], semantic)["verdict"] == CANNOT_HOLD, semantic


def test_it_flags_a_broker_that_leads_nothing() -> None:
    assert "topic.leaders-not-spread" in rules(TopicFacts("t", parts(leaders=[1, 1, 2])))
    # One partition can only have one leader: not a finding.
    assert "topic.leaders-not-spread" not in rules(TopicFacts("t", parts(n=1)))


def test_it_reads_internal_topics_real_replication_over_broker_settings() -> None:
    offsets = TopicFacts("__consumer_offsets", parts(rf=1), internal=True)
    found = {f.rule: f for f in lint_cluster(cluster(topics={"__consumer_offsets": offsets}))}
    assert (found["cluster.offsets-rf"].value, found["cluster.offsets-rf"].source) == (
        "1",
        METADATA,
    )
    weak = cluster(
        {
            "transaction.state.log.replication.factor": Setting("1", STATIC_BROKER),
            "transaction.state.log.min.isr": Setting("1", STATIC_BROKER),
        }
    )
    rules_found = {f.rule for f in lint_cluster(weak)}
    assert {"cluster.txn-log-rf", "cluster.txn-log-min-isr"} <= rules_found
    assert lint_cluster(cluster()) == []


def test_it_reports_cluster_findings_in_every_topics_verdict_and_exits_on_errors() -> None:
    weak = cluster(
        {"transaction.state.log.replication.factor": Setting("1", STATIC_BROKER)},
        topics={"a": TopicFacts("a", parts())},
    )
    report = lint_report(weak)
    v = report["topics"][0]["verdicts"]
    assert v[EXACTLY_ONCE]["verdict"] == CANNOT_HOLD
    assert v[EXACTLY_ONCE]["first"]["rule"] == "cluster.txn-log-rf"
    assert v[AT_LEAST_ONCE]["verdict"] == CAN_HOLD
    assert has_errors(report)
    assert not has_errors(lint_report(cluster(topics={"a": TopicFacts("a", parts())})))


def test_it_says_when_retention_is_shorter_than_a_groups_worst_lag_of_the_week() -> None:
    minute = {"retention.ms": Setting("60000", TOPIC_OVERRIDE)}
    lagging = TopicFacts("orders", parts(), minute, group_lags=(("billing", 840.0), ("ok", 5.0)))
    found = rules(lagging)["topic.retention-below-group-lag"]
    assert found.message == (
        "retention 1 min is shorter than group 'billing''s worst lag this week (14 min): "
        "it loses records the next time it falls that far behind"
    )
    assert (found.setting, found.value, found.source) == ("retention.ms", "60000", TOPIC_OVERRIDE)
    doc = lint_report(cluster(topics={"orders": lagging}))
    (topic,) = doc["topics"]
    assert topic["verdicts"][AT_LEAST_ONCE]["verdict"] == CANNOT_HOLD
    # At-most-once promises no durability: losing records to retention breaks nothing there.
    assert topic["verdicts"][AT_MOST_ONCE]["verdict"] == CAN_HOLD


def test_it_takes_the_brokers_retention_when_the_topic_has_none_and_forever_as_forever() -> None:
    hours = cluster({"log.retention.hours": Setting("1", STATIC_BROKER)})
    behind = TopicFacts("t", parts(), group_lags=(("g", 2 * 3600.0),))
    assert rules(behind, hours)["topic.retention-below-group-lag"].message.startswith(
        "retention 1 h is shorter than group 'g''s worst lag this week (2 h)"
    )
    forever = TopicFacts("t", parts(), {"retention.ms": Setting("-1", TOPIC_OVERRIDE)})
    kept = TopicFacts("t", parts(), dict(forever.configs), group_lags=(("g", 1e9),))
    assert "topic.retention-below-group-lag" not in rules(kept, hours)
    compacted = TopicFacts(
        "t",
        parts(),
        {"cleanup.policy": Setting("compact", TOPIC_OVERRIDE)},
        group_lags=(("g", 1e9),),
    )
    assert "topic.retention-below-group-lag" not in rules(compacted, hours)
    # A group keeping up within the retention is no finding; nor is a topic without groups.
    assert "topic.retention-below-group-lag" not in rules(
        TopicFacts("t", parts(), group_lags=(("g", 3000.0),)), hours
    )
    assert "topic.retention-below-group-lag" not in rules(TopicFacts("t", parts()), hours)


def test_it_says_when_a_compacted_topics_tombstones_expire_before_a_group_reads_them() -> None:
    minute = {
        "cleanup.policy": Setting("compact", TOPIC_OVERRIDE),
        "delete.retention.ms": Setting("60000", TOPIC_OVERRIDE),
    }
    lagging = TopicFacts("users", parts(), minute, group_lags=(("cache", 840.0), ("ok", 5.0)))
    found = rules(lagging)["topic.tombstones-expire-before-group-reads"]
    assert found.message == (
        "delete.retention.ms 1 min on a compacted topic is shorter than group 'cache''s worst "
        "lag this week (14 min): a deletion the cleaner removes before the group reads it is "
        "never seen, so the group keeps the deleted key"
    )
    assert (found.setting, found.value, found.source) == (
        "delete.retention.ms",
        "60000",
        TOPIC_OVERRIDE,
    )
    # Compacted only, the delete policy's retention does not apply: no retention finding.
    assert "topic.retention-below-group-lag" not in rules(lagging)
    doc = lint_report(cluster(topics={"users": lagging}))
    (topic,) = doc["topics"]
    assert topic["verdicts"][AT_LEAST_ONCE]["verdict"] == CANNOT_HOLD
    assert topic["verdicts"][AT_MOST_ONCE]["verdict"] == CAN_HOLD


def test_tombstones_are_kept_a_day_unless_the_broker_or_the_topic_says_otherwise() -> None:
    compact = {"cleanup.policy": Setting("compact,delete", TOPIC_OVERRIDE)}
    # The default: a day. Under a day behind is no finding; over it is, from the default.
    assert "topic.tombstones-expire-before-group-reads" not in rules(
        TopicFacts("t", parts(), compact, group_lags=(("g", 3600.0),))
    )
    day = rules(TopicFacts("t", parts(), compact, group_lags=(("g", 2 * 86400.0),)))
    found = day["topic.tombstones-expire-before-group-reads"]
    assert (found.value, found.source) == ("86400000", DEFAULT)
    # The broker's setting when the topic has none.
    broker = cluster({"log.cleaner.delete.retention.ms": Setting("600000", STATIC_BROKER)})
    found = rules(TopicFacts("t", parts(), compact, group_lags=(("g", 3600.0),)), broker)[
        "topic.tombstones-expire-before-group-reads"
    ]
    assert found.message.startswith("delete.retention.ms 10 min on a compacted topic")
    # A topic that only deletes has no tombstones to lose; a topic without groups, no lag.
    assert "topic.tombstones-expire-before-group-reads" not in rules(
        TopicFacts(
            "t",
            parts(),
            {"delete.retention.ms": Setting("1", TOPIC_OVERRIDE)},
            group_lags=(("g", 3600.0),),
        ),
        broker,
    )
    assert "topic.tombstones-expire-before-group-reads" not in rules(
        TopicFacts("t", parts(), compact), broker
    )
