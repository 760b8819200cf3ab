"""The cluster page: its brokers (up or unreachable, the controller, the sentinel-topic
partitions each leads and how many of those are under-replicated), the sentinel topics'
partitions and leaders, and the sentinels' client errors grouped by broker, in words.

No page asks Kafka: everything comes from the status documents of the cluster's sentinels,
whose check runners fetch the metadata and try each broker every few seconds
(``workers.runtime.checkrunner.MetadataRefresher``, ``workers.engine.brokerhealth``). Where
sentinels disagree (one fetched a second later), the most recent fetch wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from workers.engine import brokerhealth as words


def _fetched(doc: dict[str, Any]) -> float:
    return float((doc.get("metadata") or {}).get("updated_at") or 0)


def cluster_state(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What the cluster page shows, from the status documents of one cluster's sentinels."""
    docs = sorted(docs, key=_fetched)  # oldest first: later fetches overwrite earlier ones
    known: dict[str, dict[str, Any]] = {}
    controller = None
    updated_at = None
    for doc in docs:
        meta = doc.get("metadata") or {}
        known.update(meta.get("brokers") or {})
        if meta.get("controller") is not None:
            controller = meta["controller"]
        updated_at = meta.get("updated_at") or updated_at
    topics = [_topic(doc, known) for doc in docs]
    leads: dict[str, list[int]] = {}
    for topic in topics:
        for row in topic["partitions"]:
            if row["leader"] is not None and row["leader"] >= 0:
                counts = leads.setdefault(str(row["leader"]), [0, 0])
                counts[0] += 1
                counts[1] += row["under_replicated"]
    grouped = words.group_errors(
        (f"{doc['name']}: {e}" for doc in docs for e in doc.get("errors") or []), known
    )
    rows = [
        {
            "id": bid,
            "host": info.get("host", ""),
            "reachable": info.get("reachable", True),
            "state": words.broker_state(bid, info),
            "controller": str(controller) == bid,
            "leads": leads.get(bid, [0, 0])[0],
            "under_replicated": leads.get(bid, [0, 0])[1],
            "errors": grouped["brokers"].pop(bid, []),
        }
        for bid, info in sorted(known.items(), key=lambda kv: words.sort_key(kv[0]))
    ]
    other = [e for errors in grouped["brokers"].values() for e in errors] + grouped["other"]
    return {
        "brokers": rows,
        "controller": controller,
        "topics": topics,
        "other_errors": other,
        "fetched": words.clock(updated_at) if updated_at else None,
        "sentinels": len(docs),
    }


def _topic(doc: dict[str, Any], known: dict[str, dict[str, Any]]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    rows = []
    for p, part in sorted((meta.get("partitions") or {}).items(), key=lambda kv: int(kv[0])):
        leader = part.get("leader")
        broker = known.get(str(leader), {})
        rows.append(
            {
                "partition": p,
                "leader": leader,
                "leader_host": part.get("leader_host", ""),
                "leader_reachable": broker.get("reachable", True),
                "replicas": part.get("replicas", []),
                "isr": part.get("isr", []),
                "under_replicated": len(part.get("isr", [])) < len(part.get("replicas", [])),
            }
        )
    return {
        "sentinel": doc["name"],
        "id": doc["id"],
        "topic": doc["topic"],
        "error": meta.get("error") if meta else "no cluster metadata from the sentinel yet",
        "partitions": rows,
    }


def cluster_problems(docs: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Cluster name -> its state in words (``brokerhealth.cluster_summary``: "all 3 brokers
    unreachable since 10:08:27 UTC"), for the clusters where a broker is unreachable, from the
    status documents of all sentinels (the most recent fetch of each broker wins)."""
    known: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in sorted(docs, key=_fetched):
        brokers = (doc.get("metadata") or {}).get("brokers") or {}
        known.setdefault(doc["cluster"], {}).update(brokers)
    return {name: text for name, b in known.items() if (text := words.cluster_summary(b))}


def affected(doc: dict[str, Any]) -> bool:
    """Whether a sentinel's card is about its cluster's state: it is stalled (no progress, its
    reasons the clients' raw errors). A violated or degraded card keeps its own reasons."""
    return doc.get("verdict") == "STALLED"
