"""The cluster page (``/clusters/<id>/``) and its live part, refreshed every 2 s by htmx.

Thin: the numbers are ``dashboard.metrics.cluster.cluster_state`` over the status documents of
the cluster's sentinels, and its events come from its watcher's stream
(``dashboard.metrics.clusterevents``): no Kafka call in a request."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from dashboard.metrics.cluster import cluster_state
from dashboard.metrics.clusterevents import cluster_events, for_page, watch_state
from dashboard.models import Cluster, Sentinel
from dashboard.status import sentinel_status

# Events on the cluster page, newest first.
PAGE_EVENTS = 50


def _state(cluster: Cluster) -> dict:
    sentinels = Sentinel.objects.filter(cluster=cluster).select_related("cluster", "profile")
    state = cluster_state(sentinel_status(s) for s in sentinels)
    state["events"] = for_page(cluster_events(cluster.name, limit=PAGE_EVENTS))
    state["watch"] = watch_state(cluster.name)
    return state


@login_required
def cluster_page(request: HttpRequest, cluster_id: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=cluster_id)
    return render(request, "dashboard/cluster.html", {"cluster": cluster, "state": _state(cluster)})


@login_required
def cluster_state_part(request: HttpRequest, cluster_id: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=cluster_id)
    return render(
        request, "dashboard/_cluster_state.html", {"cluster": cluster, "state": _state(cluster)}
    )
