"""``/api/v1/scenarios/runs``: failure scenario runs (list, start, get, cancel).

Starting a run goes through ``dashboard.lab.services.queue_run``, as the Scenarios page does;
the Celery task ``dashboard.tasks.run_scenario`` (``dashboard/lab/tasks.py``) executes it."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from dashboard.api_v1.auth import require_write
from dashboard.api_v1.schemas import ERRORS, ScenarioRunIn, ScenarioRunOut
from dashboard.lab.runs import cancel_run
from dashboard.lab.services import queue_run
from dashboard.models import ScenarioRun
from workers.lab.catalogue import SCENARIOS

router = Router(tags=["scenarios"])
MAX_ID = 2**63 - 1


class RunsQuery(Schema):
    limit: int = Field(20, ge=1, le=200, description="newest runs first")


@router.get("/runs", response={200: list[ScenarioRunOut], **ERRORS}, summary="Recent scenario runs")
def list_runs(request: HttpRequest, q: Query[RunsQuery]) -> list[dict]:
    runs = ScenarioRun.objects.select_related("cluster").order_by("-created", "-pk")[: q.limit]
    return [run.to_dict() for run in runs]


@router.post(
    "/runs",
    response={201: ScenarioRunOut, **ERRORS},
    summary="Start a scenario run (write scope)",
)
def start_run(request: HttpRequest, body: ScenarioRunIn) -> Status:
    require_write(request)
    cluster = "" if body.cluster is None else str(body.cluster)
    run, error = queue_run(body.scenario, cluster)
    if run is None:
        field = "scenario" if body.scenario not in SCENARIOS else "cluster"
        raise HttpError(400, f"{field}: {error}")
    return Status(201, run.to_dict())


@router.get("/runs/{run_id}", response={200: ScenarioRunOut, **ERRORS}, summary="One run")
def get_run(request: HttpRequest, run_id: int = Path(..., ge=1, le=MAX_ID)) -> dict:
    return _run(run_id).to_dict()


@router.post(
    "/runs/{run_id}/cancel",
    response={202: ScenarioRunOut, **ERRORS},
    summary="Cancel a run (write scope): it stops and restores the cluster",
)
def cancel(request: HttpRequest, run_id: int = Path(..., ge=1, le=MAX_ID)) -> Status:
    require_write(request)
    run = _run(run_id)
    cancel_run(run, request.user.get_username() if request.user.is_authenticated else "api")
    run.refresh_from_db()
    return Status(202, run.to_dict())


def _run(run_id: int) -> ScenarioRun:
    run = ScenarioRun.objects.select_related("cluster").filter(pk=run_id).first()
    if run is None:
        raise HttpError(404, f"run_id: no scenario run with id {run_id}")
    return run
