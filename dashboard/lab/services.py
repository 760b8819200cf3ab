"""Starting lab runs: a scenario run (``queue_run``) or a soak (``queue_soak``).

The Scenarios pages and the JSON API both start runs here. Each creates the ``ScenarioRun`` row
and queues its Celery task (``dashboard.lab.tasks``); when the Celery broker is down the run is
marked aborted with the reason, so the page says so instead of a queued run waiting forever.
"""

from __future__ import annotations

import logging

from dashboard.lab.tasks import SOAK_SLACK_S, run_scenario, run_soak
from dashboard.models import Cluster, ScenarioRun
from workers.lab.catalogue import SCENARIOS
from workers.lab.outcome import ABORTED

log = logging.getLogger(__name__)

SOAK = "soak"  # a soak's ScenarioRun.scenario


def queue_run(name: str, cluster_value: str) -> tuple[ScenarioRun | None, str | None]:
    """Create and queue a run of scenario ``name`` against the cluster ``cluster_value`` names
    (a Cluster id; empty: the default target); or, when the request cannot be run, None and
    the reason."""
    cls = SCENARIOS.get(name)
    if cls is None:
        return None, f"There is no scenario named {name!r}."
    cluster, error = chosen_cluster(cluster_value)
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
        _not_queued(run, exc)
        run.refresh_from_db()
    return run, None


def queue_soak(minutes: float, seed: int) -> ScenarioRun:
    """Create and queue a soak of ``minutes`` with ``seed``; its task's time limit is the
    soak's length plus ``SOAK_SLACK_S`` (its start and end)."""
    run = ScenarioRun.objects.create(scenario=SOAK, phase=f"queued: {minutes:g} min, seed {seed}")
    limit = int(minutes * 60) + SOAK_SLACK_S
    try:
        run_soak.apply_async((run.pk, minutes, seed), time_limit=limit, soft_time_limit=limit - 120)
    except Exception as exc:  # the Celery broker is down: say so on the run itself
        _not_queued(run, exc)
    return run


def chosen_cluster(value: str) -> tuple[Cluster | None, str | None]:
    """The Cluster a form names (``""``: the default target), or an error message."""
    if not value:
        return Cluster.objects.filter(is_local=True).order_by("pk").first(), None
    try:
        return Cluster.objects.get(pk=int(value)), None
    except (ValueError, Cluster.DoesNotExist):
        return None, f"There is no cluster with id {value!r}."


def _not_queued(run: ScenarioRun, exc: Exception) -> None:
    kind = "soak" if run.scenario == SOAK else "scenario"
    log.warning("could not queue %s run %s: %s", kind, run.pk, exc)
    ScenarioRun.objects.filter(pk=run.pk).update(
        state=ABORTED, reason=f"could not queue the run: {exc}"
    )
