"""Who may call the JSON API: a personal API token (``Authorization: Bearer``) or the browser's
session. Reads need either; writes need a session or a token of write scope (403 otherwise).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer

from dashboard.models import ApiToken


class BearerToken(HttpBearer):
    """``request.auth`` is the ApiToken; None (401) for an unknown or revoked token."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = ApiToken.authenticate(token)
        if found is not None:
            request.user = found.user
        return found


class Session(APIKeyCookie):
    """The browser's Django session (CSRF-checked for writes, as the pages are)."""

    def __init__(self) -> None:
        self.param_name = settings.SESSION_COOKIE_NAME
        super().__init__(csrf=True)

    def _get_key(self, request: HttpRequest) -> str | None:
        # Without a session cookie this is an anonymous request (401), not a CSRF failure.
        if self.param_name not in request.COOKIES:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        return user if user is not None and user.is_authenticated else None


AUTH = [BearerToken(), Session()]


def require_write(request: HttpRequest) -> None:
    """Raise 403 unless the caller may write: a session, or a token of write scope."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiToken) and not auth.can_write:
        raise HttpError(403, "this token has read scope; writes need a token with write scope")
