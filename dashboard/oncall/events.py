"""On-call events for live pages: one message to the on-call group (``ONCALL_GROUP``) per
transition of an incident (opened, grew, cleared, firing again, acknowledged, resolved), sent
once the database transaction that made it commits.

Every change of an incident goes through ``dashboard.oncall.evaluation`` (the evaluator, the
incident page, the card's Acknowledge, the API), which calls :func:`announce`; so each
transition is one event, wherever it came from. The event says which incident changed and
how, nothing else (no reason text, no user): the pages fetch what they show from this room
(``views.live_fragments``, rendered by the same templates as at page load, with the viewer's
session and CSRF token), so no text of an incident travels over the channel layer and a page
always shows the committed state, whatever order events arrive in.

Sent here rather than through ``dashboard.live.relay``: the dashboard's rooms never import one
another, and ``dashboard.live`` only relays what arrives in the group.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from dashboard.models import Incident
from workers.engine.documents import ONCALL_GROUP, ONCALL_TRANSITIONS, ONCALL_UPDATE

logger = logging.getLogger(__name__)


def announce(incident: Incident, transition: str) -> None:
    """Send ``transition`` of ``incident`` to the on-call group once the current transaction
    commits (at once outside one); nothing if it rolls back."""
    if transition not in ONCALL_TRANSITIONS:
        raise ValueError(f"unknown on-call transition {transition!r}")
    payload = {
        "incident": incident.pk,
        "sentinel": incident.sentinel_id,
        "transition": transition,
        "state": incident.state,
    }
    transaction.on_commit(lambda: send(payload))


def send(payload: dict) -> None:
    """Publish one on-call event. A channel layer that cannot be reached costs the live pages
    this update (they catch up on the next, or on reload), never the change itself."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(ONCALL_GROUP, {"type": ONCALL_UPDATE, "payload": payload})
    except Exception as exc:  # noqa: BLE001  Redis down, full channel: the change stands
        logger.warning("on-call event for incident %s not sent: %s", payload["incident"], exc)
