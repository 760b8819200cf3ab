"""The detail page's timeline: a sentinel's notable events, the scenario lab's runs and the
cluster's events on its topics.

Events (verdict changes, producer runs, state lost, fencing...) come from the sentinel's
capped event list in Redis (``SentinelStore.events``); scenario runs on its cluster from the
database; the cluster's events on the sentinel's topics (leader changes, ISR changes, records
deleted...) from the cluster's event stream (``dashboard.metrics.clusterevents``). Newest first.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis
from django.db import DatabaseError
from django.db.models import Q
from django.urls import NoReverseMatch, reverse

from dashboard.metrics.clusterevents import on_topics
from dashboard.metrics.windows import range_containing
from dashboard.models import ScenarioRun, Sentinel
from dashboard.redisclient import redis_client
from workers.engine.documents import SENTINEL_EVENTS, Verdict
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)


def timeline(
    sentinel: Sentinel, limit: int = 50, client: redis.Redis | None = None
) -> list[dict[str, Any]]:
    """Verdict changes, producer runs and other notable events of the sentinel, with the
    scenario lab's runs on its cluster, newest first."""
    store = SentinelStore(client or redis_client(), sentinel.pk)
    out = []
    for event in store.events(limit):
        kind = str(event.get("kind", ""))
        label = SENTINEL_EVENTS.get(kind) or (
            "scenario run" if kind.startswith("scenario") else kind
        )
        ts = float(event.get("ts", 0))
        entry = {**event, "label": label, "ts": ts, "at": datetime.fromtimestamp(ts, UTC)}
        if event.get("reasons"):  # as the live page writes a verdict change: with its reasons
            entry["message"] = f"{event.get('message', '')}: {'; '.join(event['reasons'])}"
        out.append(entry)
    out.extend(scenario_runs(sentinel, limit))
    spec = sentinel.to_spec()
    topics = {spec.topic, spec.verified_topic}
    out.extend(on_topics(sentinel.cluster.name, topics, limit, client))
    out.sort(key=lambda e: e["ts"], reverse=True)
    now = time.time()
    for entry in out[:limit]:
        entry["range"] = range_containing(entry["ts"], now)  # its "show on the charts" link
    return out[:limit]


# Verdicts a page opens its charts on. STALLED is not one: every start and restart stalls for
# a moment, and a stall loses nothing.
PROBLEMS = (Verdict.DEGRADED, Verdict.VIOLATED)


def opening_range(
    entries: list[dict[str, Any]], latched: list[datetime], now: float | None = None
) -> dict[str, str]:
    """The range the detail page opens on: the shortest that holds the sentinel's last
    problem (a verdict change to DEGRADED or VIOLATED, or an unresolved incident), with
    the reason the page gives; "live" when there is none in the last 7 days."""
    problems = [
        (e["ts"], f"{e['verdict']} at {e['at']:%H:%M:%S}")
        for e in entries
        if e.get("kind") == "verdict" and e.get("verdict") in PROBLEMS
    ]
    problems += [(at.timestamp(), f"an incident opened at {at:%H:%M:%S}") for at in latched]
    if not problems:
        return {"range": "live", "reason": ""}
    t, what = max(problems)
    name = range_containing(t, now)
    return {"range": name, "reason": f"it holds the last problem, {what}" if name != "live" else ""}


def scenario_runs(sentinel: Sentinel, limit: int = 20) -> list[dict[str, Any]]:
    """The scenario lab's runs against the sentinel's cluster (a run without a cluster ran on
    the local one), as timeline entries."""
    where = Q(cluster_id=sentinel.cluster_id)
    if sentinel.cluster.is_local:
        where |= Q(cluster__isnull=True)
    try:
        runs = list(ScenarioRun.objects.filter(where).order_by("-created")[:limit])
    except DatabaseError as exc:  # e.g. its table not migrated yet: the rest of the page stands
        log.warning("timeline: scenario runs unavailable: %s", exc)
        return []
    out = []
    for run in runs:
        at = run.started or run.created
        message = f"{run.title}: {run.state}" + (f" ({run.reason})" if run.reason else "")
        try:
            url = reverse("scenarios:run", args=[run.pk])
        except NoReverseMatch:
            url = None
        out.append(
            {
                "kind": "scenario",
                "label": "scenario run",
                "message": message,
                "ts": at.timestamp(),
                "at": at,
                "url": url,
            }
        )
    return out
