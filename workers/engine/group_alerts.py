"""Alert rules on the applications' consumer groups, as pure functions (docs/oncall.md,
"Consumer group rules").

A group rule watches the groups of one cluster whose names match its include patterns and
none of its exclude patterns (``fnmatch`` globs). Kinds (``GROUP_RULE_KINDS``):

- ``group_lost``: the group watcher counted records lost to retention (``GroupEvent`` kind
  ``lost``); pages (critical) and stays until a person resolves it;
- ``group_skipped``: records skipped by a reset past unread records; pages, stays;
- ``group_rewound``: records to be read again after a backward move; a warning, stays;
- ``group_stopped``: the group has been STOPPED or STALLED (``workers.engine.groups``) for
  ``for_s`` seconds (default 300); a warning that resolves itself after the hold-down.

A counting kind's condition sums exactly the events it is given (the caller gives each event
once: those after the incident's last counted sample), per topic-partition with the offset
range they cover. Nothing here imports Django or Redis.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workers.engine.alerts import CRITICAL, WARNING, Condition, clock, partitions_words
from workers.engine.groups import LOST, REWOUND, SKIPPED, STALLED, STOPPED, GroupEvent, GroupState

GROUP_LOST, GROUP_SKIPPED, GROUP_REWOUND, GROUP_STOPPED = (
    "group_lost",
    "group_skipped",
    "group_rewound",
    "group_stopped",
)
GROUP_RULE_KINDS = {
    GROUP_LOST: "records lost to retention",
    GROUP_SKIPPED: "records skipped",
    GROUP_REWOUND: "records rewound",
    GROUP_STOPPED: "stopped or stalled",
}
# The event kind each counting rule counts.
COUNTED = {GROUP_LOST: LOST, GROUP_SKIPPED: SKIPPED, GROUP_REWOUND: REWOUND}
NOT_READING = (STOPPED, STALLED)

_EVENT_WORDS = {
    LOST: "records lost to retention",
    SKIPPED: "records skipped past unread",
    REWOUND: "records rewound (to be read again)",
}


@dataclass(frozen=True)
class GroupRuleDefault:
    severity: str
    for_s: int = 0
    resolves_itself: bool = False


GROUP_RULE_DEFAULTS = {
    GROUP_LOST: GroupRuleDefault(CRITICAL),
    GROUP_SKIPPED: GroupRuleDefault(CRITICAL),
    GROUP_REWOUND: GroupRuleDefault(WARNING),
    GROUP_STOPPED: GroupRuleDefault(WARNING, for_s=300, resolves_itself=True),
}


def patterns(text: str) -> list[str]:
    """Glob patterns written one per line or separated by commas or spaces."""
    return [p for p in text.replace(",", " ").split() if p]


def matches(group: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether ``group`` is watched: it matches an include pattern (none: every group) and no
    exclude pattern. Case-sensitive, as Kafka's group names are."""
    included = not include or any(fnmatch.fnmatchcase(group, p) for p in include)
    return included and not any(fnmatch.fnmatchcase(group, p) for p in exclude)


def group_subject(cluster: str, group: str) -> str:
    return f"group {group} on cluster {cluster}"


def partition_counts(
    events: Iterable[GroupEvent], before: Mapping[str, Mapping[str, int]] | None = None
) -> dict[str, dict[str, int]]:
    """Per ``topic:partition``: the summed ``count`` and the offset range ``first`` - ``last``
    the events cover, added to ``before`` (an incident's partitions so far)."""
    out = {key: dict(value) for key, value in (before or {}).items()}
    for e in events:
        key = f"{e.topic}:{e.partition}"
        row = out.get(key)
        if row is None:
            out[key] = {"count": e.count, "first": e.first, "last": e.last}
        else:
            row["count"] += e.count
            row["first"] = min(row["first"], e.first)
            row["last"] = max(row["last"], e.last)
    return dict(sorted(out.items()))


def counting_condition(
    kind: str,
    cluster: str,
    group: str,
    events: Iterable[GroupEvent],
    before: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[Condition, dict[str, dict[str, int]]]:
    """A counting rule's condition from ``events`` (of any kind and group: only ``group``'s of
    the rule's kind count) on top of ``before`` (the incident's partitions so far, None when
    none is open): firing when ``events`` hold records of that kind (a past loss does not
    fire again); ``counts`` holds the total so far under the event kind, the partitions are
    returned beside it."""
    counted = COUNTED[kind]
    mine = [e for e in events if e.kind == counted and e.group == group and e.count > 0]
    partitions = partition_counts(mine, before)
    total = sum(row["count"] for row in partitions.values())
    if not mine:
        return Condition(False, "", {counted: total} if total else {}), partitions
    when = f" (the last at {clock(max(e.t for e in mine))})"
    reason = (
        f"{group_subject(cluster, group)}: {total:,} {_EVENT_WORDS[counted]} on "
        f"{partitions_words(partitions)}{when}"
    )
    return Condition(True, reason, {counted: total}), partitions


def not_reading_since(state: GroupState | None, previous: float | None, now: float) -> float | None:
    """When the group's STOPPED / STALLED spell began as far as the evaluations saw it:
    ``previous`` (the last evaluation's answer) while the spell lasts, ``now`` when it starts,
    None when the group reads (or is gone)."""
    if state is None or state.status not in NOT_READING:
        return None
    return previous if previous is not None else now


def stopped_condition(
    cluster: str, state: GroupState | None, since: float | None, for_s: float, now: float
) -> tuple[Condition, dict[str, dict[str, Any]]]:
    """STOPPED or STALLED for at least ``for_s`` seconds (``since``: when the spell began);
    the partitions that are not read, with their status and lag."""
    if state is None or since is None or state.status not in NOT_READING or now - since < for_s:
        return Condition(False), {}
    partitions = {
        p.key: {"status": p.status, "lag": p.lag}
        for p in sorted(state.partitions.values(), key=lambda p: p.key)
        if p.status in NOT_READING
    }
    lag = sum(row["lag"] for row in partitions.values())
    where = ", ".join(f"{k} ({row['status'].lower()}, lag {row['lag']:,})" for k, row in
                      list(partitions.items())[:10])  # fmt: skip
    members = len(state.members)
    reason = (
        f"{group_subject(cluster, state.group)}: {state.status.lower()} for {now - since:.0f} s "
        f"({members} member{'s' if members != 1 else ''}, lag {lag:,} records"
        + (f" on {where}" if where else "")
        + ")"
    )
    return Condition(True, reason, {"lag": lag}), partitions
