"""The group watcher's sampler: every consumer group of one cluster, every ``interval_s``
(30 s by default, ``DS_GROUPS_INTERVAL_S``), run by the cluster's one watcher
(``workers.runtime.watch``; docs/groups.md).

Each step reads the groups (``workers.clients.groups.GroupReader``), advances each group's
bounded state with the pure engine (``workers.engine.groups.advance``) and writes the states,
the events and a lag point per group in one Redis round trip (``GroupStore.save_sample``). The
states are read from Redis once, at the first step of a watcher: a watcher that takes the
cluster over from a dead one continues its counts instead of counting again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from workers.clients.groups import GroupReader
from workers.engine.env import envint, envstr
from workers.engine.groups import GroupEvent, GroupState, Policy, advance
from workers.runtime.watch import ClusterWatch
from workers.store.groups import GroupStore

log = logging.getLogger("workers.runtime.groups")

INTERVAL_S = 30.0


@dataclass(frozen=True)
class SampleResult:
    """What one step found: the groups' states and the events of this step."""

    t: float
    states: dict[str, GroupState]
    events: list[GroupEvent]


class GroupSampler:
    """Samples every consumer group of a cluster (a watcher's sampler: ``name``,
    ``interval_s``, ``sample()``, ``close()``)."""

    name = "groups"

    def __init__(
        self,
        cluster: str,
        conf: dict[str, Any],
        client: redis.Redis,
        *,
        interval_s: float = INTERVAL_S,
        policy: Policy | None = None,
        reader: GroupReader | None = None,
    ) -> None:
        self.cluster = cluster
        self.interval_s = interval_s
        self.policy = policy or Policy()
        self.store = GroupStore(client, cluster)
        self.reader = reader or GroupReader(conf)
        self.states: dict[str, GroupState] | None = None

    def sample(self, now: float | None = None) -> SampleResult:
        if self.states is None:
            self.states = self.store.states()
        started = time.monotonic()
        observations = self.reader.read(now)
        states: dict[str, GroupState] = {}
        events: list[GroupEvent] = []
        for obs in observations:
            state, found = advance(self.states.get(obs.group), obs, self.policy)
            states[obs.group] = state
            events.extend(found)
        gone = [name for name in self.states if name not in states]
        stats = self.reader.stats
        t = observations[0].t if observations else (time.time() if now is None else now)
        meta = {
            "t": t,
            "groups": stats.groups,
            "partitions": stats.partitions,
            "probes": stats.probes,
            "errors": stats.errors,
            "seconds": round(time.monotonic() - started, 3),
        }
        self.store.save_sample(states.values(), events, gone, meta)
        self.states = states
        for event in events:
            log.warning(
                "cluster %s: group %s %s %d records on %s[%d]",
                self.cluster, event.group, event.kind, event.count, event.topic, event.partition,
            )  # fmt: skip
        return SampleResult(t, states, events)

    def close(self) -> None:
        self.reader.close()


def group_sampler(watch: ClusterWatch, client: redis.Redis) -> GroupSampler:
    """The watcher's factory (``workers.runtime.watch.SAMPLERS``): every group of the cluster
    but those ``DS_GROUPS_EXCLUDE`` names, or only those ``DS_GROUPS_INCLUDE`` names (both
    comma-separated shell patterns), every ``DS_GROUPS_INTERVAL_S`` seconds (30)."""
    conf = {**dict(watch.client), "bootstrap.servers": watch.bootstrap_servers}
    reader = GroupReader(
        conf,
        include=_patterns(envstr("DS_GROUPS_INCLUDE", "*")),
        exclude=_patterns(envstr("DS_GROUPS_EXCLUDE", "")),
    )
    interval = float(envint("DS_GROUPS_INTERVAL_S", 30, min=1))
    return GroupSampler(watch.cluster, conf, client, interval_s=interval, reader=reader)


def _patterns(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())
