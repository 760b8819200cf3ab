"""What the sentinel's own Kafka clients say about themselves (pure): librdkafka's statistics
(``statistics.interval.ms``, a JSON document every few seconds) in, timeline events out.

The counters read are monotonic for the life of one client (librdkafka's STATISTICS.md):

- ``eos.epoch_cnt``: how many times an idempotent producer acquired a producer id or bumped
  its epoch, the first acquisition included (KIP-360: a bump comes after
  a request timed out or a sequence went wrong, batches still in flight are sent again under
  the new epoch; librdkafka#4953 saw such a batch written twice);
- ``brokers.*.req_timeouts``: requests to that broker that got no answer in time (a frozen,
  overloaded or partitioned broker);
- ``brokers.*.txretries``: requests sent again as they were. A produce request that timed out
  has its records put back on their partition's queue and sent again (counted in
  ``req_timeouts``, not here). Without idempotence, a batch sent again after the broker had
  written it is written twice: for such a producer both are reported as
  ``producer-retries``, the evidence of the cause ``retries-without-idempotence``.

``ClientStatsWatch.observe`` compares each document with the last one of the same client and
returns what grew, as ``(kind, message, extra)`` for ``SentinelStore.event``; the explanations
(``workers.engine.explain``) read these events as they read a consumer's restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The interval the sentinels' clients report at, unless their client properties set one.
STATS_INTERVAL_MS = 5000

PRODUCER_EPOCH_BUMP = "producer-epoch-bump"
REQUEST_TIMEOUTS = "request-timeouts"
PRODUCER_RETRIES = "producer-retries"
KINDS: dict[str, str] = {
    PRODUCER_EPOCH_BUMP: "producer epoch bumped",
    REQUEST_TIMEOUTS: "requests timed out",
    PRODUCER_RETRIES: "produce requests retried without idempotence",
}

Event = tuple[str, str, dict[str, Any]]


def parse(document: str | bytes | Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The statistics as a mapping; None for a document that is not one (never raises)."""
    if isinstance(document, Mapping):
        return document
    try:
        value = json.loads(document)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


@dataclass
class ClientStatsWatch:
    """One client's counters so far (a new client starts from zero, as librdkafka's do).

    ``idempotent``: the producer has ``enable.idempotence`` (or is transactional); its retries
    are then no cause of duplicates and are not reported as such. ``retries_on``: it retries at
    all (not ``retries=0``)."""

    idempotent: bool = True
    retries_on: bool = True
    # When the last document came (the client's start before the first): what a document
    # reports happened since then, and each event says so (``since``, read by the explanations).
    since: float = 0.0
    # librdkafka counts the producer's first PID acquisition in ``epoch_cnt`` too (seen on the
    # real cluster: "bumped 1 time ... epoch now 0" at every start): only what follows it is a
    # bump.
    epoch_cnt: int = 1
    timeouts: dict[int, int] = field(default_factory=dict)  # node id -> req_timeouts
    retries: dict[int, int] = field(default_factory=dict)  # node id -> txretries

    def observe(self, document: str | bytes | Mapping[str, Any], at: float = 0.0) -> list[Event]:
        """What grew since the last document (``at``: when this one came)."""
        stats = parse(document)
        if stats is None:
            return []
        events = self._changes(stats)
        for _kind, _message, extra in events:
            extra["since"] = self.since
        self.since = max(self.since, at)
        return events

    def _changes(self, stats: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        eos = stats.get("eos")
        if isinstance(eos, Mapping):
            epoch_cnt = _count(eos.get("epoch_cnt"))
            if epoch_cnt > self.epoch_cnt:
                bumps = epoch_cnt - self.epoch_cnt
                pid, epoch = eos.get("producer_id"), eos.get("producer_epoch")
                events.append(
                    (
                        PRODUCER_EPOCH_BUMP,
                        f"idempotent producer's epoch bumped {bumps} time{'s' * (bumps != 1)} "
                        f"(producer id {pid}, epoch now {epoch}): batches in flight were sent "
                        "again under the new epoch",
                        {"count": bumps, "producer_id": pid, "epoch": epoch},
                    )
                )
            self.epoch_cnt = max(self.epoch_cnt, epoch_cnt)
        timeouts = self._grown(stats, "req_timeouts", self.timeouts)
        retried = self._grown(stats, "txretries", self.retries)
        if self.retrying and stats.get("type") == "producer":
            # librdkafka puts the records of a produce request that timed out back on their
            # partition's queue (not counted in txretries, which counts requests re-sent as
            # they were): for a producer without idempotence, both are writes sent again.
            again = {n: timeouts.get(n, 0) + retried.get(n, 0) for n in {*timeouts, *retried}}
            again = dict(sorted(again.items()))
            if again:
                total = sum(again.values())
                events.append(
                    (
                        PRODUCER_RETRIES,
                        f"{total} request{'s' * (total != 1)} timed out or retried by a "
                        f"producer without idempotence ({_by_broker(again)}): a batch the "
                        "broker had already written is written again",
                        {"count": total, "brokers": {str(n): c for n, c in again.items()}},
                    )
                )
        elif timeouts:
            total = sum(timeouts.values())
            events.append(
                (
                    REQUEST_TIMEOUTS,
                    f"{total} request{'s' * (total != 1)} timed out ({_by_broker(timeouts)})",
                    {"count": total, "brokers": {str(n): c for n, c in timeouts.items()}},
                )
            )
        return events

    @property
    def retrying(self) -> bool:
        """Timeouts and retries of this client write batches again, unguarded."""
        return not self.idempotent and self.retries_on

    @staticmethod
    def _grown(stats: Mapping[str, Any], counter: str, seen: dict[int, int]) -> dict[int, int]:
        """Node id -> how much ``counter`` grew on that broker since the last document (the
        bootstrap connections, node id -1, are not a broker of the cluster)."""
        grown: dict[int, int] = {}
        brokers = stats.get("brokers")
        if not isinstance(brokers, Mapping):
            return grown
        for broker in brokers.values():
            if not isinstance(broker, Mapping):
                continue
            node = broker.get("nodeid")
            if not isinstance(node, int) or node < 0:
                continue
            value = _count(broker.get(counter))
            if value > seen.get(node, 0):
                grown[node] = value - seen.get(node, 0)
            seen[node] = max(seen.get(node, 0), value)
        return dict(sorted(grown.items()))


def _by_broker(counts: Mapping[int, int]) -> str:
    return ", ".join(f"broker {node}: {n}" for node, n in counts.items())
