"""A cluster's events (``workers.engine.clusterevents``), as its page, the sentinels' timelines
and ``/api/v1/clusters/{id}/events`` show them; and who watches the cluster.

The cluster's one watcher (``workers/runtime/watch.py``) records them in Redis
(``ClusterStore``); no page asks Kafka."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis

from dashboard.redisclient import redis_client
from workers.engine.clusterevents import KINDS, severity
from workers.store.cluster import ClusterStore

log = logging.getLogger(__name__)


def label(kind: str) -> str:
    """An event kind in words: "leader-change" -> "leader change"."""
    return kind.replace("-", " ")


def cluster_events(
    cluster: str,
    *,
    since: float | None = None,
    until: float | None = None,
    topic: str | None = None,
    partition: int | None = None,
    limit: int = 100,
    client: redis.Redis | None = None,
) -> list[dict[str, Any]]:
    """The cluster's events (by cluster name), newest first; with ``topic``, those of that
    topic (and ``partition``) and the brokers'."""
    store = ClusterStore(client or redis_client(), cluster)
    return store.events(since=since, until=until, topic=topic, partition=partition, limit=limit)


def for_page(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events with what a page shows besides: their label, severity and time as a datetime."""
    return [
        {
            **e,
            "label": label(e["kind"]),
            "severity": severity(e["kind"]),
            "when": datetime.fromtimestamp(e["at"], UTC),
        }
        for e in events
    ]


def on_topics(
    cluster: str, topics: set[str], limit: int, client: redis.Redis | None = None
) -> list[dict[str, Any]]:
    """Timeline entries (``dashboard.metrics.timeline``) of the cluster's events on ``topics``
    (a sentinel's topic and output topic), newest first. Redis down: none (the rest of the
    timeline stands)."""
    try:
        store = ClusterStore(client or redis_client(), cluster)
        events = []
        for topic in topics:
            events += [e for e in store.events(topic=topic, limit=limit) if e.get("topic")]
    except redis.RedisError as exc:
        log.warning("timeline: cluster events unavailable: %s", exc)
        return []
    return [
        {
            "kind": "cluster",
            "cluster_kind": e["kind"],
            "label": label(e["kind"]),
            "severity": severity(e["kind"]),
            "message": e["text"],
            "ts": float(e["at"]),
            "at": datetime.fromtimestamp(e["at"], UTC),
        }
        for e in events
    ]


def watch_state(cluster: str, client: redis.Redis | None = None) -> dict[str, Any]:
    """Who watches the cluster, what its samplers last did and how its last watch process
    that ended by itself ended (``{"watcher", "samplers", "ended"}``; each sampler: ``at`` as
    a datetime, ``error``; ``ended``: ``why``, ``by``, ``when``, or None)."""
    store = ClusterStore(client or redis_client(), cluster)
    samplers = {
        name: {**doc, "when": datetime.fromtimestamp(doc["at"] / 1000, UTC)}
        for name, doc in sorted(store.samplers().items())
    }
    ended = store.last_ended()
    if ended is not None:
        ended["when"] = datetime.fromtimestamp(ended["at"] / 1000, UTC)
    return {"watcher": store.watcher(), "samplers": samplers, "ended": ended}


__all__ = ["KINDS", "cluster_events", "for_page", "label", "on_topics", "watch_state"]
