"""On-call's Celery tasks: the alert evaluation (beat, ``ONCALL_EVALUATE_EVERY_S``) and the
delivery of one notification, and the dispatcher that queues the latter.

Registered under their original names (``dashboard.tasks.evaluate_alerts``,
``dashboard.tasks.deliver_notification``), which the beat schedule and queued tasks use;
``dashboard/tasks.py`` imports this module so that workers register them.
"""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from dashboard.oncall import evaluation, notification


def dispatch_notification(event_id: int) -> None:
    """Deliver notification ``event_id`` in a Celery task of its own, once committed: the
    dispatcher the evaluation and the pages pass to ``dashboard.oncall.evaluation``."""
    transaction.on_commit(lambda: deliver_notification.delay(event_id))


@shared_task(name="dashboard.tasks.evaluate_alerts", ignore_result=True)
def evaluate_alerts() -> int:
    """Evaluate every enabled sentinel's alert rules (beat, ``ONCALL_EVALUATE_EVERY_S``)."""
    return len(evaluation.evaluate(dispatch=dispatch_notification))


@shared_task(name="dashboard.tasks.deliver_notification", ignore_result=True)
def deliver_notification(event_id: int) -> str:
    """Send one notification (one channel, one incident event)."""
    return notification.deliver(event_id)
