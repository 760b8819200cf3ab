"""The sentinel producer's own statistics as timeline events (workers.engine.clientstats), and
those events as evidence in the explanations (workers.engine.explain)."""

from __future__ import annotations

import json

from workers.engine.clientstats import (
    PRODUCER_EPOCH_BUMP,
    PRODUCER_RETRIES,
    REQUEST_TIMEOUTS,
    ClientStatsWatch,
)
from workers.engine.explain import (
    CONSUMER_SESSION,
    RETRIES_WITHOUT_IDEMPOTENCE,
    Anomaly,
    explain,
    sentinel_event,
)
from workers.engine.explain import (
    PRODUCER_EPOCH_BUMP as EPOCH_CAUSE,
)
from workers.engine.explain import (
    REQUEST_TIMEOUTS as TIMEOUTS_CAUSE,
)

T0 = 1_800_000_000.0


def stats(*, epoch_cnt=None, brokers=(), kind="producer"):
    """A statistics document shaped as librdkafka's (STATISTICS.md): ``brokers`` as
    (node id, req_timeouts, txretries); a bootstrap connection (node id -1) is always there."""
    doc = {
        "name": "rdkafka#producer-1",
        "type": kind,
        "brokers": {
            "127.0.0.1:9092/bootstrap": {"nodeid": -1, "req_timeouts": 7, "txretries": 7},
            **{
                f"127.0.0.1:{9091 + node}/{node}": {
                    "name": f"127.0.0.1:{9091 + node}/{node}",
                    "nodeid": node,
                    "req_timeouts": timeouts,
                    "txretries": retries,
                }
                for node, timeouts, retries in brokers
            },
        },
    }
    if epoch_cnt is not None:
        doc["eos"] = {"producer_id": 1001, "producer_epoch": epoch_cnt, "epoch_cnt": epoch_cnt}
    return json.dumps(doc)


def kinds(events):
    return [kind for kind, _message, _extra in events]


def test_a_new_client_reports_what_grew_since_it_started_and_then_only_what_grows():
    watch = ClientStatsWatch(idempotent=True, since=T0)
    first = watch.observe(stats(brokers=[(1, 2, 3), (2, 0, 0)]), T0 + 5)
    assert first == [
        (
            REQUEST_TIMEOUTS,
            "2 requests timed out (broker 1: 2)",
            {"count": 2, "brokers": {"1": 2}, "since": T0},
        )
    ]
    # The same counters again: nothing new. Then broker 2 times out once more.
    assert watch.observe(stats(brokers=[(1, 2, 3), (2, 0, 0)]), T0 + 10) == []
    again = watch.observe(stats(brokers=[(1, 2, 3), (2, 1, 0)]), T0 + 15)
    assert again == [
        (
            REQUEST_TIMEOUTS,
            "1 request timed out (broker 2: 1)",
            {"count": 1, "brokers": {"2": 1}, "since": T0 + 10},
        )
    ]


def test_the_bootstrap_connections_are_not_brokers_of_the_cluster():
    assert ClientStatsWatch(idempotent=False).observe(stats()) == []


def test_timeouts_and_retries_of_a_producer_without_idempotence_are_writes_sent_again():
    watch = ClientStatsWatch(idempotent=False, since=T0)
    [(kind, message, extra)] = watch.observe(stats(brokers=[(1, 2, 3), (3, 1, 0)]), T0 + 5)
    assert kind == PRODUCER_RETRIES
    assert extra == {"count": 6, "brokers": {"1": 5, "3": 1}, "since": T0}
    assert message.startswith(
        "6 requests timed out or retried by a producer without idempotence "
        "(broker 1: 5, broker 3: 1)"
    )
    # Without retries (at-most-once's retries=0) nothing is sent again: only the timeouts.
    fire_and_forget = ClientStatsWatch(idempotent=False, retries_on=False)
    assert kinds(fire_and_forget.observe(stats(brokers=[(1, 2, 3)]))) == [REQUEST_TIMEOUTS]


def test_retries_of_an_idempotent_producer_or_of_a_consumer_are_no_cause_of_duplicates():
    assert kinds(ClientStatsWatch(idempotent=True).observe(stats(brokers=[(1, 0, 5)]))) == []
    consumer = stats(brokers=[(1, 2, 5)], kind="consumer")
    assert kinds(ClientStatsWatch(idempotent=False).observe(consumer)) == [REQUEST_TIMEOUTS]


def test_an_epoch_bump_is_reported_with_the_producer_id_and_the_new_epoch():
    watch = ClientStatsWatch(idempotent=True)
    assert watch.observe(stats(epoch_cnt=0)) == []
    # The first producer id is counted by librdkafka too: it is no bump.
    assert watch.observe(stats(epoch_cnt=1)) == []
    [(kind, message, extra)] = watch.observe(stats(epoch_cnt=3))
    assert kind == PRODUCER_EPOCH_BUMP
    assert extra == {"count": 2, "producer_id": 1001, "epoch": 3, "since": 0.0}
    assert "bumped 2 times (producer id 1001, epoch now 3)" in message
    assert watch.observe(stats(epoch_cnt=3)) == []


def test_a_malformed_document_is_ignored_and_forgets_nothing():
    watch = ClientStatsWatch(idempotent=True)
    watch.observe(stats(brokers=[(1, 4, 0)]))
    for bad in (
        "",
        "not json",
        "[1, 2]",
        json.dumps({"brokers": {"x": "y", "z": {"nodeid": "1"}}}),
    ):
        assert watch.observe(bad) == []
    assert watch.observe(json.dumps({"brokers": {"b/1": {"nodeid": 1, "req_timeouts": -3}}})) == []
    # Still counting from 4: one more timeout is one.
    [(_kind, _message, extra)] = watch.observe(stats(brokers=[(1, 5, 0)]))
    assert extra["count"] == 1


def event_at(kind, message, extra, at):
    """The event as ``SentinelStore.event`` stores it, seen at ``at``, read back for
    the explanations."""
    return sentinel_event({"ts": at, "kind": kind, "message": message, **extra}, "t")


def test_retries_seen_by_the_producer_explain_duplicates_better_than_its_configuration():
    # The retries happened between two documents, the duplicate's record written in between.
    watch = ClientStatsWatch(idempotent=False, since=T0 - 3)
    [retried] = watch.observe(stats(brokers=[(1, 3, 1)]), T0 + 2)
    assert retried[0] == PRODUCER_RETRIES
    producer = {"enable.idempotence": "false", "retries": "5"}
    got = explain(
        Anomaly("duplicated", "t", 0, T0, 2), [event_at(*retried, T0 + 2)], producer=producer
    )
    assert got.cause == RETRIES_WITHOUT_IDEMPOTENCE
    assert got.evidence is not None and got.evidence["kind"] == PRODUCER_RETRIES
    assert got.text.startswith("producer retries without idempotence: 4 requests timed out")
    assert [c["place"] for c in got.candidates] == ["topic", "client"]
    # Beside a consumer's restart on the topic, both are candidates.
    session = sentinel_event({"ts": T0 + 1, "kind": "consumer-session", "message": "m"}, "t")
    both = explain(Anomaly("duplicated", "t", 0, T0, 2), [event_at(*retried, T0 + 2), session])
    assert {c["cause"] for c in both.candidates} == {RETRIES_WITHOUT_IDEMPOTENCE, CONSUMER_SESSION}


def test_timeouts_explain_a_stall_and_an_epoch_bump_explains_duplicates():
    watch = ClientStatsWatch(idempotent=True)
    [timeouts] = watch.observe(stats(brokers=[(3, 6, 0)]))
    assert explain(Anomaly("stalled", "t", 0, T0, 0), [event_at(*timeouts, T0)]).cause == (
        TIMEOUTS_CAUSE
    )
    [bump] = watch.observe(stats(epoch_cnt=2, brokers=[(3, 6, 0)]))
    got = explain(Anomaly("duplicated", "t", 0, T0, 1), [event_at(*bump, T0 + 1)])
    assert got.cause == EPOCH_CAUSE
    # Neither explains a loss: nothing is invented.
    assert explain(Anomaly("lost", "t", 0, T0, 1), [event_at(*bump, T0)]).cause == "none"
