"""Celery tasks that work on the dashboard's models: metric rollups and scenario runs.

``run_scenario`` is thin: the row's ``claim()`` makes a redelivered or duplicated task a no-op, and
``execute()`` does the work, writing phase and percent to the row as it goes.
"""

from __future__ import annotations

from celery import shared_task

# Longer than any scenario's own timeouts add up to. The soft limit raises inside the run,
# which then aborts and restores the cluster; the hard limit (a SIGKILL) is the last resort.
SCENARIO_TIME_LIMIT_S = 1800


@shared_task(
    ignore_result=True,
    soft_time_limit=SCENARIO_TIME_LIMIT_S - 120,
    time_limit=SCENARIO_TIME_LIMIT_S,
)
def run_scenario(run_id: int) -> str:
    """Run ScenarioRun ``run_id`` if it is still queued; return its final state ("skipped"
    when another task already claimed it)."""
    from dashboard.models import ScenarioRun

    run = ScenarioRun.claim(run_id)
    if run is None:
        return "skipped"
    run.execute()
    return run.state


@shared_task
def rollup_windows() -> int:
    """Roll the last complete minutes of one-second windows up into the database."""
    from dashboard.rollup import rollup_all

    return rollup_all()


@shared_task
def prune_windows() -> int:
    """Delete one-minute windows older than METRIC_RETENTION_DAYS."""
    from dashboard.rollup import prune

    return prune()
