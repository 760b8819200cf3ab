"""Response and request shapes of the JSON API; they generate its OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import AfterValidator, ConfigDict, Field

from workers.engine.documents import Verdict

# The verdict names, as ``workers.engine.documents.Verdict`` defines them (a Literal rather than
# the enum keeps the OpenAPI schema a plain string enum).
VerdictName = Literal[tuple(v.value for v in Verdict)]  # type: ignore[valid-type]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


# Text the database stores or compares: PostgreSQL's text holds no NUL character (SQLite's
# does), so one is bad input, a 422 naming the field, never a 500 from the database.
Text = Annotated[str, AfterValidator(_no_nul)]


class Error(Schema):
    detail: Any = Field(description="what is wrong; for bad input, which field and why")


# Every operation may answer these, all as ``{"detail": ...}``: bad input (400, or 422 with one
# entry per field), no or a revoked token (401), a read token on a write (403), not found (404).
ERRORS: dict[int, type[Schema]] = {400: Error, 401: Error, 403: Error, 404: Error, 422: Error}
# A change the resource's state does not allow (acknowledging an incident that is not open).
CONFLICT: dict[int, type[Schema]] = {409: Error}


class LatencySummary(Schema):
    p50: float | None = None
    p99: float | None = None
    max: float | None = None


class StatusExplanation(Schema):
    """An incident's explanation, as the status document repeats it (docs/status.md)."""

    incident: int = Field(description="the incident's id (/api/v1/incidents/{id})")
    kind: str = Field(description="the incident's kind: violated, stalled")
    state: str = Field(description="open, acknowledged or resolved")
    cause: str = Field(description="a cause label, or none when no event explains it")
    text: str
    counter: str | None = Field(None, description="lost, duplicated, ..., or stalled")
    partition: int | None = None
    at: float | None = Field(
        None, description="its first affected record, or the stall's last progress (Unix s)"
    )


class Status(Schema):
    """A sentinel status document (docs/status.md); the shape only grows compatibly."""

    model_config = ConfigDict(extra="allow")

    version: int
    id: int
    name: str
    semantic: str
    cluster: str
    topic: str
    enabled: bool
    run_id: int | None = None
    runs: int
    verdict: VerdictName
    verdict_since: float | None = Field(
        None, description="Unix time the sentinel entered its verdict; null before its first report"
    )
    reasons: list[str]
    totals: dict[str, int]
    window: dict[str, Any] = Field(
        description="seconds, and counts: increases over the last `seconds`, except the gauge "
        "`pending`, its level now (never negative)"
    )
    latency_ms: LatencySummary
    recent_latency_ms: LatencySummary
    produce_ack_latency_ms: LatencySummary
    latency_buckets: dict[str, Any] | None = None
    partitions: dict[str, dict[str, int]]
    metadata: dict[str, Any] | None = None
    errors: list[str]
    last_progress_at: float | None = None
    updated_at: float | None = None
    explanations: list[StatusExplanation] = Field(
        default_factory=list,
        description="why the sentinel's latched incidents (unresolved, and violations resolved "
        "within the verdict window) happened, one per explained incident",
    )


class StatusList(Schema):
    version: int
    sentinels: list[Status]


class WindowDoc(Schema):
    """A metric window (docs/architecture.md, "Metric windows"), stamped with its end ``t``."""

    t: float
    seconds: float
    sentinel: int | None = None
    verdict: str
    counts: dict[str, int] = Field(
        description="increases over the window, except the gauge `pending`: its level at the "
        "window's end, never negative (a gauge is a level, not a delta)"
    )
    partitions: dict[str, dict[str, int]]
    e2e: dict[str, Any]
    ack: dict[str, Any]


class Windows(Schema):
    sentinel: str
    resolution: Literal["1s", "1m"]
    since: float
    until: float
    windows: list[WindowDoc]


class ClusterOut(Schema):
    id: int
    name: str
    bootstrap_servers: str
    is_local: bool
    client_properties: dict[str, Any] = Field(description="secrets masked as ******")


class ClusterEventOut(Schema):
    """One cluster event (docs/events.md): what changed between two samples of the cluster."""

    id: str = Field(description="its id in the cluster's event stream (Redis time in ms-seq)")
    cluster: str
    at: float = Field(description="Unix seconds: the sample that saw it")
    since: float = Field(description="Unix seconds: the sample before, where it had not happened")
    kind: str = Field(description="one of the kinds docs/events.md names")
    severity: Literal["bad", "warn", "good"]
    topic: str | None = None
    partition: int | None = None
    broker: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    count: int | None = Field(None, description="records: deleted, or offsets truncated")
    text: str


class ClusterEvents(Schema):
    cluster: str
    events: list[ClusterEventOut]


class ScenarioRunOut(Schema):
    id: int
    scenario: str
    title: str
    cluster: str | None = None
    state: str
    phase: str
    percent: int
    reason: str
    results: list[Any]
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None


class ScenarioRunIn(Schema):
    scenario: Text = Field(max_length=64, description="a scenario name (manage.py scenario list)")
    cluster: int | None = Field(
        None, ge=1, le=2**63 - 1, description="a cluster id; null: the local cluster"
    )


IncidentState = Literal["open", "acknowledged", "resolved"]


class ExplanationCandidateOut(Schema):
    cause: str
    score: float
    kind: str = Field(description="the event's kind, or configuration")
    at: float | None = Field(None, description="when the event was seen (Unix seconds)")
    place: str = Field(description="partition, topic, cluster or client")
    text: str


class ExplanationOut(Schema):
    """Why a violation happened or a sentinel stalled: the best-ranked cause, in words, and the
    candidates."""

    cause: str = Field(description="a cause label, or none when no event explains it")
    text: str
    counter: str = Field(description="the counter explained: lost, duplicated, ...")
    partition: int | None = None
    at: float = Field(description="when its first affected record was written (Unix seconds)")
    candidates: list[ExplanationCandidateOut]


class IncidentOut(Schema):
    """An incident (README, "On-call"): what it is about, its state and who moved it."""

    id: int
    sentinel: str | None = Field(description="the sentinel's name; null for a group incident")
    group: str | None = Field(
        None, description="a consumer group rule's incident: the group's name (else null)"
    )
    cluster: str
    topic: str = Field(description="the sentinel's topic; a group incident's topics")
    semantic: str
    kind: str = Field(
        description="the alert rule's kind: violated, stalled, degraded, ...; a group rule's "
        "group_lost, group_skipped, group_rewound, group_stopped"
    )
    severity: str
    state: IncidentState
    reason: str
    counts: dict[str, int] = Field(description="the counters the incident is about")
    partitions: dict[str, dict[str, int | str]] = Field(
        default_factory=dict,
        description="a group incident's, per topic:partition: records counted with their "
        "offsets (count, first, last exclusive), or a stopped group's status and lag",
    )
    silenced: bool = Field(description="opened during a silence: nobody was paged")
    opened_at: str
    last_firing_at: str
    cleared_at: str | None = Field(
        None,
        description="a state's condition (stalled, degraded, p99, loss rate, lint) was found "
        "clear then and has not held since: the incident waits out its hold-down (or a "
        "person); null while it holds, and always for a violation",
    )
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    resolved_at: str | None = None
    resolved_by: str | None = None
    resolve_note: str
    url: str = Field(description="its page")
    explanation: ExplanationOut | None = Field(
        None, description='a violation\'s: why it happened (docs/status.md, "Explanations")'
    )


class IncidentEventOut(Schema):
    at: str
    kind: str = Field(
        description="opened, grew, cleared, firing (again), notify, acknowledged, resolved, "
        "silenced"
    )
    message: str
    user: str | None = None
    channel: str | None = None
    action: str = Field(description="for a notification: trigger, acknowledge or resolve")
    result: str = Field(description="for a notification: pending, sending, ok, error, skipped")
    error: str


class IncidentDetail(IncidentOut):
    timeline: list[IncidentEventOut]


class ResolveIn(Schema):
    note: Text = Field("", max_length=2000, description="why it is resolved (kept on its page)")


class SilenceOut(Schema):
    id: int
    cluster: str | None = None
    sentinel: str | None = None
    ends_at: str
    active: bool
    comment: str
    created_by: str | None = None
    created: str


class SilenceIn(Schema):
    cluster: Text | None = Field(None, max_length=100, description="a cluster's name...")
    sentinel: Text | None = Field(None, max_length=100, description="...or a sentinel's: one")
    ends_at: Text = Field(
        max_length=40, description="when it ends: ISO 8601 (UTC when no offset), in the future"
    )
    comment: Text = Field("", max_length=500)
