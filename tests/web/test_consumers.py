"""Live consumers with WebsocketCommunicator: the real ASGI stack, Redis channel layer and the
sentinels' own publisher (workers.runtime.publish.LivePublisher)."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async

from dashboard.live.consumers import CLOSE_UNAUTHENTICATED
from tests.support.dashboard_data import seed_windows, status_doc, window
from workers.engine.documents import VERDICT_UPDATE, WINDOW_UPDATE, compact
from workers.runtime.publish import QUEUE_SIZE, LivePublisher
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_url")]

TIMEOUT = 5


@pytest.fixture
def publisher(redis_url):
    pub = LivePublisher(redis_url)
    pub.start()
    yield pub
    pub.stop()


def report(redis_url: str, sentinel, verdict: str = "HOLDING", **overrides) -> dict:
    doc = status_doc(sentinel, verdict, **overrides)
    SentinelStore(connect(redis_url), sentinel.pk).set_status(doc)
    return doc


async def test_it_sends_every_sentinels_state_then_window_increments(
    asgi, alice, sentinels, redis_url, publisher
):
    alo = sentinels["at-least-once"]
    await sync_to_async(report)(redis_url, alo, "DEGRADED", reasons=["latency p99 over SLO"])
    now = time.time()
    await sync_to_async(seed_windows)(
        SentinelStore(connect(redis_url), alo.pk),
        [window(alo.pk, now - 3 + i, processed=30) for i in range(3)],
    )
    ws = await asgi.websocket("/ws/overview/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]

    state = await ws.receive_json_from(timeout=TIMEOUT)
    assert state["type"] == "state"
    by_name = {doc["name"]: doc for doc in state["sentinels"]}
    assert list(by_name) == ["at-least-once", "at-most-once", "exactly-once"]
    assert by_name["at-least-once"]["verdict"] == "DEGRADED"
    assert by_name["at-least-once"]["reasons"] == ["latency p99 over SLO"]
    assert by_name["exactly-once"]["verdict"] == "STALLED"  # no report yet
    assert set(by_name["at-most-once"]) == set(compact({})) | {"enabled"}
    assert [p[1] for p in state["sparklines"][str(alo.pk)]] == [30.0, 30.0, 30.0]

    live_window = window(alo.pk, now, processed=31)
    live_window.pop("hist")
    doc = compact(status_doc(alo, "HOLDING"))
    publisher.offer(
        alo.pk, WINDOW_UPDATE, {"sentinel": alo.pk, "window": live_window, "status": doc}
    )
    batch = await ws.receive_json_from(timeout=TIMEOUT)
    assert batch["type"] == "windows"  # the overview batches its windows (one message a second)
    [message] = batch["windows"]
    assert message["sentinel"] == alo.pk
    assert message["window"]["counts"]["processed"] == 31
    assert message["status"]["verdict"] == "HOLDING"


async def test_it_sends_one_sentinels_status_and_last_minute_then_verdicts(
    asgi, alice, sentinels, redis_url, publisher
):
    amo = sentinels["at-most-once"]
    await sync_to_async(report)(redis_url, amo, "HOLDING")
    now = time.time()
    await sync_to_async(seed_windows)(
        SentinelStore(connect(redis_url), amo.pk),
        [window(amo.pk, now - 120, processed=1)]
        + [window(amo.pk, now - 10 + i, processed=30, e2e=(5.0,)) for i in range(10)],
    )
    ws = await asgi.websocket(f"/ws/sentinel/{amo.pk}/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]

    state = await ws.receive_json_from(timeout=TIMEOUT)
    assert state["type"] == "state"
    assert state["sentinel"] == amo.pk
    assert state["status"]["name"] == "at-most-once"
    assert state["status"]["verdict"] == "HOLDING"
    assert len(state["windows"]) == 10  # the last minute only
    assert all("hist" not in w for w in state["windows"])
    assert state["windows"][0]["e2e"]["p99"] == 5.0

    publisher.offer(
        amo.pk,
        VERDICT_UPDATE,
        {
            "sentinel": amo.pk,
            "verdict": "VIOLATED",
            "previous": "HOLDING",
            "reasons": ["dup"],
            "t": now,
        },
    )
    message = await ws.receive_json_from(timeout=TIMEOUT)
    assert message == {
        "type": "verdict",
        "sentinel": amo.pk,
        "verdict": "VIOLATED",
        "previous": "HOLDING",
        "reasons": ["dup"],
        "t": now,
    }


async def test_it_sends_an_empty_state_for_an_unknown_sentinel(asgi, alice, sentinels):
    ws = await asgi.websocket("/ws/sentinel/987654/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]
    state = await ws.receive_json_from(timeout=TIMEOUT)
    assert state["status"] is None
    assert state["windows"] == []


@pytest.mark.parametrize("path", ["/ws/overview/", "/ws/sentinel/1/"])
async def test_it_refuses_anonymous_users_with_4401(asgi, path):
    ws = await asgi.websocket(path)
    assert (await ws.connect(timeout=TIMEOUT))[0]
    closing = await ws.receive_output(timeout=TIMEOUT)
    assert closing == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


@pytest.mark.parametrize("path", ["/ws/overview/", "/ws/sentinel/1/"])
async def test_it_refuses_a_wrong_origin(asgi, alice, path):
    ws = await asgi.websocket(path, user=alice, origin="https://attacker.example")
    connected, _code = await ws.connect(timeout=TIMEOUT)
    assert not connected


async def test_it_sends_heartbeats_so_browsers_can_tell_a_dead_connection(
    asgi, alice, sentinels, settings
):
    settings.LIVE_HEARTBEAT_S = 0.2  # DS_LIVE_HEARTBEAT_S
    ws = await asgi.websocket("/ws/overview/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]
    state = await ws.receive_json_from(timeout=TIMEOUT)
    assert state["heartbeat"] == 0.2
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "heartbeat"}
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "heartbeat"}
    # The incidents list's socket carries nothing else: it expects a heartbeat as often.
    oncall = await asgi.websocket("/ws/oncall/", user=alice)
    assert (await oncall.connect(timeout=TIMEOUT))[0]
    state = await oncall.receive_json_from(timeout=TIMEOUT)
    assert state["heartbeat"] == state["expect_every"] == 0.2
    assert await oncall.receive_json_from(timeout=TIMEOUT) == {"type": "heartbeat"}


async def test_logging_out_in_another_tab_closes_the_live_sockets(asgi, alice, sentinels):
    from django.conf import settings
    from django.test import Client

    from dashboard.live.relay import publish
    from tests.conftest import session_cookie_for
    from workers.engine.documents import OVERVIEW_GROUP

    cookie = await sync_to_async(session_cookie_for)(alice)
    overview = await asgi.websocket("/ws/overview/", cookie=cookie)
    detail = await asgi.websocket(f"/ws/sentinel/{sentinels['at-most-once'].pk}/", cookie=cookie)
    other = await asgi.websocket("/ws/overview/", user=alice)  # another session: stays open
    for ws in (overview, detail, other):
        assert (await ws.connect(timeout=TIMEOUT))[0]
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "state"

    def log_out() -> int:
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = cookie
        return client.post("/logout/").status_code

    assert await sync_to_async(log_out)() == 302
    for ws in (overview, detail):
        assert await ws.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": CLOSE_UNAUTHENTICATED,
        }
    # The other session's socket stays open: its next message is a verdict published after
    # the logout (a close sent to it would have come first).
    await sync_to_async(publish)(OVERVIEW_GROUP, VERDICT_UPDATE, {"verdict": "HOLDING"})
    assert await other.receive_json_from(timeout=TIMEOUT) == {
        "type": "verdict",
        "verdict": "HOLDING",
    }


def test_it_shares_one_publisher_thread_until_its_last_user_stops(redis_url):
    """A shared host's check runners share one publisher: the first start starts its thread,
    the last stop ends it, and its queue holds a sentinel's share per user."""
    pub = LivePublisher(redis_url)
    pub.start()
    pub.start()
    thread = pub._thread
    assert pub.queue.maxsize == 2 * QUEUE_SIZE
    pub.stop()
    assert pub._thread is thread and thread.is_alive() and pub.queue.maxsize == QUEUE_SIZE
    pub.stop()
    assert pub._thread is None and not thread.is_alive()
    pub.stop()  # one stop too many is harmless


async def test_it_sends_what_was_queued_in_one_pass_each_sentinel_in_order(redis_url):
    """A shared host's check runners offer their windows at about the same moment: the
    publisher sends everything queued in one pass of its loop, each sentinel's in order."""
    from channels_redis.core import RedisChannelLayer

    from workers.engine.documents import OVERVIEW_GROUP, sentinel_group
    from workers.runtime.publish import channel_layer_config

    layer = RedisChannelLayer(**channel_layer_config(redis_url))
    ids = [991_001 + i for i in range(5)]
    channels = {}
    for sid in [*ids, OVERVIEW_GROUP]:
        channel = await layer.new_channel()
        group = OVERVIEW_GROUP if sid == OVERVIEW_GROUP else sentinel_group(sid)
        await layer.group_add(group, channel)
        channels[sid] = channel
    pub = LivePublisher(redis_url)
    for n in range(4):  # queued before the thread runs: one batch of 20
        for sid in ids:
            pub.offer(sid, WINDOW_UPDATE, {"sentinel": sid, "n": n})
    pub.start()
    try:
        for sid in ids:
            got = [(await layer.receive(channels[sid]))["payload"] for _ in range(4)]
            assert got == [{"sentinel": sid, "n": n} for n in range(4)]
        overview = [(await layer.receive(channels[OVERVIEW_GROUP]))["payload"] for _ in range(20)]
        for sid in ids:  # interleaved across sentinels, in order within each
            assert [p["n"] for p in overview if p["sentinel"] == sid] == [0, 1, 2, 3]
    finally:
        pub.stop()
        await layer.flush()
    assert (pub.sent, pub.dropped, pub.batches) == (20, 0, 1)
