"""``/api/v1/sentinels``: status documents and metric windows."""

from __future__ import annotations

import time
from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from dashboard.api_v1.schemas import ERRORS, Status, StatusList, Text, Windows
from dashboard.metrics.windows import db_windows, redis_windows
from dashboard.models import Sentinel
from dashboard.oncall.services import with_explanations
from dashboard.status import all_statuses, sentinel_status
from workers.engine.documents import STATUS_VERSION, W1_RETENTION_S

router = Router(tags=["sentinels"])
# One-minute windows: at most this span per request (the rollups are kept 30 days by default).
MAX_1M_SPAN_S = 31 * 24 * 3600
DEFAULT_SPAN_S = 3600


def get_sentinel(name: str) -> Sentinel:
    sentinel = Sentinel.objects.select_related("cluster", "profile").filter(name=name).first()
    if sentinel is None:
        raise HttpError(404, f"name: no sentinel named {name!r}")
    return sentinel


@router.get("", response={200: StatusList, **ERRORS}, summary="Every sentinel's status document")
def list_sentinels(request: HttpRequest) -> dict:
    return {"version": STATUS_VERSION, "sentinels": with_explanations(all_statuses())}


@router.get("/{name}", response={200: Status, **ERRORS}, summary="One sentinel's status")
def get_status(request: HttpRequest, name: Text) -> dict:
    sentinel = get_sentinel(name)
    return with_explanations([sentinel_status(sentinel)], sentinel.pk)[0]


class WindowQuery(Schema):
    since: float | None = Field(
        None, description="Unix seconds; default: an hour before until", ge=0, allow_inf_nan=False
    )
    until: float | None = Field(
        None, description="Unix seconds; default: now", ge=0, allow_inf_nan=False
    )
    resolution: Literal["1s", "1m"] = Field(
        "1s", description="1s: one-second windows (Redis, the last hour); 1m: one-minute rollups"
    )


@router.get(
    "/{name}/windows",
    response={200: Windows, **ERRORS},
    summary="Metric windows of one sentinel",
)
def get_windows(request: HttpRequest, name: Text, q: Query[WindowQuery]) -> dict:
    sentinel = get_sentinel(name)
    now = time.time()
    until = now if q.until is None else q.until
    since = until - DEFAULT_SPAN_S if q.since is None else q.since
    if since > now:
        raise HttpError(400, "since: is in the future")
    if since >= until:
        raise HttpError(400, "since: must be before until")
    limit = W1_RETENTION_S if q.resolution == "1s" else MAX_1M_SPAN_S
    if until - since > limit:
        raise HttpError(400, f"since: at most {limit} s before until at resolution {q.resolution}")
    if q.resolution == "1s":
        windows = redis_windows(sentinel.pk, since, until)
    else:
        windows = db_windows(sentinel.pk, since, until)
    return {
        "sentinel": sentinel.name,
        "resolution": q.resolution,
        "since": since,
        "until": until,
        "windows": [w.to_doc(hist=False) for w in windows],
    }
