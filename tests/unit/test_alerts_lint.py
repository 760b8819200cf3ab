"""The "lint error appeared" rule's condition, pure: a lint report, a topic and a semantic in,
whether the semantic cannot hold there (and why, in words) out."""

from __future__ import annotations

from typing import Any

from workers.engine import alerts
from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from workers.engine.lint.topics import (
    ClusterFacts,
    PartitionFacts,
    Setting,
    TopicFacts,
    lint_report,
)

GOOD_BROKER = {
    "min.insync.replicas": Setting("2", "static broker"),
    "transaction.state.log.replication.factor": Setting("3", "static broker"),
    "transaction.state.log.min.isr": Setting("2", "static broker"),
}


def _parts(rf: int) -> tuple[PartitionFacts, ...]:
    replicas = tuple(range(1, rf + 1))
    return tuple(PartitionFacts(p, replicas[p % rf], replicas, replicas) for p in range(3))


def report(topics: dict[str, TopicFacts], broker: dict[str, Setting] | None = None) -> dict:
    facts = ClusterFacts("local", (1, 2, 3), broker or GOOD_BROKER, topics)
    return {**lint_report(facts, generated_at=1.0), "error": None}


def unclean(name: str) -> TopicFacts:
    override = {"unclean.leader.election.enable": Setting("true", "topic override")}
    return TopicFacts(name, _parts(3), override)


def check(doc: Any, topic: str = "t", semantic: str = AT_LEAST_ONCE) -> alerts.Condition | None:
    return alerts.lint_condition(doc, cluster="local", topic=topic, semantic=semantic)


def test_it_fires_on_an_error_of_the_sentinels_topic_naming_rule_setting_and_source():
    condition = check(report({"t": unclean("t"), "other": TopicFacts("other", _parts(3))}))
    assert condition is not None and condition.firing
    assert condition.reason.startswith(
        "at-least-once on cluster local, topic t: lint error topic.unclean-election: "
        "unclean.leader.election.enable=true (topic override) — Unclean leader election lets "
    )
    assert condition.counts == {"lint_errors": 1}


def test_it_names_the_setting_when_the_message_does_not():
    condition = check(report({"t": TopicFacts("t", _parts(1))}), semantic=EXACTLY_ONCE)
    assert condition is not None and condition.firing
    assert "topic.rf-1: replication factor 1 on a 3-broker cluster (replication.factor=1, " in (
        condition.reason
    )


def test_a_warning_does_not_fire():
    min_isr_1 = {"min.insync.replicas": Setting("1", "topic override")}
    doc = report({"t": TopicFacts("t", _parts(3), min_isr_1)})
    assert doc["topics"][0]["findings"][0]["rule"] == "topic.min-isr-1"  # it is there...
    condition = check(doc)
    assert condition is not None and not condition.firing  # ...and only a warning


def test_an_error_on_another_topic_does_not_fire():
    condition = check(report({"t": TopicFacts("t", _parts(3)), "other": unclean("other")}))
    assert condition is not None and not condition.firing


def test_a_cluster_error_fires_for_its_semantic_only():
    broker = {**GOOD_BROKER, "transaction.state.log.replication.factor": Setting("1", "default")}
    doc = report({"t": TopicFacts("t", _parts(3))}, broker)
    eos = check(doc, semantic=EXACTLY_ONCE)
    assert eos is not None and eos.firing
    assert eos.reason.startswith(
        "exactly-once on cluster local, topic t: lint error cluster.txn-log-rf: "
        "__transaction_state replication factor 1 "
        "(transaction.state.log.replication.factor=1, default) — "
    )
    alo = check(doc, semantic=AT_LEAST_ONCE)  # the transaction log is exactly-once's alone
    assert alo is not None and not alo.firing


def test_another_semantics_error_does_not_fire():
    doc = report({"t": TopicFacts("t", _parts(1))})  # RF 1: an error for durable semantics
    assert check(doc, semantic=AT_LEAST_ONCE).firing  # type: ignore[union-attr]
    condition = check(doc, semantic=AT_MOST_ONCE)
    assert condition is not None and not condition.firing


def test_it_cannot_say_without_a_readable_report():
    assert check(None) is None
    assert check({"cluster": "local", "error": "no broker answered", "topics": []}) is None


def test_several_errors_are_all_named():
    topic = TopicFacts(
        "t", _parts(1), {"unclean.leader.election.enable": Setting("true", "topic override")}
    )
    condition = check(report({"t": topic}))
    assert condition is not None and condition.counts == {"lint_errors": 2}
    assert "lint errors topic.rf-1" in condition.reason or "lint errors topic.unclean" in (
        condition.reason
    )
    assert "topic.rf-1" in condition.reason and "topic.unclean-election" in condition.reason
