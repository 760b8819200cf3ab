"""The Celery application.

Worker: ``celery -A workers.celery worker``. Configuration comes from Django settings (every
``CELERY_*`` setting in ``dashboard/settings.py``), so workers and the dashboard share one
environment. Tasks live in ``workers.tasks`` and in ``tasks.py`` of the Django apps.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("delivery_sentinel", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
