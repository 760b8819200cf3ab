"""The group sampler under the cluster's watch lease (workers/runtime/watch.py): killing the
worker that watches the cluster moves the group watcher to another worker, which continues the
counts it left in Redis instead of counting them again.

The workers are stand-ins that run only their cluster watchers (tests/support/watching.py);
the watch processes, the lease, the sampler, Redis and the cluster are real."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.waiting import wait_until
from tests.support.watching import WatchFleet
from workers.engine.groups import LOST
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.store.cluster import ClusterStore
from workers.store.connection import connect
from workers.store.groups import GroupStore

pytestmark = pytest.mark.kafka

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")


@pytest.fixture
def setup(redis_url: str, tmp_path: Path) -> Iterator[tuple[WatchFleet, GroupStore, str, str]]:
    if not BOOTSTRAP:
        pytest.fail("KAFKA_BOOTSTRAP_SERVERS not set: run bin/test", pytrace=False)
    tag = f"grl-{uuid.uuid4().hex[:8]}"
    cluster = f"test-{tag}"
    topic = f"{tag}-topic"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})
    admin.create_topics([NewTopic(topic, 1, 3)], operation_timeout=30)[topic].result()
    wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 30, "the topic")
    client = connect(redis_url)
    store = GroupStore(client, cluster)
    workers = WatchFleet(
        tmp_path,
        redis_url,
        env={
            "DS_WATCH_SAMPLERS": "workers.runtime.groups:group_sampler",
            "DS_GROUPS_INTERVAL_S": "1",
            "DS_GROUPS_INCLUDE": f"{tag}-*",
        },
    )
    workers.enable(
        SentinelSpec(
            id=1,
            name="s1",
            profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
            cluster=cluster,
            topic=f"{tag}-sentinel",
            bootstrap_servers=BOOTSTRAP,
        )
    )
    yield workers, store, topic, tag
    workers.stop()
    store.forget()
    ClusterStore(client, cluster).forget()
    admin.delete_topics([topic])


def delete_before(topic: str, offset: int) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})
    for future in admin.delete_records([TopicPartition(topic, 0, offset)]).values():
        future.result()


def test_killing_the_watching_worker_moves_the_group_watcher_without_counting_twice(
    setup: tuple[WatchFleet, GroupStore, str, str],
) -> None:
    workers, store, topic, tag = setup
    group = f"{tag}-billing"
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all"})
    for i in range(100):
        producer.produce(topic, value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group,
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, 0, 0)])
    read = 0
    while read < 20:
        read += len([m for m in consumer.consume(20 - read, timeout=1) if m.error() is None])
    consumer.commit(asynchronous=False)
    consumer.close()

    cluster = ClusterStore(store.r, store.cluster)
    workers.start("a")
    workers.start("b")
    wait_until(lambda: store.state(group), 90, "the group sampled", details=workers.logs)
    delete_before(topic, 60)
    wait_until(
        lambda: (s := store.state(group)) and s.total(LOST) == 40,
        60,
        "40 lost",
        details=workers.logs,
    )
    first = cluster.watcher()
    assert first in ("a", "b")
    workers.procs[first].send_signal(signal.SIGKILL)
    workers.procs[first].wait(10)
    second = wait_until(
        lambda: (w := cluster.watcher()) not in (None, first) and w, 90, "the other worker",
        details=workers.logs,
    )  # fmt: skip

    def by_second() -> dict | None:
        doc = cluster.samplers().get("groups")
        return doc if doc and doc["by"].startswith(f"{second}:") else None

    wait_until(
        lambda: (d := by_second()) and d["samples"] >= 3, 60, "three samples by the new watcher",
        details=workers.logs,
    )  # fmt: skip
    assert store.state(group).total(LOST) == 40
    assert [(e.kind, e.count) for e in store.events(group)] == [(LOST, 40)]

    delete_before(topic, 70)  # and the new watcher counts what is new, once
    wait_until(
        lambda: (s := store.state(group)) and s.total(LOST) == 50,
        60,
        "50 lost",
        details=workers.logs,
    )
    assert [(e.kind, e.count) for e in store.events(group)] == [(LOST, 10), (LOST, 40)]
