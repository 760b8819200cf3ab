"""``/api/v1/clusters/{cluster}/groups``: the applications' consumer groups as the group
watcher last sampled them (docs/groups.md): each group's roll-up, its partitions, its rewinds,
skips and losses, and its lag history."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from dashboard.api_v1.schemas import ERRORS, Text
from dashboard.groups import services
from workers.engine.groups import EVENT_KINDS, STATUS_ORDER

router = Router(tags=["groups"])

GroupStatus = Literal[STATUS_ORDER]  # type: ignore[valid-type]
EventKind = Literal[EVENT_KINDS]  # type: ignore[valid-type]
Sort = Literal[services.SORTS]  # type: ignore[valid-type]


class GroupSummary(Schema):
    group: str
    t: float = Field(description="when it was sampled (Unix seconds)")
    state: str = Field(description="the group's state as the cluster says it (Stable, Empty...)")
    members: int
    status: GroupStatus
    lag: int = Field(description="records left to read, summed over its partitions")
    lag_s: float | None = Field(description="age of its oldest unread record (s); null: unknown")
    lost: int
    skipped: int
    rewound: int
    topics: list[str]


class GroupPartition(Schema):
    topic: str
    partition: int
    status: GroupStatus
    committed: int
    log_start: int
    log_end: int
    lag: int
    lag_s: float | None
    lost: int
    skipped: int
    rewound: int


class GroupEventOut(Schema):
    kind: EventKind
    group: str
    topic: str
    partition: int
    count: int = Field(description="records rewound, skipped or lost")
    first: int = Field(description="first offset of the range")
    last: int = Field(description="offset after the range")
    t: float
    detail: str


class LagPoint(Schema):
    t: float
    lag: int
    lag_s: float | None


class GroupDetail(GroupSummary):
    partitions: list[GroupPartition]
    events: list[GroupEventOut]
    lag_history: list[LagPoint]


class GroupFilters(Schema):
    q: Text = Field("", max_length=200, description="part of a group's or a topic's name")
    sort: Sort = "worst"
    status: GroupStatus | None = None


def _cluster(name: str) -> str:
    try:
        return services.check_cluster(name)
    except services.UnknownCluster as exc:
        raise HttpError(404, f"cluster: {exc}") from exc


@router.get(
    "/{cluster}/groups",
    response={200: list[GroupSummary], **ERRORS},
    summary="A cluster's consumer groups, worst first",
)
def list_groups(request: HttpRequest, cluster: str, filters: Query[GroupFilters]) -> list[dict]:
    found = services.cluster_groups(_cluster(cluster), filters.q, filters.sort)
    return [
        g.summary() for g in found.groups if filters.status is None or g.status == filters.status
    ]


@router.get(
    "/{cluster}/groups/{group}",
    response={200: GroupDetail, **ERRORS},
    summary="One consumer group: its partitions, events and lag history",
)
def get_group(request: HttpRequest, cluster: str, group: str) -> dict:
    state = services.group(_cluster(cluster), group)
    if state is None:
        raise HttpError(404, f"group: no consumer group {group!r} sampled on {cluster}")
    series = services.lag_series(cluster, group)
    return {
        **state.summary(),
        "partitions": [vars(p) for p in state.partitions.values()],
        "events": [e.to_fields() for e in services.events(cluster, group)],
        "lag_history": [
            {"t": t, "lag": lag, "lag_s": s}
            for t, lag, s in zip(series["t"], series["lag"], series["lag_s"], strict=True)
        ],
    }


class EventFilters(Schema):
    group: Text | None = Field(None, max_length=300)
    kind: EventKind | None = None
    limit: int = Field(200, ge=1, le=1000)


@router.get(
    "/{cluster}/group-events",
    response={200: list[GroupEventOut], **ERRORS},
    summary="A cluster's latest consumer group events (rewound, skipped, lost), newest first",
)
def list_events(request: HttpRequest, cluster: str, filters: Query[EventFilters]) -> list[dict]:
    found = services.events(_cluster(cluster), filters.group, 1000)
    chosen = [e for e in found if filters.kind is None or e.kind == filters.kind]
    return [e.to_fields() for e in chosen[: filters.limit]]
