"""Alert rules as pure functions: when a condition holds, why, in words, and what each
integration is sent.

A rule watches one sentinel. Its *condition* is computed from the sentinel's status document
(and, for latency, its last one-minute windows) each time alerts are evaluated; what turns
conditions into incidents (opening, holding one through flaps, resolving after a hold-down)
and who is notified is the dashboard's (``dashboard/oncall/``).

Kinds (``RULE_KINDS``):

- ``violated``: a counter the semantic forbids (``documents.FORBIDDEN``: a loss under
  at-least-once / exactly-once, a duplicate or an aborted read under at-most-once /
  exactly-once) increased. Fires at once. Clear as soon as no forbidden counter grows.
- ``stalled``: the verdict has been STALLED for ``for_s`` seconds (default 60).
- ``degraded``: DEGRADED for ``for_s`` seconds (default 300): start-up latency and other
  short noise never pages.
- ``p99_slo``: end-to-end p99 above the sentinel's SLO in each of the last ``windows``
  one-minute windows (default 3).
- ``loss_rate``: at-most-once only: lost / acked over the verdict window above
  ``threshold`` percent (default 1).
- ``lint_error``: the latest guarantee lint report of the sentinel's cluster has an error
  (``workers.engine.lint.rules``) under the sentinel's semantic, on its topic or on the
  cluster (``lint_condition``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.engine.documents import (
    AT_MOST_ONCE,
    FORBIDDEN,
    SEMANTICS,
    VERDICT_WINDOW_S,
    Verdict,
)
from workers.engine.lint.rules import ERROR

VIOLATED, STALLED, DEGRADED, P99_SLO, LOSS_RATE, LINT_ERROR = (
    "violated",
    "stalled",
    "degraded",
    "p99_slo",
    "loss_rate",
    "lint_error",
)
RULE_KINDS = {
    VIOLATED: "guarantee violated",
    STALLED: "stalled",
    DEGRADED: "degraded",
    P99_SLO: "end-to-end p99 above the SLO",
    LOSS_RATE: "loss rate",
    LINT_ERROR: "lint error appeared",
}
CRITICAL, WARNING = "critical", "warning"
SEVERITIES = (CRITICAL, WARNING)

# How a forbidden counter is said to a person on call.
_FORBIDDEN_WORDS = {
    "lost": "acknowledged records lost",
    "duplicated": "duplicate processings",
    "aborted_read": "reads of aborted transactions",
    "divergent": "offsets holding another record than acknowledged",
    "rewound": "records read again within one consumer session",
    "skipped": "acknowledged offsets skipped by the consumer",
    "truncated": "offsets truncated from the log end",
}


@dataclass(frozen=True)
class RuleDefault:
    kind: str
    severity: str
    for_s: int = 0
    windows: int = 0
    threshold: float = 0.0
    # A state (stalled, degraded, p99, loss rate, a lint error) resolves its incident once it
    # has been clear for the hold-down; a violation does not: records were lost or duplicated,
    # a past event with a permanent consequence, so its incident stays until a person resolves
    # it (DESIGN.md, "A problem stays until a person has seen it"). A rule may allow it.
    resolves_itself: bool = True


def default_rules(semantic: str) -> list[RuleDefault]:
    """The rules every sentinel of ``semantic`` gets."""
    if semantic not in SEMANTICS:
        raise ValueError(f"unknown semantic {semantic!r}")
    rules = [
        RuleDefault(VIOLATED, CRITICAL, resolves_itself=False),
        RuleDefault(STALLED, CRITICAL, for_s=60),
        RuleDefault(DEGRADED, WARNING, for_s=300),
        RuleDefault(P99_SLO, WARNING, windows=3),
    ]
    if semantic == AT_MOST_ONCE:
        rules.append(RuleDefault(LOSS_RATE, WARNING, threshold=1.0))
    rules.append(RuleDefault(LINT_ERROR, WARNING))
    return rules


@dataclass
class Condition:
    """Whether a rule's condition holds now, the reason in words, and the numbers."""

    firing: bool
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def subject(status: Mapping[str, Any]) -> str:
    """``at-least-once on cluster local, topic sentinel.at-least-once``."""
    return (
        f"{status.get('semantic')} on cluster {status.get('cluster')}, topic {status.get('topic')}"
    )


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + " UTC"


def forbidden_increase(
    semantic: str, totals: Mapping[str, int], previous: Mapping[str, int] | None
) -> dict[str, int]:
    """Increases of the semantic's forbidden counters since ``previous`` totals (a fresh
    state, whose totals went down, counts from zero)."""
    out = {}
    for name in FORBIDDEN[semantic]:
        now, before = int(totals.get(name, 0)), int((previous or {}).get(name, 0))
        grew = now - before if now >= before else now
        if grew > 0:
            out[name] = grew
    return out


def violation_reason(
    status: Mapping[str, Any],
    counts: Mapping[str, int],
    partitions: Mapping[str, Mapping[str, int]],
    since: float,
) -> str:
    """``at-least-once on cluster local, topic t: 37 acknowledged records lost on partition 2
    since 14:02:11 UTC``; ``partitions`` are per-partition counts of the forbidden counters."""
    parts = []
    for name, n in counts.items():
        where = sorted((p for p, c in partitions.items() if c.get(name)), key=lambda p: (len(p), p))
        on = ""
        if where:
            label = "partition" if len(where) == 1 else "partitions"
            on = f" on {label} {', '.join(where)}"
        parts.append(f"{n:,} {_FORBIDDEN_WORDS.get(name, name)}{on}")
    return f"{subject(status)}: {'; '.join(parts)} since {clock(since)}"


def verdict_condition(
    kind: str, status: Mapping[str, Any], since: float | None, for_s: float, now: float
) -> Condition:
    """STALLED / DEGRADED held for ``for_s`` seconds; ``since`` is when it began (None when
    it does not hold now)."""
    wanted = Verdict.STALLED if kind == STALLED else Verdict.DEGRADED
    if status.get("verdict") != wanted or since is None or now - since < for_s:
        return Condition(False)
    reasons = "; ".join(status.get("reasons") or []) or str(wanted)
    return Condition(
        True, f"{subject(status)}: {wanted.value.lower()} for {now - since:.0f} s: {reasons}"
    )


def p99_condition(
    status: Mapping[str, Any], minute_p99s: Sequence[float | None], windows: int, slo_ms: float
) -> Condition:
    """The end-to-end p99 of each of the last ``windows`` one-minute windows (newest last)
    above ``slo_ms``; a minute without samples breaks the run."""
    recent = list(minute_p99s)[-windows:] if windows > 0 else []
    if len(recent) < windows or not recent:
        return Condition(False)
    if any(p is None or p <= slo_ms for p in recent):
        return Condition(False)
    shown = ", ".join(f"{p:,.0f}" for p in recent)
    return Condition(
        True,
        f"{subject(status)}: end-to-end p99 above the SLO of {slo_ms:,.0f} ms for {windows} "
        f"consecutive minutes ({shown} ms)",
    )


def loss_rate_condition(status: Mapping[str, Any], threshold_pct: float) -> Condition:
    """At-most-once: lost / acked over the verdict window above ``threshold_pct``."""
    counts = (status.get("window") or {}).get("counts") or {}
    acked, lost = int(counts.get("acked", 0)), int(counts.get("lost", 0))
    if not acked or 100.0 * lost / acked <= threshold_pct:
        return Condition(False)
    rate = 100.0 * lost / acked
    minutes = VERDICT_WINDOW_S / 60
    return Condition(
        True,
        f"{subject(status)}: {rate:.2f} % of acknowledged records lost over the last "
        f"{minutes:.0f} minutes ({lost:,} of {acked:,}; above {threshold_pct:g} %)",
        {"lost": lost, "acked": acked},
    )


def lint_errors(report: Mapping[str, Any], topic: str, semantic: str) -> list[dict[str, Any]]:
    """The findings of a lint report (``workers.engine.lint.topics.lint_report``) that are errors
    under ``semantic`` for ``topic``: the topic's own, then the cluster's."""
    own = next((t for t in report.get("topics") or [] if t.get("name") == topic), None)
    findings = list((own or {}).get("findings") or []) + list(report.get("cluster_findings") or [])
    return [f for f in findings if (f.get("semantics") or {}).get(semantic) == ERROR]


def _finding_words(finding: Mapping[str, Any]) -> str:
    """``topic.rf-1: replication factor 1 on a 3-broker cluster (replication.factor=1,
    metadata) — With one replica, …``"""
    message = str(finding.get("message") or "")
    setting, value, source = finding.get("setting"), finding.get("value"), finding.get("source")
    shown = f"{setting}={value}" if setting and value is not None else ""
    where = ", ".join(x for x in (shown if shown not in message else "", source) if x)
    words = f"{finding.get('rule')}: {message}" + (f" ({where})" if where else "")
    return f"{words} — {finding['why']}" if finding.get("why") else words


def lint_condition(
    report: Mapping[str, Any] | None, *, cluster: str, topic: str, semantic: str
) -> Condition | None:
    """Whether the lint says ``semantic`` cannot hold on ``topic``: an error finding of the
    topic or of the cluster under that semantic. ``None`` when the report cannot say (none
    yet, or the cluster could not be read): not knowing is not the same as being clear."""
    if not report or report.get("error"):
        return None
    errors = lint_errors(report, topic, semantic)
    if not errors:
        return Condition(False)
    head = f"{semantic} on cluster {cluster}, topic {topic}: lint error"
    reason = f"{head}{'s' if len(errors) > 1 else ''} " + "; ".join(map(_finding_words, errors))
    return Condition(True, reason, {"lint_errors": len(errors)})


# -- what integrations are sent ---------------------------------------------------------------


def partitions_words(partitions: Mapping[str, Mapping[str, Any]], limit: int = 10) -> str:
    """``orders:0 (40, offsets 10-50), orders:3 (2, offsets 7-9)``: the largest first."""
    rows = sorted(partitions.items(), key=lambda kv: (-int(kv[1].get("count", 0)), kv[0]))
    shown = [
        f"{key} ({row['count']:,}, offsets {row['first']}-{row['last']})"
        if "first" in row
        else f"{key} ({', '.join(f'{k} {v}' for k, v in row.items())})"
        for key, row in rows[:limit]
    ]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(shown) + more


TRIGGER, ACKNOWLEDGE, RESOLVE, TEST = "trigger", "acknowledge", "resolve", "test"
PAGERDUTY_SUMMARY_MAX = 1024


@dataclass(frozen=True)
class Notice:
    """One notification about one incident, whatever the integration."""

    event: str  # TRIGGER, ACKNOWLEDGE, RESOLVE or TEST
    dedup_key: str  # the incident's: the same for every notice about it
    rule: str
    severity: str
    cluster: str
    topic: str
    semantic: str
    sentinel: str
    summary: str
    started_at: float
    counts: Mapping[str, int] = field(default_factory=dict)
    ended_at: float | None = None
    url: str = ""
    by: str = ""  # who acknowledged or resolved it
    # Why it happened (``workers.engine.explain``): the cause's label and the words, "" when
    # the incident has none (a state, or not a violation).
    cause: str = ""
    explanation: str = ""
    # A consumer group's incident (``workers.engine.group_alerts``): the group, and per
    # ``topic:partition`` its count and offsets (or status and lag); "" and {} for a sentinel's.
    group: str = ""
    partitions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        labels = {
            "alertname": "DeliverySentinel" + "".join(w.title() for w in self.rule.split("_")),
            "rule": self.rule,
            "severity": self.severity,
            "cluster": self.cluster,
            "topic": self.topic,
            "semantic": self.semantic,
            "sentinel": self.sentinel,
        }
        if self.group:
            labels["group"] = self.group
            del labels["semantic"], labels["sentinel"]
        return labels

    @property
    def partitions_text(self) -> str:
        """``orders:0 (40, offsets 10-50), ...``: a group incident's partitions in words."""
        return partitions_words(self.partitions) if self.partitions else ""


def rfc3339(t: float | None) -> str:
    if t is None:  # Alertmanager's "no end yet"
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def alertmanager_body(notice: Notice, receiver: str) -> dict[str, Any]:
    """An Alertmanager webhook (``version "4"``) body with one alert."""

    labels = notice.labels
    annotations = {"summary": notice.summary, "description": notice.summary}
    if notice.counts:
        annotations["counts"] = ", ".join(f"{k}={v}" for k, v in sorted(notice.counts.items()))
    if notice.explanation:
        annotations["explanation"] = notice.explanation
        annotations["cause"] = notice.cause
    if notice.partitions:
        annotations["partitions"] = notice.partitions_text
    if notice.by:
        annotations["acknowledged_by" if notice.event == ACKNOWLEDGE else "resolved_by"] = notice.by
    status = "resolved" if notice.event == RESOLVE else "firing"
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(notice.started_at),
        "endsAt": rfc3339(notice.ended_at if status == "resolved" else None),
        "generatorURL": notice.url,
        "fingerprint": hashlib.sha256(notice.dedup_key.encode()).hexdigest()[:16],
    }
    group = {"alertname": labels["alertname"]}
    if notice.group:
        group.update(cluster=notice.cluster, group=notice.group)
    else:
        group["sentinel"] = notice.sentinel
    return {
        "version": "4",
        "groupKey": "{}:{" + ",".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": notice.url.split("/incidents/")[0] if notice.url else "",
        "alerts": [alert],
    }


_SLACK_STATE = {
    TRIGGER: "FIRING",
    ACKNOWLEDGE: "ACKNOWLEDGED",
    RESOLVE: "RESOLVED",
    TEST: "TEST",
}


def slack_body(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook message."""
    head = f"[{_SLACK_STATE[notice.event]}] {notice.severity}: {notice.summary}"
    if notice.by:
        head += f" ({'acknowledged' if notice.event == ACKNOWLEDGE else 'resolved'} by {notice.by})"
    if notice.explanation:
        head += f"\nWhy: {notice.explanation}"
    if notice.partitions:
        head += f"\nPartitions: {notice.partitions_text}"
    text = f"{head}\n<{notice.url}|Open the incident>" if notice.url else head
    return {"text": text}


def pagerduty_body(notice: Notice, routing_key: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 event: trigger carries the payload; acknowledge and
    resolve name the incident by its ``dedup_key`` alone."""
    action = {TRIGGER: "trigger", TEST: "trigger", ACKNOWLEDGE: "acknowledge", RESOLVE: "resolve"}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action[notice.event],
        "dedup_key": notice.dedup_key,
    }
    if action[notice.event] == "trigger":
        body["payload"] = {
            "summary": notice.summary[:PAGERDUTY_SUMMARY_MAX],
            "source": f"delivery-sentinel/{notice.cluster}",
            "severity": notice.severity,
            "timestamp": rfc3339(notice.started_at),
            "component": notice.topic,
            "group": notice.cluster,
            "class": notice.rule,
            "custom_details": {
                **(
                    {
                        "group": notice.group,
                        "partitions": {k: dict(v) for k, v in notice.partitions.items()},
                    }
                    if notice.group
                    else {"semantic": notice.semantic, "sentinel": notice.sentinel}
                ),
                "counts": dict(notice.counts),
                **(
                    {"explanation": notice.explanation, "cause": notice.cause}
                    if notice.explanation
                    else {}
                ),
            },
        }
        if notice.url:
            body["links"] = [{"href": notice.url, "text": "Delivery Sentinel incident"}]
    return body
