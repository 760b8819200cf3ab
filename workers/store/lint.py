"""Guarantee lint reports in Redis (``LintStore``)."""

from __future__ import annotations

import json
from typing import Any

import redis

from workers.store.keys import lint_key


class LintStore:
    """The guarantee lint's latest report per cluster (``ds:lint:{cluster}``, JSON) and the
    claim that stops two runs of one cluster's lint at once (``ds:lint:{cluster}:running``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def save(self, cluster: str, report: dict[str, Any]) -> None:
        self.r.set(lint_key(cluster), json.dumps(report, separators=(",", ":")))

    def report(self, cluster: str) -> dict[str, Any] | None:
        raw = self.r.get(lint_key(cluster))
        return json.loads(raw) if raw else None

    def claim_run(self, cluster: str, ttl_ms: int) -> bool:
        """Whether this caller may lint ``cluster`` now (no other run in the last ``ttl_ms``)."""
        return bool(self.r.set(lint_key(cluster, ":running"), "1", nx=True, px=ttl_ms))

    def release_run(self, cluster: str) -> None:
        self.r.delete(lint_key(cluster, ":running"))

    def forget(self, cluster: str) -> None:
        """Drop ``cluster``'s stored report (a cluster removed, or a test's clean slate)."""
        self.r.delete(lint_key(cluster))
