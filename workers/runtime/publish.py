"""Live publishing from sentinel processes to the dashboard's Channels groups.

The checker offers one window a second; a background thread sends it with channels-redis.
``offer()`` never blocks: when the queue is full (Redis slow, nobody consuming) the oldest
updates are dropped and counted, so a slow or absent dashboard costs the sentinel nothing.
Group names, event types and the channel layer's capacity and expiry are the same for
the dashboard (``workers.engine.documents``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

from workers.engine.documents import (
    CHANNEL_LAYER_CAPACITY,
    CHANNEL_LAYER_EXPIRY_S,
    EVENT_TYPES,
    OVERVIEW_GROUP,
    sentinel_group,
)

log = logging.getLogger(__name__)

QUEUE_SIZE = 50
# Most updates one pass of the publisher thread sends (what was queued when it woke).
BATCH_MAX = 500
SEND_TIMEOUT_S = 5.0


def channel_layer_config(redis_url: str) -> dict[str, Any]:
    """channels-redis' configuration, the same for the dashboard (settings) and publishers."""
    return {
        # redis-py 8 defaults socket_timeout to 5 s, the same as channels-redis' blocking
        # BZPOPMIN, so every idle consumer crashed (redis/redis-py#4091). Redis always
        # answers a 5 s BZPOPMIN, so a read silent for 15 s means a dead connection.
        "hosts": [{"address": redis_url, "socket_timeout": 15, "socket_connect_timeout": 5}],
        # Messages per channel before new ones are dropped; publishers throttle to ~1/s.
        "capacity": CHANNEL_LAYER_CAPACITY,
        # A live update older than this is worthless to a dashboard: drop it.
        "expiry": CHANNEL_LAYER_EXPIRY_S,
    }


class LivePublisher:
    """One thread sending what its users offer. Users may share it (the check runners of a
    shared host, ``workers.runtime.host``: one thread, one event loop and one connection pool
    instead of one of each per sentinel): ``start()`` and ``stop()`` are counted, the thread
    runs from the first start to the last stop, and the queue holds ``QUEUE_SIZE`` updates
    per user.

    Each time it wakes, the thread sends everything queued meanwhile in one pass of its event
    loop (``batches`` counts the passes): the sentinels' updates concurrently, each sentinel's
    in the order offered. A host's check runners all cut at about the same second, so a pass
    sends one update of each instead of entering the loop twice per sentinel."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.queue: queue.Queue[tuple[list[str], dict[str, Any]] | None] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.sent = 0
        self.batches = 0
        self._thread: threading.Thread | None = None
        self._users = 0
        self._lock = threading.Lock()

    def _resize(self) -> None:
        with self.queue.mutex:
            self.queue.maxsize = QUEUE_SIZE * max(1, self._users)

    def start(self) -> None:
        with self._lock:
            self._users += 1
            self._resize()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="live-publisher", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            if self._thread is None:
                return
            self._users = max(0, self._users - 1)
            self._resize()
            if self._users:
                return
            thread, self._thread = self._thread, None
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            self._drain_one()
            self.queue.put_nowait(None)
        thread.join(5)

    def offer(self, sentinel_id: int, event_type: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for the sentinel's group and the overview group; never blocks."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown live event type {event_type!r}")
        message = {"type": event_type, "payload": payload}
        item = ([sentinel_group(sentinel_id), OVERVIEW_GROUP], message)
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                self._drain_one()

    def _drain_one(self) -> None:
        try:
            self.queue.get_nowait()
            self.dropped += 1
        except queue.Empty:
            pass

    def _run(self) -> None:
        from channels_redis.core import RedisChannelLayer

        loop = asyncio.new_event_loop()
        layer = RedisChannelLayer(**channel_layer_config(self.redis_url))
        try:
            while True:
                batch = [self.queue.get()]
                while batch[-1] is not None and len(batch) < BATCH_MAX:
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                items = [item for item in batch if item is not None]
                if items:
                    loop.run_until_complete(self._send(layer, items))
                    self.batches += 1
                if batch[-1] is None:
                    return
        finally:
            loop.run_until_complete(layer.close_pools())
            loop.close()

    async def _send(self, layer: Any, items: list[tuple[list[str], dict[str, Any]]]) -> None:
        """Send ``items``: one task per sentinel (its own group first), in order within it."""
        by_sentinel: dict[str, list[tuple[list[str], dict[str, Any]]]] = {}
        for item in items:
            by_sentinel.setdefault(item[0][0], []).append(item)

        async def send_in_order(queued: list[tuple[list[str], dict[str, Any]]]) -> None:
            for groups, message in queued:
                try:
                    for group in groups:
                        await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT_S)
                    self.sent += 1
                except Exception as exc:  # never let the dashboard's trouble reach the sentinel
                    self.dropped += 1
                    log.warning("live publish failed: %s", exc)

        await asyncio.gather(*(send_in_order(q) for q in by_sentinel.values()))
