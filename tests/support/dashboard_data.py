"""Builders for dashboard tests: metric windows and status documents shaped like the checker's."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from workers.engine.documents import COUNTERS
from workers.engine.latency import LatencyHistogram
from workers.store.sentinel import SentinelStore


def counts(**values: int) -> dict[str, int]:
    return {key: values.get(key, 0) for key in COUNTERS}


def hist(*latencies_ms: float) -> LatencyHistogram:
    h = LatencyHistogram()
    h.record_many(latencies_ms)
    return h


def window(
    sentinel_id: int,
    t: float,
    *,
    seconds: float = 1.0,
    verdict: str = "HOLDING",
    e2e: tuple[float, ...] = (),
    ack: tuple[float, ...] = (),
    partitions: dict[str, dict[str, int]] | None = None,
    **count_values: int,
) -> dict[str, Any]:
    """A one-second window document as ``CheckRunner.emit_window`` writes it (``t`` = its end)."""
    e2e_h, ack_h = hist(*e2e), hist(*ack)
    return {
        "t": t,
        "seconds": seconds,
        "sentinel": sentinel_id,
        "verdict": verdict,
        "counts": counts(**count_values),
        "partitions": partitions or {},
        "e2e": e2e_h.summary(),
        "ack": ack_h.summary(),
        "hist": {"e2e": e2e_h.to_dict(), "ack": ack_h.to_dict()},
    }


def seed_windows(store: SentinelStore, docs: list[dict[str, Any]]) -> None:
    """Append windows with stream ids at their own time (the checker writes them live, so its
    ids are the time of writing; seeded history needs ids in the past). Oldest first."""
    pipe = store.r.pipeline(transaction=False)
    for doc in sorted(docs, key=lambda d: d["t"]):
        pipe.xadd(
            store.key("w1"),
            {"d": json.dumps(doc, separators=(",", ":"))},
            id=f"{int(doc['t'] * 1000)}-*",
        )
    pipe.execute()


def status_doc(sentinel: Any, verdict: str = "HOLDING", **overrides: Any) -> dict[str, Any]:
    """A fresh status document for ``sentinel`` (a model instance) as the checker writes it."""
    now = time.time()
    doc = {
        "id": sentinel.pk,
        "name": sentinel.name,
        "semantic": sentinel.semantic,
        "cluster": sentinel.cluster.name,
        "topic": sentinel.topic,
        "run_id": 1,
        "runs": 1,
        "verdict": verdict,
        "reasons": [],
        "totals": counts(produced=900, acked=900, processed=900),
        "window": {"seconds": 300, "counts": counts(produced=300, acked=300, processed=300)},
        "latency_ms": {"p50": 10.0, "p99": 40.0, "max": 50.0},
        "recent_latency_ms": {"p50": 11.0, "p99": 42.5, "max": 50.0},
        "produce_ack_latency_ms": {"p50": 2.0, "p99": 5.0, "max": 6.0},
        "partitions": {"0": counts(produced=300, processed=300)},
        "errors": [],
        "last_progress_at": now,
        "updated_at": now,
    }
    doc.update(overrides)
    return doc


def minute(ts: float) -> datetime:
    return datetime.fromtimestamp(ts - ts % 60, UTC)


def fresh_defaults(redis_url: str) -> dict[str, Any]:
    """The three default sentinels in the test database, their Redis state wiped: by name."""
    from dashboard.models import ensure_defaults
    from workers.store.connection import connect

    client = connect(redis_url)
    sentinels = {s.name: s for s in ensure_defaults()}
    for s in sentinels.values():
        SentinelStore(client, s.pk).reset()
    return sentinels


def wipe(redis_url: str, sentinels: dict[str, Any]) -> None:
    from workers.store.connection import connect

    client = connect(redis_url)
    for s in sentinels.values():
        SentinelStore(client, s.pk).reset()
