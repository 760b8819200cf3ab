"""The local three-node Kafka cluster (workers/localkafka/cluster.py) against real brokers.

These tests use the cluster that ``make test`` (bin/test) starts before pytest and describes
in the environment (KAFKA_BOOTSTRAP_SERVERS, LOCAL_KAFKA_NAME, LOCAL_KAFKA_PORT). The fault
tests kill, freeze and restart its nodes, and always put them back, so that every later test
finds three healthy brokers.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tests.support.waiting import wait_until
from workers.localkafka import LocalClusterError
from workers.localkafka.cluster import LocalCluster

pytestmark = pytest.mark.kafka

NODE_IDS = [1, 2, 3]


@pytest.fixture(scope="module")
def cluster() -> LocalCluster:
    names = ("KAFKA_BOOTSTRAP_SERVERS", "LOCAL_KAFKA_NAME", "LOCAL_KAFKA_PORT")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: these tests need the local Kafka cluster that "
            "`make test` (bin/test) starts and describes in the environment; run `make test`.",
            pytrace=False,
        )
    cluster = LocalCluster(
        os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
    )
    assert cluster.bootstrap_servers == os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    cluster.wait_ready(timeout=60)
    return cluster


@pytest.fixture
def kafka_admin(cluster: LocalCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap_servers, "log_level": 2})


@pytest.fixture
def topic(cluster: LocalCluster, kafka_admin: AdminClient) -> Iterator[str]:
    """A fresh RF 3, min.insync.replicas 2 topic with 3 partitions, deleted afterwards."""
    cluster.wait_ready(timeout=60)  # a previous test's fault must not leak into this one
    name = f"it-localcluster-{uuid.uuid4().hex[:10]}"
    cluster.create_topic(name, partitions=3, replication_factor=3, min_insync_replicas=2)
    yield name
    kafka_admin.delete_topics([name], operation_timeout=30)[name].result()


def partitions_of(kafka_admin: AdminClient, topic: str):
    return kafka_admin.list_topics(topic, timeout=10).topics[topic].partitions


def produce(
    producer: Producer, topic: str, values: list[str], reports: list, partition: int | None = None
) -> None:
    """Produce ``values``; their delivery reports (the error, or None) land in ``reports``."""
    kwargs = {} if partition is None else {"partition": partition}
    for value in values:
        producer.produce(
            topic,
            value=value,
            key=value,
            on_delivery=lambda err, _msg: reports.append(err),
            **kwargs,
        )
        producer.poll(0)


def acks_all_producer(cluster: LocalCluster, **extra) -> Producer:
    return Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "delivery.timeout.ms": 30000,
            "linger.ms": 5,
            "log_level": 2,
            **extra,
        }
    )


def consume_everything(cluster: LocalCluster, topic: str, partitions: list[int]) -> list[str]:
    """Every record now in ``partitions`` of ``topic``, read from the beginning to the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"it-localcluster-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
            "log_level": 2,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        values: list[str] = []
        positions = dict.fromkeys(partitions, 0)

        def read_to_the_end() -> bool:
            if all(positions[p] >= ends[p] for p in partitions):
                return True
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                values.append(msg.value().decode())
                positions[msg.partition()] = msg.offset() + 1
            return False

        wait_until(
            read_to_the_end, 60, f"every record up to {ends}", 0, lambda: f"read up to {positions}"
        )
        return values
    finally:
        consumer.close()


def test_it_has_three_brokers(cluster: LocalCluster, kafka_admin: AdminClient) -> None:
    metadata = kafka_admin.list_topics(timeout=10)
    assert sorted(metadata.brokers) == NODE_IDS
    assert sorted(b.port for b in metadata.brokers.values()) == [
        cluster.nodes[n].broker_port for n in NODE_IDS
    ]
    status = cluster.status()
    assert status["brokers"] == NODE_IDS
    assert [node["state"] for node in status["nodes"]] == ["running"] * 3
    assert status["controller"] in NODE_IDS


def test_it_creates_a_replicated_topic_and_round_trips_1000_records(
    cluster: LocalCluster, kafka_admin: AdminClient, topic: str
) -> None:
    partitions = partitions_of(kafka_admin, topic)
    assert sorted(partitions) == [0, 1, 2]
    assert all(sorted(p.replicas) == NODE_IDS for p in partitions.values())
    resource = ConfigResource(ResourceType.TOPIC, topic)

    def topic_configs():
        # An admin request goes to any broker, and a broker learns of a new topic from the
        # metadata log a few milliseconds after another: one that has not yet answers
        # UNKNOWN_TOPIC_OR_PART, which the next request (or broker) does not.
        try:
            return kafka_admin.describe_configs([resource])[resource].result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return None

    configs = wait_until(topic_configs, 30, f"the configs of {topic}")
    assert configs["min.insync.replicas"].value == "2"
    assert configs["unclean.leader.election.enable"].value == "false"

    values = [f"record-{i}" for i in range(1000)]
    producer = acks_all_producer(cluster)
    reports: list = []
    produce(producer, topic, values, reports)
    assert producer.flush(30) == 0
    assert reports == [None] * 1000

    consumed = consume_everything(cluster, topic, [0, 1, 2])
    assert len(consumed) == 1000  # the log ends where the last record is: nothing extra
    assert sorted(consumed) == sorted(values)


def test_it_keeps_acking_with_acks_all_when_the_leader_is_killed(
    cluster: LocalCluster, kafka_admin: AdminClient, topic: str
) -> None:
    victim = cluster.leader_of(topic, 0)
    producer = acks_all_producer(cluster, **{"request.timeout.ms": 10000})
    values = [f"before-{i}" for i in range(200)]
    reports: list = []
    produce(producer, topic, values, reports, partition=0)
    assert producer.flush(30) == 0
    assert reports == [None] * 200

    try:
        cluster.kill(victim)
        assert cluster.node_pid(victim) is None
        # Keep producing (about 100 records a second) until another replica leads and at
        # least 100 records went out after that.
        after_election = 0
        new_leader = victim
        sequence = 0

        def produced_past_the_election() -> bool:
            nonlocal after_election, new_leader, sequence
            value = f"during-{sequence}"
            values.append(value)
            produce(producer, topic, [value], reports, partition=0)
            sequence += 1
            producer.poll(0.01)
            if new_leader in (victim, -1) and sequence % 20 == 0:
                new_leader = cluster.leader_of(topic, 0)
            if new_leader not in (victim, -1):
                after_election += 1
            return after_election >= 100

        wait_until(
            produced_past_the_election,
            60,
            "a new leader and 100 records produced after the kill",
            interval=0,
        )
        assert producer.flush(40) == 0
        assert new_leader in set(NODE_IDS) - {victim}
        assert len(reports) == len(values)
        failed = [err for err in reports if err is not None]
        assert failed == [], f"{len(failed)} delivery reports failed, first {failed[:3]}"
    finally:
        if cluster.node_pid(victim) is None:
            cluster.restart(victim)

    assert victim in kafka_admin.list_topics(timeout=10).brokers
    wait_until(
        lambda: all(victim in p.isrs for p in partitions_of(kafka_admin, topic).values()),
        90,
        f"node {victim} back in the ISR of every partition of {topic}",
    )
    # Every acknowledged record survived the crash, once.
    assert sorted(consume_everything(cluster, topic, [0])) == sorted(values)


def test_it_pauses_and_resumes_a_node(
    cluster: LocalCluster, kafka_admin: AdminClient, topic: str
) -> None:
    node = cluster.leader_of(topic, 0)
    pid = cluster.node_pid(node)
    try:
        cluster.pause(node)
        status = {n["id"]: n for n in cluster.status()["nodes"]}
        assert status[node]["state"] == "paused"
        assert status[node]["pid"] == pid
        assert all(status[n]["state"] == "running" for n in NODE_IDS if n != node)
        # The cluster notices: the frozen node stops heartbeating, is fenced, and loses
        # its leadership to an in-sync replica. (Asked through the cluster's own admin client:
        # a client already connected to the frozen broker would wait on it until it times out.)
        wait_until(
            lambda: (seen := cluster.status()["brokers"]) is not None and node not in seen,
            30,
            f"paused node {node} fenced (gone from metadata)",
        )
        wait_until(lambda: cluster.leader_of(topic, 0) not in (node, -1), 30, "a new leader")
    finally:
        if cluster.node_pid(node) is not None:
            cluster.resume(node)

    assert cluster.node_pid(node) == pid  # the same process carried on
    status = {n["id"]: n for n in cluster.status()["nodes"]}
    assert status[node]["state"] == "running"
    wait_until(
        lambda: node in kafka_admin.list_topics(timeout=5).brokers, 60, f"node {node} unfenced"
    )
    wait_until(
        lambda: all(node in p.isrs for p in partitions_of(kafka_admin, topic).values()),
        90,
        f"node {node} back in the ISR of every partition of {topic}",
    )


def test_it_reports_rss_for_each_node(cluster: LocalCluster) -> None:
    status = json.loads(json.dumps(cluster.status()))  # JSON-able as it is
    assert [node["id"] for node in status["nodes"]] == NODE_IDS
    for node in status["nodes"]:
        assert node["state"] == "running"
        assert node["pid"] == cluster.node_pid(node["id"])
        vm_rss = next(
            int(line.split()[1]) * 1024
            for line in Path(f"/proc/{node['pid']}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        # A running JVM with a 384 MiB heap; the kernel's own figure agrees within 20%.
        assert 64 * 2**20 < node["rss_bytes"] < 2 * 2**30
        assert abs(node["rss_bytes"] - vm_rss) < 0.2 * vm_rss


def test_it_leaves_a_running_cluster_alone_on_start(cluster: LocalCluster) -> None:
    pids = [cluster.node_pid(n) for n in NODE_IDS]
    assert None not in pids
    cluster.start(timeout=30)
    assert [cluster.node_pid(n) for n in NODE_IDS] == pids


def test_it_refuses_to_start_on_ports_in_use(cluster: LocalCluster, tmp_path: Path) -> None:
    intruder = LocalCluster(
        "intruder", base_dir=tmp_path, broker_base_port=cluster.broker_base_port
    )
    with pytest.raises(LocalClusterError, match=r"127\.0\.0\.1:\d+ is in use by pid \d+"):
        intruder.start(timeout=10)
    assert all(intruder.node_pid(n) is None for n in NODE_IDS)
    assert not (tmp_path / "intruder").exists()  # refused before formatting anything
