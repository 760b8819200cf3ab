"""The applications' own consumer groups: what each sample of their offsets means (pure).

The group watcher samples every real consumer group of a cluster (committed offsets, the
partitions' log start and end, the group's members) and this module turns two consecutive
samples into numbers and events, keeping a small bounded state per (group, topic, partition).
docs/groups.md states every definition; the short version:

- **lag** (records): offsets the group still has to read, ``log_end - unread_from`` where
  ``unread_from`` is the first record it would read (at or after ``max(committed, log_start)``;
  transaction markers and aborted records at the end of the log are not records to read);
- **lag_s**: the age of that record, measured from its own timestamp, 0 when caught up, never
  extrapolated from a rate (an idle topic has 0 s lag however old its last record is);
- **lost** (to retention): records below the log start the group had not read: counted once;
- **skipped**: records the group moved past without reading them: a forward move of its
  committed offset that no consumer made (no member, and no leader epoch in the commit, which
  every consumer sends and an administrative reset does not);
- **rewound**: a backward move of the committed offset: that many records will be read again.

Loss and skips count offsets at or above the group's **frontier**, the highest offset below
which every record was read, lost or skipped by the group; each offset is counted once, by
whichever came first. Nothing here imports Django, Kafka clients or Redis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

OK = "OK"
EMPTY = "EMPTY"
LAGGING = "LAGGING"
STALLED = "STALLED"
STOPPED = "STOPPED"
# Worst last: the order a group's and a topic's roll-up and "sort by worst" use.
STATUS_ORDER: tuple[str, ...] = (OK, EMPTY, LAGGING, STALLED, STOPPED)
SEVERITY = {status: rank for rank, status in enumerate(STATUS_ORDER)}

LOST = "lost"
SKIPPED = "skipped"
REWOUND = "rewound"
EVENT_KINDS: tuple[str, ...] = (LOST, SKIPPED, REWOUND)


def worst(statuses: Iterable[str]) -> str:
    """The worst of ``statuses`` (OK for none)."""
    return max(statuses, key=lambda s: SEVERITY.get(s, 0), default=OK)


# The worst lag in seconds is kept per day for this many days (``PartitionState.peaks``): the
# lint compares a topic's retention with its groups' worst lag of the week.
PEAK_DAYS = 7
DAY_S = 86400


@dataclass(frozen=True)
class Policy:
    """How statuses are judged. ``window``: samples LAGGING looks at (lag grew across all of
    them); ``lagging_floor_s``: a lag younger than this is never LAGGING (a healthy consumer's
    lag moves up and down by a few records between commits); ``stall_after_s``: members, lag,
    and no commit for this long is STALLED."""

    window: int = 5
    lagging_floor_s: float = 30.0
    stall_after_s: float = 120.0


@dataclass(frozen=True)
class PartitionObservation:
    """One committed partition of a group in one sample.

    ``unread_from``: the offset of the first record the group would read (at or after
    ``max(committed, log_start)``), ``log_end`` when there is none before the end (caught up, or
    only transaction markers / aborted records left); ``unread_ts_ms`` that record's timestamp
    (None when unknown or when there is none). ``commit_epoch``: the leader epoch the commit
    carried (consumers send it; an administrative reset does not), None when absent.
    ``assigned``: a live member of the group has the partition assigned."""

    topic: str
    partition: int
    committed: int
    log_start: int
    log_end: int
    unread_from: int | None = None
    unread_ts_ms: int | None = None
    commit_epoch: int | None = None
    assigned: bool = False

    @property
    def key(self) -> str:
        return f"{self.topic}:{self.partition}"

    def first_unread(self) -> int:
        """Where the records left to read start (never below the log start)."""
        start = max(self.committed, self.log_start)
        return start if self.unread_from is None else max(start, self.unread_from)


@dataclass(frozen=True)
class GroupObservation:
    """One consumer group in one sample, taken at ``t`` (seconds since the epoch)."""

    group: str
    t: float
    state: str
    members: tuple[str, ...]  # "client_id@host" of each live member
    partitions: tuple[PartitionObservation, ...]


@dataclass(frozen=True)
class GroupEvent:
    """A rewind, skip or loss of ``count`` records of one partition, between offsets
    ``first`` (inclusive) and ``last`` (exclusive); ``detail`` says who or what was visible."""

    kind: str
    group: str
    topic: str
    partition: int
    count: int
    first: int
    last: int
    t: float
    detail: str = ""

    def to_fields(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "t": self.t,
            "detail": self.detail,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> GroupEvent:
        return cls(
            kind=str(fields["kind"]),
            group=str(fields["group"]),
            topic=str(fields["topic"]),
            partition=int(fields["partition"]),
            count=int(fields["count"]),
            first=int(fields["first"]),
            last=int(fields["last"]),
            t=float(fields["t"]),
            detail=str(fields.get("detail", "")),
        )


@dataclass(frozen=True)
class PartitionState:
    """What is kept of one (group, topic, partition) between samples: bounded (``lags`` holds
    at most ``Policy.window`` values)."""

    topic: str
    partition: int
    committed: int
    log_start: int
    log_end: int
    frontier: int
    lag: int
    lag_s: float | None
    status: str
    changed_t: float  # when the committed offset last moved (or was first seen)
    zero_t: float | None  # when the lag was last 0
    lags: tuple[int, ...] = ()
    lost: int = 0
    skipped: int = 0
    rewound: int = 0
    # (day since the epoch, the worst lag_s seen that day), the last PEAK_DAYS days at most
    peaks: tuple[tuple[int, float], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.topic}:{self.partition}"

    def worst_lag_s(self, t: float) -> float | None:
        """The worst lag in seconds seen over the last ``PEAK_DAYS`` days (None: no age known)."""
        first_day = _first_peak_day(t)
        seen = [lag_s for day, lag_s in self.peaks if day >= first_day]
        return max(seen) if seen else None

    def to_fields(self) -> list[Any]:
        return [
            self.topic, self.partition, self.committed, self.log_start, self.log_end,
            self.frontier, self.lag, self.lag_s, self.status, self.changed_t, self.zero_t,
            list(self.lags), self.lost, self.skipped, self.rewound,
            [list(peak) for peak in self.peaks],
        ]  # fmt: skip

    @classmethod
    def from_fields(cls, f: list[Any]) -> PartitionState:
        return cls(
            topic=str(f[0]), partition=int(f[1]), committed=int(f[2]), log_start=int(f[3]),
            log_end=int(f[4]), frontier=int(f[5]), lag=int(f[6]),
            lag_s=None if f[7] is None else float(f[7]), status=str(f[8]),
            changed_t=float(f[9]), zero_t=None if f[10] is None else float(f[10]),
            lags=tuple(int(x) for x in f[11]), lost=int(f[12]), skipped=int(f[13]),
            rewound=int(f[14]),
            peaks=tuple((int(d), float(v)) for d, v in (f[15] if len(f) > 15 else [])),
        )  # fmt: skip


@dataclass(frozen=True)
class GroupState:
    """A group's bounded state and its roll-up: worst status, summed lag, oldest unread record,
    and the cumulative counts of its partitions."""

    group: str
    t: float
    state: str
    members: tuple[str, ...]
    partitions: dict[str, PartitionState] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not self.partitions:
            return EMPTY if not self.members else OK
        return worst(p.status for p in self.partitions.values())

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions.values())

    @property
    def lag_s(self) -> float | None:
        known = [p.lag_s for p in self.partitions.values() if p.lag_s is not None]
        return max(known) if known else None

    def total(self, kind: str) -> int:
        return sum(getattr(p, kind) for p in self.partitions.values())

    def topics(self) -> list[str]:
        return sorted({p.topic for p in self.partitions.values()})

    def to_fields(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "t": self.t,
            "state": self.state,
            "members": list(self.members),
            "partitions": [p.to_fields() for p in self.partitions.values()],
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> GroupState:
        parts = [PartitionState.from_fields(f) for f in fields.get("partitions", [])]
        return cls(
            group=str(fields["group"]),
            t=float(fields["t"]),
            state=str(fields.get("state", "")),
            members=tuple(str(m) for m in fields.get("members", [])),
            partitions={p.key: p for p in parts},
        )

    def summary(self) -> dict[str, Any]:
        """The roll-up as a page or the API shows it."""
        return {
            "group": self.group,
            "t": self.t,
            "state": self.state,
            "members": len(self.members),
            "status": self.status,
            "lag": self.lag,
            "lag_s": self.lag_s,
            "lost": self.total(LOST),
            "skipped": self.total(SKIPPED),
            "rewound": self.total(REWOUND),
            "topics": self.topics(),
        }


def _who(prev_members: tuple[str, ...], members: tuple[str, ...]) -> str:
    if not members:
        return "no member in the group: an administrative reset or a consumer outside it"
    names = ", ".join(members[:5]) + (f" and {len(members) - 5} more" if len(members) > 5 else "")
    changed = (
        " (members changed since the last sample)" if set(prev_members) != set(members) else ""
    )
    return f"members {names}{changed}"


def advance_partition(
    prev: PartitionState | None,
    obs: PartitionObservation,
    *,
    group: str,
    t: float,
    prev_members: tuple[str, ...] | None,
    members: tuple[str, ...],
    policy: Policy,
) -> tuple[PartitionState, list[GroupEvent]]:
    """The partition's new state and the events between ``prev`` and ``obs``."""
    if prev is not None and obs.log_end < prev.log_start:
        prev = None  # the whole log was replaced (topic deleted and made again): start afresh
    committed, start, end = obs.committed, obs.log_start, max(obs.log_end, obs.log_start)
    events: list[GroupEvent] = []

    def event(kind: str, first: int, last: int, detail: str) -> None:
        events.append(
            GroupEvent(kind, group, obs.topic, obs.partition, last - first, first, last, t, detail)
        )

    lost = skipped = rewound = 0
    if prev is None:
        frontier, changed_t, zero_t, lags, peaks = committed, t, None, (), ()
    else:
        frontier, changed_t, zero_t, lags = prev.frontier, prev.changed_t, prev.zero_t, prev.lags
        peaks = prev.peaks
        lost, skipped, rewound = prev.lost, prev.skipped, prev.rewound
        if committed != prev.committed:
            changed_t = t
        if committed < prev.committed:
            back_to = max(committed, start)
            if prev.committed > back_to:
                rewound += prev.committed - back_to
                event(REWOUND, back_to, prev.committed, _who(prev_members or (), members))
        elif committed > prev.committed:
            administrative = not prev_members and not members and obs.commit_epoch is None
            if administrative:
                # Nobody read past the old offset: what retention took first was lost, the
                # rest of what the move jumped over (and exists) was skipped.
                first = max(prev.committed, frontier)
                gone = min(start, committed)
                if gone > first:
                    lost += gone - first
                    event(LOST, first, gone, f"log start {start} passed offset {first}")
                    first = gone
                last = min(committed, end)
                if last > first:
                    skipped += last - first
                    event(SKIPPED, first, last, _who(prev_members or (), members))
    frontier = max(frontier, committed)
    if start > frontier:
        lost += start - frontier
        event(LOST, frontier, start, f"log start {start} passed committed offset {committed}")
        frontier = start

    unread = obs.first_unread()
    lag = max(0, end - unread)
    if lag == 0:
        lag_s: float | None = 0.0
        zero_t = t
    elif obs.unread_ts_ms is None:
        lag_s = None
    else:
        lag_s = max(0.0, t - obs.unread_ts_ms / 1000.0)
    lags = (*lags, lag)[-policy.window :]
    if lag_s is not None:
        peaks = _with_peak(peaks, t, lag_s)
    reading = obs.assigned or (prev is not None and committed != prev.committed)
    state = PartitionState(
        topic=obs.topic, partition=obs.partition, committed=committed, log_start=start,
        log_end=end, frontier=frontier, lag=lag, lag_s=lag_s, status=OK, changed_t=changed_t,
        zero_t=zero_t, lags=lags, lost=lost, skipped=skipped, rewound=rewound, peaks=peaks,
    )  # fmt: skip
    return replace(state, status=judge(state, reading=reading, t=t, policy=policy)), events


def _with_peak(
    peaks: tuple[tuple[int, float], ...], t: float, lag_s: float
) -> tuple[tuple[int, float], ...]:
    """``peaks`` with ``lag_s`` seen at ``t``: the day's worst kept, days older than the
    last ``PEAK_DAYS`` dropped."""
    first_day = _first_peak_day(t)
    kept = {d: v for d, v in peaks if d >= first_day}
    day = int(t // DAY_S)
    kept[day] = max(kept.get(day, 0.0), lag_s)
    return tuple(sorted(kept.items()))


def _first_peak_day(t: float) -> int:
    """The oldest day (since the epoch) of the ``PEAK_DAYS`` days that end with ``t``'s."""
    return int(t // DAY_S) - PEAK_DAYS + 1


def judge(state: PartitionState, *, reading: bool, t: float, policy: Policy) -> str:
    """A partition's status: STOPPED (nobody reads it and it has lag), EMPTY (nobody reads it,
    nothing to read), OK (caught up), STALLED (read, lag, no commit for ``stall_after_s``),
    LAGGING (lag grew across the whole window and its record is known to be older than
    ``lagging_floor_s``)."""
    if not reading:
        return STOPPED if state.lag > 0 else EMPTY
    if state.lag == 0:
        return OK
    quiet_since = max(
        state.changed_t, state.zero_t if state.zero_t is not None else state.changed_t
    )
    if t - quiet_since >= policy.stall_after_s:
        return STALLED
    lags = state.lags
    growing = (
        len(lags) >= policy.window
        and all(x > 0 for x in lags)
        and all(b >= a for a, b in zip(lags, lags[1:], strict=False))
        and lags[-1] > lags[0]
    )
    # An unknown age (its record not read yet) is never taken as old: no false alarm.
    old_enough = state.lag_s is not None and state.lag_s >= policy.lagging_floor_s
    return LAGGING if growing and old_enough else OK


def advance(
    prev: GroupState | None, obs: GroupObservation, policy: Policy | None = None
) -> tuple[GroupState, list[GroupEvent]]:
    """The group's new state (partitions no longer committed are dropped: the state stays
    bounded) and the events of this sample."""
    policy = policy or Policy()
    prev_members = prev.members if prev is not None else None
    parts: dict[str, PartitionState] = {}
    events: list[GroupEvent] = []
    for obs_p in obs.partitions:
        before = prev.partitions.get(obs_p.key) if prev is not None else None
        state, found = advance_partition(
            before,
            obs_p,
            group=obs.group,
            t=obs.t,
            prev_members=prev_members,
            members=obs.members,
            policy=policy,
        )
        parts[state.key] = state
        events.extend(found)
    return GroupState(obs.group, obs.t, obs.state, obs.members, parts), events


@dataclass(frozen=True)
class TopicRollup:
    """One topic as its groups see it: their worst status, how many read it, summed lag."""

    topic: str
    status: str
    groups: int
    lag: int
    lost: int
    skipped: int
    rewound: int


def topic_rollups(groups: Iterable[GroupState]) -> dict[str, TopicRollup]:
    """Per topic, over every group that commits offsets on it."""
    acc: dict[str, dict[str, Any]] = {}
    for group in groups:
        for p in group.partitions.values():
            row = acc.setdefault(
                p.topic,
                {"status": [], "groups": set(), "lag": 0, LOST: 0, SKIPPED: 0, REWOUND: 0},
            )
            row["status"].append(p.status)
            row["groups"].add(group.group)
            row["lag"] += p.lag
            for kind in EVENT_KINDS:
                row[kind] += getattr(p, kind)
    return {
        topic: TopicRollup(
            topic, worst(r["status"]), len(r["groups"]), r["lag"], r[LOST], r[SKIPPED], r[REWOUND]
        )
        for topic, r in sorted(acc.items())
    }


def worst_lags(groups: Iterable[GroupState], t: float) -> dict[str, list[tuple[str, float]]]:
    """Per topic, each group's worst lag in seconds over the last ``PEAK_DAYS`` days (its
    worst partition), worst first: what the lint compares retention with."""
    acc: dict[str, dict[str, float]] = {}
    for group in groups:
        for p in group.partitions.values():
            worst_s = p.worst_lag_s(t)
            if worst_s is None:
                continue
            row = acc.setdefault(p.topic, {})
            row[group.group] = max(row.get(group.group, 0.0), worst_s)
    return {
        topic: sorted(row.items(), key=lambda item: (-item[1], item[0]))
        for topic, row in sorted(acc.items())
    }
