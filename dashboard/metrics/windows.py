"""Metric windows of one sentinel for a time range: loading, chart series and summaries.

Where the numbers come from (docs/architecture.md, "Metric windows and live events"):

- ranges up to ``W1_RETENTION_S`` (an hour by default, ``DS_W1_RETENTION_S``) read the
  checker's one-second windows from Redis (``SentinelStore.windows``);
- longer ranges read the one-minute ``MetricWindow`` rollups from the database, topped up with
  the one-second windows of the minutes not rolled up yet;
- every series is cut into at most ``MAX_POINTS`` equal time buckets (a "nice" step), with
  ``None`` for buckets without any window, so a chart shows the gaps when a sentinel was down.

Whatever their source, windows are ``workers.engine.documents.Window``. Within a bucket of
several windows, counters are summed (``pending`` is a level: its last value), rates are
divided by the seconds the windows cover, latency p50 is the count-weighted mean of the window
p50s and p99 the largest window p99 (an upper bound, exact for a single window).
:func:`summarize` merges the windows' histograms instead, for exact percentiles.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis
from django.db import connections

from dashboard.models import MetricWindow
from dashboard.redisclient import redis_client
from workers.engine.documents import (
    COUNTERS,
    EVENT_COUNTERS,
    RATE_COUNTERS,
    W1_RETENTION_S,
    Window,
    merge_windows,
    severity,
)
from workers.engine.latency import LatencyHistogram
from workers.store.sentinel import SentinelStore

RANGES: dict[str, int] = {
    "live": 60,
    "15m": 15 * 60,
    "1h": 3600,
    "24h": 24 * 3600,
    "7d": 7 * 24 * 3600,
}
RANGE_LABELS = {"live": "Live", "15m": "15 min", "1h": "1 h", "24h": "24 h", "7d": "7 d"}
ROLLUP_RESOLUTION_S = 60
MAX_POINTS = 1000
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400)


class UnknownRange(ValueError):
    pass


def range_seconds(range_name: str) -> int:
    try:
        return RANGES[range_name]
    except KeyError:
        raise UnknownRange(
            f"unknown range {range_name!r}; choose one of {', '.join(RANGES)}"
        ) from None


# -- loading windows ----------------------------------------------------------------------------


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
    return [Window.from_doc(doc, keep_hist=keep_hist) for doc in store.windows(since, until)]


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
    if until - since <= W1_RETENTION_S:
        return redis_windows(sentinel_id, since, until, keep_hist=keep_hist), 1, "redis"
    rolled = db_windows(sentinel_id, since, until, keep_hist=keep_hist)
    # Minutes not rolled up yet (beat runs once a minute) still live in Redis.
    cutoff = rolled[-1].end if rolled else since
    cutoff = max(cutoff, until - W1_RETENTION_S)
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
        if severity(w.verdict) > severity(self.verdict):
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
    # The axis starts where the data starts: a young sentinel's 7 days are its first minutes,
    # in buckets fine enough to draw lines, not one point in an empty week.
    data_since = max(since, min((w.start for w in windows), default=since))
    step = choose_step(until - data_since, native)
    series = build_series(windows, data_since, until, step)
    return {
        "sentinel": sentinel_id,
        "range": range_name,
        "since": since,
        "data_since": data_since,
        "until": until,
        "step": step,
        "source": source,
        "windows": len(windows),
        "points": len(series["t"]),
        "series": series,
    }


# The ranges a page may open on to show a past moment, shortest first ("live" follows now).
PAST_RANGES = ("15m", "1h", "24h", "7d")


def range_containing(t: float | None, now: float | None = None) -> str:
    """The shortest range that still shows the moment ``t`` (with a minute to spare), or
    "live" for no moment or one older than the longest range."""
    if t is None:
        return "live"
    age = (time.time() if now is None else now) - t + 60
    return next((name for name in PAST_RANGES if RANGES[name] >= age), "live")


def summarize(sentinel_id: int, range_name: str, now: float | None = None) -> dict[str, Any]:
    """Counter increases and exact latency percentiles (merged histograms) over a range."""
    span = range_seconds(range_name)
    until = time.time() if now is None else now
    windows, _native, _source = load_windows(sentinel_id, until - span, until, keep_hist=True)
    merged = merge_windows(windows)
    counts = merged.counts if merged else dict.fromkeys(COUNTERS, 0)
    hists = {
        kind: (merged.histogram(kind) if merged else None) or LatencyHistogram()
        for kind in ("e2e", "ack")
    }
    covered = sum(w.seconds for w in windows)
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
    # Through Window: stored windows keep only their non-zero counters; the pages get them all.
    return [Window.from_doc(doc, keep_hist=False).to_doc(hist=False) for doc in docs]
