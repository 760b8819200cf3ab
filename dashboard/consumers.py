"""Websocket consumers that stream live sentinel state to the browser.

Protocol (server -> client only; client frames are ignored):

1. on connect: ``{"type": "state", ...}`` — the full current state of the group;
2. then increments: ``{"type": "window", ...}`` and ``{"type": "verdict", ...}``, relayed from
   :func:`dashboard.live.publish`.

Anonymous users are accepted and immediately closed with code 4401. Closing *before* accepting
would turn into an HTTP 403 on the handshake, which browsers report as close code 1006 —
indistinguishable from a network failure, so the page would keep reconnecting instead of
sending the user to the login page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboard.live import OVERVIEW_GROUP, sentinel_group

CLOSE_UNAUTHENTICATED = 4401

# What the browser sees in the "type" field of each message.
STATE_MESSAGE = "state"
WINDOW_MESSAGE = "window"
VERDICT_MESSAGE = "verdict"


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Base consumer: authenticate, join one group, send the state, relay group events."""

    group_name: str | None = None

    def get_group_name(self) -> str:
        raise NotImplementedError

    async def get_state(self) -> dict[str, Any]:
        """Full current state for a newly connected client (without the ``type`` key).

        Placeholder until the sentinel status documents in Redis exist.
        """
        return {"group": self.group_name, "server_time": datetime.now(UTC).isoformat()}

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group_name = self.get_group_name()
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        await self.send_json({**await self.get_state(), "type": STATE_MESSAGE})

    async def disconnect(self, code: int) -> None:
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Ignore client frames: this is a one-way feed, and junk must not crash the consumer."""

    # Handlers are named after the event types of dashboard.live (WINDOW_UPDATE, VERDICT_UPDATE).
    async def window_update(self, event: dict[str, Any]) -> None:
        await self.send_json({**event["payload"], "type": WINDOW_MESSAGE})

    async def verdict_update(self, event: dict[str, Any]) -> None:
        await self.send_json({**event["payload"], "type": VERDICT_MESSAGE})


class OverviewConsumer(LiveConsumer):
    """All sentinels at a glance: ``ws/overview/``."""

    def get_group_name(self) -> str:
        return OVERVIEW_GROUP


class SentinelConsumer(LiveConsumer):
    """One sentinel in detail: ``ws/sentinel/<id>/``."""

    def get_group_name(self) -> str:
        return sentinel_group(self.scope["url_route"]["kwargs"]["sentinel_id"])
