"""What the pages, the overview, the API and ``/metrics`` read of the consumer groups: the
group watcher's stored states (``workers.store.groups.GroupStore``), never the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dashboard.models import Cluster
from dashboard.redisclient import redis_client
from workers.engine.groups import (
    SEVERITY,
    GroupEvent,
    GroupState,
    TopicRollup,
    topic_rollups,
)
from workers.store.groups import GroupStore

SORTS = ("worst", "name", "lag", "lag_s")
# Group statuses drawn in the sentinels' verdict colours.
STATUS_CLASS = {
    "OK": "holding",
    "EMPTY": "none",
    "LAGGING": "degraded",
    "STALLED": "stalled",
    "STOPPED": "violated",
}


class UnknownCluster(LookupError):
    pass


@dataclass(frozen=True)
class ClusterGroups:
    cluster: str
    groups: list[GroupState]
    sample: dict[str, Any] | None


def store(cluster: str) -> GroupStore:
    return GroupStore(redis_client(), cluster)


def cluster_names() -> list[str]:
    return list(Cluster.objects.values_list("name", flat=True))


def check_cluster(name: str) -> str:
    # PostgreSQL's text holds no NUL character: such a name is no cluster's, never a 500.
    if "\x00" in name or not Cluster.objects.filter(name=name).exists():
        raise UnknownCluster(f"no cluster named {name!r}")
    return name


def _sort_key(sort: str):  # noqa: ANN202 - a key function
    if sort == "name":
        return lambda g: g.group
    if sort == "lag":
        return lambda g: (-g.lag, g.group)
    if sort == "lag_s":
        return lambda g: (-(g.lag_s or 0.0), g.group)
    return lambda g: (-SEVERITY.get(g.status, 0), -g.total("lost") - g.total("skipped"), g.group)


def cluster_groups(cluster: str, search: str = "", sort: str = "worst") -> ClusterGroups:
    """The cluster's groups as last sampled: those whose name or topics contain ``search``,
    worst first by default."""
    s = store(check_cluster(cluster))
    needle = search.strip().lower()
    groups = [
        g
        for g in s.states().values()
        if not needle or needle in g.group.lower() or any(needle in t.lower() for t in g.topics())
    ]
    groups.sort(key=_sort_key(sort if sort in SORTS else "worst"))
    return ClusterGroups(cluster, groups, s.last_sample())


def group(cluster: str, name: str) -> GroupState | None:
    return store(check_cluster(cluster)).state(name)


def events(cluster: str, name: str | None = None, limit: int = 200) -> list[GroupEvent]:
    return store(check_cluster(cluster)).events(name, limit)


def lag_series(cluster: str, name: str) -> dict[str, list[Any]]:
    """The group's lag points in the charts' columnar shape: ``t``, ``lag``, ``lag_s``."""
    points = store(check_cluster(cluster)).lag_series(name)
    return {
        "t": [t for t, _, _ in points],
        "lag": [lag for _, lag, _ in points],
        "lag_s": [s for _, _, s in points],
    }


def topic_statuses() -> dict[str, dict[str, TopicRollup]]:
    """Cluster name -> topic -> how its groups are doing (for the overview's topic rows)."""
    out = {}
    for name in cluster_names():
        states = store(name).states()
        if states:
            out[name] = topic_rollups(states.values())
    return out


def all_groups() -> dict[str, dict[str, GroupState]]:
    """Cluster name -> its groups' states (for ``/metrics``): one Redis round trip."""
    return GroupStore.states_of(redis_client(), cluster_names())


def when(t: float | None) -> str:
    """A sample's or an event's time as the pages write it: UTC, 24-hour."""
    if t is None:
        return "—"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def event_rows(found: list[GroupEvent]) -> list[dict[str, Any]]:
    return [{**e.to_fields(), "when": when(e.t)} for e in found]


def group_rows(groups: list[GroupState]) -> list[dict[str, Any]]:
    """One row per group for the page: its summary and its partitions, worst first."""
    rows = []
    for g in groups:
        parts = sorted(
            g.partitions.values(), key=lambda p: (-SEVERITY.get(p.status, 0), p.topic, p.partition)
        )
        rows.append(
            {
                **g.summary(),
                "when": when(g.t),
                "css": STATUS_CLASS.get(g.status, "none"),
                "partitions": [
                    {**vars(p), "css": STATUS_CLASS.get(p.status, "none")} for p in parts
                ],
            }
        )
    return rows
