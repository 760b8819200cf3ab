"""Pages and JSON of the failure scenario lab (``workers.lab``) and of the soak.

HTML views render from the database; the JSON handlers serve the same rows for the progress
poller (``static/dashboard/scenarios.js``) and as downloadable exports. Runs are started by
POST through ``dashboard.lab.services`` and executed by the lab's Celery tasks
(``dashboard.lab.tasks``). A soak is a ``ScenarioRun`` with scenario "soak": its run page,
progress bar and JSON are the scenario lab's; its results are one row per sentinel, and its
report (``workers.lab.soak.report``) is a self-contained page kept on disk under
``.local/soak/run-{pk}/``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlencode

import redis
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from dashboard.lab.runs import cancel_run, reap_if_dead
from dashboard.lab.services import SOAK, queue_run, queue_soak
from dashboard.lab.tasks import SOAK_MAX_MINUTES
from dashboard.models import Cluster, ScenarioRun
from dashboard.models.scenarios import matrix
from workers.lab.catalogue import catalog
from workers.lab.soak.run import report_dir_for

log = logging.getLogger(__name__)
RECENT_RUNS = 20
MIN_SOAK_MINUTES = 2


# -- HTML --------------------------------------------------------------------------------


@login_required
@require_GET
def scenario_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@login_required
@require_POST
def scenario_start(request: HttpRequest) -> HttpResponse:
    """Queue a run of ``scenario`` against ``cluster`` (a Cluster id; empty: the default)."""
    run, error = queue_run(request.POST.get("scenario", ""), request.POST.get("cluster", ""))
    if run is None:
        return _render_list(request, error, status=400)
    return redirect("scenarios:run", pk=run.pk)


@login_required
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = _checked_run(pk)
    return render(request, "scenarios/run.html", {"run": run, "notice": request.GET.get("n")})


@login_required
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel the run (its page's Cancel button); back to its page, saying what happened."""
    run = get_object_or_404(ScenarioRun, pk=pk)
    notice = cancel_run(run, request.user.get_username())
    return redirect(f"{reverse('scenarios:run', args=[run.pk])}?{urlencode({'n': notice})}")


@login_required
@require_GET
def matrix_page(request: HttpRequest) -> HttpResponse:
    doc = matrix()
    rows = [
        {
            **row,
            "columns": [
                {
                    "semantic": semantic,
                    "applies": semantic in row["semantics"],
                    "results": row["cells"].get(semantic, []),
                }
                for semantic in doc["semantics"]
            ],
        }
        for row in doc["scenarios"]
    ]
    return render(request, "scenarios/matrix.html", {"semantics": doc["semantics"], "rows": rows})


# -- soak --------------------------------------------------------------------------------


def parse_soak_form(minutes: str, seed: str) -> tuple[float, int] | str:
    """``(minutes, seed)`` from the form, or what is wrong with it (a blank seed is drawn)."""
    try:
        value = float(minutes)
    except ValueError:
        return f"Minutes must be a number from {MIN_SOAK_MINUTES} to {SOAK_MAX_MINUTES}."
    if not MIN_SOAK_MINUTES <= value <= SOAK_MAX_MINUTES:
        return f"Minutes must be a number from {MIN_SOAK_MINUTES} to {SOAK_MAX_MINUTES}."
    if not seed.strip():
        return value, secrets.randbelow(2**31)
    if not seed.strip().isdigit() or int(seed) >= 2**63:
        return "The seed must be a whole number (or blank for a random one)."
    return value, int(seed)


@login_required
@require_POST
def soak_start(request: HttpRequest) -> HttpResponse:
    parsed = parse_soak_form(request.POST.get("minutes", ""), request.POST.get("seed", ""))
    if isinstance(parsed, str):
        return _render_list(request, parsed, status=400)
    run = queue_soak(*parsed)
    return redirect("scenarios:run", pk=run.pk)


@login_required
@require_GET
def report(request: HttpRequest, pk: int) -> HttpResponse:
    """The soak's HTML report (inline SVG, no script), once written."""
    run = get_object_or_404(ScenarioRun, pk=pk, scenario=SOAK)
    path = report_dir_for(f"run-{run.pk}") / "soak.html"
    try:
        body = path.read_text()
    except OSError:
        raise Http404("This soak has no report yet.") from None
    return HttpResponse(body, content_type="text/html; charset=utf-8")


# -- JSON --------------------------------------------------------------------------------


@never_cache
@login_required
@require_GET
def run_json(request: HttpRequest, pk: int) -> JsonResponse:
    """The run as JSON (polled for progress); ``?download=1`` makes it an attachment."""
    run = _checked_run(pk)
    return _json(run.to_dict(), request, f"scenario-run-{run.pk}.json")


@never_cache
@login_required
@require_GET
def matrix_json(request: HttpRequest) -> JsonResponse:
    return _json(matrix(), request, "scenario-matrix.json")


# -- helpers -----------------------------------------------------------------------------


def _checked_run(pk: int) -> ScenarioRun:
    """The run, marked aborted first when its runner died (the page notices within seconds)."""
    run = get_object_or_404(ScenarioRun.objects.select_related("cluster"), pk=pk)
    try:
        reap_if_dead(run)
    except redis.RedisError as exc:  # the page still shows what the database knows
        log.warning("scenario run %s: heartbeat unknown: %s", pk, exc)
    return run


def _render_list(request: HttpRequest, error: str | None = None, status: int = 200) -> HttpResponse:
    context: dict[str, Any] = {
        "scenarios": catalog(),
        "clusters": list(Cluster.objects.all()),
        "runs": ScenarioRun.objects.select_related("cluster")[:RECENT_RUNS],
        "error": error,
    }
    return render(request, "scenarios/list.html", context, status=status)


def _json(doc: dict[str, Any], request: HttpRequest, filename: str) -> JsonResponse:
    response = JsonResponse(doc, json_dumps_params={"indent": 2})
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
