"""What the rest of the dashboard shows of on-call: unresolved incidents, active silences, and
the problems latched on a sentinel's overview cell and detail page until their incident is
resolved. The core pages (``dashboard.views``) read these; no view imports another's view.

One latch: a card's latched line *is* its incident (its state, who acknowledged it); a
violation's stays until a person resolves it, a state's says "cleared" during its hold-down.
Live pages redraw these after each on-call event (``dashboard.oncall.events``) from
``live_state``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, Max, Q, Value, When
from django.utils import timezone

from dashboard.models import Channel, Incident, Silence
from dashboard.models.oncall import ACKNOWLEDGED, OPEN, RESOLVED
from workers.engine import alerts
from workers.engine.documents import VERDICT_WINDOW_S


def open_first(queryset):
    order = Case(
        When(state=OPEN, then=Value(0)),
        When(state=ACKNOWLEDGED, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return queryset.annotate(state_order=order).order_by("state_order", "-opened_at", "-pk")


def unresolved_incidents():
    return open_first(with_cleared(Incident.objects.exclude(state=RESOLVED))).select_related(
        "sentinel", "acknowledged_by"
    )


def with_cleared(queryset):
    """Each incident annotated with ``cleared_at``: the last time its condition was found
    clear (``evaluation.clear``), None if never."""
    return queryset.annotate(cleared_at=Max("events__at", filter=Q(events__kind="cleared")))


def recently_resolved_violations():
    """Violations resolved within the verdict window: their card may still be VIOLATED (the
    verdict judges the last few minutes), so it names the incident and who resolved it."""
    since = timezone.now() - timedelta(seconds=VERDICT_WINDOW_S)
    return with_cleared(
        Incident.objects.filter(state=RESOLVED, kind=alerts.VIOLATED, resolved_at__gte=since)
    ).select_related("sentinel", "acknowledged_by", "resolved_by")


def active_silences():
    return Silence.objects.filter(ends_at__gt=timezone.now()).select_related(
        "cluster", "sentinel", "created_by"
    )


def at(moment: datetime) -> str:
    """A time as the pages say it: hours and minutes with their zone ("10:09 UTC")."""
    return timezone.localtime(moment).strftime("%H:%M %Z")


def is_cleared(incident: Incident) -> bool:
    """A state's condition found clear since it last held (the incident waits out its
    hold-down, or a person); needs ``with_cleared``."""
    cleared_at = getattr(incident, "cleared_at", None)
    return (
        incident.kind != alerts.VIOLATED
        and cleared_at is not None
        and cleared_at >= incident.last_firing_at
    )


def latched_text(incident: Incident) -> str:
    """What a sentinel's card says of ``incident``: what happened and when, then the
    incident's state. A violation is a past event: "violated at 14:02 UTC, 40 lost; incident
    #3 open, not acknowledged". A state says whether it still holds: "stalled since 10:09 UTC;
    incident #4 open, not acknowledged", and once clear "stalled 10:09–10:11 UTC, cleared;
    incident #4 open, not acknowledged" (never the past as the present)."""
    kind = incident.kind.replace("_", " ")
    if incident.kind == alerts.VIOLATED:
        what = [f"{kind} at {at(incident.opened_at)}"]
        what += [f"{n} {name.replace('_', ' ')}" for name, n in incident.counts.items() if n]
    elif is_cleared(incident):
        since = timezone.localtime(incident.opened_at).strftime("%H:%M")
        what = [f"{kind} {since}–{at(incident.last_firing_at)}", "cleared"]
    else:
        what = [f"{kind} since {at(incident.opened_at)}"]
    return f"{', '.join(what)}; incident #{incident.pk} {incident_state_text(incident)}"


def incident_state_text(incident: Incident) -> str:
    if incident.state == RESOLVED:
        who = f" by {incident.resolved_by}" if incident.resolved_by else " automatically"
        return f"resolved{who} at {at(incident.resolved_at or timezone.now())}"
    if incident.state == ACKNOWLEDGED:
        return f"acknowledged by {incident.acknowledged_by or 'someone'}"
    return "open, not acknowledged"


def unacknowledged(unresolved: list[Incident]) -> int:
    return sum(1 for incident in unresolved if incident.state == OPEN)


def latched_entry(incident: Incident) -> dict[str, Any]:
    return {
        "incident": incident,
        "text": latched_text(incident),
        "state": incident.state,
        "cleared": is_cleared(incident),
    }


def latched_by_sentinel(sentinel_id: int | None = None) -> dict[int, list[dict[str, Any]]]:
    """Each sentinel's latched problems, as its card and detail page show them: one entry
    (``incident``, ``text``, ``state``, ``cleared``) per unresolved incident, open first, then
    the violations resolved within the verdict window."""
    unresolved = unresolved_incidents()
    resolved = recently_resolved_violations().order_by("-resolved_at")
    if sentinel_id is not None:
        unresolved = unresolved.filter(sentinel_id=sentinel_id)
        resolved = resolved.filter(sentinel_id=sentinel_id)
    out: dict[int, list[dict[str, Any]]] = {}
    # A consumer group's incidents are latched on no sentinel's card.
    for incident in [*unresolved.filter(sentinel__isnull=False), *resolved]:
        out.setdefault(incident.sentinel_id, []).append(latched_entry(incident))
    return out


def explanations_by_sentinel(sentinel_id: int | None = None) -> dict[int, list[dict[str, Any]]]:
    """Why each sentinel's latched problems happened, as its status document says it: one
    entry per latched incident (``latched_by_sentinel``, in its order) that was explained
    (``incident``, ``kind``, ``state``, and the explanation's ``cause``, ``text``,
    ``counter``, ``partition``, ``at``; not its candidates, which the incident keeps)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for sid, entries in latched_by_sentinel(sentinel_id).items():
        for entry in entries:
            incident, found = entry["incident"], entry["incident"].explanation or {}
            if not found.get("text"):
                continue
            out.setdefault(sid, []).append(
                {
                    "incident": incident.pk,
                    "kind": incident.kind,
                    "state": incident.state,
                    **{k: found.get(k) for k in EXPLANATION_FIELDS},
                }
            )
    return out


def with_explanations(
    docs: list[dict[str, Any]], sentinel_id: int | None = None
) -> list[dict[str, Any]]:
    """The status documents with ``explanations`` (``explanations_by_sentinel``), as the API
    and the command line serve them; the pages and the on-call evaluation, which read every
    document every few seconds, do without (the pages show the incidents themselves)."""
    found = explanations_by_sentinel(sentinel_id)
    for doc in docs:
        doc["explanations"] = found.get(doc["id"], [])
    return docs


# What a status document repeats of an incident's explanation.
EXPLANATION_FIELDS = ("cause", "text", "counter", "partition", "at")


def latched_for(sentinel_id: int) -> list[dict[str, Any]]:
    """The sentinel's latched problems (``latched_by_sentinel``)."""
    return latched_by_sentinel(sentinel_id).get(sentinel_id, [])


def alarm(unresolved: list[Incident]) -> str:
    """What the tab's favicon says of on-call: "critical" while a critical incident is not
    acknowledged, "warning" while any other is unacknowledged, else ""."""
    waiting = [i for i in unresolved if i.state == OPEN]
    if any(i.severity == alerts.CRITICAL for i in waiting):
        return alerts.CRITICAL
    return alerts.WARNING if waiting else ""


def overview_context(grid: list[dict[str, Any]]) -> dict[str, Any]:
    """The overview's on-call block (unresolved incidents, active silences), and each cell's
    latched problems (``latched``: ``latched_by_sentinel``)."""
    unresolved = list(unresolved_incidents())
    by_sentinel = latched_by_sentinel()
    for group in grid:
        for row in group["rows"]:
            for cell in row["cells"]:
                for c in cell:
                    c["latched"] = by_sentinel.get(c["id"], [])
    return {
        "open_incidents": unresolved,
        "active_silences": list(active_silences()),
        "notification_gap": notification_gap(),
        "oncall_alarm": alarm(unresolved),
    }


def live_state(sentinel_id: int | None = None) -> dict[str, Any]:
    """What a live page redraws after an on-call event (``views.live_fragments``): the
    overview's block context, the latched problems by sentinel (of one sentinel, given its
    id), the count of unacknowledged incidents and the favicon's alarm, for the same set."""
    unresolved = list(unresolved_incidents())
    if sentinel_id is not None:
        unresolved = [i for i in unresolved if i.sentinel_id == sentinel_id]
    return {
        "open_incidents": unresolved,
        "active_silences": list(active_silences()),
        "notification_gap": notification_gap(),
        "latched": latched_by_sentinel(sentinel_id),
        "unacknowledged": unacknowledged(unresolved),
        "alarm": alarm(unresolved),
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
