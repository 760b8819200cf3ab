"""The soak from the Scenarios page: start one (a ``ScenarioRun`` with scenario "soak", run by
the Celery task ``dashboard.tasks.run_soak``) and read its HTML report.

The run page, its progress bar and its JSON are the scenario lab's (``scenario_views``); a
soak's results are one row per sentinel, and its report (``workers.lab.soak.report``) is a
self-contained page kept on disk under ``.local/soak/run-{pk}/``.
"""

from __future__ import annotations

import logging
import secrets

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from dashboard.models import ScenarioRun
from dashboard.scenario_views import _render_list
from dashboard.tasks import SOAK_MAX_MINUTES, SOAK_SLACK_S, run_soak
from workers.lab.outcome import ABORTED
from workers.lab.soak.run import report_dir_for

log = logging.getLogger(__name__)

SOAK = "soak"
MIN_MINUTES = 2


def parse_soak_form(minutes: str, seed: str) -> tuple[float, int] | str:
    """``(minutes, seed)`` from the form, or what is wrong with it (a blank seed is drawn)."""
    try:
        value = float(minutes)
    except ValueError:
        return f"Minutes must be a number from {MIN_MINUTES} to {SOAK_MAX_MINUTES}."
    if not MIN_MINUTES <= value <= SOAK_MAX_MINUTES:
        return f"Minutes must be a number from {MIN_MINUTES} to {SOAK_MAX_MINUTES}."
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
    minutes, seed = parsed
    run = ScenarioRun.objects.create(scenario=SOAK, phase=f"queued: {minutes:g} min, seed {seed}")
    limit = int(minutes * 60) + SOAK_SLACK_S
    try:
        run_soak.apply_async((run.pk, minutes, seed), time_limit=limit, soft_time_limit=limit - 120)
    except Exception as exc:  # the Celery broker is down: say so on the run itself
        log.warning("could not queue soak run %s: %s", run.pk, exc)
        ScenarioRun.objects.filter(pk=run.pk).update(
            state=ABORTED, reason=f"could not queue the run: {exc}"
        )
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
