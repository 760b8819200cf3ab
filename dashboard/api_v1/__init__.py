"""The versioned JSON API, ``/api/v1/`` (django-ninja; docs/architecture.md says why).

Every router needs a personal API token (``Authorization: Bearer``) or the browser's session
(``auth.AUTH``); writes also need write scope (``auth.require_write``). The OpenAPI 3 schema is
generated from the code at ``/api/v1/openapi.json``, with Swagger UI at ``/api/v1/docs`` from
django-ninja's own bundled assets (no CDN). Errors are JSON ``{"detail": ...}`` naming the field
at fault; bad input is a 4xx, never a 500.

Adding a resource is one router module and one ``add_router`` line below.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from dashboard.api_v1 import clusters, groups, oncall, scenarios, sentinels
from dashboard.api_v1.auth import AUTH

api = NinjaAPI(
    title="Delivery Sentinel API",
    version="1",
    description=(
        "Sentinel status documents, metric windows, clusters, their consumer groups, scenario "
        "runs, incidents and silences."
    ),
    auth=AUTH,
    urls_namespace="api-v1",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_router("/sentinels", sentinels.router)
api.add_router("/clusters", clusters.router)
api.add_router("/clusters", groups.router)
api.add_router("/scenarios", scenarios.router)
api.add_router("/incidents", oncall.incidents)
api.add_router("/silences", oncall.silences)


@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request,
        {"detail": "authentication required: a valid bearer token or a session"},
        status=401,
    )


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """422 with one entry per bad field: where it is (``loc``, e.g. ``["query", "since"]``)
    and what is wrong with it (``["body", "scenario"]`` for a field of the JSON body)."""
    errors = [
        {"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "invalid")), "type": e.get("type")}
        for e in exc.errors
    ]
    return api.create_response(request, {"detail": errors}, status=422)


def _loc(loc: tuple | list) -> list:
    """django-ninja puts the handler's parameter name after ``"body"`` (``["body", "body",
    "scenario"]``); the caller knows the field by its place in the JSON body only."""
    loc = list(loc)
    return [loc[0], *loc[2:]] if len(loc) > 2 and loc[0] == "body" else loc
