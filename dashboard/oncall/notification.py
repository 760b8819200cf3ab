"""Notifications: one ``IncidentEvent`` per channel and action, and sending it.

``notify`` records a pending notification per enabled channel of the incident's rule and hands
its id to ``dispatch`` (the caller's: a Celery task per notification in production,
``dashboard.oncall.tasks.dispatch_notification``); ``deliver`` sends one through its channel's
integration (``dashboard.oncall.transports``) and records the attempt. A permanent error
disables the channel and says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from dashboard.models.oncall import Channel, Incident, IncidentEvent
from dashboard.oncall.transports import TransportError, timed_send, transport_for
from workers.engine import alerts
from workers.engine.alerts import Notice

log = logging.getLogger(__name__)

# Takes a pending notification (an ``IncidentEvent`` id) and gets it delivered.
Dispatch = Callable[[int], None]


def notify(incident: Incident, action: str, dispatch: Dispatch, by: str = "") -> None:
    """One pending notification per enabled channel of the incident's rule (a sentinel's or
    a group rule)."""
    for channel in incident.source_rule.channels.filter(enabled=True):
        event = IncidentEvent.objects.create(
            incident=incident,
            kind="notify",
            channel=channel,
            action=action,
            result="pending",
            message=by,
        )
        dispatch(event.pk)


def notice_for(incident: Incident, action: str, by: str = "") -> Notice:
    return Notice(
        event=action,
        dedup_key=incident.dedup_key,
        rule=incident.kind,
        severity=incident.severity,
        cluster=incident.cluster,
        topic=incident.topic,
        semantic=incident.semantic,
        sentinel=incident.sentinel.name if incident.sentinel is not None else "",
        summary=incident.reason,
        started_at=incident.opened_at.timestamp(),
        counts=incident.counts,
        ended_at=incident.resolved_at.timestamp() if incident.resolved_at else None,
        url=f"{settings.DS_BASE_URL}/incidents/{incident.pk}/",
        by=by,
        cause=(incident.explanation or {}).get("cause", ""),
        explanation=(incident.explanation or {}).get("text", ""),
        group=incident.group,
        partitions=incident.partitions or {},
    )


def deliver(event_id: int) -> str:
    """Send notification ``event_id``; its result ("ok" / "error" / "skipped")."""
    # Claimed once: of two deliveries of one task (a redelivered task, two workers) only the
    # one whose update finds it pending sends it.
    if not IncidentEvent.objects.filter(pk=event_id, result="pending").update(result="sending"):
        return "skipped"
    event = IncidentEvent.objects.select_related("incident", "channel").get(pk=event_id)
    channel = event.channel
    if channel is None or not channel.enabled:
        event.result, event.error = "skipped", "channel disabled"
        event.save()
        return event.result
    record(event, channel, notice_for(event.incident, event.action, event.message))
    return event.result


def send_test(channel: Channel, user=None) -> IncidentEvent:
    """A test notification to ``channel``, sent now (the channel page's button)."""
    notice = Notice(
        event=alerts.TEST,
        dedup_key=f"delivery-sentinel-test-{channel.pk}",
        rule="test",
        severity=alerts.WARNING,
        cluster="test",
        topic="test",
        semantic="test",
        sentinel="test",
        summary=f"Test notification from Delivery Sentinel to channel {channel.name}",
        started_at=time.time(),
        url=f"{settings.DS_BASE_URL}/channels/{channel.pk}/",
    )
    event = IncidentEvent(kind="notify", channel=channel, action=alerts.TEST, user=user)
    record(event, channel, notice)
    return event


def record(event: IncidentEvent, channel: Channel, notice: Notice) -> None:
    """Send, and record the attempt (result, status, duration, error) on ``event``; a
    permanent error disables the channel and says why."""
    try:
        event.status_code, event.duration_ms = timed_send(transport_for(channel), notice)
        event.result = "ok"
    except TransportError as exc:
        event.result, event.error = "error", exc.message
        event.status_code = exc.status
        event.duration_ms = getattr(exc, "duration_ms", None)
        if exc.permanent:
            channel.enabled = False
            channel.disabled_reason = exc.message
            channel.save(update_fields=["enabled", "disabled_reason"])
    event.at = timezone.now()
    event.save()
    log.info(
        "notification %s to channel %s: %s%s (%.0f ms)",
        notice.event,
        channel.name,
        event.result,
        f" ({event.error})" if event.error else "",
        event.duration_ms or 0,
    )
