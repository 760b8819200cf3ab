"""The sentinel status document: one shape for the CLI, the JSON API and the pages.

The checker writes the complete document to Redis (``workers.runtime.checkrunner``; the shape
is ``workers.engine.documents``'). This module reads it as of now
(``documents.as_read``: STALLED once its checker has been silent for ``STALE_AFTER_S``), adds
what only the database knows (the row's current name, cluster, topic and ``enabled``), and fills
a placeholder of the same shape for a sentinel whose checker has not reported (yet), which is
STALLED, never a loss. See docs/status.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from django.conf import settings

from dashboard.models import Sentinel
from dashboard.redisclient import redis_client
from workers.engine.documents import as_read, empty_status
from workers.engine.failures import redis_in_words
from workers.runtime.supervisor import LEASE_MS
from workers.store.coordination import WorkerRegistry, lease_holders
from workers.store.sentinel import SentinelStore


def no_report_reason(sentinel: Sentinel) -> str:
    """Why a sentinel without a report from its checker has none."""
    return "disabled" if not sentinel.enabled else "no report from the sentinel's checker yet"


def placeholder(sentinel: Sentinel, reason: str) -> dict[str, Any]:
    return dict(
        empty_status(
            id=sentinel.pk,
            name=sentinel.name,
            semantic=sentinel.semantic,
            cluster=sentinel.cluster.name,
            topic=sentinel.topic,
            reason=reason,
        )
    )


def sentinel_status(
    sentinel: Sentinel, client: redis.Redis | None = None, *, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The status document of ``sentinel``; never raises for a missing or stale report.

    ``report`` is the checker's document when the caller already fetched it (``all_statuses``
    reads them all in one round trip)."""
    reason = no_report_reason(sentinel)
    doc = report
    if doc is None:
        try:
            doc = SentinelStore(client or redis_client(), sentinel.pk).status()
        except redis.RedisError as exc:
            doc, reason = None, f"Redis unavailable: {exc}"
    return complete(sentinel, doc, reason)


def complete(sentinel: Sentinel, doc: dict[str, Any] | None, reason: str) -> dict[str, Any]:
    """The checker's ``doc`` (or a placeholder) with what only the database knows.

    A document written for another incarnation of this id (a former sentinel's, until the
    runtime adopts the state for this one) is no report of this sentinel's."""
    incarnation = doc.get("incarnation") if doc else None
    if incarnation and incarnation != sentinel.incarnation.hex:
        doc = None
    doc = as_read(placeholder(sentinel, reason) if doc is None else doc, time.time())
    doc.update(
        {
            "name": sentinel.name,
            "semantic": sentinel.semantic,
            "cluster": sentinel.cluster.name,
            "topic": sentinel.topic,
            "enabled": sentinel.enabled,
        }
    )
    return doc


def redis_problem(timeout: float) -> str | None:
    """None when the Redis of ``REDIS_URL`` answers a PING within ``timeout`` seconds, else
    what is wrong, in words (a wrong password, an untrusted certificate...; never the
    password). A client of its own: the shared one may be waiting on a dead connection."""
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        client.ping()
        return None
    except (redis.RedisError, OSError) as exc:
        return redis_in_words(str(exc), settings.REDIS_URL)
    finally:
        client.close()


def all_statuses() -> list[dict[str, Any]]:
    """Every sentinel's status document, ordered by name, with one Redis round trip."""
    sentinels = list(Sentinel.objects.select_related("cluster", "profile").order_by("name"))
    try:
        raw = (
            redis_client().mget([SentinelStore.key_for(s.pk, "status") for s in sentinels])
            if sentinels
            else []
        )
        reports = [json.loads(r) if r else None for r in raw]
        reason = None
    except redis.RedisError as exc:
        reason = f"Redis unavailable: {redis_in_words(str(exc), settings.REDIS_URL)}"
        reports = [None] * len(sentinels)
    return [
        complete(s, doc, reason or no_report_reason(s))
        for s, doc in zip(sentinels, reports, strict=True)
    ]


def placement(sentinels: list[Sentinel]) -> dict[str, Any]:
    """Which worker runs each sentinel now (its lease holder; None: nobody), and the live
    workers with their caps and what each says it holds. Empty when Redis is down."""
    client = redis_client()
    try:
        holders = lease_holders(client, [s.pk for s in sentinels])
        workers = WorkerRegistry(client).alive(LEASE_MS)
    except redis.RedisError:
        return {"holders": {}, "workers": {}}
    return {"holders": holders, "workers": workers}
