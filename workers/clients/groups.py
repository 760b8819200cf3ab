"""Reads a cluster's consumer groups for the group watcher, read-only (docs/groups.md).

One sample: ``list_consumer_groups``; ``describe_consumer_groups`` (state, members and their
assignments) for all of them in one request; ``list_consumer_group_offsets`` (one request per
group, all in flight at once: the client takes one group per request); ``list_offsets``
earliest and latest for every committed partition (two requests). Then, for each partition
with records left to read, the record at ``max(committed, log_start)`` is read once with a
read_committed consumer that never joins a group nor commits, for its offset (a transaction
marker or an aborted record is passed over) and its timestamp; the result is kept per
(topic, partition, offset), so a group that does not move costs no read at the next sample.
Nothing here commits, alters or deletes anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from workers.clients.kafka import describe
from workers.engine.groups import GroupObservation, PartitionObservation

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0
# The probe consumer's group: it never subscribes nor commits, so the group never exists.
PROBE_GROUP = "delivery-sentinel.groups-probe"


@dataclass(frozen=True)
class Probe:
    """What reading at one offset found: the first readable record's offset and timestamp, or
    none before ``end`` (``offset`` is then ``end``, ``ts_ms`` None)."""

    offset: int
    ts_ms: int | None
    end: int


@dataclass
class SampleStats:
    """What one sample cost: groups seen, partitions, records read for timestamps."""

    groups: int = 0
    partitions: int = 0
    probes: int = 0
    errors: int = 0


def _results(futures: dict[Any, Future], timeout: float) -> dict[Any, Any]:
    out = {}
    for key, future in futures.items():
        try:
            out[key] = future.result(timeout=timeout)
        except Exception as exc:  # one group or partition failing leaves the others
            # A group keeps its committed offsets of a deleted topic until they expire (7 days
            # by default): the topic's offsets are unknown at every sample, which is no news.
            gone = (
                isinstance(exc, KafkaException) and _code(exc) == KafkaError.UNKNOWN_TOPIC_OR_PART
            )
            (log.debug if gone else log.warning)("%s: %s", key, describe(exc))
    return out


def _code(exc: KafkaException) -> int | None:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


class GroupReader:
    """A cluster's consumer groups as ``GroupObservation``s, one ``read()`` per sample."""

    def __init__(
        self, conf: dict[str, Any], *, include: Iterable[str] = ("*",), exclude: Iterable[str] = ()
    ) -> None:
        """``include`` / ``exclude``: shell patterns (``fnmatch``) of the group names watched."""
        self.conf = dict(conf)
        self.admin = AdminClient({**self.conf, "log_level": 3})
        self.include = tuple(include)
        self.exclude = (*exclude, PROBE_GROUP)
        self._probe: Consumer | None = None
        self.cache: dict[tuple[str, int, int], Probe] = {}
        self.stats = SampleStats()

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def watched(self, name: str) -> bool:
        return any(fnmatchcase(name, p) for p in self.include) and not any(
            fnmatchcase(name, p) for p in self.exclude
        )

    # -- the sample --------------------------------------------------------------------------
    def read(self, now: float | None = None) -> list[GroupObservation]:
        self.stats = SampleStats()
        listed = self.admin.list_consumer_groups(request_timeout=TIMEOUT_S).result()
        names = sorted(g.group_id for g in listed.valid if self.watched(g.group_id))
        self.stats.groups = len(names)
        if not names:
            return []
        described = _results(
            self.admin.describe_consumer_groups(names, request_timeout=TIMEOUT_S), TIMEOUT_S
        )
        offsets = _results(
            {
                name: self.admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(name)], request_timeout=TIMEOUT_S
                )[name]
                for name in names
            },
            TIMEOUT_S,
        )
        committed = {
            name: [tp for tp in result.topic_partitions if tp.error is None and tp.offset >= 0]
            for name, result in offsets.items()
        }
        partitions = {(tp.topic, tp.partition) for tps in committed.values() for tp in tps}
        self.stats.partitions = len(partitions)
        starts, ends = self.log_bounds(partitions)
        t = time.time() if now is None else now
        self.probe_all(committed, starts, ends)
        out = []
        for name in names:
            if name not in offsets:
                self.stats.errors += 1
                continue
            out.append(self.observe(name, described.get(name), committed[name], starts, ends, t))
        return out

    def log_bounds(
        self, partitions: set[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        if not partitions:
            return {}, {}
        bounds = []
        for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
            request = {TopicPartition(t, p): spec for t, p in partitions}
            futures = self.admin.list_offsets(request, request_timeout=TIMEOUT_S)
            got = _results(futures, TIMEOUT_S)
            bounds.append({(tp.topic, tp.partition): r.offset for tp, r in got.items()})
        return bounds[0], bounds[1]

    def observe(
        self,
        name: str,
        description: Any,
        committed: list[TopicPartition],
        starts: dict[tuple[str, int], int],
        ends: dict[tuple[str, int], int],
        t: float,
    ) -> GroupObservation:
        members: list[str] = []
        assigned: set[tuple[str, int]] = set()
        state = ""
        if description is not None:
            state = (
                description.state.name.replace("_", " ").title()
                if description.state is not None
                else ""
            )
            for m in description.members:
                members.append(f"{m.client_id}@{m.host}")
                if m.assignment is not None:
                    assigned.update((x.topic, x.partition) for x in m.assignment.topic_partitions)
        parts = []
        for tp in sorted(committed, key=lambda x: (x.topic, x.partition)):
            key = (tp.topic, tp.partition)
            if key not in starts or key not in ends:
                self.stats.errors += 1
                continue
            start, end = starts[key], max(ends[key], starts[key])
            probe = self.cache.get((tp.topic, tp.partition, max(tp.offset, start)))
            epoch = (
                tp.leader_epoch if tp.leader_epoch is not None and tp.leader_epoch >= 0 else None
            )
            parts.append(
                PartitionObservation(
                    tp.topic,
                    tp.partition,
                    tp.offset,
                    start,
                    end,
                    unread_from=probe.offset if probe is not None else None,
                    unread_ts_ms=probe.ts_ms if probe is not None else None,
                    commit_epoch=epoch,
                    assigned=key in assigned,
                )  # fmt: skip
            )
        return GroupObservation(name, t, state, tuple(sorted(members)), tuple(parts))

    # -- the record at the committed offset ---------------------------------------------------
    def probe_all(
        self,
        committed: dict[str, list[TopicPartition]],
        starts: dict[tuple[str, int], int],
        ends: dict[tuple[str, int], int],
    ) -> None:
        """Reads the first readable record at each partition's unread offset that is not known
        yet; keeps only what this sample uses (the cache stays as large as the groups)."""
        wanted: dict[tuple[str, int, int], int] = {}
        for tps in committed.values():
            for tp in tps:
                key = (tp.topic, tp.partition)
                if key not in starts or key not in ends:
                    continue
                at = max(tp.offset, starts[key])
                if at < ends[key]:
                    wanted[(tp.topic, tp.partition, at)] = ends[key]
        kept = {}
        missing = {}
        for key, end in wanted.items():
            known = self.cache.get(key)
            # A record found stays true; "none before the end" holds only until the end moves.
            if known is not None and (known.ts_ms is not None or known.end == end):
                kept[key] = known
            else:
                missing[key] = end
        self.cache = kept
        if missing:
            self.cache.update(self.probe(missing))
            self.stats.probes = len(missing)

    def probe_consumer(self) -> Consumer:
        if self._probe is None:
            self._probe = Consumer(
                {
                    **self.conf,
                    "group.id": PROBE_GROUP,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "max.partition.fetch.bytes": 4096,
                    "fetch.wait.max.ms": 100,
                    "log_level": 3,
                }
            )
        return self._probe

    def probe(self, wanted: dict[tuple[str, int, int], int]) -> dict[tuple[str, int, int], Probe]:
        """The first readable record at or after each (topic, partition, offset), read together:
        each partition stops at its first record or at its end (read_committed: the last stable
        offset); one that does not answer within ``PROBE_TIMEOUT_S`` stays unknown."""
        consumer = self.probe_consumer()
        by_partition = {(t, p): (o, end) for (t, p, o), end in wanted.items()}
        consumer.assign([TopicPartition(t, p, o) for (t, p), (o, _) in by_partition.items()])
        found: dict[tuple[str, int, int], Probe] = {}
        pending = set(by_partition)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        try:
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(500, timeout=0.2):
                    key = (msg.topic(), msg.partition())
                    if key not in pending:
                        continue
                    at, end = by_partition[key]
                    err = msg.error()
                    if err is not None and err.code() != KafkaError._PARTITION_EOF:
                        continue
                    if err is not None or msg.offset() >= end:
                        found[(*key, at)] = Probe(end, None, end)
                    else:
                        kind, ts = msg.timestamp()
                        stamp = None if kind == TIMESTAMP_NOT_AVAILABLE or ts < 0 else ts
                        found[(*key, at)] = Probe(msg.offset(), stamp, end)
                    pending.discard(key)
                    consumer.pause([TopicPartition(*key)])
        finally:
            # A paused partition stays paused through unassign: the next probe would hang on it.
            consumer.resume([TopicPartition(t, p) for t, p in by_partition])
            consumer.unassign()
        return found
