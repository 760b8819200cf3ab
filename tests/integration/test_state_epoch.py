"""The state epoch (``workers.store.epoch``): a sentinel's state is written only while the epoch its
writer joined holds, so whatever Redis loses (FLUSHALL, a restart without persistence, a
failover to a replica that was behind) is noticed by every writer instead of mixed in."""

from __future__ import annotations

import json

import pytest
import redis

from tests.support.sentinels import make_spec
from workers.engine.documents import STATE_LOST
from workers.engine.profiles import AT_LEAST_ONCE
from workers.engine.streams import AckReport, LedgerEntry, PartitionReport
from workers.roles.producer import SentinelProducer
from workers.store.connection import connect
from workers.store.epoch import StateLost, epoch_started_ms
from workers.store.sentinel import SentinelStore

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
        producer.append_acks(AckReport(1, {0: PartitionReport(1, [[0, 0]])}))
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
    consumer.append_ledger(LedgerEntry([(1, 0, 0, 10, 20)]))
    consumer.append_ledger(LedgerEntry([(1, 0, 1, 11, 21)]))
    client.decr(consumer.key("writes"), 2)  # the failover dropped the consumer's last write

    with pytest.raises(StateLost, match="back in time"):
        consumer.append_ledger(LedgerEntry([(1, 0, 2, 12, 22)]))
    assert consumer.epoch() not in (None, token)
    assert consumer.runs() == {} and client.xlen(consumer.key("ledger")) == 0
    with pytest.raises(StateLost):
        producer.append_acks(AckReport(1, {0: PartitionReport(1, [[0, 0]])}))


def test_it_records_one_state_lost_event_per_epoch(client):
    first, second = SentinelStore(client, SID), SentinelStore(client, SID)
    first.ensure_epoch()
    second.ensure_epoch()
    assert first.note_state_lost("lost") is True
    assert second.note_state_lost("lost") is False
    assert [e["kind"] for e in first.events()] == [STATE_LOST]


class FailedWrites:
    """The sentinel's guarded writes (EVALSHA) failing with a ``ConnectionError``: with
    ``made``, Redis ran the script, then the connection dropped before its reply arrived (what
    a Redis shutting down, a failover or a network cut does to the commands in flight);
    without, Redis never got it. The writer cannot tell which and sends the same write again
    (the consumer keeps sending a batch's ledger entry until Redis takes it; the producer
    keeps its unsent delivery report)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int, *, made: bool = True):
        self.left = count
        self.failed = 0
        send = redis.Redis._send_command_parse_response

        def send_command_parse_response(client, conn, command_name, *args, **options):
            if command_name != "EVALSHA" or self.left <= 0:
                return send(client, conn, command_name, *args, **options)
            self.left -= 1
            self.failed += 1
            if made:
                send(client, conn, command_name, *args, **options)
            conn.disconnect()
            raise redis.ConnectionError("Connection closed by server.")

        monkeypatch.setattr(
            redis.Redis, "_send_command_parse_response", send_command_parse_response
        )


def ledger_items(client: redis.Redis, store: SentinelStore) -> list[tuple]:
    return [
        item
        for _id, fields in client.xrange(store.key("ledger"))
        for item in LedgerEntry.from_fields(fields).items
    ]


def test_a_ledger_entry_sent_again_after_its_reply_was_lost_is_made_once(client, monkeypatch):
    """Found by the soak: at a Redis restart the ledger held one processed record twice, and
    exactly-once reported a duplicate Kafka never made."""
    consumer = SentinelStore(client, SID)
    consumer.ensure_epoch()
    failed = FailedWrites(monkeypatch, count=2)
    batch = [(1, 0, 0, 10, 20), (1, 0, 1, 11, 21)]

    for _attempt in range(2):
        with pytest.raises(redis.ConnectionError):
            consumer.append_ledger(LedgerEntry(batch))
    consumer.append_ledger(LedgerEntry(batch))

    assert failed.failed == 2
    assert ledger_items(client, consumer) == batch
    # The same items again are another write, not a resend.
    consumer.append_ledger(LedgerEntry(batch))
    assert ledger_items(client, consumer) == batch + batch
    assert int(client.get(consumer.key("writes"))) == 2


def test_a_write_sent_again_into_a_new_epoch_is_made(client, monkeypatch):
    """A write whose reply was lost, then Redis lost the state: the batch belongs in the new
    epoch (``AssignedConsumer.process``), so sending it again there makes it."""
    consumer = SentinelStore(client, SID)
    consumer.ensure_epoch()
    FailedWrites(monkeypatch, count=1)
    batch = [(1, 0, 0, 10, 20)]
    with pytest.raises(redis.ConnectionError):
        consumer.append_ledger(LedgerEntry(batch))
    client.delete(consumer.key("epoch"))  # an empty restart, say

    with pytest.raises(StateLost):
        consumer.append_ledger(LedgerEntry(batch))
    consumer.ensure_epoch()
    consumer.append_ledger(LedgerEntry(batch))
    assert ledger_items(client, consumer) == batch


@pytest.mark.parametrize("made", [True, False], ids=["reply-lost", "not-made"])
def test_a_delivery_report_redis_failed_to_take_is_sent_again_once(client, monkeypatch, made):
    producer = SentinelProducer(make_spec(AT_LEAST_ONCE), SentinelStore(client, SID))
    producer.store.ensure_epoch()
    producer.run_id = 7
    producer._produced[0], producer._acked[0] = 2, [0, 1]
    failed = FailedWrites(monkeypatch, count=1, made=made)

    with pytest.raises(redis.ConnectionError):
        producer.flush_acks(force=True)
    producer._produced[0], producer._acked[0] = 1, [2]
    producer.flush_acks(force=True)

    assert failed.failed == 1
    reports = [json.loads(f[b"d"]) for _id, f in client.xrange(producer.store.key("acks"))]
    assert [(r["run"], r["p"]) for r in reports] == [
        (7, {"0": {"n": 2, "a": [[0, 1]]}}),
        (7, {"0": {"n": 1, "a": [[2, 2]]}}),
    ]


def test_the_streams_hold_the_bytes_they_always_held(client):
    """``AckReport`` / ``LedgerEntry`` write what the producer and the consumers wrote before
    them, and an entry written then reads back the same."""
    store = SentinelStore(client, SID)
    lat = "2:AgAAAAAAABBAmpmZmZmZH0DNzMzMzMwnQKUEAT4B"  # a compact histogram of two acks
    acks = b'{"run":7,"p":{"1":{"n":3,"a":[[0,1]],"f":[[2,2]]}},"lat":"' + lat.encode() + b'"}'
    store.append_acks(AckReport(7, {1: PartitionReport(3, [[0, 1]], [[2, 2]])}, lat))
    item = (7, 1, 0, 10, 20)
    store.append_ledger(LedgerEntry([item], foreign=2, aborted=[(7, 1, 2)]))
    ledger = {
        b"d": bytes.fromhex(
            "07000000000000000100000000000000000000000a000000000000001400000000000000"
        ),
        b"f": b"2",
        b"a": bytes.fromhex("0700000000000000010000000200000000000000"),
    }
    assert [fields for _id, fields in client.xrange(store.key("acks"))] == [{b"d": acks}]
    assert [fields for _id, fields in client.xrange(store.key("ledger"))] == [ledger]

    client.xadd(store.key("acks"), {"d": acks})  # as an older version wrote them
    client.xadd(store.key("ledger"), ledger)
    (_, first), (_, second) = store.read_acks("0-0", 10)
    assert first == second == AckReport.from_fields({b"d": acks})
    assert [entry for _id, entry in store.read_ledger("0-0", 10)] == [
        LedgerEntry([item], 2, [(7, 1, 2)])
    ] * 2
