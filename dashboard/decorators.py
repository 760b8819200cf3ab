"""View decorators shared by the JSON endpoints of every room."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def api_view(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """GET only, never cached, 401 for anonymous users."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "authentication required"}, status=401)
        return view(request, *args, **kwargs)

    return require_GET(never_cache(wrapper))
