"""Guarantee lint: can a topic, on its cluster, deliver a semantic at all? Pure checks on plain
facts.

Inputs are dataclasses (``TopicFacts``, ``ClusterFacts``) gathered read-only by
``workers.clients.lintfacts``; client configurations are linted by ``workers.engine.lint.client``.
Every rule is in the catalogue ``workers.engine.lint.rules.RULES``.

Per topic and semantic the verdict is ``can-hold``, ``one-failure-away`` or ``cannot-hold``,
with the first (most severe) finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from workers.engine.documents import SEMANTICS
from workers.engine.lint.rules import (  # noqa: F401 (re-exported)
    CAN_HOLD,
    CANNOT_HOLD,
    ERROR,
    ONE_FAILURE_AWAY,
    RULES,
    VERDICT_LABELS,
    WARNING,
    Rule,
)

_VERDICT_OF = {ERROR: CANNOT_HOLD, WARNING: ONE_FAILURE_AWAY}
_RANK = {ERROR: 2, WARNING: 1}


# Where a setting's value comes from (Kafka's ConfigEntry.source, and the client side).
DEFAULT = "default"
STATIC_BROKER = "static broker"
DYNAMIC_BROKER = "dynamic broker"
DYNAMIC_CLUSTER_DEFAULT = "dynamic cluster default"
TOPIC_OVERRIDE = "topic override"
METADATA = "metadata"
CLIENT_SET = "client config"
CLIENT_DEFAULT = "client default"

TRANSACTION_LOG = "__transaction_state"
OFFSETS_TOPIC = "__consumer_offsets"


@dataclass(frozen=True)
class Setting:
    """A setting's effective value and where it comes from (one of the source constants)."""

    value: str | None
    source: str


@dataclass(frozen=True)
class PartitionFacts:
    id: int
    leader: int  # -1: none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class TopicFacts:
    name: str
    partitions: tuple[PartitionFacts, ...]
    configs: dict[str, Setting] = field(default_factory=dict)
    internal: bool = False
    error: str | None = None
    # Its consumer groups' worst lag in seconds over the last days, worst first (the group
    # watcher's, ``workers.engine.groups.worst_lags``): ((group, seconds), ...).
    group_lags: tuple[tuple[str, float], ...] = ()

    @property
    def replication_factor(self) -> int:
        return max((len(p.replicas) for p in self.partitions), default=0)


@dataclass(frozen=True)
class ClusterFacts:
    """A cluster's brokers, broker-level configs (of one broker) and every topic's facts."""

    name: str
    brokers: tuple[int, ...]
    configs: dict[str, Setting] = field(default_factory=dict)
    topics: dict[str, TopicFacts] = field(default_factory=dict)
    observed_election_ms: int | None = None  # from fault scenarios, when known

    def broker_int(self, key: str, default: int) -> int:
        return _int((self.configs.get(key) or Setting(None, DEFAULT)).value, default)


@dataclass(frozen=True)
class Finding:
    """One rule that fires; ``setting``/``value``/``source`` say what triggered it."""

    rule: str
    subject: str
    message: str
    setting: str = ""
    value: str | None = None
    source: str = ""
    partitions: tuple[int, ...] = ()

    def for_semantic(self, semantic: str) -> dict[str, Any] | None:
        """The finding's document under ``semantic`` (``None``: the rule does not apply)."""
        rule = RULES[self.rule]
        severity = rule.severity.get(semantic)
        if severity is None:
            return None
        doc = {
            "rule": self.rule,
            "severity": severity,
            "subject": self.subject,
            "message": self.message,
            "why": rule.why,
            "fix": rule.fix,
            "setting": self.setting,
            "value": self.value,
            "source": self.source,
        }
        if self.partitions:
            doc["partitions"] = list(self.partitions)
        return doc


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _setting(topic: TopicFacts, cluster: ClusterFacts, key: str, default: str) -> Setting:
    return topic.configs.get(key) or cluster.configs.get(key) or Setting(default, DEFAULT)


def lint_topic(topic: TopicFacts, cluster: ClusterFacts) -> list[Finding]:
    """Every topic rule that fires on ``topic``, whatever the semantic."""
    if topic.error or not topic.partitions:
        return []
    out: list[Finding] = []
    rf = topic.replication_factor
    name = topic.name

    def add(rule: str, message: str, key: str = "", s: Setting | None = None, parts=()) -> None:
        out.append(
            Finding(
                rule,
                name,
                message,
                key,
                s.value if s else None,
                s.source if s else "",
                tuple(parts),
            )
        )

    meta = Setting(str(rf), METADATA)
    if rf == 1 and len(cluster.brokers) >= 2:
        add(
            "topic.rf-1",
            f"replication factor 1 on a {len(cluster.brokers)}-broker cluster",
            "replication.factor",
            meta,
        )
    min_isr = _setting(topic, cluster, "min.insync.replicas", "1")
    mi = _int(min_isr.value, 1)
    if mi <= 1 and rf > 1:
        add("topic.min-isr-1", "min.insync.replicas=1", "min.insync.replicas", min_isr)
    if rf > 1 and mi >= rf:
        extra = f" (effective {rf}: capped by the replica count)" if mi > rf else ""
        add(
            "topic.min-isr-ge-rf",
            f"min.insync.replicas={mi} with replication factor {rf}{extra}",
            "min.insync.replicas",
            min_isr,
        )
    unclean = _setting(topic, cluster, "unclean.leader.election.enable", "false")
    if str(unclean.value).lower() == "true":
        add(
            "topic.unclean-election",
            "unclean.leader.election.enable=true",
            "unclean.leader.election.enable",
            unclean,
        )
    offline = [p.id for p in topic.partitions if p.leader < 0]
    if offline:
        add("topic.offline", f"{len(offline)} partition(s) without a leader", parts=offline)
    under = [p.id for p in topic.partitions if len(p.isr) < len(p.replicas)]
    if under:
        add(
            "topic.under-replicated",
            f"{len(under)} partition(s) with ISR < replicas",
            "isr",
            Setting(None, METADATA),
            under,
        )
    at_min = [p.id for p in topic.partitions if rf > 1 and len(p.isr) == mi < len(p.replicas)]
    if at_min:
        add(
            "topic.isr-at-min",
            f"{len(at_min)} partition(s) with ISR = min.insync.replicas={mi}",
            "min.insync.replicas",
            min_isr,
            at_min,
        )
    if 0 < len(cluster.brokers) < rf:
        add(
            "topic.fewer-brokers-than-rf",
            f"{len(cluster.brokers)} broker(s) for replication factor {rf}",
            "replication.factor",
            meta,
        )
    idle = _idle_leaders(topic)
    if idle:
        add(
            "topic.leaders-not-spread",
            f"broker(s) {', '.join(map(str, idle))} lead no partition",
            "leader",
            Setting(None, METADATA),
        )
    retention_ms, retention = _retention(topic, cluster)
    deletes = "delete" in str(_cleanup_policy(topic, cluster).value or "delete").lower()
    if topic.group_lags and deletes and retention_ms is not None:
        group, lag_s = topic.group_lags[0]  # the worst
        if lag_s * 1000 >= retention_ms:
            add(
                "topic.retention-below-group-lag",
                f"retention {_span(retention_ms / 1000)} is shorter than group '{group}''s "
                f"worst lag this week ({_span(lag_s)}): it loses records the next time it "
                "falls that far behind",
                "retention.ms",
                retention,
            )
    compacts = "compact" in str(_cleanup_policy(topic, cluster).value or "").lower()
    if topic.group_lags and compacts:
        group, lag_s = topic.group_lags[0]
        keep_ms, keep = _delete_retention(topic, cluster)
        if lag_s * 1000 >= keep_ms:
            add(
                "topic.tombstones-expire-before-group-reads",
                f"delete.retention.ms {_span(keep_ms / 1000)} on a compacted topic is shorter "
                f"than group '{group}''s worst lag this week ({_span(lag_s)}): a deletion the "
                "cleaner removes before the group reads it is never seen, so the group keeps "
                "the deleted key",
                "delete.retention.ms",
                keep,
            )
    return out


def _delete_retention(topic: TopicFacts, cluster: ClusterFacts) -> tuple[int, Setting]:
    """How long a compacted topic keeps a deletion marker (tombstone) once cleaned: the
    topic's ``delete.retention.ms``, else the broker's ``log.cleaner.delete.retention.ms``
    (1 day by default)."""
    for setting in (
        topic.configs.get("delete.retention.ms"),
        cluster.configs.get("log.cleaner.delete.retention.ms"),
    ):
        if setting is not None and setting.value not in (None, ""):
            return max(_int(setting.value, 86_400_000), 0), setting
    return 86_400_000, Setting("86400000", DEFAULT)


def with_group_lags(facts: ClusterFacts, lags: dict[str, list[tuple[str, float]]]) -> ClusterFacts:
    """``facts`` with each topic's groups' worst lags (``workers.engine.groups.worst_lags``)."""
    topics = {
        name: replace(topic, group_lags=tuple(lags.get(name, ())))
        for name, topic in facts.topics.items()
    }
    return replace(facts, topics=topics)


def _retention(topic: TopicFacts, cluster: ClusterFacts) -> tuple[int | None, Setting]:
    """The topic's retention in ms (None: kept forever) and the setting it comes from: the
    topic's ``retention.ms`` (Kafka reports the effective value), else the broker's
    ``log.retention.ms`` / ``.minutes`` / ``.hours`` (168 h by default)."""
    own = topic.configs.get("retention.ms")
    if own is not None and own.value not in (None, ""):
        ms, setting = _int(own.value, -1), own
    else:
        ms, setting = 168 * 3600_000, Setting("168", DEFAULT)
        for key, scale in (
            ("log.retention.hours", 3600_000),
            ("log.retention.minutes", 60_000),
            ("log.retention.ms", 1),
        ):
            found = cluster.configs.get(key)
            if found is not None and found.value not in (None, ""):
                ms, setting = _int(found.value, -1) * scale, found
    return (ms if ms >= 0 else None), setting


def _cleanup_policy(topic: TopicFacts, cluster: ClusterFacts) -> Setting:
    return (
        topic.configs.get("cleanup.policy")
        or cluster.configs.get("log.cleanup.policy")
        or Setting("delete", DEFAULT)
    )


def _span(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable: 45 s, 14 min, 2.5 h, 7 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = seconds / size
            return (
                f"{value:.0f} {unit}"
                if value >= 10 or value == int(value)
                else f"{value:.1f} {unit}"
            )
    return f"{seconds:.0f} s"


def _idle_leaders(topic: TopicFacts) -> list[int]:
    """Brokers holding replicas that lead none of the partitions, when partitions could cover
    them all (one partition can only have one leader)."""
    holders = {b for p in topic.partitions for b in p.replicas}
    if len(topic.partitions) < len(holders):
        return []
    leaders = {p.leader for p in topic.partitions}
    return sorted(holders - leaders)


def _internal(
    cluster: ClusterFacts, topic: str, rf_key: str, isr_key: str
) -> tuple[Setting, Setting]:
    """An internal topic's replication factor and min ISR: from the topic when it exists
    (its real state), else from the broker settings it will be created with."""
    facts = cluster.topics.get(topic)
    if facts is not None and facts.partitions:
        rf = Setting(str(facts.replication_factor), METADATA)
        isr = facts.configs.get("min.insync.replicas") or cluster.configs.get(isr_key)
    else:
        rf = cluster.configs.get(rf_key) or Setting("3", DEFAULT)
        isr = cluster.configs.get(isr_key)
    return rf, isr or Setting("1" if isr_key == "min.insync.replicas" else "2", DEFAULT)


def lint_cluster(cluster: ClusterFacts) -> list[Finding]:
    """The cluster rules: the transaction state log and the offsets topic."""
    out = []
    checks = (
        (
            TRANSACTION_LOG,
            "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr",
            "cluster.txn-log-rf",
            "cluster.txn-log-min-isr",
        ),
        (
            OFFSETS_TOPIC,
            "offsets.topic.replication.factor",
            "min.insync.replicas",
            "cluster.offsets-rf",
            "cluster.offsets-min-isr",
        ),
    )
    for topic, rf_key, isr_key, rf_rule, isr_rule in checks:
        rf, isr = _internal(cluster, topic, rf_key, isr_key)
        rf_key_shown = rf_key if rf.source != METADATA else "replication.factor"
        if _int(rf.value, 3) < 3:
            out.append(
                Finding(
                    rf_rule,
                    topic,
                    f"{topic} replication factor {rf.value}",
                    rf_key_shown,
                    rf.value,
                    rf.source,
                )
            )
        if _int(isr.value, 2) < 2:
            out.append(
                Finding(
                    isr_rule, topic, f"{topic} min ISR {isr.value}", isr_key, isr.value, isr.source
                )
            )
    return out


def verdict(findings: list[Finding], semantic: str) -> dict[str, Any]:
    """``{"verdict", "label", "first", "findings"}`` under ``semantic``; findings worst first."""
    docs = [d for f in findings if (d := f.for_semantic(semantic)) is not None]
    docs.sort(key=lambda d: -_RANK[d["severity"]])
    v = _VERDICT_OF[docs[0]["severity"]] if docs else CAN_HOLD
    return {
        "verdict": v,
        "label": VERDICT_LABELS[v],
        "first": docs[0] if docs else None,
        "findings": docs,
    }


def lint_report(cluster: ClusterFacts, *, generated_at: float | None = None) -> dict[str, Any]:
    """The whole lint of a cluster: cluster findings, and per topic its findings and a verdict
    per semantic (cluster findings count in every topic's verdict). JSON-ready."""
    shared = lint_cluster(cluster)
    topics = []
    counts = {ERROR: 0, WARNING: 0}
    for name in sorted(cluster.topics):
        topic = cluster.topics[name]
        own = lint_topic(topic, cluster)
        verdicts = {}
        for sem in SEMANTICS:
            v = verdict(own + shared, sem)
            first = v["first"] and {k: v["first"][k] for k in ("rule", "severity", "message")}
            verdicts[sem] = {"verdict": v["verdict"], "label": v["label"], "first": first}
        docs = {f.rule: f for f in own}
        topics.append(
            {
                "name": name,
                "internal": topic.internal,
                "error": topic.error,
                "partitions": len(topic.partitions),
                "replication_factor": topic.replication_factor,
                "findings": [_any_semantic(f) for f in docs.values()],
                "verdicts": verdicts,
            }
        )
        for f in own:
            counts[_any_semantic(f)["severity"]] += 1
    cluster_docs = [_any_semantic(f) for f in shared]
    for d in cluster_docs:
        counts[d["severity"]] += 1
    return {
        "cluster": cluster.name,
        "generated_at": generated_at,
        "brokers": list(cluster.brokers),
        "cluster_findings": cluster_docs,
        "topics": topics,
        "counts": counts,
    }


def _any_semantic(finding: Finding) -> dict[str, Any]:
    """A finding's document at its worst severity over the semantics, naming them."""
    rule = RULES[finding.rule]
    worst_sem = max(rule.severity, key=lambda s: _RANK[rule.severity[s]])
    doc = finding.for_semantic(worst_sem)
    assert doc is not None
    doc["semantics"] = {s: rule.severity[s] for s in SEMANTICS if s in rule.severity}
    return doc


def has_errors(report: dict[str, Any], *, include_internal: bool = True) -> bool:
    """Whether any finding of the report is an error (for exit codes)."""
    if report.get("cluster_findings") and any(
        f["severity"] == ERROR for f in report["cluster_findings"]
    ):
        return True
    return any(
        f["severity"] == ERROR
        for t in report["topics"]
        if include_internal or not t["internal"]
        for f in t["findings"]
    )
