"""``/api/v1/clusters``: the clusters sentinels watch, secrets masked, and their events."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from dashboard.api_v1.schemas import ERRORS, ClusterEvents, ClusterOut, Text
from dashboard.metrics.clusterevents import cluster_events
from dashboard.models import Cluster
from workers.engine.clusterevents import severity
from workers.engine.redact import redact_config

router = Router(tags=["clusters"])


@router.get(
    "", response={200: list[ClusterOut], **ERRORS}, summary="Every cluster (client secrets masked)"
)
def list_clusters(request: HttpRequest) -> list[dict]:
    return [
        {
            "id": c.pk,
            "name": c.name,
            "bootstrap_servers": redact_config(c.bootstrap_servers),
            "is_local": c.is_local,
            "client_properties": redact_config(dict(c.client_properties)),
        }
        for c in Cluster.objects.all()
    ]


class EventQuery(Schema):
    since: float | None = Field(
        None, description="Unix seconds; default: the oldest kept", ge=0, allow_inf_nan=False
    )
    until: float | None = Field(
        None, description="Unix seconds; default: now", ge=0, allow_inf_nan=False
    )
    topic: Text | None = Field(
        None, max_length=249, description="only this topic's events (and the brokers')"
    )
    partition: int | None = Field(
        None, ge=0, le=2**31 - 1, description="with topic: this partition"
    )
    limit: int = Field(100, ge=1, le=1000, description="at most this many, newest first")


@router.get(
    "/{cluster_id}/events",
    response={200: ClusterEvents, **ERRORS},
    summary="The cluster's events, newest first (docs/events.md)",
    url_name="cluster_events",
)
def list_cluster_events(request: HttpRequest, cluster_id: int, q: Query[EventQuery]) -> dict:
    cluster = Cluster.objects.filter(pk=cluster_id).first() if 0 < cluster_id < 2**63 else None
    if cluster is None:
        raise HttpError(404, f"cluster_id: no cluster {cluster_id}")
    if q.since is not None and q.until is not None and q.since >= q.until:
        raise HttpError(400, "since: must be before until")
    if q.partition is not None and q.topic is None:
        raise HttpError(400, "partition: only with topic")
    events = cluster_events(
        cluster.name,
        since=q.since,
        until=q.until,
        topic=q.topic,
        partition=q.partition,
        limit=q.limit,
    )
    return {
        "cluster": cluster.name,
        "events": [{**e, "severity": severity(e["kind"])} for e in events],
    }
