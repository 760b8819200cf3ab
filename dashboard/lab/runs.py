"""Keeping scenario runs honest: cancelling one, and finding runs whose runner died.

A running run's runner (``workers.lab.lab.Lab``, inside the Celery task or ``manage.py
scenario run``) beats a heartbeat in Redis every couple of seconds and renews the lab lock
with it (``workers.store.lab.ScenarioRuns``, ``LabLock``). A run whose heartbeat is older than
``DEAD_AFTER_S`` lost its runner (a worker SIGKILLed, a machine gone): it is marked aborted
with the reason and its lab lock is freed, by Celery beat (``reap_scenario_runs`` in
``dashboard.lab.tasks``) and by its own page as it polls. Cancelling asks the runner through
Redis; the runner aborts at its next wait and restores the cluster (``Lab.close``) before it
records the run.
"""

from __future__ import annotations

import logging
import time

import redis
from django.utils import timezone

from dashboard.models import ScenarioRun
from dashboard.redisclient import redis_client
from workers.lab.lab import BEAT_S, LOCK_TTL_MS
from workers.lab.outcome import ABORTED, QUEUED, RUNNING
from workers.store.lab import LabLock, ScenarioRuns

log = logging.getLogger(__name__)

# Silent this long, a runner is dead (it beats every BEAT_S; checked every REAP_EVERY_S, so a
# dead run is marked within a minute).
DEAD_AFTER_S = 40.0
REAP_EVERY_S = 15.0
assert DEAD_AFTER_S > 10 * BEAT_S and DEAD_AFTER_S + REAP_EVERY_S <= 60


def heartbeat_age(run: ScenarioRun, now: float, runs: ScenarioRuns) -> float:
    """Seconds since the run's runner was last heard of (its start counts as a beat)."""
    beat = runs.last_beat(str(run.pk)) or 0.0
    started = run.started.timestamp() if run.started else now
    return now - max(beat, started)


def reap_if_dead(
    run: ScenarioRun, now: float | None = None, client: redis.Redis | None = None
) -> bool:
    """Mark ``run`` aborted when it is running but its runner stopped beating; free the lab
    lock it held. True when this call marked it."""
    if run.state != RUNNING:
        return False
    now = time.time() if now is None else now
    runs = ScenarioRuns(client or redis_client())
    age = heartbeat_age(run, now, runs)
    if age <= DEAD_AFTER_S:
        return False
    reason = (
        f"the process running this scenario stopped (no heartbeat for {age:.0f} s: its worker "
        "died or was killed); a broker fault it injected may still be in place"
    )
    marked = ScenarioRun.objects.filter(pk=run.pk, state=RUNNING).update(
        state=ABORTED, reason=reason, finished=timezone.now()
    )
    LabLock(runs.r, LOCK_TTL_MS).release_run(str(run.pk))
    runs.forget(str(run.pk))
    if marked:
        log.warning("scenario run %s: %s", run.pk, reason)
        run.refresh_from_db()
    return bool(marked)


def reap_dead_runs(now: float | None = None, client: redis.Redis | None = None) -> list[int]:
    """Mark every running run whose runner stopped beating as aborted; their ids."""
    client = client or redis_client()
    return [
        run.pk
        for run in ScenarioRun.objects.filter(state=RUNNING)
        if reap_if_dead(run, now, client)
    ]


def cancel_run(run: ScenarioRun, by: str, client: redis.Redis | None = None) -> str:
    """Cancel ``run`` on behalf of ``by``: a queued run at once (its task then finds nothing
    to claim), a running one through its runner, which restores the cluster first. Returns
    what happened, for a person."""
    if run.state == QUEUED:
        cancelled = ScenarioRun.objects.filter(pk=run.pk, state=QUEUED).update(
            state=ABORTED, reason=f"cancelled by {by} before it started", finished=timezone.now()
        )
        run.refresh_from_db()
        if cancelled:
            return "Cancelled before it started."
    if run.state != RUNNING:
        return f"The run already ended ({run.state})."
    client = client or redis_client()
    if reap_if_dead(run, client=client):
        return "The process running it was gone: the run is marked aborted."
    ScenarioRuns(client).request_cancel(str(run.pk), by)
    return "Cancelling: the run stops and restores the cluster within seconds."
