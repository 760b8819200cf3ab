"""The overview page's numbers: the grid of sentinels (one cell each) and their sparklines.

A cell shows a sentinel's status document (``dashboard.status``); the page's JavaScript
computes the same from the live ``window.update`` events. Sparklines read the last minute of
the checkers' one-second windows from Redis, every sentinel in one round trip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from dashboard import formatting
from dashboard.redisclient import redis_client
from workers.engine.documents import SEMANTICS, SEVERITY, severity
from workers.store.sentinel import SentinelStore


def sparklines(
    sentinel_ids: Sequence[int], seconds: int = 60, client: redis.Redis | None = None
) -> dict[int, list[list[float]]]:
    """``{id: [[t, processed per second], ...]}`` for the last ``seconds``, one round trip."""
    windows = SentinelStore.recent_windows(
        client or redis_client(), sentinel_ids, time.time() - seconds
    )
    return {
        sid: [
            [doc["t"], round(doc["counts"].get("processed", 0) / (doc.get("seconds") or 1.0), 3)]
            for doc in docs
        ]
        for sid, docs in windows.items()
    }


def page_state(
    verdicts: Iterable[str], base: str, unacknowledged: int = 0, alarm: str = ""
) -> dict[str, Any]:
    """What the tab says (base.html, ``DS.pageState``): the worst of ``verdicts`` in its title
    and favicon, with the count of incidents nobody has acknowledged yet; ``alarm``
    ("critical", "warning" or ""), the favicon's colour while some are."""
    worst = max(verdicts, key=severity, default="")
    return {
        "verdict": worst,
        "note": unacknowledged_note(unacknowledged),
        "unacknowledged": unacknowledged,
        "alarm": alarm,
        "base": base,
        "severity": SEVERITY,
    }


def unacknowledged_note(unacknowledged: int) -> str:
    """The tab title's on-call note ("2 not acknowledged"), "" when none is."""
    return f"{unacknowledged} not acknowledged" if unacknowledged else ""


# rec/s is the mean of the last THROUGHPUT_SECONDS one-second windows once at least
# THROUGHPUT_POINTS of them are there (overview.js uses the same two numbers), else the
# verdict window's average.
THROUGHPUT_SECONDS = 10
THROUGHPUT_POINTS = 5


def throughput(doc: dict[str, Any], recent: list[list[float]] | None) -> str:
    points = (recent or [])[-THROUGHPUT_SECONDS:]
    if len(points) >= THROUGHPUT_POINTS:
        return formatting.decimal(sum(p[1] for p in points) / len(points))
    window = doc.get("window") or {}
    seconds = window.get("seconds") or 0
    processed = (window.get("counts") or {}).get("processed", 0)
    return formatting.decimal(processed / seconds if seconds else 0)


def cell(
    doc: dict[str, Any], recent: list[list[float]] | None = None, now: float | None = None
) -> dict[str, Any]:
    """What one overview cell shows for one sentinel; the page's JS computes the same.
    ``recent``: its sparkline points (``[t, processed per second]``), oldest first."""
    now = time.time() if now is None else now
    window = doc.get("window") or {}
    counts = window.get("counts") or {}
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
        "verdict_since": doc.get("verdict_since"),
        "since": formatting.since(doc.get("verdict_since"), now),
        "reasons": "; ".join(doc.get("reasons") or []),
        "cluster_problem": "",  # with_cluster_problems: the cluster's state, when it is why
        "enabled": doc.get("enabled", True),
        "lost": formatting.count(counts.get("lost", 0)),
        "duplicated": formatting.count(counts.get("duplicated", 0)),
        "reordered": formatting.count(counts.get("reordered", 0)),
        "processed": formatting.count((doc.get("totals") or {}).get("processed", 0)),
        "throughput": throughput(doc, recent),
        "p99": formatting.latency_ms(p99),
    }


def overview_grid(
    statuses: Iterable[dict[str, Any]], recent: dict[int, list[list[float]]] | None = None
) -> list[dict[str, Any]]:
    """Clusters, each with one row per sentinel topic and one cell per semantic.

    ``[{"cluster": name, "rows": [{"topic": t, "cells": [[cell, ...] per SEMANTICS]}]}]``;
    a cell holds every sentinel of that topic and semantic (usually one, often none).
    """
    grid: dict[str, dict[str, list[list[dict[str, Any]]]]] = {}
    for doc in statuses:
        rows = grid.setdefault(doc["cluster"], {})
        cells = rows.setdefault(doc["topic"], [[] for _ in SEMANTICS])
        column = SEMANTICS.index(doc["semantic"]) if doc["semantic"] in SEMANTICS else 0
        cells[column].append(cell(doc, (recent or {}).get(doc["id"])))
    return [
        {
            "cluster": cluster,
            "rows": [{"topic": topic, "cells": rows[topic]} for topic in sorted(rows)],
        }
        for cluster, rows in sorted(grid.items())
    ]


# The lint verdicts drawn in the sentinels' verdict colours.
LINT_CLASS = {"can-hold": "holding", "one-failure-away": "degraded", "cannot-hold": "violated"}


def with_lint(
    grid: list[dict[str, Any]], reports: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The grid with a row for every topic of each cluster's latest lint report (``reports``:
    cluster name -> report), sentinel topics included: each row gains ``lint`` (one entry per
    semantic: ``verdict``, ``label``, ``css``, ``first``, ``ran`` (when the lint ran, a UTC
    clock time), or ``None`` when the topic was not linted) and ``internal``. Rows stay sorted by topic; clusters without sentinels appear."""
    groups = {g["cluster"]: g for g in grid}
    for name, report in reports.items():
        if name not in groups:
            groups[name] = {"cluster": name, "rows": []}
        rows = {r["topic"]: r for r in groups[name]["rows"]}
        for topic in report.get("topics", []):
            rows.setdefault(
                topic["name"], {"topic": topic["name"], "cells": [[] for _ in SEMANTICS]}
            )
        linted = {t["name"]: t for t in report.get("topics", [])}
        ran = formatting.clock(report.get("generated_at"), time.time())
        for topic_name, row in rows.items():
            doc = linted.get(topic_name)
            row["internal"] = bool(doc and doc["internal"])
            row["lint"] = [
                {
                    **doc["verdicts"][s],
                    "css": LINT_CLASS[doc["verdicts"][s]["verdict"]],
                    "ran": ran,
                }
                if doc
                else None
                for s in SEMANTICS
            ]
        groups[name]["rows"] = [rows[t] for t in sorted(rows)]
    return [groups[c] for c in sorted(groups)]


def with_cluster_problems(
    grid: list[dict[str, Any]], docs: Iterable[dict[str, Any]], problems: dict[str, str]
) -> list[dict[str, Any]]:
    """Each cluster group gains ``problem`` (its state in words, or ``""``); each card of a
    cluster with a problem that the problem explains (``cluster.affected``) names it in
    ``cluster_problem`` instead of its raw client line (kept one click away on the page)."""
    from dashboard.metrics.cluster import affected

    hit = {d["id"] for d in docs if problems.get(d["cluster"]) and affected(d)}
    for group in grid:
        problem = problems.get(group["cluster"], "")
        group["problem"] = problem
        for row in group["rows"]:
            for cells in row["cells"]:
                for c in cells:
                    if c["id"] in hit:
                        c["cluster_problem"] = f"cluster {group['cluster']}: {problem}"
    return grid
