"""Short Celery tasks. Keep them thin: they call into services and domain code."""

from celery import shared_task


@shared_task
def ping() -> str:
    """Liveness probe for the worker and broker round trip."""
    return "pong"


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
