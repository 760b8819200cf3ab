"""Live websockets through the full ASGI stack and the real Redis channel layer."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from asgiref.sync import sync_to_async

from dashboard.live.consumers import CLOSE_UNAUTHENTICATED
from dashboard.live.relay import publish
from workers.engine.documents import OVERVIEW_GROUP, VERDICT_UPDATE, WINDOW_UPDATE, sentinel_group

# Session lookups happen in a worker thread, outside the test's transaction.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_url")]

TIMEOUT = 5


async def test_it_sends_state_then_relays_published_windows(asgi, alice):
    ws = await asgi.websocket("/ws/overview/", user=alice)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected

    state = await ws.receive_json_from(timeout=TIMEOUT)
    assert state["type"] == "state"
    assert state["group"] == OVERVIEW_GROUP
    assert datetime.fromisoformat(state["server_time"]).tzinfo is not None

    payload = {"sentinel_id": 7, "acked": 120, "lost": 0, "partition": 2}
    await sync_to_async(publish)(OVERVIEW_GROUP, WINDOW_UPDATE, payload)
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "windows", "windows": [payload]}


async def test_it_batches_the_overviews_windows_into_one_message_a_second(asgi, alice):
    ws = await asgi.websocket("/ws/overview/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]
    await ws.receive_json_from(timeout=TIMEOUT)
    payloads = [{"sentinel": n, "window": {"t": n}} for n in range(50)]
    for payload in payloads:
        await sync_to_async(publish)(OVERVIEW_GROUP, WINDOW_UPDATE, payload)
    await sync_to_async(publish)(OVERVIEW_GROUP, VERDICT_UPDATE, {"sentinel": 99, "verdict": "OK"})
    # However the fifty windows fell across the one-second batches, the verdict comes after
    # all of them, and no window is lost or sent twice.
    received: list[dict] = []
    while True:
        message = await ws.receive_json_from(timeout=TIMEOUT)
        if message["type"] == "verdict":
            break
        assert message["type"] == "windows"
        received.extend(message["windows"])
    assert received == payloads
    assert message == {"type": "verdict", "sentinel": 99, "verdict": "OK"}


async def test_it_relays_verdicts_to_the_sentinel_group_only(asgi, alice):
    mine = await asgi.websocket("/ws/sentinel/41/", user=alice)
    other = await asgi.websocket("/ws/sentinel/42/", user=alice)
    for ws in (mine, other):
        assert (await ws.connect(timeout=TIMEOUT))[0]
    assert (await mine.receive_json_from(timeout=TIMEOUT))["group"] == "sentinel.41"
    assert (await other.receive_json_from(timeout=TIMEOUT))["group"] == "sentinel.42"

    await sync_to_async(publish)(sentinel_group(41), VERDICT_UPDATE, {"verdict": "VIOLATED"})
    assert await mine.receive_json_from(timeout=TIMEOUT) == {
        "type": "verdict",
        "verdict": "VIOLATED",
    }
    # The other group's next message is one published after the verdict: had the verdict
    # reached it, it would have come first.
    await sync_to_async(publish)(sentinel_group(42), VERDICT_UPDATE, {"verdict": "HOLDING"})
    assert await other.receive_json_from(timeout=TIMEOUT) == {
        "type": "verdict",
        "verdict": "HOLDING",
    }


async def test_it_does_not_let_a_payload_override_the_message_type(asgi, alice):
    ws = await asgi.websocket("/ws/overview/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]
    await ws.receive_json_from(timeout=TIMEOUT)
    await sync_to_async(publish)(OVERVIEW_GROUP, WINDOW_UPDATE, {"type": "state", "n": 1})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {
        "type": "windows",
        "windows": [{"type": "state", "n": 1}],
    }


async def test_it_ignores_client_frames(asgi, alice):
    ws = await asgi.websocket("/ws/overview/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]
    await ws.receive_json_from(timeout=TIMEOUT)
    await ws.send_to(text_data="not json {")
    # The consumer takes the frame before the event published after it, so an answer to the
    # frame (or a close) would come first: the event as the next message proves there is none.
    await sync_to_async(publish)(OVERVIEW_GROUP, VERDICT_UPDATE, {"verdict": "HOLDING"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "verdict", "verdict": "HOLDING"}


async def test_it_closes_anonymous_clients_with_4401(asgi):
    ws = await asgi.websocket("/ws/overview/")
    # Accepted first, so that browsers see the 4401 code instead of a failed handshake.
    assert (await ws.connect(timeout=TIMEOUT))[0]
    closing = await ws.receive_output(timeout=TIMEOUT)
    assert closing == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_it_refuses_foreign_or_missing_origins(asgi, alice, origin):
    ws = await asgi.websocket("/ws/overview/", user=alice, origin=origin)
    connected, code = await ws.connect(timeout=TIMEOUT)
    assert not connected
    assert code == 1000


def test_it_rejects_unknown_event_types():
    with pytest.raises(ValueError, match="unknown live event type"):
        publish(OVERVIEW_GROUP, "window.delete", {})


@pytest.mark.slow
async def test_it_keeps_idle_sockets_alive_past_the_redis_blocking_read(asgi, alice):
    """channels-redis blocks in BZPOPMIN for 5 s; redis-py 8 defaults socket_timeout to 5 s,
    which crashed every idle consumer (redis/redis-py#4091) unless the layer overrides it."""
    ws = await asgi.websocket("/ws/overview/", user=alice)
    assert (await ws.connect(timeout=TIMEOUT))[0]
    await ws.receive_json_from(timeout=TIMEOUT)
    # Idle for longer than the blocking read (the idle time is what is tested); the consumer
    # must neither crash nor close: the window published afterwards is its next message.
    await asyncio.sleep(7)
    await sync_to_async(publish)(OVERVIEW_GROUP, WINDOW_UPDATE, {"n": 2})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "windows", "windows": [{"n": 2}]}
