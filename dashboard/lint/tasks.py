"""The guarantee lint's Celery task (beat, ``DS_LINT_INTERVAL_S``). Registered under its
original name, ``dashboard.tasks.lint_clusters``, which the beat schedule and queued tasks use."""

from __future__ import annotations

from celery import shared_task

from dashboard.lint import services as lint


@shared_task(
    name="dashboard.tasks.lint_clusters", ignore_result=True, soft_time_limit=240, time_limit=300
)
def lint_clusters(cluster: str | None = None) -> list[str]:
    """Lint every cluster (or one, by name) and store the reports; a cluster whose lint is
    already running is skipped. Returns the names linted."""
    done = []
    for target in lint.targets(cluster):
        if lint.run_claimed(target) is not None:
            done.append(target.name)
    return done
