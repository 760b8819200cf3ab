"""The sentinel status document: one shape for the CLI, the JSON API and the pages.

The checker writes the live document to Redis (``workers.checkrunner``); this module adds
what only the database knows and fills a placeholder of the same shape for a sentinel whose
checker has not reported (yet), which is STALLED, never a loss. See docs/status.md.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings

from dashboard.models import Sentinel
from workers.checkrunner import COUNTERS
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


def sentinel_status(sentinel: Sentinel, client: redis.Redis | None = None) -> dict[str, Any]:
    """The status document of ``sentinel``; never raises for a missing or stale report."""
    client = client or connect(settings.REDIS_URL)
    try:
        doc = SentinelStore(client, sentinel.pk).status()
    except redis.RedisError as exc:
        doc, reason = None, f"Redis unavailable: {exc}"
    else:
        reason = "disabled" if not sentinel.enabled else "no report from the sentinel's checker yet"
    if doc is None:
        doc = placeholder(sentinel, reason)
    else:
        if doc.get("updated_at") and time.time() - doc["updated_at"] > STALE_AFTER_S:
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


def all_statuses() -> list[dict[str, Any]]:
    client = connect(settings.REDIS_URL)
    sentinels = Sentinel.objects.select_related("cluster", "profile").order_by("name")
    return [sentinel_status(s, client) for s in sentinels]
