"""Why a guarantee broke (pure): an anomaly and the events around it in, an explanation out.

An **anomaly** is a counter that grew (``Anomaly``: which counter, on which topic and partition,
how many records, and when its first affected record was written). The **events** are what was
seen around it, as plain dicts with at least ``at`` (seconds), ``kind`` and ``text``, and
``topic`` / ``partition`` where they concern one (None: the whole cluster, or every partition):

- cluster events from the cluster's watcher (``workers.engine.clusterevents``: leader changes,
  unclean elections, ISR changes, log-start jumps, truncations, brokers unreachable...; an event
  happened between its ``since`` and its ``at``);
- the sentinel's own events (``SentinelStore.event``, normalised by ``sentinel_event``: a new
  producer run, a fenced producer, a consumer session that began, an aborted transaction...).

``explain`` keeps the events within ``BEFORE_S`` before and ``AFTER_S`` after the first affected
record, scores each by how well its kind explains *that* counter (``CAUSES``), by place (the
same partition, else the topic, else the cluster) and by time (nearer is better), and says the
best in words with its evidence. The client configuration is evidence too: a producer with
retries and no idempotence explains duplicates even when no event is seen. When nothing
explains the anomaly it says so — "no cluster event seen" — and never invents a cause.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The window around the first affected record, in seconds.
BEFORE_S = 60.0
AFTER_S = 10.0

# Cause labels (a Prometheus label, a JSON field): what an explanation names.
UNCLEAN_ELECTION = "unclean-election"
TRUNCATION = "truncation"
RETENTION = "retention"
TOPIC_RECREATED = "topic-recreated"
LEADER_CHANGE = "leader-change"
BROKER_UNREACHABLE = "broker-unreachable"
UNDER_MIN_ISR = "under-min-isr"
OFFLINE = "offline"
CONSUMER_SESSION = "consumer-session"
PRODUCER_RESTART = "producer-restart"
RETRIES_WITHOUT_IDEMPOTENCE = "retries-without-idempotence"
PRODUCER_EPOCH_BUMP = "producer-epoch-bump"
REQUEST_TIMEOUTS = "request-timeouts"
ACKS_BELOW_ALL = "acks-below-all"
FENCED = "fenced"
TRANSACTION_ABORTED = "transaction-aborted"
READ_UNCOMMITTED = "read-uncommitted"
NOTHING_SEEN = "none"

# Event kind -> the cause it points to. Cluster events (``clusterevents.KINDS``) and the
# sentinel's own (``SENTINEL_KINDS``).
EVENT_CAUSE = {
    "unclean-election": UNCLEAN_ELECTION,
    "end-offset-back": TRUNCATION,
    "log-start-jump": RETENTION,
    "topic-recreated": TOPIC_RECREATED,
    "leader-change": LEADER_CHANGE,
    "offline": OFFLINE,
    "under-min-isr": UNDER_MIN_ISR,
    "broker-unreachable": BROKER_UNREACHABLE,
    "consumer-session": CONSUMER_SESSION,
    "run": PRODUCER_RESTART,
    "fenced": FENCED,
    "txn-aborted": TRANSACTION_ABORTED,
    "producer-txn-aborted": TRANSACTION_ABORTED,
    # The sentinel producer's own statistics (``workers.engine.clientstats``).
    "producer-retries": RETRIES_WITHOUT_IDEMPOTENCE,
    "producer-epoch-bump": PRODUCER_EPOCH_BUMP,
    "request-timeouts": REQUEST_TIMEOUTS,
}

# counter -> {cause: weight}: how well each cause explains that counter (0: not at all). The
# weights only order the candidates; a cause absent from a counter's table never explains it.
CAUSES: dict[str, dict[str, float]] = {
    "lost": {
        UNCLEAN_ELECTION: 10,
        TRUNCATION: 9,
        RETENTION: 8,
        TOPIC_RECREATED: 8,
        ACKS_BELOW_ALL: 6,
        LEADER_CHANGE: 4,
        OFFLINE: 3,
        BROKER_UNREACHABLE: 3,
        CONSUMER_SESSION: 3,  # at-most-once: committed, then the process died mid-batch
    },
    "divergent": {UNCLEAN_ELECTION: 10, TRUNCATION: 9, TOPIC_RECREATED: 8, LEADER_CHANGE: 4},
    "truncated": {UNCLEAN_ELECTION: 10, TRUNCATION: 9, LEADER_CHANGE: 5, OFFLINE: 3},
    "skipped": {RETENTION: 9, TRUNCATION: 8, UNCLEAN_ELECTION: 8, CONSUMER_SESSION: 4},
    "duplicated": {
        CONSUMER_SESSION: 9,
        RETRIES_WITHOUT_IDEMPOTENCE: 8,
        PRODUCER_RESTART: 6,
        FENCED: 6,
        PRODUCER_EPOCH_BUMP: 5,  # a batch in flight sent again under the new epoch (#4953)
        LEADER_CHANGE: 4,
        REQUEST_TIMEOUTS: 4,
        BROKER_UNREACHABLE: 3,
    },
    "rewound": {CONSUMER_SESSION: 9, UNCLEAN_ELECTION: 6, TRUNCATION: 6, LEADER_CHANGE: 3},
    "aborted_read": {READ_UNCOMMITTED: 10, TRANSACTION_ABORTED: 8, FENCED: 5},
    "stalled": {
        OFFLINE: 10,
        BROKER_UNREACHABLE: 9,
        UNDER_MIN_ISR: 8,
        REQUEST_TIMEOUTS: 7,
        LEADER_CHANGE: 5,
        FENCED: 4,
    },
}
# What a cause means for a counter, after the evidence (the event's own text).
MEANING: dict[str, str] = {
    UNCLEAN_ELECTION: "unclean leader election (a replica from outside the ISR became leader "
    "and rewrote the log)",
    TRUNCATION: "the log was truncated",
    RETENTION: "records deleted before they were read (retention or DeleteRecords)",
    TOPIC_RECREATED: "the topic was deleted and created again",
    LEADER_CHANGE: "a leader election",
    OFFLINE: "the partition had no leader",
    UNDER_MIN_ISR: "too few in-sync replicas: acks=all writes refused",
    BROKER_UNREACHABLE: "a broker was unreachable",
    CONSUMER_SESSION: "redelivered after the consumer restarted or its group rebalanced: the "
    "committed offset was behind the last processed record",
    PRODUCER_RESTART: "the producer restarted",
    FENCED: "an instance was fenced (a newer one took its transactional id)",
    TRANSACTION_ABORTED: "a transaction was aborted",
    RETRIES_WITHOUT_IDEMPOTENCE: "producer retries without idempotence",
    PRODUCER_EPOCH_BUMP: "the idempotent producer bumped its epoch",
    REQUEST_TIMEOUTS: "requests to a broker timed out (frozen, overloaded or unreachable)",
}
# Anomalies that last (from ``at`` until now) rather than records affected at ``at``.
LASTING = frozenset({"stalled"})
# What a cause means for one counter where the cause's general meaning would mislead.
MEANING_FOR: dict[tuple[str, str], str] = {
    ("lost", CONSUMER_SESSION): "the consumer restarted after committing records it had not "
    "processed: the records between are never read again",
}
# The client properties an explanation weighs (never a secret: no other property is read).
EXPLAINING_PRODUCER = ("acks", "request.required.acks", "enable.idempotence", "retries")
EXPLAINING_CONSUMER = ("isolation.level",)


def client_properties(
    producer: Mapping[str, Any], consumer: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """``explain``'s ``producer`` and ``consumer`` arguments from a profile's properties: the
    ones it weighs, and no other."""
    return {
        "producer": {k: v for k, v in producer.items() if k in EXPLAINING_PRODUCER},
        "consumer": {k: v for k, v in consumer.items() if k in EXPLAINING_CONSUMER},
    }


# Same place as the anomaly: the partition, the topic, the cluster.
PLACE_WEIGHT = {"partition": 1.0, "topic": 0.7, "cluster": 0.5}
NOTHING_TEXT = (
    "no cluster event seen in the window: suspect the client configuration or the application"
)


@dataclass(frozen=True)
class Anomaly:
    """``count`` records of ``counter`` on ``topic`` (``partition`` None: not one in
    particular), the first affected record written at ``at`` (seconds); ``on_partition``: how
    many of them were on ``partition`` (None: unknown)."""

    counter: str
    topic: str
    partition: int | None
    at: float
    count: int = 0
    on_partition: int | None = None


@dataclass
class Explanation:
    """``cause`` (a label of this module; ``none`` when nothing explains it), ``text`` in
    words, the best event as ``evidence`` (None for a configuration or nothing), and every
    candidate considered, best first."""

    cause: str
    text: str
    evidence: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "text": self.text,
            "evidence": self.evidence,
            "candidates": self.candidates,
        }


def sentinel_event(doc: Mapping[str, Any], topic: str) -> dict[str, Any]:
    """A sentinel event (``SentinelStore.event``: ``ts``, ``kind``, ``message``) as an event of
    this module: on the sentinel's ``topic``, any partition unless it names one, between its
    ``since`` and its ``ts`` when it has a ``since``."""
    event = {
        "at": float(doc.get("ts", 0.0)),
        "kind": doc.get("kind", ""),
        "topic": topic,
        "partition": doc.get("partition"),
        "text": doc.get("message", ""),
    }
    if doc.get("since"):  # seen at ``ts``, happened since then (a client's statistics)
        event["since"] = float(doc["since"])
    if doc.get("fresh"):  # the first start of the state's producer or consumer: no cause
        event["fresh"] = True
    return event


def _place(anomaly: Anomaly, event: Mapping[str, Any]) -> str | None:
    """Where ``event`` is relative to the anomaly: ``partition``, ``topic``, ``cluster``, or
    None for another topic or another partition (which explains nothing here)."""
    topic, partition = event.get("topic"), event.get("partition")
    if topic is None:
        return "cluster"
    if topic != anomaly.topic:
        return None
    if partition is None or anomaly.partition is None:
        return "topic"
    return "partition" if int(partition) == anomaly.partition else None


def _when(event: Mapping[str, Any]) -> tuple[float, float]:
    """The span in which the event happened: between the samples that saw it, else its time."""
    at = float(event["at"])
    return float(event.get("since") or at), at


# The events that make ``acks`` below ``all`` a cause of loss: the leader failed or moved.
LEADER_FAILED = frozenset({UNCLEAN_ELECTION, LEADER_CHANGE, OFFLINE, BROKER_UNREACHABLE})


def _client_causes(
    counter: str,
    producer: Mapping[str, Any],
    consumer: Mapping[str, Any],
    seen: set[str] | frozenset[str] = frozenset(),
):
    """Causes the client configuration gives: retries without idempotence and a
    read_uncommitted consumer with no event needed; ``acks`` below ``all`` only where an event
    of ``seen`` (the causes of the events in the window) says the leader failed or moved."""
    out = []
    idempotent = str(producer.get("enable.idempotence", "")).lower() == "true"
    retries = str(producer.get("retries", producer.get("message.send.max.retries", "1")))
    if counter == "duplicated" and producer and not idempotent and retries not in ("0", ""):
        out.append(
            (
                RETRIES_WITHOUT_IDEMPOTENCE,
                "producer retries without idempotence: a batch whose acknowledgement was lost "
                "is written again",
            )
        )
    acks = str(producer.get("acks", producer.get("request.required.acks", ""))).lower()
    if counter == "lost" and acks in ("0", "1") and seen & LEADER_FAILED:
        out.append(
            (
                ACKS_BELOW_ALL,
                f"producer acks={acks}: a record acknowledged before every in-sync replica had "
                "it is lost when its leader fails",
            )
        )
    isolation = str(consumer.get("isolation.level", "")).lower()
    if counter == "aborted_read" and isolation == "read_uncommitted":
        out.append((READ_UNCOMMITTED, "a read_uncommitted consumer reads aborted transactions"))
    return out


def explain(
    anomaly: Anomaly,
    events: Iterable[Mapping[str, Any]],
    *,
    producer: Mapping[str, Any] | None = None,
    consumer: Mapping[str, Any] | None = None,
    before_s: float = BEFORE_S,
    after_s: float = AFTER_S,
    consequences: bool = False,
) -> Explanation:
    """The explanation of ``anomaly`` by ``events`` and the clients' configuration.

    ``consequences``: ``anomaly.at`` is the moment of a fault (the scenario lab's), not the
    first affected record, so what followed it (a restart, an election) is as likely a cause
    as what came before."""
    weights = CAUSES.get(anomaly.counter, {})
    lo, hi = anomaly.at - before_s, anomaly.at + after_s
    candidates: list[tuple[float, dict[str, Any]]] = []
    for event in events:
        if event.get("fresh"):  # a first start follows nothing: it repeats nothing
            continue
        cause = EVENT_CAUSE.get(str(event.get("kind")))
        weight = weights.get(cause or "", 0)
        place = _place(anomaly, event)
        if not weight or place is None:
            continue
        start, end = _when(event)
        if end < lo or start > hi:
            continue
        # Nearer the first affected record is better; one that happened (possibly) before it
        # better than one after, which can explain a record only if it was still unread. A
        # lasting anomaly (a stall) is explained as well by what happened while it lasted.
        if start <= anomaly.at <= end or (anomaly.counter in LASTING and end >= anomaly.at):
            distance, after_penalty = 0.0, 1.0
        else:
            distance = min(abs(anomaly.at - start), abs(end - anomaly.at))
            after_penalty = 0.5 if start > anomaly.at and not consequences else 1.0
        score = weight * PLACE_WEIGHT[place] * after_penalty / (1.0 + distance / 30.0)
        candidates.append(
            (
                score,
                {
                    "cause": cause,
                    "score": round(score, 3),
                    "kind": event.get("kind"),
                    "at": end,
                    "place": place,
                    "text": event.get("text", ""),
                    "event": dict(event),
                },
            )
        )
    seen = {c["cause"] for _s, c in candidates}
    for cause, text in _client_causes(anomaly.counter, producer or {}, consumer or {}, seen):
        # A configuration is always "there", but an event on the partition beats it.
        score = weights.get(cause, 0) * 0.6
        candidates.append(
            (score, {"cause": cause, "score": round(score, 3), "kind": "configuration",
                     "at": None, "place": "client", "text": text, "event": None})
        )  # fmt: skip
    candidates.sort(key=lambda c: -c[0])
    ranked = [c for _s, c in candidates]
    summary = [{k: v for k, v in c.items() if k != "event"} for c in ranked[:5]]
    if not ranked:
        return Explanation(NOTHING_SEEN, NOTHING_TEXT, None, [])
    best = ranked[0]
    return Explanation(best["cause"], _words(anomaly, best), best["event"], summary)


def _words(anomaly: Anomaly, best: Mapping[str, Any]) -> str:
    """E.g. "unclean leader election: t p0 at 14:02:08: broker 3 became leader from outside
    the last ISR seen [2] (epoch 7 → 8; ...): 40 lost"."""
    if best["event"] is None:  # the configuration
        return f"{best['text']} ({_count(anomaly)})"
    meaning = MEANING_FOR.get((anomaly.counter, best["cause"])) or MEANING.get(
        best["cause"], best["cause"]
    )
    when = time.strftime("%H:%M:%S UTC", time.gmtime(best["at"]))
    return f"{meaning}: {best['text']} at {when} ({_count(anomaly)})"


def _count(anomaly: Anomaly) -> str:
    """E.g. "40 lost on p0"; "114 lost, 74 of them on p1" when other partitions counted some."""
    where = f" on p{anomaly.partition}" if anomaly.partition is not None else ""
    if anomaly.counter in LASTING:  # a state, not a count of records
        return f"stalled{where}"
    what = f"{anomaly.count} {anomaly.counter.replace('_', ' ')}"
    part = anomaly.on_partition
    if where and part is not None and part < anomaly.count:
        return f"{what}, {part} of them{where}"
    return f"{what}{where}"


def busiest_partition(
    partitions: Mapping[str, Mapping[str, int]], counter: str
) -> tuple[int | None, int | None]:
    """The partition that counted most of ``counter`` (``partitions``: counters per partition,
    keyed by its number as text) and how much it counted; (None, None) when none counted any."""
    where = {p: c.get(counter, 0) for p, c in partitions.items() if c.get(counter)}
    if not where:
        return None, None
    busiest = max(where, key=where.get)
    return int(busiest), where[busiest]


# Events up to this long after a fault explain what it caused: the scenario lab knows when it
# injected its fault, and only its run's events are in its stream (a new leader is elected, a
# restarted consumer reads again, within seconds of the fault; ``AFTER_S`` is for a first
# affected record only known to the second).
AFTER_FAULT_S = 30.0


def explain_fault(
    counts: Mapping[str, int],
    partitions: Mapping[str, Mapping[str, int]],
    topic: str,
    at: float,
    events: list[dict[str, Any]],
    producer: Mapping[str, Any],
    consumer: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Why what a fault injected at ``at`` caused (the scenario lab's): ``{counter: {"cause",
    "text", "partition", "candidates"}}`` for each counter ``explain`` knows that ``counts``
    holds above 0, on the partition where most of it was counted (``partitions``: the status
    document's counters per partition), by ``events`` up to ``AFTER_FAULT_S`` after it, what
    followed the fault counting as much as what came before."""
    out: dict[str, dict[str, Any]] = {}
    clients = client_properties(producer, consumer)
    for counter, count in counts.items():
        if counter not in CAUSES or counter in LASTING or not count:
            continue
        partition, on = busiest_partition(partitions, counter)
        anomaly = Anomaly(counter, topic, partition, at, int(count), on)
        found = explain(anomaly, events, after_s=AFTER_FAULT_S, consequences=True, **clients)
        out[counter] = {
            "cause": found.cause,
            "text": found.text,
            "partition": partition,
            "candidates": found.candidates,  # every one considered, best first
        }
    return out
