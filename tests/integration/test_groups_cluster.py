"""The group watcher against the real local cluster, with groups made by the test from plain
confluent-kafka consumers: each sample is one explicit ``GroupSampler.sample()`` step, and
every count is checked against the offsets the test itself moved (docs/groups.md)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tests.support.waiting import wait_until
from workers.clients.groups import GroupReader
from workers.engine.groups import EMPTY, LAGGING, LOST, OK, REWOUND, SKIPPED, STOPPED, Policy
from workers.runtime.groups import GroupSampler
from workers.store.connection import connect
from workers.store.groups import GroupStore

pytestmark = pytest.mark.kafka

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
# Short enough that a test of seconds can see each status, and fail when one is wrong.
POLICY = Policy(window=3, lagging_floor_s=2.0, stall_after_s=5.0)


@pytest.fixture(scope="module")
def admin() -> AdminClient:
    if not BOOTSTRAP:
        pytest.fail("KAFKA_BOOTSTRAP_SERVERS not set: run bin/test", pytrace=False)
    return AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})


class Groups:
    """One test's topic, its groups (named ``<tag>-...``) and a sampler watching only them."""

    def __init__(self, admin: AdminClient, redis_url: str, transactional: bool = False) -> None:
        self.admin = admin
        self.tag = f"grp-{uuid.uuid4().hex[:8]}"
        self.topic = f"{self.tag}-topic"
        admin.create_topics([NewTopic(self.topic, 1, 3)], operation_timeout=30)[self.topic].result()
        wait_until(
            lambda: self.topic in admin.list_topics(timeout=5).topics,
            30,
            "the topic's metadata",
        )
        self.redis = connect(redis_url)
        self.cluster = f"test-{self.tag}"
        reader = GroupReader({"bootstrap.servers": BOOTSTRAP}, include=(f"{self.tag}-*",))
        self.sampler = GroupSampler(
            self.cluster, {}, self.redis, interval_s=1.0, policy=POLICY, reader=reader
        )
        self.consumers: list[Consumer] = []

    def group(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def produce(self, n: int, timestamp_ms: int = 0) -> None:
        producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 5})
        for i in range(n):
            producer.produce(self.topic, value=b"%d" % i, partition=0, timestamp=timestamp_ms)
        assert producer.flush(30) == 0

    def consumer(self, group: str, **conf: Any) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                **conf,
            }
        )
        self.consumers.append(consumer)
        return consumer

    def read_and_commit(self, group: str, n: int, *, close: bool = True, **conf: Any) -> Consumer:
        """A consumer of ``group`` reads ``n`` records and commits after the last one."""
        consumer = self.consumer(group, **conf)
        consumer.subscribe([self.topic])
        got = 0
        deadline = time.monotonic() + 60
        while got < n and time.monotonic() < deadline:
            for msg in consumer.consume(n - got, timeout=0.5):
                if msg.error() is None:
                    got += 1
        assert got == n, f"read {got} of {n} records"
        consumer.commit(asynchronous=False)
        if close:
            consumer.close()
            self.consumers.remove(consumer)
        return consumer

    def committed(self, group: str) -> int:
        result = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        partitions = result[group].result().topic_partitions
        return partitions[0].offset if partitions else -1

    def alter(self, group: str, offset: int) -> None:
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(self.topic, 0, offset)])]
        self.admin.alter_consumer_group_offsets(request)[group].result()

    def delete_before(self, offset: int) -> None:
        futures = self.admin.delete_records([TopicPartition(self.topic, 0, offset)])
        for future in futures.values():
            future.result()

    def partition(self, result: Any, group: str) -> Any:
        return result.states[group].partitions[f"{self.topic}:0"]

    def close(self) -> None:
        for consumer in self.consumers:
            consumer.close()
        self.sampler.close()
        GroupStore(self.redis, self.cluster).forget()
        self.admin.delete_topics([self.topic])


@pytest.fixture
def groups(admin: AdminClient, redis_url: str) -> Iterator[Groups]:
    made = Groups(admin, redis_url)
    yield made
    made.close()


@pytest.mark.django_db
def test_it_counts_records_deleted_ahead_of_a_group_as_lost_exactly_once(
    groups: Groups, redis_url: str, settings: Any
) -> None:
    """Lost to retention counted once per range, and a "records lost" group rule opens one
    incident with exactly that count, paged once, growing with the next loss."""
    from dashboard.models import Channel, Cluster, GroupRule, Incident, IncidentEvent
    from dashboard.oncall import evaluation
    from workers.engine.group_alerts import GROUP_LOST

    settings.REDIS_URL = redis_url
    cluster = Cluster.objects.create(name=groups.cluster, bootstrap_servers=BOOTSTRAP)
    channel = Channel.objects.create(name="hook", kind="webhook", config={"url": "http://127.0.0.1:9/"})  # fmt: skip
    sent: list[tuple[str, str]] = []

    def dispatch(event_id: int) -> None:
        event = IncidentEvent.objects.get(pk=event_id)
        sent.append((event.channel.name, event.action))

    group = groups.group("billing")
    groups.produce(100)
    groups.read_and_commit(group, 20)
    committed = groups.committed(group)
    first = groups.sampler.sample()
    assert groups.partition(first, group).lost == 0 and first.events == []
    rule = GroupRule(cluster=cluster, kind=GROUP_LOST, include=f"{groups.tag}-*")
    rule.apply_defaults()
    rule.save()
    rule.channels.set([channel])

    groups.delete_before(60)
    second = groups.sampler.sample()
    expected = 60 - committed
    assert [(e.kind, e.count, e.first, e.last) for e in second.events] == [
        (LOST, expected, committed, 60)
    ]
    for _ in range(2):  # later samples see the same gap and count nothing again
        again = groups.sampler.sample()
        assert again.events == []
        assert groups.partition(again, group).lost == expected
        evaluation.evaluate(dispatch=dispatch)
    (incident,) = Incident.objects.filter(group_rule=rule)
    assert (incident.group, incident.counts) == (group, {LOST: expected})
    assert incident.partitions == {f"{groups.topic}:0": {"count": expected, "first": committed, "last": 60}}  # fmt: skip
    assert sent == [("hook", "trigger")]

    groups.delete_before(75)
    more = groups.sampler.sample()
    assert [(e.kind, e.count) for e in more.events] == [(LOST, 15)]
    stored = GroupStore(groups.redis, groups.cluster)
    assert stored.state(group).total(LOST) == expected + 15
    assert [(e.kind, e.count) for e in stored.events(group)] == [(LOST, 15), (LOST, expected)]
    evaluation.evaluate(dispatch=dispatch)
    evaluation.evaluate(dispatch=dispatch)
    incident.refresh_from_db()
    assert incident.counts == {LOST: expected + 15}
    assert Incident.objects.filter(group_rule=rule).count() == 1 and sent == [("hook", "trigger")]


def test_it_counts_an_offset_moved_back_as_rewound_and_forward_past_unread_as_skipped(
    groups: Groups,
) -> None:
    group = groups.group("indexer")
    groups.produce(100)
    groups.read_and_commit(group, 50)
    before = groups.committed(group)
    groups.sampler.sample()

    groups.alter(group, before - 30)
    back = groups.sampler.sample()
    assert [(e.kind, e.count, e.first, e.last) for e in back.events] == [
        (REWOUND, 30, before - 30, before)
    ]
    assert "administrative" in back.events[0].detail

    groups.alter(group, 90)  # past the 40 records from `before` nobody read
    forward = groups.sampler.sample()
    assert [(e.kind, e.count, e.first, e.last) for e in forward.events] == [
        (SKIPPED, 90 - before, before, 90)
    ]
    assert groups.partition(forward, group).rewound == 30
    assert groups.partition(forward, group).skipped == 90 - before
    assert groups.sampler.sample().events == []


def test_it_counts_nothing_when_a_consumer_reads_forward_without_staying_a_member(
    groups: Groups,
) -> None:
    # A batch job: joins, reads, commits and leaves between two samples. Its commit carries the
    # leader epoch of what it read, so its forward move is consumption, not a skip.
    group = groups.group("batch")
    groups.produce(60)
    groups.read_and_commit(group, 20)
    groups.sampler.sample()
    groups.read_and_commit(group, 30)
    after = groups.sampler.sample()
    assert after.events == []
    assert groups.partition(after, group).committed == groups.committed(group)


def test_it_shows_a_group_whose_members_stop_as_stopped_within_two_samples(
    groups: Groups,
) -> None:
    group = groups.group("scorer")
    groups.produce(50)
    consumer = groups.read_and_commit(group, 50, close=False)
    groups.produce(10)
    with_members = groups.sampler.sample()
    assert with_members.states[group].members  # a live member reads it
    assert with_members.states[group].status != STOPPED
    consumer.close()
    groups.consumers.remove(consumer)
    statuses = [groups.sampler.sample().states[group].status for _ in range(2)]
    assert statuses[-1] == STOPPED, statuses
    assert groups.sampler.sample().states[group].lag == 10


def test_it_never_flags_a_healthy_consumer_keeping_up_with_steady_traffic(
    groups: Groups,
) -> None:
    # The product's own thresholds (a lag younger than 30 s is never LAGGING, no commit for
    # 120 s is STALLED): on this shared machine a consumer that keeps up still falls a few
    # seconds behind now and then, which is not what an on-call engineer should be told.
    groups.sampler.policy = Policy(window=3)
    group = groups.group("healthy")
    stop = threading.Event()
    errors: list[str] = []

    def produce() -> None:
        producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 5})
        while not stop.is_set():
            for i in range(10):
                producer.produce(groups.topic, value=b"%d" % i, partition=0)
            producer.poll(0)
            stop.wait(0.1)
        producer.flush(30)

    def consume() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([groups.topic])
        try:
            while not stop.is_set():
                batch = [m for m in consumer.consume(500, timeout=0.2) if m.error() is None]
                if batch:
                    consumer.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(repr(exc))
        finally:
            consumer.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: groups.committed(group) > 0, 60, "the consumer's first commit")
        results = []
        for _ in range(8):
            results.append(groups.sampler.sample())
            time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert errors == []
    seen = [(r.states[group].status, r.states[group].lag, r.states[group].lag_s) for r in results]
    assert [status for status, _, _ in seen] == [OK] * 8, seen
    assert all(age is not None for _, lag, age in seen if lag > 0), seen  # each record read
    assert [e for r in results for e in r.events] == []
    assert results[-1].states[group].partitions[f"{groups.topic}:0"].committed > 0


def test_it_measures_lag_in_seconds_from_the_record_and_shows_zero_on_an_idle_topic(
    groups: Groups,
) -> None:
    group = groups.group("idle")
    day_ago_ms = int((time.time() - 86_400) * 1000)
    groups.produce(10, timestamp_ms=day_ago_ms)
    groups.read_and_commit(group, 4)
    behind = groups.sampler.sample()
    part = groups.partition(behind, group)
    assert part.lag == 6
    assert part.lag_s is not None and 86_400 <= part.lag_s < 2 * 86_400

    groups.read_and_commit(group, 6)
    for _ in range(2):  # a day-old last record, nothing new: 0 s, however long it stays idle
        idle = groups.partition(groups.sampler.sample(), group)
        assert (idle.lag, idle.lag_s) == (0, 0.0)
    assert idle.status == EMPTY  # nobody reads it, nothing to read


def test_it_never_counts_transaction_markers_as_lag_or_loss(groups: Groups) -> None:
    group = groups.group("eos")
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": f"{groups.tag}-txn"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(groups.topic, value=b"%d" % i, partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()  # then an aborted transaction at the end of the log
    for i in range(5):
        producer.produce(groups.topic, value=b"aborted %d" % i, partition=0)
    assert producer.flush(30) == 0  # written to the log, then aborted
    producer.abort_transaction(30)

    consumer = groups.read_and_commit(
        group, 10, close=False, **{"isolation.level": "read_committed"}
    )
    consumer.consume(10, timeout=2.0)  # nothing more to read: the aborted records are passed
    consumer.commit(asynchronous=False)
    consumer.close()
    groups.consumers.remove(consumer)

    marker = groups.group("eos-at-marker")  # a group committed exactly on the commit marker
    groups.alter(marker, 10)
    sample = groups.sampler.sample()
    for name in (group, marker):
        part = groups.partition(sample, name)
        assert part.log_end == 17  # 10 records, a commit marker, 5 aborted, an abort marker
        assert (part.lag, part.lag_s, part.lost) == (0, 0.0, 0), name
    assert groups.partition(sample, marker).committed == 10  # Kafka's own lag would say 7
    assert sample.events == []


def test_it_shows_a_consumer_slower_than_its_producer_as_lagging(groups: Groups) -> None:
    group = groups.group("slow")
    minute_ago_ms = int((time.time() - 60) * 1000)
    groups.produce(20, timestamp_ms=minute_ago_ms)
    consumer = groups.read_and_commit(group, 5, close=False)
    statuses = []
    for _ in range(3):  # each step: 20 records in, 5 read and committed by a live member
        groups.produce(20, timestamp_ms=minute_ago_ms)
        got = 0
        while got < 5:
            got += len([m for m in consumer.consume(5 - got, timeout=1.0) if m.error() is None])
        consumer.commit(asynchronous=False)
        result = groups.sampler.sample()
        statuses.append(result.states[group].status)
    part = groups.partition(result, group)
    assert list(part.lags) == [30, 45, 60]
    assert statuses == [OK, OK, LAGGING]


@pytest.mark.django_db
def test_the_lint_says_when_retention_is_shorter_than_a_groups_worst_lag(
    groups: Groups, admin: AdminClient
) -> None:
    """A group an hour behind (its next record was written an hour ago) on a topic that keeps
    records 30 minutes: the lint of the cluster names the rule, the group and both durations,
    from the topic's real configs and the watcher's stored lag."""
    from dashboard.lint import services as lint

    group = groups.group("reports")
    groups.produce(50, timestamp_ms=int((time.time() - 3600) * 1000))
    groups.read_and_commit(group, 10)
    groups.sampler.sample()

    def alter(**configs: str) -> None:
        config = ConfigResource(
            ResourceType.TOPIC,
            groups.topic,
            incremental_configs=[
                ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
                for k, v in configs.items()
            ],
        )
        for future in admin.incremental_alter_configs([config]).values():
            future.result(30)

    alter(retention_ms="1800000")
    target = lint.Target(groups.cluster, BOOTSTRAP)

    def finding(rule: str):
        def found() -> dict | None:
            groups.sampler.sample()  # the age of the group's next record, if not read yet
            report = lint.run(target)
            (topic,) = [t for t in report["topics"] if t["name"] == groups.topic]
            return next((f for f in topic["findings"] if f["rule"] == rule), None)

        return found

    found = wait_until(
        finding("topic.retention-below-group-lag"),
        90,
        "the retention finding (the topic's config read back)",
    )
    assert found["severity"] == "error" and found["value"] == "1800000", found
    assert found["message"].startswith(
        f"retention 30 min is shorter than group '{group}''s worst lag this week (1.0 h)"
    ), found["message"]
    # Compacted as well: a deletion the cleaner keeps 10 minutes is one the group never reads.
    alter(cleanup_policy="compact,delete", delete_retention_ms="600000")
    found = wait_until(
        finding("topic.tombstones-expire-before-group-reads"),
        90,
        "the tombstones finding (the topic's configs read back)",
    )
    assert found["severity"] == "error" and found["value"] == "600000", found
    assert found["message"].startswith(
        f"delete.retention.ms 10 min on a compacted topic is shorter than group '{group}''s "
        "worst lag this week (1.0 h)"
    ), found["message"]
