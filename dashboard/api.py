"""JSON API (separate from the HTML views): sentinel status documents and metric windows.

- ``GET /api/sentinels/``: ``{"version", "sentinels": [status document, ...]}`` (docs/status.md)
- ``GET /api/sentinels/<id>/``: one status document
- ``GET /api/sentinels/<id>/windows/?range=live|15m|1h|24h|7d``: chart series
  (``dashboard.metrics.windows.windows_for_range``)

Session authentication, as the pages: an anonymous request gets a 401 JSON error rather than
a redirect to the login page, which a script could not follow usefully.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from dashboard.decorators import api_view
from dashboard.metrics.windows import UnknownRange, windows_for_range
from dashboard.models import Sentinel
from dashboard.oncall.services import with_explanations
from dashboard.status import all_statuses, sentinel_status
from workers.engine.documents import STATUS_VERSION


@api_view
def sentinels(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"version": STATUS_VERSION, "sentinels": with_explanations(all_statuses())})


def not_found(sentinel_id: int) -> JsonResponse:
    return JsonResponse({"error": f"no sentinel with id {sentinel_id}"}, status=404)


@api_view
def sentinel(request: HttpRequest, sentinel_id: int) -> JsonResponse:
    obj = Sentinel.objects.select_related("cluster", "profile").filter(pk=sentinel_id).first()
    if obj is None:
        return not_found(sentinel_id)
    return JsonResponse(with_explanations([sentinel_status(obj)], obj.pk)[0])


@api_view
def windows(request: HttpRequest, sentinel_id: int) -> JsonResponse:
    if not Sentinel.objects.filter(pk=sentinel_id).exists():
        return not_found(sentinel_id)
    range_name = request.GET.get("range", "1h")
    try:
        data = windows_for_range(sentinel_id, range_name)
    except UnknownRange as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(data)
