"""What the rest of the dashboard shows of on-call: unresolved incidents, active silences, and
the problems latched on a sentinel's overview cell and detail page until their incident is
resolved. The core pages (``dashboard.views``) read these; no view imports another's view.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.utils import timezone

from dashboard.models import Channel, Incident, Silence
from dashboard.models.oncall import ACKNOWLEDGED, OPEN, RESOLVED


def open_first(queryset):
    order = Case(
        When(state=OPEN, then=Value(0)),
        When(state=ACKNOWLEDGED, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return queryset.annotate(state_order=order).order_by("state_order", "-opened_at", "-pk")


def unresolved_incidents():
    return open_first(
        Incident.objects.exclude(state=RESOLVED).select_related("sentinel", "acknowledged_by")
    )


def active_silences():
    return Silence.objects.filter(ends_at__gt=timezone.now()).select_related(
        "cluster", "sentinel", "created_by"
    )


def latched_text(incident: Incident) -> str:
    """What a sentinel's overview cell says while ``incident`` is unresolved, e.g.
    "violated at 14:02, 40 lost, not acknowledged"."""
    parts = [f"{incident.kind.replace('_', ' ')} at {incident.opened_at:%H:%M}"]
    parts += [f"{n} {name.replace('_', ' ')}" for name, n in incident.counts.items() if n]
    if incident.state == ACKNOWLEDGED:
        parts.append(f"acknowledged by {incident.acknowledged_by or 'someone'}")
    else:
        parts.append("not acknowledged")
    return ", ".join(parts)


def unacknowledged(unresolved: list[Incident]) -> int:
    return sum(1 for incident in unresolved if incident.state == OPEN)


def latched_for(sentinel_id: int) -> list[dict[str, Any]]:
    """The sentinel's unresolved incidents as its pages show them: ``incident`` and ``text``."""
    return [
        {"incident": incident, "text": latched_text(incident)}
        for incident in unresolved_incidents().filter(sentinel_id=sentinel_id)
    ]


def overview_context(grid: list[dict[str, Any]]) -> dict[str, Any]:
    """The overview's on-call block (unresolved incidents, active silences), and each cell's
    latched problems (``latched``: one entry per unresolved incident of its sentinel)."""
    unresolved = list(unresolved_incidents())
    by_sentinel: dict[int, list[dict[str, Any]]] = {}
    for incident in unresolved:
        by_sentinel.setdefault(incident.sentinel_id, []).append(
            {"incident": incident, "text": latched_text(incident)}
        )
    for group in grid:
        for row in group["rows"]:
            for cell in row["cells"]:
                for c in cell:
                    c["latched"] = by_sentinel.get(c["id"], [])
    return {
        "open_incidents": unresolved,
        "active_silences": list(active_silences()),
        "notification_gap": notification_gap(),
    }


def notification_gap() -> str:
    """Why nobody would be told of an incident, or "" when some channel is enabled."""
    counts = Channel.objects.aggregate(
        total=Count("pk"), enabled=Count("pk", filter=Q(enabled=True))
    )
    if counts["enabled"]:
        return ""
    if counts["total"]:
        return "Every notification channel is disabled: nobody is notified of incidents."
    return "No notification channel is configured: nobody is notified of incidents."
