"""The dashboard's Celery tasks: the metric rollups and the forgetting of deleted sentinels here,
and every room's own tasks, imported below so that a worker (``workers.runtime.celery`` includes
this module, and Celery's autodiscovery finds it) registers them.

Every task keeps the name it was queued and scheduled under, ``dashboard.tasks.<name>``
(``CELERY_BEAT_SCHEDULE`` in ``dashboard/settings.py``), wherever its code lives. Keep tasks
thin: they call into the rooms' services.
"""

from __future__ import annotations

from celery import shared_task

from dashboard.lab import tasks as lab_tasks  # noqa: F401  (registers the lab's tasks)
from dashboard.lint import tasks as lint_tasks  # noqa: F401  (registers the lint's task)
from dashboard.oncall import tasks as oncall_tasks  # noqa: F401  (registers on-call's tasks)


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


@shared_task
def forget_deleted_sentinels() -> list[int]:
    """Clear the Redis state of deleted sentinels that nothing runs any more."""
    from dashboard.models.core import forget_deleted_sentinels as forget

    return forget()
