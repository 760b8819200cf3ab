"""Worker coordination: which worker runs which sentinel (``Lease``, ``lease_holders``) and
which workers are alive to run them (``WorkerRegistry``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from workers.store.keys import WORKERS_KEY, sentinel_key

# Renew / release only while we still hold the lease (compare-and-set).
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Lease:
    """A renewable lease on one key (``SET NX PX``), held by ``token``; renewed and released
    only by its holder (compare-and-set in Lua)."""

    def __init__(self, client: redis.Redis, key: str, token: str, ttl_ms: int) -> None:
        self.r = client
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms

    def acquire_or_renew(self) -> bool:
        if self.r.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        return bool(self.r.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        self.r.eval(_RELEASE, 1, self.key, self.token)

    def holder(self) -> str | None:
        value = self.r.get(self.key)
        return value.decode() if value else None

    def held(self) -> tuple[bool, int]:
        """Whether ``token`` holds the lease now, and its time left in ms."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.key)
        pipe.pttl(self.key)
        holder, pttl = pipe.execute()
        return holder is not None and holder.decode() == self.token, pttl


def lease_holders(client: redis.Redis, sentinel_ids: Iterable[int]) -> dict[int, str | None]:
    """The worker holding each sentinel's lease now (None: nobody runs it).

    A lease token is ``{worker id}:{suffix}`` (``SentinelSupervisor``); the worker id is what
    is returned."""
    ids = list(sentinel_ids)
    pipe = client.pipeline(transaction=False)
    for sid in ids:
        pipe.get(sentinel_key(sid, "lease"))
    return {
        sid: token.decode().rpartition(":")[0] if token else None
        for sid, token in zip(ids, pipe.execute(), strict=True)
    }


class WorkerRegistry:
    """The workers hosting sentinels (``ds:workers``: worker id -> JSON ``{"at", "cap",
    "held"}``), each beating once per supervisor tick, for placing sentinels fairly.

    ``at`` is Redis's own clock (ms), so workers on hosts with skewed clocks agree on who is
    alive. ``held`` is the worker's own report of the leases it holds; the leases themselves
    stay the truth of who runs what (``lease_holders``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def now_ms(self) -> int:
        seconds, micros = self.r.time()
        return seconds * 1000 + micros // 1000

    def beat(self, worker_id: str, cap: int, held: Iterable[int], tick_ms: int = 0) -> None:
        """``tick_ms``: how often this worker beats (0: unknown)."""
        doc = {"at": self.now_ms(), "cap": cap, "held": sorted(held), "tick_ms": tick_ms}
        self.r.hset(WORKERS_KEY, worker_id, json.dumps(doc, separators=(",", ":")))

    def alive(self, within_ms: int, *, ticks: int = 0) -> dict[str, dict[str, Any]]:
        """Workers that beat in the last ``within_ms``, and (``ticks``) within that many of
        their own beat periods; entries ten times ``within_ms`` old are removed."""
        now = self.now_ms()
        alive, stale = {}, []
        for worker, raw in self.r.hgetall(WORKERS_KEY).items():
            doc = json.loads(raw)
            limit = within_ms
            if ticks and doc.get("tick_ms"):
                limit = min(limit, ticks * doc["tick_ms"])
            if now - doc["at"] <= limit:
                alive[worker.decode()] = doc
            elif now - doc["at"] > 10 * within_ms:
                stale.append(worker)
        if stale:
            self.r.hdel(WORKERS_KEY, *stale)
        return alive

    def leave(self, worker_id: str) -> None:
        self.r.hdel(WORKERS_KEY, worker_id)
