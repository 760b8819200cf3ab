"""The Celery application.

Worker: ``celery -A workers.runtime.celery worker``. Configuration comes from Django settings (every
``CELERY_*`` setting in ``dashboard/settings.py``), so workers and the dashboard share one
environment. Tasks live in ``workers.runtime.tasks`` and in ``tasks.py`` of the Django apps.

Each worker also runs a sentinel supervisor (``SupervisorStep`` below, see
``workers/runtime/supervisor.py``), which reads the enabled sentinels through the function
named by the ``SENTINEL_SPECS`` setting (the dashboard's models; the runtime never imports
them):
a bootstep, not a task, because a task that never returns would block a pool slot and be
redelivered by the Redis broker after ``visibility_timeout``.
"""

import logging
import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("delivery_sentinel", include=["workers.runtime.tasks", "dashboard.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


log = logging.getLogger(__name__)


class SupervisorStep(bootsteps.StartStopStep):
    """Starts the sentinel supervisor with the worker and stops it (and its sentinels) with it."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.supervisor = None

    def start(self, worker):
        from django.conf import settings

        if not settings.SENTINELS_ENABLED:
            log.info("sentinel hosting is off (SENTINELS_ENABLED=false)")
            return
        from django.utils.module_loading import import_string

        from workers.runtime.supervisor import SentinelSupervisor
        from workers.store.connection import connect

        self.supervisor = SentinelSupervisor(
            connect(settings.REDIS_URL),
            import_string(settings.SENTINEL_SPECS),
            redis_url=settings.REDIS_URL,
        )
        self.supervisor.start()

    def stop(self, worker):
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None


app.steps["worker"].add(SupervisorStep)
