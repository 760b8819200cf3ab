"""Short Celery tasks of the runtime. Tasks that need the dashboard's models live in
``dashboard/tasks.py``. Keep them thin: they call into services and domain code."""

from celery import shared_task


@shared_task
def ping() -> str:
    """Liveness probe for the worker and broker round trip."""
    return "pong"
