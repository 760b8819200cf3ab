"""Websocket consumers that stream live sentinel state to the browser.

Protocol (server -> client only; client frames are ignored):

1. on connect: ``{"type": "state", ...}`` — the full current state of the group (overview:
   every sentinel's compact status and a one-minute sparkline; sentinel: its status document
   and its one-second windows of the last minute);
2. then increments: ``{"type": "window", ...}`` and ``{"type": "verdict", ...}``, relayed from the
   sentinels' check runners (``workers.runtime.publish``); the overview batches its windows
   into at most one ``{"type": "windows", "windows": [...]}`` a second (see
   ``OverviewSocketConsumer``);
3. and every ``heartbeat`` seconds (given in the state; ``DS_LIVE_HEARTBEAT_S``, 10 by default)
   ``{"type": "heartbeat"}``, so that a browser can tell a silent feed (no sentinel running)
   from a dead connection (a half-open TCP connection never fires a close event) and reconnect;
4. ``{"type": "oncall", "changes": [...]}`` after incidents changed (``ONCALL_GROUP``, sent by
   ``dashboard.oncall.events`` once committed): each change is an incident id, its sentinel,
   the transition and the new state, no text; the page fetches what it shows from the on-call
   room (``oncall_live.js``). The overview batches them with its windows; a sentinel's page
   gets its sentinel's only; ``ws/oncall/`` (the incidents list) gets them all.

The state also says how fresh the page should be: ``expect_every`` (seconds between data
messages when all is well) and ``stale_after`` (seconds without any before the page says it
is stale; ``live.js``).

Anonymous users are accepted and immediately closed with code 4401. Closing *before* accepting
would turn into an HTTP 403 on the handshake, which browsers report as close code 1006 —
indistinguishable from a network failure, so the page would keep reconnecting instead of
sending the user to the login page.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from dashboard.live.relay import session_group
from dashboard.metrics.overview import sparklines
from dashboard.metrics.windows import live_windows
from dashboard.models import Sentinel
from dashboard.status import all_statuses, sentinel_status
from workers.engine.documents import (
    CHECKPOINT_INTERVAL_S,
    ONCALL_GROUP,
    OVERVIEW_GROUP,
    STALE_AFTER_WINDOWS,
    compact,
    sentinel_group,
)

CLOSE_UNAUTHENTICATED = 4401

# What the browser sees in the "type" field of each message.
STATE_MESSAGE = "state"
WINDOW_MESSAGE = "window"
WINDOWS_MESSAGE = "windows"  # the overview's batch of window payloads
VERDICT_MESSAGE = "verdict"
HEARTBEAT_MESSAGE = "heartbeat"
ONCALL_MESSAGE = "oncall"


class LiveSocketConsumer(AsyncJsonWebsocketConsumer):
    """Base consumer: authenticate, join one group, send the state, relay group events."""

    group_name: str | None = None
    session_group: str | None = None
    # Data is expected this often: a window a second from each sentinel's check runner.
    expect_every: float = CHECKPOINT_INTERVAL_S
    heartbeat_is_data = False  # a feed with nothing else to send: a heartbeat says "no change"
    _heartbeat: asyncio.Task | None = None
    _oncall: bool = False

    @property
    def heartbeat_seconds(self) -> float:
        """Seconds between heartbeats: ``settings.LIVE_HEARTBEAT_S`` (``DS_LIVE_HEARTBEAT_S``)."""
        return float(settings.LIVE_HEARTBEAT_S)

    def get_group_name(self) -> str:
        raise NotImplementedError

    async def get_state(self) -> dict[str, Any]:
        """Full current state for a newly connected client (without the ``type`` key)."""
        return {
            "group": self.group_name,
            "server_time": datetime.now(UTC).isoformat(),
            "heartbeat": self.heartbeat_seconds,
            "expect_every": self.expect_every,
            "stale_after": self.expect_every * STALE_AFTER_WINDOWS,
            "heartbeat_is_data": self.heartbeat_is_data,
        }

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group_name = self.get_group_name()
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        if self.group_name != ONCALL_GROUP:
            await self.channel_layer.group_add(ONCALL_GROUP, self.channel_name)
        self._oncall = True
        session = self.scope.get("session")
        self.session_group = session_group(session.session_key) if session else None
        if self.session_group:
            await self.channel_layer.group_add(self.session_group, self.channel_name)
        await self.accept()
        await self.send_json({**await self.get_state(), "type": STATE_MESSAGE})
        self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self.send_json({"type": HEARTBEAT_MESSAGE})

    async def disconnect(self, code: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)
        if self._oncall:
            await self.channel_layer.group_discard(ONCALL_GROUP, self.channel_name)
        if self.session_group is not None:
            await self.channel_layer.group_discard(self.session_group, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Ignore client frames: this is a one-way feed, and junk must not crash the consumer."""

    # Handlers are named after the event types of workers.engine.documents (WINDOW_UPDATE, VERDICT_UPDATE).
    async def window_update(self, event: dict[str, Any]) -> None:
        await self.send_json({**event["payload"], "type": WINDOW_MESSAGE})

    async def verdict_update(self, event: dict[str, Any]) -> None:
        await self.send_json({**event["payload"], "type": VERDICT_MESSAGE})

    async def oncall_update(self, event: dict[str, Any]) -> None:
        """An incident changed (``ONCALL_UPDATE``): tell the page, which fetches the rest."""
        if self.wants_oncall(event["payload"]):
            await self.send_json({"type": ONCALL_MESSAGE, "changes": [event["payload"]]})

    def wants_oncall(self, change: dict[str, Any]) -> bool:
        return True

    async def session_ended(self, event: dict[str, Any]) -> None:
        """The user logged out (in this tab or another): stop streaming to this page."""
        await self.close(code=CLOSE_UNAUTHENTICATED)


class OverviewSocketConsumer(LiveSocketConsumer):
    """All sentinels at a glance: ``ws/overview/``.

    State: ``sentinels`` (every sentinel's compact status, as in ``window.update``) and
    ``sparklines`` (``{id: [[t, processed per second], ...]}`` over the last minute).

    Windows are batched per page: every sentinel publishes one a second, so a page with a
    hundred sentinels would get a hundred messages a second, each a task and a repaint for the
    browser. They are sent as at most one ``{"type": "windows", "windows": [payload, ...]}``
    every ``batch_seconds``, in arrival order; a verdict goes at once, after the windows that
    arrived before it (so the page never shows an older verdict over a newer one). On-call
    changes are batched the same way: at most one ``{"type": "oncall", "changes": [...]}``
    per batch, after its windows.
    """

    batch_seconds = 1.0
    expect_every = max(CHECKPOINT_INTERVAL_S, batch_seconds)
    _flusher: asyncio.Task | None = None

    def get_group_name(self) -> str:
        return OVERVIEW_GROUP

    async def connect(self) -> None:
        self._windows: list[dict[str, Any]] = []
        self._changes: list[dict[str, Any]] = []
        await super().connect()
        if self.group_name is not None:  # authenticated and streaming
            self._flusher = asyncio.create_task(self._flush_every())

    async def disconnect(self, code: int) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await super().disconnect(code)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.batch_seconds)
            await self.flush_windows()

    async def flush_windows(self) -> None:
        if self._windows:
            batch, self._windows = self._windows, []
            await self.send_json({"type": WINDOWS_MESSAGE, "windows": batch})
        if self._changes:
            changes, self._changes = self._changes, []
            await self.send_json({"type": ONCALL_MESSAGE, "changes": changes})

    async def oncall_update(self, event: dict[str, Any]) -> None:
        self._changes.append(event["payload"])

    async def window_update(self, event: dict[str, Any]) -> None:
        self._windows.append(event["payload"])

    async def verdict_update(self, event: dict[str, Any]) -> None:
        await self.flush_windows()
        await super().verdict_update(event)

    async def get_state(self) -> dict[str, Any]:
        return {**await super().get_state(), **await database_sync_to_async(overview_state)()}


class SentinelSocketConsumer(LiveSocketConsumer):
    """One sentinel in detail: ``ws/sentinel/<id>/``.

    State: ``sentinel`` (the id), ``status`` (its status document, ``None`` for an unknown
    sentinel) and ``windows`` (its one-second windows of the last minute, oldest first).
    """

    def get_group_name(self) -> str:
        return sentinel_group(self.sentinel_id)

    def wants_oncall(self, change: dict[str, Any]) -> bool:
        return change.get("sentinel") == self.sentinel_id

    @property
    def sentinel_id(self) -> int:
        return int(self.scope["url_route"]["kwargs"]["sentinel_id"])

    async def get_state(self) -> dict[str, Any]:
        state = await database_sync_to_async(sentinel_state)(self.sentinel_id)
        return {**await super().get_state(), **state}


class OncallSocketConsumer(LiveSocketConsumer):
    """On-call changes only: ``ws/oncall/`` (the incidents list). Nothing but these changes
    and heartbeats comes here, so a heartbeat means "nothing changed" and keeps it fresh."""

    heartbeat_is_data = True

    @property
    def expect_every(self) -> float:
        return self.heartbeat_seconds

    def get_group_name(self) -> str:
        return ONCALL_GROUP


def overview_state() -> dict[str, Any]:
    docs = all_statuses()
    return {
        "sentinels": [{**compact(doc), "enabled": doc.get("enabled", True)} for doc in docs],
        "sparklines": {str(k): v for k, v in sparklines([d["id"] for d in docs]).items()},
    }


def sentinel_state(sentinel_id: int) -> dict[str, Any]:
    sentinel = Sentinel.objects.select_related("cluster", "profile").filter(pk=sentinel_id).first()
    return {
        "sentinel": sentinel_id,
        "status": sentinel_status(sentinel) if sentinel else None,
        "windows": live_windows(sentinel_id, 60),
    }
