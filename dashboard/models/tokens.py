"""Personal API tokens: ``Authorization: Bearer <token>`` for the JSON API and ``/metrics``.

A token is 32 random bytes (``secrets.token_urlsafe``) with a ``dst_`` prefix, shown once when it
is issued; only its SHA-256 is stored. Hashing without a salt or a slow KDF is enough for a
high-entropy secret (nobody can guess 256 random bits), and it lets a request find its row by
an indexed lookup; the stored and computed digests are still compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "dst_"
READ, WRITE = "read", "write"
SCOPE_CHOICES = [(READ, "read"), (WRITE, "read and write")]
# last_used_at is written at most this often per token, so scrapes do not write on every request.
LAST_USED_RESOLUTION_S = 60


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=5, choices=SCOPE_CHOICES, default=READ)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters, so a person can tell their tokens apart; not enough to use one.
    hint = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def can_write(self) -> bool:
        return self.scope == WRITE

    @classmethod
    def issue(cls, user: models.Model, name: str, scope: str = READ) -> tuple[ApiToken, str]:
        """A new token for ``user``: the row and the token itself, which is never stored."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, scope=scope, token_hash=digest(raw), hint=raw[:10]
        )
        return token, raw

    @classmethod
    def authenticate(cls, raw: str) -> ApiToken | None:
        """The active token ``raw`` is, with its user; None for an unknown or revoked one.
        Records the time of use (at most once a minute)."""
        if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
            return None
        wanted = digest(raw)
        token = cls.objects.select_related("user").filter(token_hash=wanted).first()
        if token is None or not hmac.compare_digest(token.token_hash, wanted):
            return None
        if not token.active or not token.user.is_active:
            return None
        now = timezone.now()
        if (
            token.last_used_at is None
            or (now - token.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_S
        ):
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
