"""The applications' consumer groups in Redis (``GroupStore``), as the group watcher sampled
them (docs/groups.md).

One cluster's keys: ``ds:groups:{cluster}`` (hash group -> ``GroupState`` JSON, bounded per
partition), ``:events`` (the last ``EVENTS_KEPT`` rewinds, skips and losses, newest first),
``:lag:{group}`` (the last ``LAG_POINTS`` lag samples of one group), ``:sample`` (the last
sample's time, group count and error) and ``:alerting`` (the on-call evaluation's memory: since
when it has seen each group stopped or stalled). A sample's writes are one MULTI/EXEC: one round trip,
and a watcher that dies mid-write leaves the state and the events of the previous sample
together, never a count without its state (which would count it again).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from workers.engine.groups import GroupEvent, GroupState
from workers.store.keys import groups_key

EVENTS_KEPT = 1000
LAG_POINTS = 240  # two hours at the default 30 s interval


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _states(raw: dict[Any, Any]) -> dict[str, GroupState]:
    """A cluster's hash of group states, read back: group -> state, by group name."""
    states = [GroupState.from_fields(json.loads(doc)) for doc in raw.values()]
    return {s.group: s for s in sorted(states, key=lambda s: s.group)}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class GroupStore:
    def __init__(self, client: redis.Redis, cluster: str) -> None:
        self.r = client
        self.cluster = cluster

    def states(self) -> dict[str, GroupState]:
        """Every group's state as last saved."""
        return _states(self.r.hgetall(groups_key(self.cluster)))

    @staticmethod
    def states_of(client: redis.Redis, clusters: list[str]) -> dict[str, dict[str, GroupState]]:
        """Every group's state of each of ``clusters``, in one round trip (``/metrics``)."""
        pipe = client.pipeline(transaction=False)
        for cluster in clusters:
            pipe.hgetall(groups_key(cluster))
        out = {}
        for cluster, raw in zip(clusters, pipe.execute() if clusters else [], strict=True):
            out[cluster] = _states(raw)
        return out

    def state(self, group: str) -> GroupState | None:
        raw = self.r.hget(groups_key(self.cluster), group)
        return GroupState.from_fields(json.loads(raw)) if raw else None

    def save_sample(
        self,
        states: Iterable[GroupState],
        events: list[GroupEvent],
        gone: Iterable[str],
        meta: dict[str, Any],
    ) -> None:
        """One sample's results in one round trip: the states, their events, a lag point per
        group, groups that no longer exist forgotten, and the sample's ``meta``."""
        key = groups_key(self.cluster)
        pipe = self.r.pipeline(transaction=True)
        states = list(states)
        if states:
            pipe.hset(key, mapping={s.group: _dumps(s.to_fields()) for s in states})
        for state in states:
            lag_key = groups_key(self.cluster, f":lag:{state.group}")
            pipe.rpush(lag_key, _dumps([round(state.t, 3), state.lag, state.lag_s]))
            pipe.ltrim(lag_key, -LAG_POINTS, -1)
        for name in gone:
            pipe.hdel(key, name)
            pipe.delete(groups_key(self.cluster, f":lag:{name}"))
        if events:
            events_key = groups_key(self.cluster, ":events")
            pipe.lpush(events_key, *[_dumps(e.to_fields()) for e in events])
            pipe.ltrim(events_key, 0, EVENTS_KEPT - 1)
        pipe.set(groups_key(self.cluster, ":sample"), _dumps(meta))
        pipe.execute()

    def events(self, group: str | None = None, limit: int = 200) -> list[GroupEvent]:
        """The newest events first (of ``group`` only, when given)."""
        raw = self.r.lrange(groups_key(self.cluster, ":events"), 0, EVENTS_KEPT - 1)
        out = []
        for doc in raw:
            event = GroupEvent.from_fields(json.loads(doc))
            if group is None or event.group == group:
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    def alert_inputs(
        self, since: float
    ) -> tuple[dict[str, GroupState], list[GroupEvent], dict[str, float]]:
        """What the on-call evaluation reads, in one round trip: every group's state, the
        events newer than ``since`` (oldest first) and its memory (group -> since when it has
        seen the group stopped or stalled)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(groups_key(self.cluster))
        pipe.lrange(groups_key(self.cluster, ":events"), 0, EVENTS_KEPT - 1)
        pipe.hgetall(groups_key(self.cluster, ":alerting"))
        raw_states, raw_events, raw_memory = pipe.execute()
        events = []
        for doc in raw_events:  # newest first: stop at the first one already seen
            event = GroupEvent.from_fields(json.loads(doc))
            if event.t <= since:
                break
            events.append(event)
        memory = {_text(k): float(v) for k, v in raw_memory.items()}
        return _states(raw_states), events[::-1], memory

    def set_alerting(self, memory: dict[str, float]) -> None:
        """Replace the on-call evaluation's memory (group -> since when stopped or stalled)."""
        key = groups_key(self.cluster, ":alerting")
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key)
        if memory:
            pipe.hset(key, mapping={g: repr(t) for g, t in memory.items()})
        pipe.execute()

    def lag_series(self, group: str) -> list[tuple[float, int, float | None]]:
        """``(t, lag records, lag seconds)`` of the group's last samples, oldest first."""
        raw = self.r.lrange(groups_key(self.cluster, f":lag:{group}"), 0, -1)
        return [(float(t), int(lag), s) for t, lag, s in (json.loads(doc) for doc in raw)]

    def last_sample(self) -> dict[str, Any] | None:
        raw = self.r.get(groups_key(self.cluster, ":sample"))
        return json.loads(raw) if raw else None

    def forget(self) -> None:
        """Drop everything of this cluster's groups (a cluster removed, a test's clean slate)."""
        names = [
            groups_key(self.cluster, f":lag:{_text(g)}")
            for g in self.r.hkeys(groups_key(self.cluster))
        ]
        self.r.delete(groups_key(self.cluster), groups_key(self.cluster, ":events"),
                      groups_key(self.cluster, ":sample"), groups_key(self.cluster, ":alerting"),
                      *names)  # fmt: skip
