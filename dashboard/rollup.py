"""Rolls one-second windows (Redis) up into one-minute ``MetricWindow`` rows, and prunes them.

Run by Celery beat (``dashboard.tasks.rollup_windows`` every minute, ``prune_windows`` hourly).
Only complete minutes are rolled up, each exactly once (a unique constraint backs that up).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.utils import timezone

from dashboard.models import MetricWindow, Sentinel
from dashboard.redisclient import redis_client
from workers.engine import documents
from workers.engine.documents import W1_RETENTION_S, Window
from workers.store.sentinel import SentinelStore


def merge_windows(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``MetricWindow`` fields of one window for consecutive window documents (at least
    one): ``workers.engine.documents.merge_windows``, with both latency summaries under
    ``latency``."""
    merged = documents.merge_windows([Window.from_doc(doc) for doc in windows])
    if merged is None:
        raise ValueError("no windows to merge")
    return {
        "counts": merged.counts,
        "partitions": merged.partitions or {},
        "latency": {"e2e": merged.e2e, "ack": merged.ack},
        "hist": merged.hist or {},
        "verdict": merged.verdict,
    }


def rollup_sentinel(sentinel: Sentinel, store: SentinelStore, now: float | None = None) -> int:
    """Create the missing one-minute windows of ``sentinel`` up to the last complete minute."""
    now = time.time() if now is None else now
    end = int(now // 60 * 60)
    last = MetricWindow.objects.filter(sentinel=sentinel, resolution=60).order_by("-start").first()
    start = int(last.start.timestamp()) + 60 if last else int((now - W1_RETENTION_S) // 60 * 60)
    if start >= end:
        return 0
    by_minute: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for window in store.windows(since=start, until=end - 0.001):
        by_minute[int(window["t"] // 60 * 60)].append(window)
    rows = []
    for minute, windows in sorted(by_minute.items()):
        merged = merge_windows(windows)
        rows.append(
            MetricWindow(
                sentinel=sentinel,
                start=dt.datetime.fromtimestamp(minute, tz=dt.UTC),
                resolution=60,
                **merged,
            )
        )
    MetricWindow.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def rollup_all(now: float | None = None) -> int:
    client = redis_client()
    return sum(rollup_sentinel(s, SentinelStore(client, s.pk), now) for s in Sentinel.objects.all())


def prune(now: dt.datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.METRIC_RETENTION_DAYS)
    deleted, _ = MetricWindow.objects.filter(start__lt=cutoff).delete()
    return deleted
