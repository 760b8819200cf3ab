"""``workers.clients.kafka.consume_batch`` against the real cluster: a batch does not wait to fill
(that was latency the sentinel added to what it measures), and a backlog still drains in
batches larger than ``batch_size``."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.sentinels import bootstrap
from tests.support.waiting import wait_until
from workers.clients.kafka import BATCH_GROWTH, consume_batch

pytestmark = pytest.mark.kafka

BATCH = 100
BACKLOG = 3000


@pytest.fixture
def topic():
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    name = f"consume-batch-{uuid.uuid4().hex[:8]}"
    for future in admin.create_topics([NewTopic(name, 1, 3)]).values():
        future.result(30)
    yield name
    admin.delete_topics([name])


def test_it_returns_the_first_record_at_once_and_drains_a_backlog_in_grown_batches(topic):
    producer = Producer({"bootstrap.servers": bootstrap(), "linger.ms": 5})
    consumer = Consumer(
        {"bootstrap.servers": bootstrap(), "group.id": topic, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        producer.produce(topic, b"first", partition=0)
        producer.flush(30)
        # One record is there: the batch comes back with it alone (how soon is a latency
        # target, measured by bench/latency_fidelity.py).
        first = wait_until(lambda: consume_batch(consumer, BATCH, 60.0), 90, "the first record")
        assert [m.value() for m in first] == [b"first"]

        for i in range(BACKLOG):
            producer.produce(topic, str(i).encode(), partition=0)
        producer.flush(30)
        batches: list[list[bytes]] = []

        def drained() -> bool:
            batch = consume_batch(consumer, BATCH, 1.0)
            if batch:
                batches.append([m.value() for m in batch if m.error() is None])
            return sum(map(len, batches)) >= BACKLOG

        wait_until(drained, 90, "the backlog drained", interval=0)
        values = [v for batch in batches for v in batch]
        assert values == [str(i).encode() for i in range(BACKLOG)]  # each once, in order
        assert max(map(len, batches)) > BATCH  # batching still pays under a backlog
        assert max(map(len, batches)) <= BATCH * BATCH_GROWTH
    finally:
        consumer.close()
