"""Dashboard data service: metric windows for a time range, overview grid, partition table.

Where the numbers come from (docs/architecture.md, "Metric windows and live events"):

- ranges up to an hour read the checker's one-second windows from Redis
  (``SentinelStore.windows``);
- longer ranges read the one-minute ``MetricWindow`` rollups from the database, topped up with
  the one-second windows of the minutes not rolled up yet;
- every series is cut into at most ``MAX_POINTS`` equal time buckets (a "nice" step), with
  ``None`` for buckets without any window, so a chart shows the gaps when a sentinel was down.

Within a bucket of several windows, counters are summed (``pending`` is a level: its last
value), rates are divided by the seconds the windows cover, latency p50 is the count-weighted
mean of the window p50s and p99 the largest window p99 (an upper bound, exact for a single
window). :func:`summarize` merges the windows' histograms instead, for exact percentiles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections
from django.db.models import Q
from django.urls import NoReverseMatch, reverse

from dashboard.models import MetricWindow, ScenarioRun, Sentinel
from workers.engine.documents import COUNTERS
from workers.engine.latency import LatencyHistogram
from workers.engine.profiles import SEMANTICS
from workers.store import SentinelStore, connect

log = logging.getLogger(__name__)

RANGES: dict[str, int] = {
    "live": 60,
    "15m": 15 * 60,
    "1h": 3600,
    "24h": 24 * 3600,
    "7d": 7 * 24 * 3600,
}
RANGE_LABELS = {"live": "Live", "15m": "15 min", "1h": "1 h", "24h": "24 h", "7d": "7 d"}
REDIS_SPAN_S = 3600  # one-second windows kept in Redis (DS_W1_RETENTION_S)
ROLLUP_RESOLUTION_S = 60
MAX_POINTS = 1000
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400)
RATE_COUNTERS = ("produced", "acked", "processed")
EVENT_COUNTERS = ("lost", "duplicated", "reordered", "late", "phantom", "aborted_read")
SEVERITY = {"HOLDING": 0, "DEGRADED": 1, "STALLED": 2, "VIOLATED": 3}
RECENT_S = 300  # "the last 5 minutes" of the overview and the partition table

METADATA_TIMEOUT_S = 2.0
METADATA_TTL_S = 15
METADATA_ERROR_TTL_S = 5


class UnknownRange(ValueError):
    pass


_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """One pooled client per Redis URL, shared by requests (redis-py clients are thread-safe)."""
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = connect(url)
    return client


def range_seconds(range_name: str) -> int:
    try:
        return RANGES[range_name]
    except KeyError:
        raise UnknownRange(
            f"unknown range {range_name!r}; choose one of {', '.join(RANGES)}"
        ) from None


# -- loading windows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A window in one shape, whatever its source: it covers ``[start, start + seconds)``."""

    start: float
    seconds: float
    counts: dict[str, int]
    e2e: dict[str, Any]
    ack: dict[str, Any]
    verdict: str
    hist: dict[str, Any] | None = None
    partitions: dict[str, dict[str, int]] | None = None


def _from_redis(doc: dict[str, Any], keep_hist: bool) -> Window:
    seconds = float(doc.get("seconds") or 1.0)
    # The checker stamps a one-second window with the time it ends.
    return Window(
        start=float(doc["t"]) - seconds,
        seconds=seconds,
        counts=doc.get("counts") or {},
        e2e=doc.get("e2e") or {},
        ack=doc.get("ack") or {},
        verdict=doc.get("verdict") or "",
        hist=doc.get("hist") if keep_hist else None,
        partitions=doc.get("partitions"),
    )


def redis_windows(
    sentinel_id: int,
    since: float,
    until: float | None = None,
    *,
    keep_hist: bool = False,
    client: redis.Redis | None = None,
) -> list[Window]:
    store = SentinelStore(client or redis_client(), sentinel_id)
    # Stamped with their end: a window ending just after ``since`` started before it.
    return [_from_redis(doc, keep_hist) for doc in store.windows(since, until)]


def db_windows(
    sentinel_id: int, since: float, until: float, *, keep_hist: bool = False
) -> list[Window]:
    """One-minute rollups in ``[since, until)``, oldest first.

    Read with a plain cursor on the ORM's own SQL: a day is 1,440 rows, and Django's
    per-row, per-field converters cost more than the query itself.
    """
    fields = ["start", "resolution", "counts", "latency", "verdict"]
    if keep_hist:
        fields.append("hist")
    query = (
        MetricWindow.objects.filter(
            sentinel_id=sentinel_id,
            resolution=ROLLUP_RESOLUTION_S,
            start__gte=datetime.fromtimestamp(since, UTC),
            start__lt=datetime.fromtimestamp(until, UTC),
        )
        .order_by("start")
        .values_list(*fields)
        .query
    )
    sql, params = query.sql_with_params()
    with connections[MetricWindow.objects.db].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    json_columns = [2, 3, 5] if keep_hist else [2, 3]
    decoded = _decode_json_columns(rows, json_columns)
    return [
        Window(
            start=_timestamp(row[0]),
            seconds=float(row[1]),
            counts=values[0] or {},
            e2e=(values[1] or {}).get("e2e") or {},
            ack=(values[1] or {}).get("ack") or {},
            verdict=row[4] or "",
            hist=values[2] if keep_hist else None,
        )
        for row, values in zip(rows, decoded, strict=True)
    ]


def _decode_json_columns(rows: list[tuple], columns: list[int]) -> list[list[Any]]:
    """JSON cells of ``rows`` as Python values: backends that hand back text (SQLite) are
    decoded here; those that decode it themselves (psycopg's jsonb) are kept as they are."""
    loads = json.loads
    return [
        [loads(v) if isinstance(v := row[c], str | bytes) else v for c in columns] for row in rows
    ]


def _timestamp(value: datetime | str) -> float:
    if isinstance(value, str):  # a backend without datetime conversion
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:  # stored in UTC (USE_TZ)
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def load_windows(
    sentinel_id: int, since: float, until: float, *, keep_hist: bool = False
) -> tuple[list[Window], int, str]:
    """Windows covering ``[since, until]``, their native resolution (s) and their source."""
    if until - since <= REDIS_SPAN_S:
        return redis_windows(sentinel_id, since, until, keep_hist=keep_hist), 1, "redis"
    rolled = db_windows(sentinel_id, since, until, keep_hist=keep_hist)
    # Minutes not rolled up yet (beat runs once a minute) still live in Redis.
    cutoff = rolled[-1].start + rolled[-1].seconds if rolled else since
    cutoff = max(cutoff, until - REDIS_SPAN_S)
    recent = redis_windows(sentinel_id, cutoff, until, keep_hist=keep_hist)
    recent = [w for w in recent if w.start >= cutoff - 0.5]
    source = "database+redis" if recent else "database"
    return rolled + recent, ROLLUP_RESOLUTION_S, source


# -- series for charts --------------------------------------------------------------------------


def choose_step(span: float, native: int, max_points: int = MAX_POINTS) -> int:
    """The smallest nice step, a multiple of ``native``, that keeps ``span`` under max_points."""
    for step in STEPS:
        if step >= native and step % native == 0 and span / step <= max_points:
            return step
    return max(native, math.ceil(span / max_points))


class _Bucket:
    __slots__ = ("covered", "counts", "pending", "e2e", "ack", "verdict")

    def __init__(self) -> None:
        self.covered = 0.0
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.pending: int | None = None
        self.e2e = [0.0, 0, None]  # sum(p50 * count), count, max p99
        self.ack = [0.0, 0, None]
        self.verdict = ""

    def add(self, w: Window) -> None:
        self.covered += w.seconds
        counts = self.counts
        for key, value in w.counts.items():
            if key == "pending":
                self.pending = value
            elif key in counts:
                counts[key] += value
        _add_latency(self.e2e, w.e2e)
        _add_latency(self.ack, w.ack)
        if SEVERITY.get(w.verdict, -1) > SEVERITY.get(self.verdict, -1):
            self.verdict = w.verdict


def _add_latency(acc: list, summary: dict[str, Any]) -> None:
    count = summary.get("count") or 0
    if not count or summary.get("p50") is None:
        return
    acc[0] += summary["p50"] * count
    acc[1] += count
    p99 = summary.get("p99")
    if p99 is not None and (acc[2] is None or p99 > acc[2]):
        acc[2] = p99


def _p50(acc: list) -> float | None:
    return round(acc[0] / acc[1], 3) if acc[1] else None


def build_series(
    windows: Iterable[Window], since: float, until: float, step: int
) -> dict[str, list]:
    """Columnar series (uPlot's shape): ``t`` plus one list per metric, aligned."""
    first = math.floor(since / step) * step
    n = max(1, math.floor((until - first) / step) + 1)
    buckets: list[_Bucket | None] = [None] * n
    for w in windows:
        i = int((w.start - first) // step)
        if 0 <= i < n:
            bucket = buckets[i]
            if bucket is None:
                bucket = buckets[i] = _Bucket()
            bucket.add(w)
    series: dict[str, list] = {"t": [first + i * step for i in range(n)]}
    for key in RATE_COUNTERS:
        series[f"{key}_per_s"] = [
            round(b.counts[key] / b.covered, 3) if b and b.covered else None for b in buckets
        ]
    for key in EVENT_COUNTERS:
        series[key] = [b.counts[key] if b else None for b in buckets]
    series["pending"] = [b.pending if b else None for b in buckets]
    series["e2e_p50"] = [_p50(b.e2e) if b else None for b in buckets]
    series["e2e_p99"] = [b.e2e[2] if b else None for b in buckets]
    series["ack_p50"] = [_p50(b.ack) if b else None for b in buckets]
    series["ack_p99"] = [b.ack[2] if b else None for b in buckets]
    series["verdict"] = [(b.verdict or None) if b else None for b in buckets]
    return series


def windows_for_range(
    sentinel_id: int, range_name: str, now: float | None = None
) -> dict[str, Any]:
    """The chart data of one sentinel for a named range (``RANGES``).

    Raises UnknownRange for a range name not in ``RANGES``.
    """
    span = range_seconds(range_name)
    until = time.time() if now is None else now
    since = until - span
    windows, native, source = load_windows(sentinel_id, since, until)
    step = choose_step(span, native)
    series = build_series(windows, since, until, step)
    return {
        "sentinel": sentinel_id,
        "range": range_name,
        "since": since,
        "until": until,
        "step": step,
        "source": source,
        "windows": len(windows),
        "points": len(series["t"]),
        "series": series,
    }


def summarize(sentinel_id: int, range_name: str, now: float | None = None) -> dict[str, Any]:
    """Counter increases and exact latency percentiles (merged histograms) over a range."""
    span = range_seconds(range_name)
    until = time.time() if now is None else now
    windows, _native, _source = load_windows(sentinel_id, until - span, until, keep_hist=True)
    counts = dict.fromkeys(COUNTERS, 0)
    hists = {"e2e": LatencyHistogram(), "ack": LatencyHistogram()}
    covered = 0.0
    for w in windows:
        covered += w.seconds
        for key, value in w.counts.items():
            if key == "pending":
                counts[key] = value
            elif key in counts:
                counts[key] += value
        for kind, hist in hists.items():
            doc = (w.hist or {}).get(kind)
            if doc:
                hist.merge(LatencyHistogram.from_dict(doc))
    latency = {
        kind: {
            "p50": _round(h.percentile(50)),
            "p99": _round(h.percentile(99)),
            "max": _round(h.max),
            "count": h.count,
        }
        for kind, h in hists.items()
    }
    return {
        "range": range_name,
        "since": until - span,
        "until": until,
        "covered_seconds": covered,
        "counts": counts,
        "processed_per_s": round(counts["processed"] / covered, 3) if covered else None,
        "latency_ms": latency,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def live_windows(
    sentinel_id: int, seconds: int = 60, client: redis.Redis | None = None
) -> list[dict[str, Any]]:
    """The last ``seconds`` of one-second windows as the websocket relays them (no hist)."""
    store = SentinelStore(client or redis_client(), sentinel_id)
    docs = store.windows(time.time() - seconds)
    return [{k: v for k, v in doc.items() if k != "hist"} for doc in docs]


def sparklines(
    sentinel_ids: Sequence[int], seconds: int = 60, client: redis.Redis | None = None
) -> dict[int, list[list[float]]]:
    """``{id: [[t, processed per second], ...]}`` for the last ``seconds``, one round trip."""
    client = client or redis_client()
    since_ms = str(int((time.time() - seconds) * 1000))
    pipe = client.pipeline(transaction=False)
    for sid in sentinel_ids:
        pipe.xrange(SentinelStore(client, sid).key("w1"), min=since_ms, max="+")
    out: dict[int, list[list[float]]] = {}
    for sid, entries in zip(sentinel_ids, pipe.execute(), strict=True):
        points = []
        for _id, fields in entries:
            doc = json.loads(fields[b"d"])
            seconds_ = float(doc.get("seconds") or 1.0)
            points.append([doc["t"], round(doc["counts"].get("processed", 0) / seconds_, 3)])
        out[sid] = points
    return out


# -- overview -----------------------------------------------------------------------------------


def cell(doc: dict[str, Any]) -> dict[str, Any]:
    """What one overview cell shows for one sentinel; the page's JS computes the same."""
    window = doc.get("window") or {}
    counts = window.get("counts") or {}
    seconds = window.get("seconds") or 0
    latency = doc.get("recent_latency_ms") or {}
    p99 = latency.get("p99")
    # Numbers as the text the page shows: a hundred cells of template filters cost more than
    # everything else the overview does.
    return {
        "id": doc["id"],
        "name": doc["name"],
        "semantic": doc["semantic"],
        "verdict": doc["verdict"],
        "verdict_class": str(doc["verdict"]).lower(),
        "reasons": "; ".join(doc.get("reasons") or []),
        "enabled": doc.get("enabled", True),
        "lost": str(counts.get("lost", 0)),
        "duplicated": str(counts.get("duplicated", 0)),
        "reordered": str(counts.get("reordered", 0)),
        "processed": str((doc.get("totals") or {}).get("processed", 0)),
        "throughput": f"{counts.get('processed', 0) / seconds:.1f}" if seconds else "0.0",
        "p99": "—" if p99 is None else f"{p99:.1f}",
    }


def overview_grid(statuses: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clusters, each with one row per sentinel topic and one cell per semantic.

    ``[{"cluster": name, "rows": [{"topic": t, "cells": [[cell, ...] per SEMANTICS]}]}]``;
    a cell holds every sentinel of that topic and semantic (usually one, often none).
    """
    grid: dict[str, dict[str, list[list[dict[str, Any]]]]] = {}
    for doc in statuses:
        rows = grid.setdefault(doc["cluster"], {})
        cells = rows.setdefault(doc["topic"], [[] for _ in SEMANTICS])
        column = SEMANTICS.index(doc["semantic"]) if doc["semantic"] in SEMANTICS else 0
        cells[column].append(cell(doc))
    return [
        {
            "cluster": cluster,
            "rows": [{"topic": topic, "cells": rows[topic]} for topic in sorted(rows)],
        }
        for cluster, rows in sorted(grid.items())
    ]


# -- per-partition table ------------------------------------------------------------------------


def topic_metadata(sentinel: Sentinel) -> dict[str, Any]:
    """Leaders, replicas and ISRs of the sentinel's topic, cached for ``METADATA_TTL_S``.

    ``{"error": str | None, "partitions": {"0": {"leader", "leader_host", "replicas", "isr"}}}``.
    A slow or unreachable cluster costs at most ``METADATA_TIMEOUT_S`` once per error TTL.
    """
    cluster = sentinel.cluster
    ident = f"{cluster.bootstrap_servers}|{sorted(cluster.client_properties.items())}"
    key = "ds:topic-meta:" + hashlib.sha256(f"{ident}|{sentinel.topic}".encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return cached
    result = _fetch_metadata(cluster.bootstrap_servers, cluster.client_properties, sentinel.topic)
    cache.set(key, result, METADATA_ERROR_TTL_S if result["error"] else METADATA_TTL_S)
    return result


def _fetch_metadata(bootstrap: str, client_properties: dict, topic: str) -> dict[str, Any]:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    conf = {**client_properties, "bootstrap.servers": bootstrap, "log_level": 0}
    try:
        meta = AdminClient(conf).list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except (KafkaException, ValueError, TypeError) as exc:
        error = exc.args[0] if exc.args else exc
        return {"error": getattr(error, "str", lambda: str(error))(), "partitions": {}}
    brokers = {b.id: f"{b.host}:{b.port}" for b in meta.brokers.values()}
    topic_meta = meta.topics.get(topic)
    if topic_meta is None:
        return {"error": f"topic {topic} not found", "partitions": {}}
    if topic_meta.error is not None:
        return {"error": topic_meta.error.str(), "partitions": {}}
    partitions = {
        str(p.id): {
            "leader": p.leader,
            "leader_host": brokers.get(p.leader, ""),
            "replicas": list(p.replicas),
            "isr": list(p.isrs),
        }
        for p in topic_meta.partitions.values()
    }
    return {"error": None, "partitions": partitions}


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


def partition_table(
    sentinel: Sentinel, status: dict[str, Any], metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Rows for the detail page's partition table, problems first spelled out in words."""
    metadata = metadata if metadata is not None else topic_metadata(sentinel)
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
            if meta["leader"] is None or meta["leader"] < 0:
                problems.append("no leader")
            elif len(meta["isr"]) < len(meta["replicas"]):
                problems.append(
                    f"under-replicated: {len(meta['isr'])}/{len(meta['replicas'])} in sync"
                )
        elif not metadata["error"]:
            problems.append("partition not in the topic's metadata")
        latency = totals.get(p, {}).get("latency_ms") or {}
        rows.append(
            {
                "partition": p,
                "leader": meta["leader"] if meta else None,
                "leader_host": meta["leader_host"] if meta else "",
                "replicas": meta["replicas"] if meta else [],
                "isr": meta["isr"] if meta else [],
                "counts": counts,
                "p99": latency.get("p99"),
                "problems": problems,
            }
        )
    return {"rows": rows, "error": metadata["error"], "topic": sentinel.topic}


# -- timeline -----------------------------------------------------------------------------------

TIMELINE_KINDS = {
    "verdict": "verdict change",
    "run": "producer run",
    "state-lost": "state lost",
    "fenced": "fenced",
    "stuck": "stuck, restarted",
    "txn-aborted": "copier transaction aborted",
    "producer-txn-aborted": "producer transaction aborted",
}


def timeline(
    sentinel: Sentinel, limit: int = 50, client: redis.Redis | None = None
) -> list[dict[str, Any]]:
    """Verdict changes, producer runs and other notable events of the sentinel, with the
    scenario lab's runs on its cluster, newest first."""
    store = SentinelStore(client or redis_client(), sentinel.pk)
    out = []
    for event in store.events(limit):
        kind = str(event.get("kind", ""))
        label = TIMELINE_KINDS.get(kind) or (
            "scenario run" if kind.startswith("scenario") else kind
        )
        ts = float(event.get("ts", 0))
        out.append({**event, "label": label, "ts": ts, "at": datetime.fromtimestamp(ts, UTC)})
    out.extend(scenario_runs(sentinel, limit))
    out.sort(key=lambda e: e["ts"], reverse=True)
    return out[:limit]


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
