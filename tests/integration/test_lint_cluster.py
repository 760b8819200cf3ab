"""The guarantee lint against the real local cluster: risky topics are flagged with the right
rule and source, a well-configured topic is clean, a stopped broker shows as under-replicated
partitions and clears when it returns, and a full lint writes nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from django.core.management import call_command

from tests.support.waiting import wait_until
from workers.clients.lintfacts import gather
from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from workers.engine.lint.topics import (
    CAN_HOLD,
    CANNOT_HOLD,
    METADATA,
    ONE_FAILURE_AWAY,
    TOPIC_OVERRIDE,
    lint_report,
)
from workers.localkafka.cluster import LocalCluster

pytestmark = pytest.mark.kafka

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")


@pytest.fixture(scope="module")
def admin() -> AdminClient:
    if not BOOTSTRAP or not os.environ.get("LOCAL_KAFKA_NAME"):
        pytest.fail(
            "KAFKA_BOOTSTRAP_SERVERS / LOCAL_KAFKA_NAME not set: run bin/test", pytrace=False
        )
    return AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})


@pytest.fixture(scope="module")
def topics(admin: AdminClient) -> Iterator[dict[str, str]]:
    """One topic per risky setting, plus a well-configured one; deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    specs = {
        "rf1": (3, 1, {}),
        "minisr1": (3, 3, {"min.insync.replicas": "1"}),
        "minisr3": (3, 3, {"min.insync.replicas": "3"}),
        "unclean": (3, 3, {"unclean.leader.election.enable": "true"}),
        "good": (3, 3, {}),
        "single": (1, 3, {}),
    }
    names = {key: f"lint-{key}-{tag}" for key in specs}
    new = [NewTopic(names[k], n, rf, config=c) for k, (n, rf, c) in specs.items()]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result()
    wait_until(
        lambda: set(names.values()) <= set(admin.list_topics(timeout=5).topics),
        30,
        "topics visible",
    )
    yield names
    for future in admin.delete_topics(list(names.values()), operation_timeout=30).values():
        future.result()


def report_topics() -> dict[str, dict[str, Any]]:
    report = lint_report(gather(BOOTSTRAP, {"log_level": 2}, name="test"))
    return {t["name"]: t for t in report["topics"]}


def findings(topic: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["rule"]: f for f in topic["findings"]}


@pytest.mark.parametrize(
    ("key", "rule", "value", "source"),
    [
        ("rf1", "topic.rf-1", "1", METADATA),
        ("minisr1", "topic.min-isr-1", "1", TOPIC_OVERRIDE),
        ("minisr3", "topic.min-isr-ge-rf", "3", TOPIC_OVERRIDE),
        ("unclean", "topic.unclean-election", "true", TOPIC_OVERRIDE),
    ],
)
def test_it_flags_each_risky_topic_with_its_rule_and_source(
    topics: dict[str, str], key: str, rule: str, value: str, source: str
) -> None:
    topic = report_topics()[topics[key]]
    found = findings(topic)
    assert rule in found, topic["findings"]
    assert (found[rule]["value"], found[rule]["source"]) == (value, source)
    assert topic["verdicts"][AT_LEAST_ONCE]["verdict"] in (CANNOT_HOLD, ONE_FAILURE_AWAY)
    assert topic["verdicts"][AT_MOST_ONCE]["verdict"] == CAN_HOLD


def test_it_finds_a_well_configured_topic_clean(topics: dict[str, str]) -> None:
    good = report_topics()[topics["good"]]
    # Leaders may sit on two brokers for a while after creation; the replication is what counts.
    rules = set(findings(good)) - {"topic.leaders-not-spread"}
    assert rules == set(), good["findings"]
    assert good["verdicts"][EXACTLY_ONCE]["verdict"] in (CAN_HOLD, ONE_FAILURE_AWAY)
    assert not good["internal"]


def test_it_flags_internal_topics_as_internal(topics: dict[str, str]) -> None:
    # A committed offset makes the cluster create its offsets topic, if it had none yet.
    consumer = Consumer(
        {"bootstrap.servers": BOOTSTRAP, "group.id": f"lint-{uuid.uuid4().hex[:6]}", "log_level": 2}
    )
    try:
        consumer.commit(offsets=[TopicPartition(topics["good"], 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    found = report_topics()
    assert found["__consumer_offsets"]["internal"]
    assert not any(found[name]["internal"] for name in topics.values())


def test_it_sees_a_stopped_brokers_partitions_under_replicated_and_clean_again(
    topics: dict[str, str],
) -> None:
    cluster = LocalCluster(
        os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
    )
    name = topics["single"]  # one partition, a replica on every broker: node 2 holds one

    def rules_now() -> set[str]:
        return set(findings(report_topics()[name]))

    assert "topic.under-replicated" not in rules_now()
    cluster.kill(2)
    try:
        seen = wait_until(
            lambda: (r := rules_now()) >= {"topic.under-replicated"} and r,
            60,
            "node 2's replica out of the ISR",
        )
        assert "topic.isr-at-min" in seen  # 2 in sync = min.insync.replicas
    finally:
        cluster.start_node(2)
        cluster.wait_for_brokers({2}, timeout=120)
    wait_until(lambda: rules_now() == set(), 90, "node 2 back in the ISR, topic clean")


def _all_configs(admin: AdminClient, names: set[str]) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Every config of the topics ``names`` and of broker 1, with its source."""
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in sorted(names)]
    resources += [ConfigResource(ResourceType.BROKER, "1")]
    out = {}
    for resource, future in admin.describe_configs(resources).items():
        entries = future.result()
        out[f"{resource.restype}:{resource.name}"] = {
            k: (e.value, int(getattr(e.source, "value", e.source))) for k, e in entries.items()
        }
    return out


@pytest.mark.django_db
def test_it_never_writes_to_the_cluster(
    topics: dict[str, str], admin: AdminClient, redis_url: str, settings: Any
) -> None:
    settings.REDIS_URL = redis_url
    settings.KAFKA_BOOTSTRAP_SERVERS = BOOTSTRAP
    # This module's topics, whose configs the lint reads closely. Other tests' topics may be
    # in the middle of their deletion (Kafka deletes asynchronously, after their teardown):
    # one can vanish between listing and describing it, which is no doing of the lint.
    own = set(topics.values())
    before = _all_configs(admin, own)
    topic_names = set(admin.list_topics(timeout=10).topics)
    with pytest.raises(SystemExit) as exit_info:
        call_command("lint", "--json")
    assert exit_info.value.code == 1  # the RF-1 and unclean topics are errors
    after_names = set(admin.list_topics(timeout=10).topics)
    assert after_names - topic_names == set(), "the lint created a topic"
    assert own <= after_names, "the lint deleted a topic"
    assert _all_configs(admin, own) == before
