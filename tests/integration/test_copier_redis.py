"""The exactly-once copier when Redis fails in the middle of a batch: the batch is copied
later, exactly once, never skipped (found by the soak: a Redis restart lost 18 records)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis
from confluent_kafka import Producer

from tests.integration.test_engine import read_topic
from tests.support.sentinels import bootstrap, make_spec
from tests.support.waiting import wait_until
from workers.engine import codec
from workers.engine.profiles import EXACTLY_ONCE
from workers.roles.copier import TransactionalCopier
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = [pytest.mark.kafka]

RECORDS = 60


class FailingOnce(SentinelStore):
    """A store whose first write of transaction state ``fail_at`` fails as if Redis went away."""

    def __init__(self, client: redis.Redis, sid: int, fail_at: str) -> None:
        super().__init__(client, sid)
        self.fail_at = fail_at
        # Shared by the writer copies each role takes (``for_writer``): fails once in all.
        self.injected: list[bool] = []

    @property
    def failed(self) -> bool:
        return bool(self.injected)

    def set_txn_state(self, state: str, token: str) -> None:
        if state == self.fail_at and not self.injected:
            self.injected.append(True)
            raise redis.ConnectionError("Connection closed by server.")
        super().set_txn_state(state, token)


@pytest.mark.parametrize("fail_at", ["open", "committing"])
def test_it_copies_a_batch_whose_transaction_state_could_not_be_written(redis_url, fail_at):
    spec = make_spec(EXACTLY_ONCE, partitions=1)
    store = FailingOnce(connect(redis_url), spec.id, fail_at)
    store.reset()
    copier = TransactionalCopier(spec, store)
    thread = threading.Thread(target=copier.run, daemon=True)
    thread.start()
    try:
        producer = Producer({"bootstrap.servers": bootstrap()})
        for seq in range(RECORDS):
            value = codec.encode_fields(spec.id, 1, 0, seq, time.time_ns() // 1000, 64)
            producer.produce(spec.topic, value=value, partition=0)
        assert producer.flush(30) == 0

        def copied() -> Counter | None:
            out = read_topic(bootstrap(), spec.output_topic_name)
            return out if sum(out.values()) >= RECORDS else None

        out = wait_until(copied, 90, f"{RECORDS} records copied")
        assert store.failed, "the failure was never injected"
        assert out == Counter({(1, 0, seq): 1 for seq in range(RECORDS)})
    finally:
        copier.shutdown.set()
        thread.join(30)
        store.reset()
