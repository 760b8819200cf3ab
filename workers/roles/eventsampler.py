"""The cluster events sampler: every ``DS_CLUSTER_EVENTS_INTERVAL_S`` (3 s) its cluster's
watcher (``workers/runtime/watch.py``; and the scenario lab's, over its probes' topics, while a
scenario runs) reads the sentinel topics' partitions and the brokers
(``workers.clients.clusterwatch.ClusterReader``), compares the sample with the last one
(``workers.engine.clusterevents``) and records the events between them
(``ClusterStore.record``), kept ``DS_CLUSTER_EVENTS_RETENTION_S`` (7 days)."""

from __future__ import annotations

from typing import Any

import redis

from workers.clients.clusterwatch import ClusterReader
from workers.engine.clusterevents import carry, diff
from workers.engine.env import envint
from workers.store.cluster import ClusterStore

INTERVAL_S = envint("DS_CLUSTER_EVENTS_INTERVAL_S", 3, min=1)
RETENTION_S = envint("DS_CLUSTER_EVENTS_RETENTION_S", 7 * 86400, min=60)


class EventSampler:
    name = "events"

    def __init__(self, watch: Any, client: redis.Redis) -> None:
        """``watch``: the cluster to watch (``workers.runtime.watch.ClusterWatch``'s fields:
        ``cluster``, ``bootstrap_servers``, ``client`` properties, ``topics``)."""
        self.interval_s = float(INTERVAL_S)
        self.topics = set(watch.topics)
        self.store = ClusterStore(client, watch.cluster)
        self.reader = ClusterReader(
            {**watch.client, "bootstrap.servers": watch.bootstrap_servers}, sorted(self.topics)
        )

    def sample(self) -> list[dict]:
        """One step; the events it recorded."""
        before = self.store.last_sample()
        if before is not None:  # topics no longer watched are forgotten
            topics = before.get("topics", {})
            before = {**before, "topics": {t: v for t, v in topics.items() if t in self.topics}}
        after = self.reader.sample(before.get("brokers", {}) if before else {})
        events = diff(before, after)
        self.store.record(carry(before, after), events, RETENTION_S * 1000)
        return events

    def close(self) -> None:
        self.reader.close()
