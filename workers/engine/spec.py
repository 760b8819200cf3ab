"""SentinelSpec: everything a sentinel process needs to run, as plain data.

The dashboard's models turn into a spec (``Sentinel.to_spec()``); the sentinel processes and
tests take one directly. JSON round-trips, so a spec can be handed to a subprocess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.engine.env import envstr
from workers.engine.profiles import EXACTLY_ONCE, Profile

# How a worker may host a sentinel (``SentinelSpec.hosting``).
HOSTING = {
    "auto": "automatic: shared while light, processes of its own when fast",
    "shared": "in the worker's shared host process",
    "own": "in processes of its own",
}


def sentinel_topic_config(min_insync_replicas: int) -> dict[str, str]:
    """The topic settings every sentinel topic is created with (the one definition of them):
    ``acks=all`` needs ``min_insync_replicas`` replicas, and no out-of-sync replica may ever
    become leader (an unclean election loses acknowledged records)."""
    return {
        "min.insync.replicas": str(min_insync_replicas),
        "unclean.leader.election.enable": "false",
    }


@dataclass(frozen=True)
class SentinelSpec:
    id: int
    name: str
    profile: Profile
    bootstrap_servers: str
    topic: str
    cluster: str = "local"
    # Cluster-level client properties (security.protocol, sasl.*, ssl.*), shared by every client.
    client: dict[str, Any] = field(default_factory=dict)
    partitions: int = 3
    replication_factor: int = 3
    min_insync_replicas: int = 2
    rate_per_partition: float = 10.0  # records/s per partition; 0 means as fast as possible
    record_size: int = 64
    grace_seconds: float = 10.0
    slo_p99_ms: float = 1000.0
    stall_after_s: float = 30.0
    batch_size: int = 500
    output_topic: str = ""
    # Which database row this is: state in Redis under the same id but another incarnation
    # belonged to another sentinel (SentinelStore.adopt). Empty for specs built in code.
    incarnation: str = ""
    # Where a worker runs it (one of HOSTING): "auto" is the worker's shared host while its rate is
    # low (``own_processes``), "shared" and "own" force one or the other.
    hosting: str = "auto"

    @property
    def semantic(self) -> str:
        return self.profile.semantic

    @property
    def eos(self) -> bool:
        return self.profile.semantic == EXACTLY_ONCE

    def own_processes(self, shared_max_rate: float) -> bool:
        """Whether it gets processes of its own rather than a place in the worker's shared
        host: asked for, or (``auto``) producing more than ``shared_max_rate`` records/s in
        all, or as fast as it can (rate 0)."""
        if self.hosting != "auto":
            return self.hosting == "own"
        rate = self.rate_per_partition * self.partitions
        return rate <= 0 or rate > shared_max_rate

    @property
    def verified_topic(self) -> str:
        """The topic whose records are "processed": the copier's output under exactly-once."""
        return self.output_topic_name if self.eos else self.topic

    @property
    def output_topic_name(self) -> str:
        return self.output_topic or f"{self.topic}.out"

    @property
    def topic_config(self) -> dict[str, str]:
        return sentinel_topic_config(self.min_insync_replicas)

    @property
    def group_id(self) -> str:
        return f"delivery-sentinel.{self.id}"

    @property
    def transactional_id(self) -> str:
        return f"delivery-sentinel.{self.id}.copier"

    @property
    def producer_transactional_id(self) -> str:
        """The exactly-once sentinel producer's (the copier has its own)."""
        return f"delivery-sentinel.{self.id}.producer"

    def producer_conf(self, **extra: Any) -> dict[str, Any]:
        conf = {**self.client, **self.profile.producer, "bootstrap.servers": self.bootstrap_servers}
        conf.update(extra)
        return conf

    def consumer_conf(self, **extra: Any) -> dict[str, Any]:
        conf = {
            **self.client,
            **self.profile.consumer,
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
        }
        conf.update(extra)
        return conf

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["profile"] = self.profile.to_dict()
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SentinelSpec:
        doc = dict(doc)
        doc["profile"] = Profile.from_dict(doc["profile"])
        return cls(**doc)


# Names the JSON file ``specs_from_file()`` reads: ``{"<id>": <SentinelSpec.to_dict()>, ...}``.
SPECS_FILE_ENV = "DS_SENTINEL_SPECS_FILE"


def specs_from_file() -> dict[int, SentinelSpec]:
    """The enabled sentinels' specs by id, from the JSON file named by ``DS_SENTINEL_SPECS_FILE``.

    A spec source for workers that host sentinels without the dashboard's database (the
    soak, ``workers.lab.soak``): point the ``SENTINEL_SPECS`` setting at this function. Read
    on every call, so whoever owns the file enables and disables sentinels by rewriting it
    (atomically: write a temporary file, then rename it). A missing file means none."""
    path = envstr(SPECS_FILE_ENV, "")
    if not path:
        raise ValueError(f"{SPECS_FILE_ENV} is not set: no file to read the sentinel specs from")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return {}
    return {int(sid): SentinelSpec.from_dict(spec) for sid, spec in doc.items()}
