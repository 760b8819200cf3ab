"""The documents every layer shares, and the one place each of their facts is defined.

The semantics and what each promises, the counters, the verdicts and their severity order,
the status document and the one-second window (written by the check runner, read by the
store's readers, the rollups, the pages, the API and the lab), and the live events sent to
browsers. Pure: no Django, Kafka client or Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

from workers.engine.clientstats import KINDS as CLIENT_STATS_EVENTS
from workers.engine.env import envint
from workers.engine.latency import LatencyHistogram

# -- semantics and their promises ------------------------------------------------------------

AT_MOST_ONCE = "at-most-once"
AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
SEMANTICS = (AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE)

# Counters whose any occurrence breaks the semantic's promise (a VIOLATED verdict). The offset
# anomalies (DESIGN.md, "Where in the log, and why"; ``workers.engine.offsets``) follow what
# each semantic gives up: a rewind re-processes records (a duplicate's cause), a divergent,
# skipped or truncated offset is an acknowledged record not read where it was written (a
# loss's cause). At-most-once tolerates loss, at-least-once duplicates and rewinds,
# exactly-once none of them.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    AT_MOST_ONCE: ("duplicated", "aborted_read", "rewound"),
    AT_LEAST_ONCE: ("lost", "divergent", "skipped", "truncated"),
    EXACTLY_ONCE: (
        "lost",
        "duplicated",
        "aborted_read",
        "divergent",
        "rewound",
        "skipped",
        "truncated",
    ),
}
# Counters a fault may legitimately raise under the semantic: it gives up exactly these.
ALLOWED: dict[str, tuple[str, ...]] = {
    AT_MOST_ONCE: ("lost", "divergent", "skipped", "truncated"),
    AT_LEAST_ONCE: ("duplicated", "rewound"),
    EXACTLY_ONCE: (),
}

# -- counters --------------------------------------------------------------------------------

# Where in the log (DESIGN.md, "Where in the log, and why"; ``workers.engine.offsets``), per
# partition: offsets holding another record than acknowledged, reads going back within one
# consumer session, acknowledged offsets a session jumped over, offsets by which the log end
# went back, and acknowledged offsets that could not be checked (bounded memory; never an
# anomaly).
OFFSET_COUNTERS: tuple[str, ...] = (
    "divergent",
    "rewound",
    "skipped",
    "truncated",
    "offsets_unchecked",
)
# The checker's counters (DESIGN.md, "What every number means"); in_flight is derived
# (produced - acked - failed) and pending is a level, not an increase.
CHECKER_COUNTERS: tuple[str, ...] = (
    "produced",
    "acked",
    "failed",
    "processed",
    "duplicated",
    "lost",
    "late",
    "phantom",
    "reordered",
    "aborted_read",
    "foreign",
    *OFFSET_COUNTERS,
    "pending",
    "in_flight",
)
# The status document's and the windows' counters.
COUNTERS: tuple[str, ...] = tuple(name for name in CHECKER_COUNTERS if name != "in_flight")
# Counters that are levels (gauges), not increases: a window carries their value at its end,
# never a difference, so they are never negative (docs/status.md).
GAUGES: tuple[str, ...] = ("pending",)
# What each counter means, in one sentence (DESIGN.md, "What every number means"; the pages'
# tooltips and docs/status.md say the same). ``in_flight`` is derived: produced - acked - failed.
COUNTER_MEANINGS: dict[str, str] = {
    "produced": "produce() was called for the record",
    "acked": "its delivery report succeeded (under acks=0 this only means it left the client)",
    "failed": "its delivery report carried an error (a failed record is not a loss)",
    "in_flight": "produced, delivery report not yet received by the checker "
    "(produced = acked + failed + in flight)",
    "processed": "processings applied to the processing ledger, duplicates included; it can run "
    "ahead of acked while delivery reports are on their way (they are reported every ~0.5 s)",
    "duplicated": "every processing of a record beyond its first",
    "lost": "acked, and still not processed once the consumer moved past it and the grace "
    "period elapsed",
    "late": "declared lost, then processed after all (moved from lost to late)",
    "phantom": "not acked (failed or timed out) but processed anyway",
    "reordered": "processed after a higher sequence number of its partition, not a duplicate",
    "aborted_read": "a record of an aborted transaction reached the read_committed verifier",
    "foreign": "anything on the sentinel topic that is not a record of a known sentinel run",
    "pending": "acked, not processed yet, not lost: a level, never negative",
    "divergent": "an offset holds another record than its delivery report said (the log was "
    "rewritten: an unclean election, a truncation)",
    "rewound": "within one consumer session, read at an offset at or below one it had read",
    "skipped": "within one consumer session, an acknowledged offset jumped over and its record "
    "never processed",
    "truncated": "offsets by which the partition's log end went back",
    "offsets_unchecked": "acknowledged offsets the bounded picture of the log had to drop: "
    "not checked, never an anomaly",
}
# Throughput counters, shown as rates.
RATE_COUNTERS = ("produced", "acked", "processed")
# Counters that mark a problem: a window keeps them per partition, and only the non-zero ones
# (a healthy partition's entry is empty; repeating every counter cost ~70 KB a second at
# 1,000 partitions).
PARTITION_EVENT_COUNTERS = tuple(
    name for name in COUNTERS if name not in RATE_COUNTERS and name != "pending"
)
# Problem counters charted and flagged on the pages.
EVENT_COUNTERS = (
    "lost",
    "duplicated",
    "reordered",
    "late",
    "phantom",
    "aborted_read",
    "divergent",
    "rewound",
    "skipped",
    "truncated",
)

# -- verdicts --------------------------------------------------------------------------------


class Verdict(StrEnum):
    HOLDING = "HOLDING"
    DEGRADED = "DEGRADED"
    VIOLATED = "VIOLATED"
    STALLED = "STALLED"


# Worse verdicts rank higher; "" (no verdict yet) ranks below all.
SEVERITY: dict[str, int] = {"": 0, "HOLDING": 1, "DEGRADED": 2, "STALLED": 3, "VIOLATED": 4}


def severity(verdict: str | None) -> int:
    return SEVERITY.get(verdict or "", 0)


def worst(verdicts: list[str]) -> str:
    """The most severe of ``verdicts`` ("" for none)."""
    return max(verdicts, key=severity, default="")


# -- the status document (docs/status.md) ----------------------------------------------------

STATUS_VERSION = 1
# The check runner writes the status document and a one-second window this often.
CHECKPOINT_INTERVAL_S = 1.0
# A status document this old means its checker is not running (stopped, dead, cut off from
# Redis): STALLED, which only a reader can tell, since a dead checker writes nothing.
STALE_AFTER_S = 30.0
# The verdict covers the counter increases of this window; latency the last minute.
VERDICT_WINDOW_S = 300.0
LATENCY_WINDOW_S = 60.0
# One-second windows kept in Redis; older ones live on as one-minute rollups in the database.
W1_RETENTION_S = envint("DS_W1_RETENTION_S", 3600, min=60)


# Upper bounds (seconds) of the latency histograms the status document carries
# (``latency_buckets``) and ``/metrics`` exports: 1 ms to 60 s; above the last is ``+Inf``.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


def latency_buckets(hist: LatencyHistogram) -> dict[str, Any]:
    """A cumulative latency histogram in Prometheus' shape: ``counts[i]`` observations at or
    below ``LATENCY_BUCKETS_S[i]``, plus ``count`` (the ``+Inf`` bucket) and ``sum_s``."""
    return {
        "counts": hist.cumulative(b * 1000.0 for b in LATENCY_BUCKETS_S),
        "count": hist.count,
        "sum_s": round(hist.sum / 1000.0, 6),
    }


class LatencySummary(TypedDict):
    p50: float | None
    p99: float | None
    max: float | None


class StatusDoc(TypedDict, total=False):
    version: int  # STATUS_VERSION
    id: int
    incarnation: str  # the sentinel row's (SentinelSpec.incarnation); "" for specs built in code
    name: str
    semantic: str
    cluster: str
    topic: str
    run_id: int | None
    runs: int
    verdict: str
    verdict_since: float | None  # when the sentinel entered ``verdict`` (``verdict_entered``)
    reasons: list[str]
    totals: dict[str, int]
    window: dict[str, Any]  # {"seconds": VERDICT_WINDOW_S, "counts": {counter: increase}}
    latency_ms: LatencySummary
    recent_latency_ms: LatencySummary
    produce_ack_latency_ms: LatencySummary
    # Cumulative since the sentinel's state was created: {"le_s": LATENCY_BUCKETS_S,
    # "e2e": latency_buckets(...), "ack": latency_buckets(...)}
    latency_buckets: dict[str, Any]
    partitions: dict[str, dict[str, int]]  # partition -> cumulative counters
    # partition -> where the log is as the checker saw it: {"acked_to": highest offset
    # acknowledged, "read_to": highest offset read (-1: none), "last_truncation": [first, last]
    # offsets of the last truncation seen, or None}
    offsets: dict[str, dict[str, Any]]
    # The topic's cluster metadata as the checker last fetched it (None before its first fetch):
    # {"error": str | None, "partitions": {p: {"leader", "leader_host", "replicas", "isr"}},
    #  "updated_at": float}
    metadata: dict[str, Any] | None
    errors: list[str]
    last_progress_at: float | None
    updated_at: float | None
    checker_pid: int


def summary(hist: LatencyHistogram) -> LatencySummary:
    if not hist.count:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(hist.percentile(50), 3),
        "p99": round(hist.percentile(99), 3),
        "max": round(hist.percentile(100), 3),
    }


def empty_status(
    *, id: int, name: str, semantic: str, cluster: str, topic: str, reason: str
) -> StatusDoc:
    """The document of a sentinel whose checker has not reported: STALLED, never a loss."""
    none: LatencySummary = {"p50": None, "p99": None, "max": None}
    return {
        "version": STATUS_VERSION,
        "id": id,
        "name": name,
        "semantic": semantic,
        "cluster": cluster,
        "topic": topic,
        "run_id": None,
        "runs": 0,
        "verdict": Verdict.STALLED.value,
        "verdict_since": None,
        "reasons": [reason],
        "totals": dict.fromkeys(COUNTERS, 0),
        "window": {"seconds": 0, "counts": dict.fromkeys(COUNTERS, 0)},
        "latency_ms": dict(none),  # type: ignore[typeddict-item]
        "recent_latency_ms": dict(none),  # type: ignore[typeddict-item]
        "produce_ack_latency_ms": dict(none),  # type: ignore[typeddict-item]
        "partitions": {},
        "errors": [reason],
        "last_progress_at": None,
        "updated_at": None,
    }


def verdict_entered(previous: dict[str, Any] | None, verdict: str, now: float) -> float:
    """When the sentinel entered ``verdict``: the time the previous document (the last one
    written, ``None`` for none) says, if it had the same verdict; else ``now``."""
    if previous and previous.get("verdict") == verdict:
        since = previous.get("verdict_since")
        if isinstance(since, int | float) and since <= now:
            return float(since)
    return now


def reported_within(status: dict[str, Any], now: float) -> bool:
    """The document's checker reported within ``STALE_AFTER_S`` of ``now``."""
    updated = status.get("updated_at")
    return bool(updated) and now - updated <= STALE_AFTER_S


def as_read(status: dict[str, Any], now: float) -> dict[str, Any]:
    """The stored status document as a reader shows it at ``now``.

    The check runner judges every verdict it can (``workers.engine.verdict``, STALLED included
    when no record makes progress); the one judgement left to a reader is a checker that has
    stopped reporting: a document older than ``STALE_AFTER_S`` is STALLED, with how long the
    checker has been silent first in its ``reasons``. A placeholder (``empty_status``, never
    reported) is left as it is. ``version`` is stamped for documents written before checkers
    wrote it."""
    doc = {**status, "version": STATUS_VERSION}
    doc.setdefault("verdict_since", None)
    if doc.get("updated_at") and not reported_within(doc, now):
        if doc["verdict"] != Verdict.STALLED.value:
            # Silent since its last report: stalled from then (a reader cannot know better).
            doc["verdict_since"] = doc["updated_at"]
        doc["verdict"] = Verdict.STALLED.value
        doc["reasons"] = [f"checker silent for {now - doc['updated_at']:.0f}s", *doc["reasons"]]
    return doc


# The part of the status document the live pages need with every window.
COMPACT_KEYS = (
    "id",
    "name",
    "semantic",
    "cluster",
    "topic",
    "verdict",
    "verdict_since",
    "reasons",
    "totals",
    "window",
    "recent_latency_ms",
    "errors",
    "updated_at",
)


def compact(status: dict[str, Any]) -> dict[str, Any]:
    return {k: status.get(k) for k in COMPACT_KEYS}


# -- the one-second window (docs/architecture.md, "Metric windows") --------------------------


_ZERO_COUNTS = dict.fromkeys(COUNTERS, 0)


@dataclass(frozen=True)
class Window:
    """A metric window, whatever its source: it covers ``[start, start + seconds)``.

    ``counts`` are increases over the window except ``pending``, a level at its end;
    ``partitions`` is sparse (only the non-zero ``PARTITION_EVENT_COUNTERS``); ``hist`` holds
    the two latency histograms when they were kept, each in ``LatencyHistogram.to_compact()``
    form (windows written before it carry ``to_dict()`` dicts; ``histogram()`` reads both)."""

    start: float
    seconds: float
    counts: dict[str, int]
    e2e: dict[str, Any]
    ack: dict[str, Any]
    verdict: str
    hist: dict[str, Any] | None = None
    partitions: dict[str, dict[str, int]] | None = None
    sentinel: int | None = None

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def to_doc(self, *, hist: bool = True, sparse: bool = False) -> dict[str, Any]:
        """The document form, stamped with the time the window ends (``t``). ``sparse``: only
        the non-zero ``counts`` (how the check runner stores a window: most counters of a
        healthy window are 0, and an hour of windows is kept per sentinel); ``from_doc``
        gives every counter back."""
        counts = {k: n for k, n in self.counts.items() if n} if sparse else self.counts
        doc: dict[str, Any] = {
            "t": round(self.end, 3),
            "seconds": self.seconds,
            "sentinel": self.sentinel,
            "verdict": self.verdict,
            "counts": counts,
            "partitions": self.partitions or {},
            "e2e": self.e2e,
            "ack": self.ack,
        }
        if hist and self.hist is not None:
            doc["hist"] = self.hist
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], *, keep_hist: bool = True) -> Window:
        seconds = float(doc.get("seconds") or 1.0)
        return cls(
            start=float(doc["t"]) - seconds,
            seconds=seconds,
            counts={**_ZERO_COUNTS, **(doc.get("counts") or {})},
            e2e=doc.get("e2e") or {},
            ack=doc.get("ack") or {},
            verdict=doc.get("verdict") or "",
            hist=doc.get("hist") if keep_hist else None,
            partitions=doc.get("partitions"),
            sentinel=doc.get("sentinel"),
        )

    def histogram(self, name: str) -> LatencyHistogram | None:
        """The ``e2e`` or ``ack`` histogram, when kept (either stored form)."""
        data = (self.hist or {}).get(name)
        return LatencyHistogram.load(data) if data else None


def merge_windows(windows: list[Window]) -> Window | None:
    """One window for consecutive windows: counter sums (``pending``: the last level), merged
    sparse partitions and latency histograms, the worst verdict."""
    if not windows:
        return None
    counts = dict.fromkeys(COUNTERS, 0)
    partitions: dict[str, dict[str, int]] = {}
    hists = {"e2e": LatencyHistogram(), "ack": LatencyHistogram()}
    for w in windows:
        for k in COUNTERS:
            counts[k] += w.counts.get(k, 0)
        for p, c in (w.partitions or {}).items():
            acc = partitions.setdefault(p, {})
            for k, n in c.items():
                acc[k] = acc.get(k, 0) + n
        for name, acc_hist in hists.items():
            if (h := w.histogram(name)) is not None:
                acc_hist.merge(h)
    for k in GAUGES:
        counts[k] = windows[-1].counts.get(k, 0)
    first, last = windows[0], windows[-1]
    return Window(
        start=first.start,
        seconds=last.end - first.start,
        counts=counts,
        e2e=hists["e2e"].summary(),
        ack=hists["ack"].summary(),
        verdict=worst([w.verdict for w in windows]),
        hist={name: h.to_compact() for name, h in hists.items()},
        partitions=partitions,
        sentinel=first.sentinel,
    )


# -- live events (Channels groups; the websocket consumers relay them to browsers) -----------

OVERVIEW_GROUP = "overview"
WINDOW_UPDATE = "window.update"
VERDICT_UPDATE = "verdict.update"
# On-call: one event each time an incident opens, grows, clears (a state's condition, during
# its hold-down), fires again, is acknowledged or resolves; sent by the dashboard
# (``dashboard.oncall.events``) once the change is committed. It carries ids and the
# transition only: pages fetch what they show from the on-call room.
ONCALL_GROUP = "oncall"
ONCALL_UPDATE = "oncall.update"
ONCALL_TRANSITIONS = ("opened", "grew", "cleared", "firing", "acknowledged", "resolved")
EVENT_TYPES = frozenset({WINDOW_UPDATE, VERDICT_UPDATE, ONCALL_UPDATE})
# A sentinel's check runner writes a window every CHECKPOINT_INTERVAL_S (its cut); the
# overview relays them in batches of as long. A live page that got nothing for
# STALE_AFTER_WINDOWS of those periods (heartbeats aside) says it is stale (``live.js``).
STALE_AFTER_WINDOWS = 5
# channels-redis keeps this many messages per channel (and drops the rest) for this long:
# publish about one snapshot per second per group.
CHANNEL_LAYER_CAPACITY = envint("CHANNEL_LAYER_CAPACITY", 100, min=1)
CHANNEL_LAYER_EXPIRY_S = envint("CHANNEL_LAYER_EXPIRY", 30, min=1)


def sentinel_group(sentinel_id: int) -> str:
    """Name of the group that receives the updates of one sentinel."""
    return f"sentinel.{int(sentinel_id)}"


# -- sentinel events (``SentinelStore.event``: the capped list the detail page's timeline shows)

VERDICT_EVENT = "verdict"
RUN_EVENT = "run"
# Redis lost the sentinel's state (a restart without persistence, FLUSHALL, a failover to a
# replica that was behind): a new state epoch and a new run begin; nothing before counts.
STATE_LOST = "state-lost"
# A consumer began to read (a start: a new session), from the group's committed offsets:
# what it had processed past them before is read again (at-least-once's duplicates).
CONSUMER_SESSION_EVENT = "consumer-session"
# Timeline labels of the event kinds (an unknown kind shows as itself).
SENTINEL_EVENTS: dict[str, str] = {
    VERDICT_EVENT: "verdict change",
    RUN_EVENT: "producer run",
    STATE_LOST: "sentinel state lost",
    CONSUMER_SESSION_EVENT: "consumer started",
    "state-reset": "state of a former sentinel cleared",
    "fenced": "fenced",
    "stuck": "stuck, restarted",
    "txn-aborted": "copier transaction aborted",
    "producer-txn-aborted": "producer transaction aborted",
    **CLIENT_STATS_EVENTS,
}
