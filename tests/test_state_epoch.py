"""The state epoch (``workers.store``): a sentinel's state is written only while the epoch its
writer joined holds, so whatever Redis loses (FLUSHALL, a restart without persistence, a
failover to a replica that was behind) is noticed by every writer instead of mixed in."""

from __future__ import annotations

import pytest
import redis

from workers.engine.documents import STATE_LOST
from workers.store import SentinelStore, StateLost, connect, epoch_started_ms

SID = 990_301


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    client = connect(redis_url)
    SentinelStore(client, SID).reset()
    yield client
    SentinelStore(client, SID).reset()


def test_it_refuses_writes_of_an_epoch_redis_no_longer_holds(client):
    producer, checker = SentinelStore(client, SID), SentinelStore(client, SID)
    token, created = producer.ensure_epoch()
    assert created and epoch_started_ms(token) > 0
    assert checker.ensure_epoch() == (token, False)
    producer.register_run(1, {"started": 1})
    checker.save_checkpoint({"checker": {}}, "0-0", "0-0")
    client.delete(producer.key("epoch"))  # what FLUSHALL or an empty restart leaves

    with pytest.raises(StateLost):
        producer.append_acks(1, {0: {"n": 1, "a": [[0, 0]]}}, None)
    new, created = checker.ensure_epoch()  # the first to find out begins the new epoch
    assert created and new != token
    assert checker.runs() == {} and checker.load_checkpoint()[0] is None  # nothing mixed in
    with pytest.raises(StateLost):  # the producer still holds the old one
        producer.register_run(2, {"started": 2})
    assert producer.ensure_epoch() == (new, False)
    producer.register_run(2, {"started": 2})
    assert list(checker.runs()) == [2]


def test_it_declares_the_state_lost_when_redis_went_back_in_time(client):
    """A replica that was behind keeps the epoch but not every write: the write count going
    back gives it away, and a new epoch begins without what the replica kept."""
    consumer, producer = SentinelStore(client, SID), SentinelStore(client, SID)
    token, _ = consumer.ensure_epoch()
    producer.ensure_epoch()
    producer.register_run(1, {"started": 1})
    consumer.append_ledger([(1, 0, 0, 10, 20)])
    consumer.append_ledger([(1, 0, 1, 11, 21)])
    client.decr(consumer.key("writes"), 2)  # the failover dropped the consumer's last write

    with pytest.raises(StateLost, match="back in time"):
        consumer.append_ledger([(1, 0, 2, 12, 22)])
    assert consumer.epoch() not in (None, token)
    assert consumer.runs() == {} and client.xlen(consumer.key("ledger")) == 0
    with pytest.raises(StateLost):
        producer.append_acks(1, {0: {"n": 1, "a": [[0, 0]]}}, None)


def test_it_records_one_state_lost_event_per_epoch(client):
    first, second = SentinelStore(client, SID), SentinelStore(client, SID)
    first.ensure_epoch()
    second.ensure_epoch()
    assert first.note_state_lost("lost") is True
    assert second.note_state_lost("lost") is False
    assert [e["kind"] for e in first.events()] == [STATE_LOST]
