"""Publishing live updates to browsers from the dashboard's own (synchronous) code.

Group names and event types are ``workers.engine.documents``'; sentinel processes publish
through ``workers.runtime.publish``.

Every websocket consumer in the group receives the event and relays it as JSON (see
``dashboard.live.consumers``).

Channels dispatches an event to the consumer method named after its ``type`` with dots turned
into underscores (``window.update`` -> ``window_update``). An unknown type would crash every
consumer in the group, so :func:`publish` only accepts ``EVENT_TYPES``.

channels-redis keeps at most ``CHANNEL_LAYER_CAPACITY`` messages per channel and drops the
rest: publish about one snapshot per second per group, not one event per record.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from workers.engine.documents import EVENT_TYPES


def publish(group: str, event_type: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every websocket in ``group`` (synchronous; call from sync code).

    ``payload`` must be msgpack-serializable (plain dicts, lists, str, numbers, bools, None).
    From async code use ``await channel_layer.group_send(...)`` with the same message shape.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(
            f"unknown live event type {event_type!r}; expected one of {sorted(EVENT_TYPES)}"
        )
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    async_to_sync(layer.group_send)(group, {"type": event_type, "payload": payload})


# A browser session's sockets: every live socket also joins its session's group, and logging
# out (in any tab) closes them, so a page left open stops streaming (``session.ended``).
SESSION_ENDED = "session.ended"


def session_group(session_key: str) -> str:
    return f"session.{session_key}"


def end_session(session_key: str | None) -> None:
    """Close every live socket of the session ``session_key``."""
    if not session_key:
        return
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(session_group(session_key), {"type": SESSION_ENDED})
