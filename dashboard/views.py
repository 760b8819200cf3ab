"""HTML pages (overview, sentinel detail, compare, manage) and the unauthenticated health check.

Views stay thin: the numbers come from the readers of ``dashboard.metrics`` and from
``dashboard.status``, the configuration diffs from ``dashboard.compare``, validation from
``dashboard.forms``. The JSON API is ``dashboard.api``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection, models
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from dashboard import compare, formatting
from dashboard.forms import ClusterForm, ProfileForm, SentinelForm
from dashboard.groups import services as groups
from dashboard.lint import services as lint
from dashboard.metrics import cluster, overview, partitions, timeline
from dashboard.metrics.windows import RANGE_LABELS, summarize
from dashboard.models import Cluster, Profile, Sentinel
from dashboard.oncall import services as oncall
from dashboard.status import all_statuses, placement, redis_problem, sentinel_status
from workers.engine.documents import (
    COUNTER_MEANINGS,
    EVENT_COUNTERS,
    LATENCY_WINDOW_S,
    SEMANTICS,
    VERDICT_WINDOW_S,
)

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 2.0
COMPARE_RANGES = ("15m", "1h", "24h", "7d")


def minutes(seconds: float) -> str:
    """A window's length as its label says it: ``300`` -> "5 min"."""
    return f"{seconds / 60:g} min"


def _sentinels() -> models.QuerySet[Sentinel]:
    return Sentinel.objects.select_related("cluster", "profile")


# -- overview -----------------------------------------------------------------------------------


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The overview: per-topic guarantee health, one column per semantic, updated live."""
    statuses = all_statuses()
    recent = overview.sparklines([d["id"] for d in statuses], overview.THROUGHPUT_SECONDS)
    grid = overview.overview_grid(statuses, recent)
    # Every linted topic gets a row with its lint verdicts (docs/lint.md).
    grid = overview.with_lint(grid, lint.latest_reports())
    # A cluster with an unreachable broker says so in words, and its cards name it.
    grid = overview.with_cluster_problems(grid, statuses, cluster.cluster_problems(statuses))
    clusters = dict(Cluster.objects.values_list("name", "pk"))
    # Each real topic's row shows its consumer groups' worst status (docs/groups.md).
    by_topic = groups.topic_statuses()
    for group in grid:
        group["cluster_id"] = clusters.get(group["cluster"])  # its cluster page
        for row in group["rows"]:
            rollup = by_topic.get(group["cluster"], {}).get(row["topic"])
            row["groups"] = rollup
            row["groups_css"] = groups.STATUS_CLASS.get(rollup.status, "none") if rollup else ""
    oncall_block = oncall.overview_context(grid)  # open incidents, silences, latched cells
    return render(
        request,
        "dashboard/overview.html",
        {
            "grid": grid,
            "semantics": SEMANTICS,
            "count": len(statuses),
            "page_state": overview.page_state(
                [d["verdict"] for d in statuses],
                "Overview · Delivery Sentinel",
                oncall.unacknowledged(oncall_block["open_incidents"]),
                oncall_block["oncall_alarm"],
            ),
            **oncall_block,
        },
    )


# -- sentinel detail ----------------------------------------------------------------------------


# The detail page's charts (detail.js draws them): key, caption.
CHARTS = (
    ("rates", "Produced / processed, records per second"),
    ("events", "Lost, duplicated, reordered, late, phantom: records per point"),
    ("e2e", "End-to-end latency p50 / p99 (ms, log scale)"),
    ("ack", "Produce-ack latency p50 / p99 (ms, log scale)"),
)


def detail_totals(totals: dict[str, int], spec: Any) -> list[dict[str, Any]]:
    """The detail page's totals, each with its meaning (``COUNTER_MEANINGS``, the title of its
    label) and ``in flight`` beside ``acked`` and ``failed``: processed may run ahead of
    acked while delivery reports are on their way, and in flight says how many are. Under
    ``acks=0`` the acked label says what acked means there."""
    acks = str(spec.producer_conf().get("acks", "")).strip()
    out = []
    for key, value in totals.items():
        label = key.replace("_", " ")
        if key == "acked" and acks == "0":
            label = "acked (left the client: acks=0)"
        out.append(
            {"key": key, "label": label, "value": value, "title": COUNTER_MEANINGS.get(key, "")}
        )
        if key == "failed":
            in_flight = max(0, totals.get("produced", 0) - totals.get("acked", 0) - value)
            out.append(
                {
                    "key": "in_flight",
                    "label": "in flight / not yet reported",
                    "value": in_flight,
                    "title": COUNTER_MEANINGS["in_flight"],
                }
            )
    return out


@login_required
def sentinel_detail(request: HttpRequest, sentinel_id: int) -> HttpResponse:
    sentinel = get_object_or_404(_sentinels(), pk=sentinel_id)
    spec = sentinel.to_spec()
    status = sentinel_status(sentinel)
    config = {name: compare.masked(props) for name, props in compare.effective_config(spec).items()}
    latched = oncall.latched_for(sentinel.pk)
    events = timeline.timeline(sentinel)
    return render(
        request,
        "dashboard/detail.html",
        {
            "sentinel": sentinel,
            "status": status,
            "page_state": overview.page_state(
                [status["verdict"]],
                f"{sentinel.name} · Delivery Sentinel",
                oncall.unacknowledged([entry["incident"] for entry in latched]),
                oncall.alarm([entry["incident"] for entry in latched]),
            ),
            "latched": latched,
            "recent": [
                (k, k.replace("_", " "), (status["window"].get("counts") or {}).get(k, 0))
                for k in EVENT_COUNTERS
            ],
            "recent_p99": formatting.latency_ms((status.get("recent_latency_ms") or {}).get("p99")),
            "since": formatting.since(status.get("verdict_since"), time.time()),
            "windows": {"verdict": minutes(VERDICT_WINDOW_S), "latency": minutes(LATENCY_WINDOW_S)},
            "totals": detail_totals(status["totals"], spec),
            "config": config,
            "settings": compare.sentinel_settings(spec),
            "timeline": events,
            "opening": timeline.opening_range(
                events, [entry["incident"].opened_at for entry in latched]
            ),
            "charts": CHARTS,
            "ranges": RANGE_LABELS,
        },
    )


@login_required
def sentinel_partitions(request: HttpRequest, sentinel_id: int) -> HttpResponse:
    """The per-partition table (an htmx partial, refreshed every few seconds)."""
    sentinel = get_object_or_404(_sentinels(), pk=sentinel_id)
    table = partitions.partition_table(sentinel, sentinel_status(sentinel))
    return render(
        request,
        "dashboard/_partitions.html",
        {"table": table, "sentinel": sentinel, "meanings": COUNTER_MEANINGS},
    )


# -- compare ------------------------------------------------------------------------------------


def _selected_ids(request: HttpRequest) -> list[int]:
    ids = []
    for value in request.GET.getlist("s"):
        try:
            ids.append(int(value))
        except ValueError:
            continue
    return list(dict.fromkeys(ids))


@login_required
def compare_view(request: HttpRequest) -> HttpResponse:
    """2 to 4 sentinels side by side; the URL (``?s=1&s=2&range=1h``) is the shareable link."""
    all_sentinels = list(_sentinels())
    ids = _selected_ids(request)
    range_name = request.GET.get("range", "1h")
    if range_name not in COMPARE_RANGES:
        range_name = "1h"
    chosen = {s.pk: s for s in all_sentinels if s.pk in ids}
    selected = [chosen[i] for i in ids if i in chosen]
    context: dict[str, Any] = {
        "all_sentinels": all_sentinels,
        "selected": selected,
        "selected_ids": [s.pk for s in selected],
        "range": range_name,
        "range_label": RANGE_LABELS[range_name],
        "verdict_window": minutes(VERDICT_WINDOW_S),
        "ranges": {k: RANGE_LABELS[k] for k in COMPARE_RANGES},
        "min": compare.MIN_COLUMNS,
        "max": compare.MAX_COLUMNS,
        "error": None,
    }
    if ids and not compare.MIN_COLUMNS <= len(selected) <= compare.MAX_COLUMNS:
        context["error"] = (
            f"Pick {compare.MIN_COLUMNS} to {compare.MAX_COLUMNS} sentinels to compare "
            f"({len(selected)} selected)."
        )
    elif selected:
        context.update(_comparison(selected, range_name))
    return render(request, "dashboard/compare.html", context)


def _comparison(selected: list[Sentinel], range_name: str) -> dict[str, Any]:
    specs = [s.to_spec() for s in selected]
    summaries = [summarize(s.pk, range_name) for s in selected]
    statuses = [sentinel_status(s) for s in selected]
    slos = [s.slo_p99_ms for s in selected]
    return {
        "diff": compare.compare_specs(specs),
        "columns": [
            {"sentinel": s, "status": st, "summary": sm, "over_slo": _over_slo(sm, s.slo_p99_ms)}
            for s, st, sm in zip(selected, statuses, summaries, strict=True)
        ],
        "counter_rows": _counter_rows(summaries, slos),
        "compare_charts": COMPARE_CHARTS,
    }


# The charts compare draws for each sentinel, side by side (compare.js): key, caption.
COMPARE_CHARTS = (
    ("rates", "Throughput: records processed per second"),
    ("problems", "Lost and duplicated records per point"),
    ("e2e", "End-to-end latency p99 (ms, log scale), with each sentinel's SLO"),
)


def _over_slo(summary: dict[str, Any], slo_ms: float) -> bool:
    p99 = summary["latency_ms"]["e2e"]["p99"]
    return p99 is not None and p99 > slo_ms


def _counter_rows(summaries: list[dict[str, Any]], slos: list[float]) -> list[dict[str, Any]]:
    """Rows of the side-by-side counters table: label, one value per sentinel, and whether a
    value is a problem (an event counter above zero, an end-to-end p99 over the sentinel's
    SLO)."""
    rows = [
        {
            "label": key.replace("_", " "),
            "values": [
                (s["counts"][key], key in EVENT_COUNTERS and s["counts"][key] > 0)
                for s in summaries
            ],
        }
        for key in ("produced", "acked", "failed", "processed", *EVENT_COUNTERS, "foreign")
    ]
    rows.append(
        {
            "label": "processed per second",
            "values": [(s["processed_per_s"], False) for s in summaries],
        }
    )
    for kind, label in (("e2e", "end-to-end"), ("ack", "produce-ack")):
        for q in ("p50", "p99", "max"):
            flag = kind == "e2e" and q == "p99"
            rows.append(
                {
                    "label": f"{label} latency {q} (ms)",
                    "values": [
                        (s["latency_ms"][kind][q], flag and _over_slo(s, slo))
                        for s, slo in zip(summaries, slos, strict=True)
                    ],
                    "problem_text": "over the SLO" if flag else "problem",
                }
            )
    rows.append({"label": "SLO p99 (ms)", "values": [(slo, False) for slo in slos]})
    return rows


# -- manage -------------------------------------------------------------------------------------


@login_required
def manage(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/manage/index.html",
        {
            "clusters": [
                {"c": c, "properties": compare.masked(c.client_properties)}
                for c in Cluster.objects.annotate(n=models.Count("sentinels"))
            ],
            "profiles": [
                {
                    "p": p,
                    "producer": compare.masked(p.producer_properties),
                    "consumer": compare.masked(p.consumer_properties),
                }
                for p in Profile.objects.annotate(n=models.Count("sentinels"))
            ],
            "sentinels": _placed(list(_sentinels())),
        },
    )


def _placed(sentinels: list[Sentinel]) -> list[Sentinel]:
    """The sentinels, each with ``worker``: the worker running it now (lease holder)."""
    holders = placement(sentinels)["holders"]
    for s in sentinels:
        s.worker = holders.get(s.pk)
    return sentinels


MANAGED: dict[str, tuple[type[models.Model], type[ModelForm]]] = {
    "cluster": (Cluster, ClusterForm),
    "profile": (Profile, ProfileForm),
    "sentinel": (Sentinel, SentinelForm),
}


@login_required
def manage_edit(request: HttpRequest, kind: str, pk: int | None = None) -> HttpResponse:
    """Create (``pk`` None) or edit a cluster, profile or sentinel.

    With htmx the form is posted in place: errors come back as the form fragment, success as
    an ``HX-Redirect`` to the Manage page. Without JavaScript it is an ordinary form.
    """
    model, form_class = MANAGED[kind]
    instance = get_object_or_404(model, pk=pk) if pk is not None else None
    form = form_class(request.POST if request.method == "POST" else None, instance=instance)
    if request.method == "POST" and form.is_valid():
        obj = form.save()
        messages.success(request, f"Saved {kind} {obj}.")
        if request.headers.get("HX-Request"):
            response = HttpResponse()
            response["HX-Redirect"] = reverse("manage")
            return response
        return redirect("manage")
    context = {"form": form, "kind": kind, "instance": instance}
    if request.headers.get("HX-Request"):
        return render(request, "dashboard/manage/_form.html", context)
    return render(request, "dashboard/manage/edit.html", context)


@login_required
@require_POST
def sentinel_toggle(request: HttpRequest, sentinel_id: int) -> HttpResponse:
    """Enable or disable a sentinel (the workers start or stop it on their next tick)."""
    sentinel = get_object_or_404(_sentinels(), pk=sentinel_id)
    sentinel.enabled = not sentinel.enabled
    sentinel.save(update_fields=["enabled", "updated"])
    if request.headers.get("HX-Request"):
        return render(request, "dashboard/manage/_sentinel_row.html", {"s": sentinel})
    messages.success(
        request, f"Sentinel {sentinel} {'enabled' if sentinel.enabled else 'disabled'}."
    )
    return redirect("manage")


# -- health -------------------------------------------------------------------------------------


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.warning("healthz: database check failed", exc_info=True)
        return False


def _redis_ok() -> bool:
    problem = redis_problem(HEALTH_TIMEOUT_SECONDS)
    if problem:
        logger.warning("healthz: redis check failed: %s", problem)
    return problem is None


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """``{"status", "database", "redis"}``, each "ok" or "error"; 503 unless all are ok.

    Unauthenticated (for load balancers and probes), so it reveals nothing but the states;
    details go to the log.
    """
    checks = {
        "database": "ok" if _database_ok() else "error",
        "redis": "ok" if _redis_ok() else "error",
    }
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503
    )
