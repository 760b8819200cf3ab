"""The scenario lab's Celery tasks: scenario runs, the reaping of dead runs, and the soak.

Each is registered under its original name (``dashboard.tasks.<name>``), which the beat schedule
and tasks already queued in Redis use; ``dashboard/tasks.py`` imports this module so that workers
register them.

``run_scenario`` is thin: the row's ``claim()`` makes a redelivered or duplicated task a no-op,
and ``execute_run()`` (shared with ``manage.py scenario run``) runs the scenario through
``workers.lab.runner.run_against()``, writing phase and percent to the row as it goes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import redis
from celery import shared_task
from django.conf import settings

from workers.lab import runner
from workers.lab.outcome import ABORTED, ProgressFn
from workers.store.lab import ScenarioRuns

if TYPE_CHECKING:
    from dashboard.models import ScenarioRun

# Longer than any scenario's own timeouts add up to. The soft limit raises inside the run,
# which then aborts and restores the cluster; the hard limit (a SIGKILL) is the last resort.
SCENARIO_TIME_LIMIT_S = 1800


@shared_task(
    name="dashboard.tasks.run_scenario",
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
    execute_run(run)
    return run.state


def execute_run(run: ScenarioRun, progress: ProgressFn | None = None) -> None:
    """Run the claimed ``run`` now, in this process, against its cluster (none: the settings'
    ``KAFKA_BOOTSTRAP_SERVERS``), and store the outcome on the row.

    Progress goes to the row at once, then to ``progress`` too."""
    from dashboard.models.scenarios import local_cluster_for
    from dashboard.redisclient import redis_client

    def report(phase: str, percent: int) -> None:
        run.set_progress(phase, percent)
        if progress is not None:
            progress(phase, percent)

    cluster = run.cluster
    bootstrap = cluster.bootstrap_servers if cluster else settings.KAFKA_BOOTSTRAP_SERVERS
    beats = ScenarioRuns(redis_client())
    with contextlib.suppress(redis.RedisError):  # without Redis the lab reports the trouble
        beats.forget(str(run.pk))  # a cancel left by a former database's run of this id
    try:
        outcome = runner.run_against(
            run.scenario,
            bootstrap_servers=bootstrap,
            redis_url=settings.REDIS_URL,
            cluster_name=cluster.name if cluster else "local",
            client=dict(cluster.client_properties) if cluster else {},  # sealed: the lab opens
            local=local_cluster_for(cluster),
            progress=report,
            run_id=str(run.pk),  # its heartbeat and cancel requests (dashboard.lab.runs)
        )
    except Exception as exc:  # the lab or the local cluster could not be built: aborted
        run.finish(ABORTED, f"{exc}")
    else:
        run.finish(outcome.state, outcome.reason, [r.to_dict() for r in outcome.results])
    finally:
        with contextlib.suppress(redis.RedisError):
            beats.forget(str(run.pk))


@shared_task(name="dashboard.tasks.reap_scenario_runs", ignore_result=True)
def reap_scenario_runs() -> list[int]:
    """Mark running scenario runs whose runner stopped beating as aborted (beat)."""
    from dashboard.lab.runs import reap_dead_runs

    return reap_dead_runs()


# A soak is minutes long by request; its task may take that plus its start and end.
SOAK_MAX_MINUTES = 120
SOAK_SLACK_S = 900


@shared_task(name="dashboard.tasks.run_soak", ignore_result=True)
def run_soak(run_id: int, minutes: float, seed: int) -> str:
    """Run the soak ``run_id`` (a ScenarioRun with scenario "soak") if it is still queued;
    its final state ("skipped" when another task already claimed it). Queue it with a time
    limit of ``minutes`` plus ``SOAK_SLACK_S`` (``dashboard.lab.services.queue_soak``)."""
    from dashboard.models import ScenarioRun

    run = ScenarioRun.claim(run_id)
    if run is None:
        return "skipped"
    execute_soak(run, minutes, seed)
    return run.state


def execute_soak(run: ScenarioRun, minutes: float, seed: int) -> None:
    """Run the soak (``workers.lab.soak``) on the local cluster now, in this process: progress
    goes to the row; at the end the row keeps one result per sentinel and the report stays
    in ``report_dir_for(f"run-{pk}")`` (served by ``dashboard.lab.views.report``)."""
    from dashboard.models.scenarios import local_cluster_for
    from workers.lab.outcome import FAILED, PASSED
    from workers.lab.soak.procs import free_port
    from workers.lab.soak.report import as_results
    from workers.lab.soak.run import Soak, report_dir_for

    local = local_cluster_for(None)
    try:
        soak = Soak(
            minutes=minutes,
            seed=seed,
            report_dir=report_dir_for(f"run-{run.pk}"),
            bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
            local=local,
            redis_port=free_port(),
            progress=run.set_progress,
        )
        report = soak.run()
    except Exception as exc:  # its Redis or workers could not start: aborted, with the reason
        run.finish(ABORTED, f"{type(exc).__name__}: {exc}")
        return
    failed = [c for c in report.get("checks", []) if not c["ok"]]
    reason = "; ".join(f"{c['sentinel']}: {c['name']}" for c in failed[:10])
    run.finish(PASSED if report.get("passed") else FAILED, reason, as_results(report))
