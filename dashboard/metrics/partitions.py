"""The detail page's partition table: counters, leaders, replicas and problems per partition.

No Kafka client call happens here (nor anywhere in a request): the sentinel's check runner
fetches the topic's metadata in a thread of its own and puts the latest result, with the time
it was fetched, into the status document's ``metadata`` field (docs/status.md), next to each
partition's end-to-end latency over about the last minute (``partition_latency_ms``). Recent
problems come from the last minutes of the checker's one-second windows in Redis.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from dashboard import formatting
from dashboard.metrics.windows import redis_windows
from dashboard.models import Sentinel
from workers.engine.brokerhealth import broker_state
from workers.engine.documents import COUNTERS, EVENT_COUNTERS

RECENT_S = 300  # "the last 5 minutes" of the partition table
# The table's error for a status document without metadata (an old document, a placeholder).
NO_METADATA = "no cluster metadata from the sentinel's checker yet"


def recent_partition_events(
    sentinel_id: int, seconds: int = RECENT_S, client: redis.Redis | None = None
) -> dict[str, dict[str, int]]:
    """Per partition, the event counters' increases over the last ``seconds``."""
    out: dict[str, dict[str, int]] = {}
    for w in redis_windows(sentinel_id, time.time() - seconds, client=client):
        for partition, counts in (w.partitions or {}).items():
            acc = out.setdefault(partition, dict.fromkeys(EVENT_COUNTERS, 0))
            for key in EVENT_COUNTERS:
                acc[key] += counts.get(key, 0)
    return out


def partition_table(sentinel: Sentinel, status: dict[str, Any]) -> dict[str, Any]:
    """Rows for the detail page's partition table, problems first spelled out in words.

    Leaders, replicas and ISRs come from ``status["metadata"]``; without it the rows come
    from the status document's totals alone and the table's error says why."""
    metadata = status.get("metadata") or {"error": NO_METADATA, "partitions": {}}
    recent = recent_partition_events(sentinel.pk)
    totals = status.get("partitions") or {}
    keys = sorted(set(totals) | set(metadata["partitions"]), key=int)
    rows = []
    for p in keys:
        meta = metadata["partitions"].get(p)
        counts = {k: totals.get(p, {}).get(k, 0) for k in COUNTERS}
        problems = [
            f"{n} {k.replace('_', ' ')} in the last 5 min"
            for k, n in (recent.get(p) or {}).items()
            if n
        ]
        if meta is not None:
            leader = (metadata.get("brokers") or {}).get(str(meta["leader"])) or {}
            if meta["leader"] is None or meta["leader"] < 0:
                problems.append("no leader")
            elif not leader.get("reachable", True):
                # The metadata names a killed leader until the controller fences it (~10 s);
                # the check runner's connection attempt knows within its 5 s refresh.
                problems.append(
                    broker_state(str(meta["leader"]), leader).replace("broker", "leader broker", 1)
                )
            elif len(meta["isr"]) < len(meta["replicas"]):
                problems.append(
                    f"under-replicated: {len(meta['isr'])}/{len(meta['replicas'])} in sync"
                )
        elif not metadata["error"]:
            problems.append("partition not in the topic's metadata")
        latency = (status.get("partition_latency_ms") or {}).get(p) or {}
        rows.append(
            {
                "partition": p,
                "leader": meta["leader"] if meta else None,
                "leader_host": meta["leader_host"] if meta else "",
                "replicas": meta["replicas"] if meta else [],
                "isr": meta["isr"] if meta else [],
                "counts": counts,
                "p99": latency.get("p99"),
                "p99_text": formatting.latency_ms(latency.get("p99")),
                "problems": problems,
            }
        )
    return {"rows": rows, "error": metadata["error"], "topic": sentinel.topic}
