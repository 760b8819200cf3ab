"""``/api/v1/incidents`` and ``/api/v1/silences``: on-call for machines.

A chat bot lists and acknowledges incidents; a deploy pipeline silences a cluster for its
rollout and ends the silence after. Acknowledging and resolving go through
``dashboard.oncall.evaluation`` as the incident page's buttons do (recorded with the token's
user, notified to the channels); a silence is validated by the Silences page's own form.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja import Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from dashboard.api_v1.auth import require_write
from dashboard.api_v1.schemas import (
    CONFLICT,
    ERRORS,
    IncidentDetail,
    IncidentOut,
    ResolveIn,
    SilenceIn,
    SilenceOut,
    Text,
)
from dashboard.models import Cluster, Incident, Sentinel, Silence
from dashboard.models.oncall import OPEN, RESOLVED
from dashboard.oncall import evaluation
from dashboard.oncall.forms import SilenceForm
from dashboard.oncall.services import is_cleared, open_first, with_cleared
from dashboard.oncall.tasks import dispatch_notification

incidents = Router(tags=["incidents"])
silences = Router(tags=["silences"])
MAX_ID = 2**63 - 1


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _who(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def incident_doc(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.pk,
        "sentinel": incident.sentinel.name if incident.sentinel is not None else None,
        "group": incident.group or None,
        "cluster": incident.cluster,
        "topic": incident.topic,
        "semantic": incident.semantic,
        "kind": incident.kind,
        "severity": incident.severity,
        "state": incident.state,
        "reason": incident.reason,
        "counts": {k: int(v) for k, v in (incident.counts or {}).items()},
        "partitions": incident.partitions or {},
        "silenced": incident.silenced,
        "opened_at": _iso(incident.opened_at),
        "last_firing_at": _iso(incident.last_firing_at),
        "cleared_at": _iso(incident.cleared_at) if is_cleared(incident) else None,
        "acknowledged_at": _iso(incident.acknowledged_at),
        "acknowledged_by": _who(incident.acknowledged_by),
        "resolved_at": _iso(incident.resolved_at),
        "resolved_by": _who(incident.resolved_by),
        "resolve_note": incident.resolve_note,
        "url": f"{settings.DS_BASE_URL}/incidents/{incident.pk}/",
        "explanation": _explanation(incident.explanation),
    }


def _explanation(found: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the API says of an explanation (its evidence stays on the incident's page)."""
    if not found:
        return None
    keys = ("cause", "text", "counter", "partition", "at", "candidates")
    return {k: found.get(k) for k in keys}


def _incident(incident_id: int) -> Incident:
    incident = (
        with_cleared(Incident.objects.select_related("sentinel", "acknowledged_by", "resolved_by"))
        .filter(pk=incident_id)
        .first()
    )
    if incident is None:
        raise HttpError(404, f"incident_id: no incident with id {incident_id}")
    return incident


class IncidentsQuery(Schema):
    state: Literal["open", "acknowledged", "resolved", "unresolved"] | None = Field(
        None, description="unresolved: open or acknowledged"
    )
    sentinel: Text | None = Field(None, max_length=100, description="a sentinel's name")
    group: Text | None = Field(None, max_length=255, description="a consumer group's name")
    cluster: Text | None = Field(None, max_length=100, description="a cluster's name")
    kind: Text | None = Field(None, max_length=20, description="violated, stalled, ...")
    limit: int = Field(50, ge=1, le=500, description="open ones first, then the newest")


@incidents.get("", response={200: list[IncidentOut], **ERRORS}, summary="Incidents")
def list_incidents(request: HttpRequest, q: Query[IncidentsQuery]) -> list[dict]:
    found = with_cleared(
        Incident.objects.select_related("sentinel", "acknowledged_by", "resolved_by")
    )
    if q.state == "unresolved":
        found = found.exclude(state=RESOLVED)
    elif q.state is not None:
        found = found.filter(state=q.state)
    if q.sentinel is not None:
        found = found.filter(sentinel__name=q.sentinel)
    if q.group is not None:
        found = found.filter(group=q.group, group_rule__isnull=False)
    if q.cluster is not None:
        found = found.filter(cluster=q.cluster)
    if q.kind is not None:
        found = found.filter(kind=q.kind)
    return [incident_doc(i) for i in open_first(found)[: q.limit]]


@incidents.get(
    "/{incident_id}", response={200: IncidentDetail, **ERRORS}, summary="One incident, its timeline"
)
def get_incident(request: HttpRequest, incident_id: int = Path(..., ge=1, le=MAX_ID)) -> dict:
    incident = _incident(incident_id)
    events = incident.events.select_related("user", "channel").order_by("at", "pk")
    timeline = [
        {
            "at": _iso(e.at),
            "kind": e.kind,
            "message": e.message,
            "user": _who(e.user),
            "channel": e.channel.name if e.channel is not None else None,
            "action": e.action,
            "result": e.result,
            "error": e.error,
        }
        for e in events
    ]
    return {**incident_doc(incident), "timeline": timeline}


@incidents.post(
    "/{incident_id}/acknowledge",
    response={200: IncidentOut, **ERRORS, **CONFLICT},
    summary="Acknowledge an open incident (write scope)",
)
def acknowledge(request: HttpRequest, incident_id: int = Path(..., ge=1, le=MAX_ID)) -> dict:
    require_write(request)
    incident = _incident(incident_id)
    if not evaluation.acknowledge(incident, request.user, dispatch=dispatch_notification):
        raise HttpError(409, f"incident {incident_id} is {incident.state}, not {OPEN}")
    return incident_doc(_incident(incident_id))


@incidents.post(
    "/{incident_id}/resolve",
    response={200: IncidentOut, **ERRORS, **CONFLICT},
    summary="Resolve an incident with a note (write scope)",
)
def resolve(
    request: HttpRequest, body: ResolveIn, incident_id: int = Path(..., ge=1, le=MAX_ID)
) -> dict:
    require_write(request)
    incident = _incident(incident_id)
    note = body.note.strip()
    if not evaluation.resolve(incident, request.user, note, dispatch=dispatch_notification):
        raise HttpError(409, f"incident {incident_id} is {RESOLVED} already")
    return incident_doc(_incident(incident_id))


# -- silences -----------------------------------------------------------------------------------


def silence_doc(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.pk,
        "cluster": silence.cluster.name if silence.cluster is not None else None,
        "sentinel": silence.sentinel.name if silence.sentinel is not None else None,
        "ends_at": _iso(silence.ends_at),
        "active": silence.ends_at > timezone.now(),
        "comment": silence.comment,
        "created_by": _who(silence.created_by),
        "created": _iso(silence.created),
    }


class SilencesQuery(Schema):
    ended: bool = Field(False, description="also the 50 most recently ended ones")


@silences.get("", response={200: list[SilenceOut], **ERRORS}, summary="Silences")
def list_silences(request: HttpRequest, q: Query[SilencesQuery]) -> list[dict]:
    related = Silence.objects.select_related("cluster", "sentinel", "created_by")
    now = timezone.now()
    found = list(related.filter(ends_at__gt=now).order_by("ends_at"))
    if q.ended:
        found += list(related.filter(ends_at__lte=now).order_by("-ends_at")[:50])
    return [silence_doc(s) for s in found]


@silences.post(
    "", response={201: SilenceOut, **ERRORS}, summary="Silence a cluster or a sentinel (write)"
)
def create_silence(request: HttpRequest, body: SilenceIn) -> Status:
    require_write(request)
    data = {"ends_at": _ends_at(body.ends_at), "comment": body.comment}
    if body.cluster is not None:
        cluster = Cluster.objects.filter(name=body.cluster).first()
        if cluster is None:
            raise HttpError(400, f"cluster: no cluster named {body.cluster!r}")
        data["cluster"] = str(cluster.pk)
    if body.sentinel is not None:
        sentinel = Sentinel.objects.filter(name=body.sentinel).first()
        if sentinel is None:
            raise HttpError(400, f"sentinel: no sentinel named {body.sentinel!r}")
        data["sentinel"] = str(sentinel.pk)
    form = SilenceForm(data)
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        name = "cluster or sentinel" if field == "__all__" else field
        raise HttpError(400, f"{name}: {' '.join(errors)}")
    silence = form.save(commit=False)
    silence.created_by = request.user if request.user.is_authenticated else None
    silence.save()
    return Status(201, silence_doc(silence))


def _ends_at(text: str) -> str:
    """The form's own format, from ISO 8601 (an offset is converted to UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HttpError(400, f"ends_at: not an ISO 8601 time: {text[:40]!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S")


@silences.delete(
    "/{silence_id}",
    response={200: SilenceOut, **ERRORS, **CONFLICT},
    summary="End a silence now (write scope); it stays listed as ended",
)
def end_silence(request: HttpRequest, silence_id: int = Path(..., ge=1, le=MAX_ID)) -> dict:
    require_write(request)
    silence = Silence.objects.select_related("cluster", "sentinel", "created_by")
    found = silence.filter(pk=silence_id).first()
    if found is None:
        raise HttpError(404, f"silence_id: no silence with id {silence_id}")
    if found.ends_at <= timezone.now():
        raise HttpError(409, f"silence {silence_id} has ended already")
    found.ends_at = timezone.now()
    found.save(update_fields=["ends_at"])
    return silence_doc(found)
