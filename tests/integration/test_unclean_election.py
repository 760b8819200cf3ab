"""An unclean leader election on the real local cluster destroys acknowledged records: the
at-least-once sentinel counts exactly those as lost and as divergent, the cluster's events
watcher records the election on that partition, and the incident that pages for the loss says
why ("unclean leader election"), on the incident and in the webhook body a real HTTP receiver
gets.

The partition has two replicas, on nodes 1 (leader) and 2, with ``min.insync.replicas=1`` and
``unclean.leader.election.enable=true``. Every node of the local cluster is also a KRaft
controller, so at most one node may be down while the ISR must change (an ISR shrink needs the
quorum): node 2 stops, the ISR shrinks to the leader, the producer's acks=all records are
acknowledged by the leader alone, the producer stops (every record acknowledged), the leader is
killed (the quorum is lost for a moment), and node 2, started again, is elected from outside
the ISR by the controller (the topic allows it). The records the leader acknowledged past node
2's log end are gone: ground truth is the leader's log end before the kill minus node 2's
after the election. The producer starts again (its records are acknowledged at the destroyed
offsets: divergent), node 1 comes back and truncates its log to the new leader's, and the
consumer (stopped cleanly before the fault, so it read nothing past node 2's log end) reads on
and never sees the destroyed records: lost.

The twin runs the same steps with unclean elections disabled (Kafka 4.1, eligible leader
replicas, KIP-966): the controller never elects node 2, whose log is behind; the partition has
no leader until node 1 is back, the sentinel is STALLED meanwhile, the stall's incident says
the partition had no leader, and nothing is lost: every record the producer kept retrying is
delivered once node 1 leads again.

The sentinel's roles run in processes of their own; the events sampler and the on-call
evaluation are stepped here directly, as a worker's watch process and Celery beat step them.
``DS_UNCLEAN_REPEAT=5`` repeats both tests to measure the time from the fault to the
explained incident (docs/benchmarks.md); the suite runs each once."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from dashboard.models import AlertRule, Profile
from dashboard.oncall import evaluation, notification
from tests.integration.test_hosting import make_sentinel
from tests.support.oncall import opened, received, webhook_channel
from tests.support.sentinels import SentinelProcesses, bootstrap
from tests.support.waiting import wait_until
from workers.engine import alerts, explain
from workers.engine.profiles import AT_LEAST_ONCE
from workers.lab.brokeractions import BrokerActions
from workers.lab.limits import Timeouts
from workers.localkafka.cluster import LocalCluster
from workers.roles.eventsampler import EventSampler
from workers.runtime.watch import ClusterWatch
from workers.store.connection import connect

pytestmark = [pytest.mark.kafka, pytest.mark.django_db]

LEADER, STALE = 1, 2
UNCLEAN_TOPIC_CONFIG = {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"}
CLEAN_TOPIC_CONFIG = {"min.insync.replicas": "1", "unclean.leader.election.enable": "false"}


def high_watermark(topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": "unclean-watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def partition_state(admin: AdminClient, topic: str) -> tuple[int, list[int]]:
    """(leader, ISR) of the topic's partition 0 as the metadata says now; (-1, []) while the
    metadata does not know it (a topic just created, no broker answering)."""
    try:
        info = admin.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException:
        return -1, []
    part = info.partitions.get(0) if info is not None and info.error is None else None
    return (part.leader, sorted(part.isrs)) if part is not None else (-1, [])


def events_of(sampler: EventSampler, topic: str, kind: str) -> list[dict]:
    """One step; the events of ``kind`` recorded on ``topic`` so far."""
    sampler.sample()
    return [e for e in sampler.store.events(topic=topic) if e["kind"] == kind]


def unclean_events(sampler: EventSampler, topic: str) -> list[dict]:
    return events_of(sampler, topic, "unclean-election")


def brokers_of(admin: AdminClient) -> set[int]:
    """The brokers the metadata names now (empty while none answers)."""
    try:
        return set(admin.list_topics(timeout=10).brokers)
    except KafkaException:
        return set()


def two_replica_topic(admin: AdminClient, name: str, config: dict[str, str]) -> None:
    # confluent-kafka wants the partition count to match the assignment.
    topic = NewTopic(name, 1, replica_assignment=[[LEADER, STALE]], config=config)
    for future in admin.create_topics([topic], operation_timeout=30).values():
        future.result(60)


def local_brokers() -> BrokerActions:
    local = LocalCluster(
        os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
    )
    return BrokerActions(
        bootstrap_servers=bootstrap(),
        local=local,
        cluster_name="local",
        client=None,
        timeouts=Timeouts(),
    )


class Election:
    """Both tests' stage: the sentinel's one partition on nodes 1 (leader) and 2 with the topic
    ``config``, its roles in processes, the cluster's events sampler stepped here, and the
    brokers restored and the topic deleted at ``close()``."""

    def __init__(self, sentinel, name: str, config: dict[str, str], tmp_path, redis_url) -> None:
        self.sentinel, self.spec = sentinel, sentinel.to_spec()
        self.brokers = local_brokers()
        self.brokers.scenario_name = name
        self.admin = AdminClient({"bootstrap.servers": bootstrap()})
        two_replica_topic(self.admin, self.spec.topic, config)
        self.procs = SentinelProcesses(self.spec, tmp_path)
        watch = ClusterWatch(sentinel.cluster.name, bootstrap(), {}, (self.spec.topic,))
        self.sampler = EventSampler(watch, connect(redis_url))

    def state(self) -> tuple[int, list[int]]:
        return partition_state(self.admin, self.spec.topic)

    def flowing(self) -> None:
        """Both replicas in sync under node 1; the roles started, records flowing; the on-call
        evaluation's first sight (the default rules, healthy)."""
        wait_until(
            lambda: self.state() == (LEADER, [LEADER, STALE]),
            60,
            "the partition led by node 1, both replicas in sync",
        )
        for roles in ("producer", "consumer", "checker"):
            self.procs.start(roles)
        self.procs.wait_status(lambda d: d["totals"]["processed"] > 50, 120, "records flowing")
        evaluation.evaluate(dispatch=notification.deliver)

    def leader_alone(self, records: int = 40) -> None:
        """Node 2 stops: the ISR shrinks to node 1, which alone acknowledges ``records`` more."""
        self.brokers.stop_node(STALE)
        wait_until(lambda: self.state()[1] == [LEADER], 60, "the ISR shrunk to the leader")
        # The watcher's last sight before the fault, which its events are told against: a
        # sample that read the partition (one that missed it, its request unanswered while
        # node 2 went away, would leave nothing to compare the fault's sample with).
        wait_until(lambda: self.watched(LEADER, [LEADER]), 60, "the watcher seeing ISR [1]")
        shrunk_at = high_watermark(self.spec.topic)
        wait_until(
            lambda: high_watermark(self.spec.topic) - shrunk_at >= records,
            60,
            f"{records} records acknowledged by the leader alone",
        )

    def watched(self, leader: int, isr: list[int]) -> bool:
        """One step of the sampler; whether its last sample has p0 led by ``leader`` with
        ``isr``."""
        self.sampler.sample()
        topics = (self.sampler.store.last_sample() or {}).get("topics", {})
        part = topics.get(self.spec.topic, {}).get("partitions", {}).get("0") or {}
        return part.get("leader") == leader and part.get("isr") == isr

    def close(self) -> None:
        self.procs.stop_all()
        self.sampler.store.forget()
        self.sampler.close()
        problems = self.brokers.restore()
        self.brokers.delete_topics([self.spec.topic])
        assert not problems, problems


REPEAT = int(os.environ.get("DS_UNCLEAN_REPEAT", "1"))


@pytest.mark.parametrize("round_", range(REPEAT))
def test_an_unclean_election_destroys_acknowledged_records_counted_exactly_and_explained(
    round_, tmp_path, redis_url, httpserver
):
    webhook_channel(httpserver)
    sentinel = make_sentinel(AT_LEAST_ONCE, partitions=1, replication_factor=2)
    stage = Election(sentinel, "unclean-election", UNCLEAN_TOPIC_CONFIG, tmp_path, redis_url)
    spec, procs, brokers, sampler = stage.spec, stage.procs, stage.brokers, stage.sampler
    try:
        stage.flowing()
        # The consumer stops cleanly (it commits what it processed): it reads nothing more
        # until the election is over.
        procs.stop("consumer")
        stage.leader_alone()
        assert procs.stop("producer") == 0  # it flushes: every record produced is acknowledged
        totals = procs.wait_status(
            lambda d: d["totals"]["acked"] + d["totals"]["failed"] == d["totals"]["produced"],
            60,
            "every delivery report in",
        )["totals"]
        assert totals["failed"] == 0 and totals["acked"] == totals["produced"], totals
        leader_end = high_watermark(spec.topic)
        sampler.sample()
        brokers.kill_node(LEADER)
        brokers.start_node(STALE)  # the quorum is back; the controller elects node 2 unclean
        wait_until(lambda: stage.state()[0] == STALE, 90, "node 2 elected leader")
        elected_at = time.time()
        (event,) = wait_until(
            lambda: unclean_events(sampler, spec.topic), 60, "the unclean election recorded"
        )
        assert event["partition"] == 0, event
        assert event["before"]["isr"] == [LEADER] and event["after"]["leader"] == STALE, event
        assert event["after"]["unclean_enabled"] is True, event
        new_end = high_watermark(spec.topic)
        destroyed = leader_end - new_end
        assert destroyed >= 1, (leader_end, new_end)
        print(f"log end {leader_end} on node 1, {new_end} on node 2: {destroyed} destroyed")

        procs.start("producer")  # its records land at the destroyed offsets
        # The old leader comes back and truncates its log to node 2's; not awaited here (the
        # restore below waits until it is a broker again and in sync).
        brokers.spawn_node(LEADER)
        procs.start("consumer")

        def counted(doc: dict) -> bool:
            evaluation.evaluate(dispatch=notification.deliver)  # as Celery beat does, every 2 s
            return doc["totals"]["lost"] >= destroyed and doc["totals"]["divergent"] >= destroyed

        procs.wait_status(counted, 120, f"{destroyed} records counted lost and divergent")
        # Settled (the producer stopped, every acknowledged record processed or lost): no
        # later count can come on top.
        assert procs.stop("producer") == 0
        totals = procs.wait_settled(90)["totals"]
        assert totals["lost"] == destroyed, totals
        assert totals["divergent"] == destroyed, totals
        assert totals["duplicated"] == 0, totals

        incident = opened(sentinel, "violated")
        found = incident.explanation
        assert found["cause"] == explain.UNCLEAN_ELECTION, found
        assert found["counter"] in ("lost", "divergent"), found
        assert "unclean leader election" in found["text"], found["text"]
        assert f"{spec.topic} p0" in found["text"], found["text"]
        assert received(httpserver) == (explain.UNCLEAN_ELECTION, found["text"])
        # Measured (reported, not asserted): from the election to the explained incident.
        explained = incident.events.get(kind="explained").at.timestamp()
        print(f"fault to explanation: {explained - elected_at:.1f} s; why: {found['text']}")
    finally:
        stage.close()


@pytest.mark.parametrize("round_", range(REPEAT))
def test_with_unclean_elections_disabled_the_stale_replica_is_never_elected_and_nothing_is_lost(
    round_, tmp_path, redis_url, httpserver
):
    """The twin: the same steps on a topic that refuses unclean elections. Expected, as Kafka
    4.1 does it: node 2 registers and is not elected (its log is behind: it is neither in the
    ISR nor an eligible leader replica), the partition has no leader until node 1 is back, and
    then node 1 leads with every record it acknowledged. The producer keeps producing through
    the outage (its records wait in its queue; ``delivery.timeout.ms`` outlasts the outage), so
    the sentinel is STALLED, and the stall's incident is explained by the offline partition."""
    webhook_channel(httpserver)
    sentinel = make_sentinel(AT_LEAST_ONCE, partitions=1, replication_factor=2)
    patient = sentinel.profile
    sentinel.profile = Profile.objects.create(
        name=f"{patient.name}-patient-{sentinel.pk}",
        semantic=patient.semantic,
        producer_properties={**patient.producer_properties, "delivery.timeout.ms": "300000"},
        consumer_properties=patient.consumer_properties,
        commit_strategy=patient.commit_strategy,
    )
    sentinel.save()
    stage = Election(sentinel, "clean-election", CLEAN_TOPIC_CONFIG, tmp_path, redis_url)
    spec, procs, brokers, sampler = stage.spec, stage.procs, stage.brokers, stage.sampler
    try:
        stage.flowing()
        # Page for a stall at once (the default waits a minute).
        AlertRule.objects.filter(sentinel=sentinel, kind=alerts.STALLED).update(for_s=0)
        stage.leader_alone()
        brokers.kill_node(LEADER)
        killed_at = time.time()
        brokers.start_node(STALE)  # the quorum is back; node 2 registers, behind the log
        wait_until(
            lambda: STALE in brokers_of(stage.admin) and stage.state()[0] == -1,
            90,
            "node 2 registered and the partition without a leader",
        )
        # Kafka refused to elect node 2: the watcher sees the partition offline, never an
        # unclean election.
        (offline,) = wait_until(
            lambda: events_of(sampler, spec.topic, "offline"), 60, "the offline partition recorded"
        )
        assert offline["partition"] == 0, offline
        procs.wait_status(
            lambda d: (
                d["verdict"] == "STALLED"
                and (d.get("metadata") or {}).get("partitions", {}).get("0", {}).get("leader") == -1
            ),
            90,
            "the sentinel STALLED, its metadata showing p0 without a leader",
        )

        incident = opened(sentinel, alerts.STALLED)
        assert stage.state()[0] == -1  # still: node 2 was never elected
        found = incident.explanation
        assert (found["cause"], found["partition"]) == (explain.OFFLINE, 0), found
        assert found["text"].startswith("the partition had no leader: "), found["text"]
        assert found["text"].endswith("(stalled on p0)"), found["text"]
        assert received(httpserver) == (explain.OFFLINE, found["text"])
        # Measured (reported, not asserted): from the kill to the explained stall. The
        # evaluation is stepped once the watcher recorded the offline partition and the
        # sentinel is STALLED (Celery beat steps it every 2 s: within 2 s of both).
        explained = incident.events.get(kind="explained").at.timestamp()
        print(f"fault to explanation: {explained - killed_at:.1f} s")

        brokers.start_node(LEADER)  # in the last ISR: elected, with every record it acknowledged
        wait_until(lambda: stage.state()[0] == LEADER, 90, "node 1 leading again")
        procs.wait_status(
            lambda d: d["verdict"] != "STALLED" and d["totals"]["acked"] > 0,
            120,
            "the sentinel flowing again",
        )
        assert procs.stop("producer") == 0
        totals = procs.wait_settled(120)["totals"]
        assert totals["failed"] == 0 and totals["acked"] == totals["produced"], totals
        for counter in ("lost", "divergent", "truncated", "skipped"):
            assert totals[counter] == 0, totals
        assert not unclean_events(sampler, spec.topic)
        print(
            f"no leader, then node 1 again: {totals['acked']} acked, nothing lost; why: "
            f"{found['text']}"
        )
    finally:
        stage.close()
