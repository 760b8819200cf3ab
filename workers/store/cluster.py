"""What the project keeps about a cluster as a whole (``ClusterStore``): which worker watches
it, what its samplers last did, its last sample and its events (docs/events.md)."""

from __future__ import annotations

import json
from typing import Any

import redis

from workers.store.coordination import Lease
from workers.store.keys import cluster_key

# An event is recorded within this long of its sample's time (a sample's duration, and the
# watcher's clock against Redis's).
RECORDED_WITHIN_S = 120


class ClusterStore:
    """One cluster's keys (``ds:cluster:{cluster}:*``, see ``workers.store.keys``)."""

    def __init__(self, client: redis.Redis, cluster: str) -> None:
        self.r = client
        self.cluster = cluster

    def key(self, name: str) -> str:
        return cluster_key(self.cluster, name)

    def now_ms(self) -> int:
        """Redis's clock in ms: every worker's records of the cluster on one clock."""
        seconds, micros = self.r.time()
        return seconds * 1000 + micros // 1000

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
        doc = {"at": self.now_ms(), "by": token, "error": error}
        doc["samples"] = samples
        self.r.hset(self.key("samplers"), sampler, json.dumps(doc, separators=(",", ":")))

    def samplers(self) -> dict[str, dict[str, Any]]:
        """Each sampler's last step (``sampled``), by name."""
        return {
            name.decode(): json.loads(raw)
            for name, raw in self.r.hgetall(self.key("samplers")).items()
        }

    def watcher_ended(self, worker: str, code: int, why: str) -> None:
        """A watch process of ``worker`` ended by itself (exit status ``code``, ``why`` in
        words): kept until the next one, for the cluster page."""
        doc = {"at": self.now_ms(), "by": worker, "code": code, "why": why}
        self.r.set(self.key("ended"), json.dumps(doc, separators=(",", ":")))

    def last_ended(self) -> dict[str, Any] | None:
        """How the last watch process that ended by itself ended (``watcher_ended``)."""
        raw = self.r.get(self.key("ended"))
        return json.loads(raw) if raw else None

    # -- its events ------------------------------------------------------------------------
    def last_sample(self) -> dict[str, Any] | None:
        """The watcher's last sample (``workers.engine.clusterevents``), what the next one is
        compared with: kept here so that a watcher taking over from another compares with
        what that one saw last."""
        raw = self.r.get(self.key("sample"))
        return json.loads(raw) if raw else None

    def record(
        self, sample: dict[str, Any], events: list[dict[str, Any]], retention_ms: int
    ) -> None:
        """Keep ``sample`` as the last one and append ``events`` (one MULTI: a watcher that
        dies between the two never records an event twice or compares with a stale sample);
        events older than ``retention_ms`` are trimmed."""
        oldest = max(0, self.now_ms() - retention_ms)
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.key("sample"), json.dumps(sample, separators=(",", ":")))
        for event in events:
            doc = {"cluster": self.cluster, **event}
            pipe.xadd(self.key("events"), {"e": json.dumps(doc, separators=(",", ":"))})
        pipe.xtrim(self.key("events"), minid=oldest, approximate=False)
        pipe.execute()

    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        topic: str | None = None,
        partition: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The cluster's events seen (``at``) between ``since`` and ``until`` (Unix seconds),
        newest first, at most ``limit``; only those of ``topic`` (and ``partition``) when
        given, together with the events of no topic (a broker's). Each has its stream ``id``.

        The stream is ordered by when each event was recorded (Redis time), moments after its
        sample: it is read ``RECORDED_WITHIN_S`` beyond the range, and filtered by ``at``."""
        slack = RECORDED_WITHIN_S * 1000
        high = "+" if until is None else str(max(0, int(until * 1000 + slack)))
        low = "-" if since is None else str(max(0, int(since * 1000 - slack)))
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            batch = self.r.xrevrange(self.key("events"), high, low, count=500)
            for entry_id, fields in batch:
                doc = json.loads(fields[b"e"])
                if (since is not None and doc["at"] < since) or (
                    until is not None and doc["at"] > until
                ):
                    continue
                if topic is not None and doc.get("topic") not in (None, topic):
                    continue
                if partition is not None and doc.get("partition") not in (None, partition):
                    continue
                out.append({"id": entry_id.decode(), **doc})
                if len(out) >= limit:
                    break
            if len(batch) < 500:
                break
            high = "(" + batch[-1][0].decode()
        return out

    def forget(self) -> None:
        """Drop what is kept about the cluster (not its watch lease: a watcher owns that)."""
        self.r.delete(
            self.key("samplers"), self.key("sample"), self.key("events"), self.key("ended")
        )
