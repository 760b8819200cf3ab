"""``/api/v1/clusters``: the clusters sentinels watch, secrets masked."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from dashboard.api_v1.schemas import ERRORS, ClusterOut
from dashboard.models import Cluster
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
