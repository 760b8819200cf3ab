"""The consumer groups' pages (docs/groups.md); thin: ``services`` reads the stored states.

``/groups/`` (the first cluster), ``/groups/<cluster>/`` (search, sort, each group's
partitions and the latest events), ``/groups/<cluster>/<group>/`` (lag charts, partitions,
events).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from dashboard.groups import services


@login_required
def index(request: HttpRequest) -> HttpResponse:
    names = services.cluster_names()
    if not names:
        return render(request, "groups/cluster.html", {"cluster": None, "clusters": []})
    return redirect("groups:cluster", cluster=names[0])


@login_required
def cluster_page(request: HttpRequest, cluster: str) -> HttpResponse:
    search = request.GET.get("q", "")[:200]
    sort = request.GET.get("sort", "worst")
    try:
        found = services.cluster_groups(cluster, search, sort)
    except services.UnknownCluster as exc:
        raise Http404(str(exc)) from exc
    return render(
        request,
        "groups/cluster.html",
        {
            "cluster": cluster,
            "clusters": services.cluster_names(),
            "rows": services.group_rows(found.groups),
            "sample": found.sample,
            "events": services.event_rows(services.events(cluster, limit=50)),
            "q": search,
            "sort": sort if sort in services.SORTS else "worst",
            "sorts": services.SORTS,
        },
    )


@login_required
def group_page(request: HttpRequest, cluster: str, group: str) -> HttpResponse:
    try:
        state = services.group(cluster, group)
    except services.UnknownCluster as exc:
        raise Http404(str(exc)) from exc
    if state is None:
        raise Http404(f"no consumer group {group!r} sampled on {cluster}")
    return render(
        request,
        "groups/group.html",
        {
            "cluster": cluster,
            "row": services.group_rows([state])[0],
            "events": services.event_rows(services.events(cluster, group)),
            "series": services.lag_series(cluster, group),
        },
    )
