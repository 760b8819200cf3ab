"""The sentinel status document: one shape for the CLI, the JSON API and the pages.

The checker writes the live document to Redis (``workers.runtime.checkrunner``); this module adds
what only the database knows and fills a placeholder of the same shape for a sentinel whose
checker has not reported (yet), which is STALLED, never a loss. See docs/status.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from django.conf import settings

from dashboard.models import Sentinel
from workers.engine.documents import COUNTERS
from workers.store import SentinelStore, connect

STATUS_VERSION = 1
# The checker reports about once a second; this long without a report means it is not running.
STALE_AFTER_S = 30.0


def placeholder(sentinel: Sentinel, reason: str) -> dict[str, Any]:
    return {
        "id": sentinel.pk,
        "name": sentinel.name,
        "semantic": sentinel.semantic,
        "cluster": sentinel.cluster.name,
        "topic": sentinel.topic,
        "run_id": None,
        "runs": 0,
        "verdict": "STALLED",
        "reasons": [reason],
        "totals": dict.fromkeys(COUNTERS, 0),
        "window": {"seconds": 0, "counts": dict.fromkeys(COUNTERS, 0)},
        "latency_ms": {"p50": None, "p99": None, "max": None},
        "recent_latency_ms": {"p50": None, "p99": None, "max": None},
        "produce_ack_latency_ms": {"p50": None, "p99": None, "max": None},
        "partitions": {},
        "errors": [reason],
        "last_progress_at": None,
        "updated_at": None,
    }


def sentinel_status(
    sentinel: Sentinel, client: redis.Redis | None = None, *, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The status document of ``sentinel``; never raises for a missing or stale report.

    ``report`` is the checker's document when the caller already fetched it (``all_statuses``
    reads them all in one round trip)."""
    reason = "disabled" if not sentinel.enabled else "no report from the sentinel's checker yet"
    doc = report
    if doc is None:
        try:
            doc = SentinelStore(client or shared_client(), sentinel.pk).status()
        except redis.RedisError as exc:
            doc, reason = None, f"Redis unavailable: {exc}"
    return complete(sentinel, doc, reason)


def complete(sentinel: Sentinel, doc: dict[str, Any] | None, reason: str) -> dict[str, Any]:
    """The checker's ``doc`` (or a placeholder) with what only the database knows."""
    if doc is None:
        doc = placeholder(sentinel, reason)
    elif doc.get("updated_at") and time.time() - doc["updated_at"] > STALE_AFTER_S:
        doc["verdict"] = "STALLED"
        doc["reasons"] = [
            f"checker silent for {time.time() - doc['updated_at']:.0f}s",
            *doc["reasons"],
        ]
    doc.update(
        {
            "version": STATUS_VERSION,
            "name": sentinel.name,
            "semantic": sentinel.semantic,
            "cluster": sentinel.cluster.name,
            "topic": sentinel.topic,
            "enabled": sentinel.enabled,
        }
    )
    return doc


_client: redis.Redis | None = None


def shared_client() -> redis.Redis:
    """One pooled client per process: pages ask for status on every request."""
    global _client
    if _client is None:
        _client = connect(settings.REDIS_URL)
    return _client


def all_statuses() -> list[dict[str, Any]]:
    """Every sentinel's status document, ordered by name, with one Redis round trip."""
    sentinels = list(Sentinel.objects.select_related("cluster", "profile").order_by("name"))
    try:
        raw = (
            shared_client().mget([SentinelStore.key_for(s.pk, "status") for s in sentinels])
            if sentinels
            else []
        )
        reports = [json.loads(r) if r else None for r in raw]
        reason = None
    except redis.RedisError as exc:
        reports, reason = [None] * len(sentinels), f"Redis unavailable: {exc}"
    return [
        complete(
            s,
            doc,
            reason
            or ("disabled" if not s.enabled else "no report from the sentinel's checker yet"),
        )
        for s, doc in zip(sentinels, reports, strict=True)
    ]
