"""Pages and JSON of the failure scenario lab (``workers.lab``).

HTML views render from the database; the JSON handlers serve the same rows for the progress
poller (``static/dashboard/scenarios.js``) and as downloadable exports. Runs are started by
POST and executed by the Celery task ``dashboard.tasks.run_scenario``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import redis
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from dashboard.models import Cluster, ScenarioRun
from dashboard.models.scenarios import matrix
from dashboard.scenario_runs import cancel_run, reap_if_dead
from dashboard.tasks import run_scenario
from workers.lab.catalogue import SCENARIOS, catalog
from workers.lab.outcome import ABORTED

log = logging.getLogger(__name__)
RECENT_RUNS = 20


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


def queue_run(name: str, cluster_value: str) -> tuple[ScenarioRun | None, str | None]:
    """Create and queue a run of scenario ``name`` against the cluster ``cluster_value`` names
    (a Cluster id; empty: the default target); or, when the request cannot be run, None and
    the reason. The pages and the JSON API both start runs here."""
    cls = SCENARIOS.get(name)
    if cls is None:
        return None, f"There is no scenario named {name!r}."
    cluster, error = _chosen_cluster(cluster_value)
    if error is None and cls.broker_fault and cluster is not None and not cluster.is_local:
        error = (
            f"{cls.title} injects broker faults (SIGKILL, SIGSTOP, restarts of Kafka nodes), "
            f"which the lab only does to the project's local cluster, not to {cluster.name}."
        )
    if error is not None:
        return None, error
    run = ScenarioRun.objects.create(scenario=name, cluster=cluster)
    try:
        run_scenario.delay(run.pk)
    except Exception as exc:  # the Celery broker is down: say so on the run itself
        log.warning("could not queue scenario run %s: %s", run.pk, exc)
        ScenarioRun.objects.filter(pk=run.pk).update(
            state=ABORTED, reason=f"could not queue the run: {exc}"
        )
        run.refresh_from_db()
    return run, None


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


def _chosen_cluster(value: str) -> tuple[Cluster | None, str | None]:
    """The Cluster a form names (``""``: the default target), or an error message."""
    if not value:
        return Cluster.objects.filter(is_local=True).order_by("pk").first(), None
    try:
        return Cluster.objects.get(pk=int(value)), None
    except (ValueError, Cluster.DoesNotExist):
        return None, f"There is no cluster with id {value!r}."


def _json(doc: dict[str, Any], request: HttpRequest, filename: str) -> JsonResponse:
    response = JsonResponse(doc, json_dumps_params={"indent": 2})
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
