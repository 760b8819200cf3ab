"""What the project keeps about a cluster as a whole (``ClusterStore``): which worker watches
it, and what its samplers last did."""

from __future__ import annotations

import json
from typing import Any

import redis

from workers.store.coordination import Lease
from workers.store.keys import cluster_key


class ClusterStore:
    """One cluster's keys (``ds:cluster:{cluster}:*``, see ``workers.store.keys``)."""

    def __init__(self, client: redis.Redis, cluster: str) -> None:
        self.r = client
        self.cluster = cluster

    def key(self, name: str) -> str:
        return cluster_key(self.cluster, name)

    # -- who watches it --------------------------------------------------------------------
    def watch_lease(self, token: str, ttl_ms: int) -> Lease:
        """The lease that makes one worker (``token``) the cluster's only watcher."""
        return Lease(self.r, self.key("watch"), token, ttl_ms)

    def watcher(self) -> str | None:
        """The worker watching the cluster now (the lease token's worker part), or None."""
        token = self.r.get(self.key("watch"))
        return token.decode().rpartition(":")[0] if token else None

    # -- what its samplers did -------------------------------------------------------------
    def sampled(self, sampler: str, token: str, samples: int, error: str | None = None) -> None:
        """Record a step of ``sampler`` run under lease ``token`` (its ``samples``-th)."""
        seconds, micros = self.r.time()
        doc = {"at": seconds * 1000 + micros // 1000, "by": token, "error": error}
        doc["samples"] = samples
        self.r.hset(self.key("samplers"), sampler, json.dumps(doc, separators=(",", ":")))

    def samplers(self) -> dict[str, dict[str, Any]]:
        """Each sampler's last step (``sampled``), by name."""
        return {
            name.decode(): json.loads(raw)
            for name, raw in self.r.hgetall(self.key("samplers")).items()
        }

    def forget(self) -> None:
        """Drop what is kept about the cluster (not its watch lease: a watcher owns that)."""
        self.r.delete(self.key("samplers"))
