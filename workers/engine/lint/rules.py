"""The guarantee lint's rule catalogue: every rule's id, the semantics it applies to with its
severity under each, one sentence of why, and the fix. Pure data; ``docs/lint.md`` is generated
from ``RULES`` (``python -m workers.engine.lint.rules``) and a test keeps the two in step.

Severity: ``error`` — the guarantee cannot hold (by design, or on a routine event such as a
leader change or a consumer restart); ``warning`` — it holds only until one more failure.
At-most-once promises no durability (it gives up losses, ``documents.ALLOWED``), so the
durability rules do not apply to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SEMANTICS

ERROR = "error"
WARNING = "warning"

CAN_HOLD = "can-hold"
ONE_FAILURE_AWAY = "one-failure-away"
CANNOT_HOLD = "cannot-hold"
VERDICT_LABELS = {
    CAN_HOLD: "can hold",
    ONE_FAILURE_AWAY: "holds until one more failure",
    CANNOT_HOLD: "cannot hold",
}


@dataclass(frozen=True)
class Rule:
    id: str
    subject: str  # topic, cluster, producer, consumer, client
    severity: dict[str, str]  # semantic -> error / warning; absent: does not apply
    why: str
    fix: str


def _rule(id: str, subject: str, severity: dict[str, str], why: str, fix: str) -> Rule:
    return Rule(id, subject, severity, why, fix)


DURABLE = (AT_LEAST_ONCE, EXACTLY_ONCE)


def _all(sev: str, semantics: tuple[str, ...] = SEMANTICS) -> dict[str, str]:
    return dict.fromkeys(semantics, sev)


TOPIC_RULES = [
    _rule(
        "topic.rf-1",
        "topic",
        _all(ERROR, DURABLE),
        "With one replica, the loss of its broker or disk loses every acknowledged record.",
        "Reassign the partitions to 3 replicas (kafka-reassign-partitions).",
    ),
    _rule(
        "topic.min-isr-1",
        "topic",
        _all(WARNING, DURABLE),
        "With min.insync.replicas=1 an acks=all write is acknowledged by the leader alone, "
        "so losing that leader before followers catch up loses it.",
        "Set min.insync.replicas=2 on the topic (with replication factor 3).",
    ),
    _rule(
        "topic.min-isr-ge-rf",
        "topic",
        _all(WARNING, DURABLE),
        "min.insync.replicas at or above the replication factor stops acks=all writes when "
        "one replica fails, and above it gives false safety: the effective minimum is capped "
        "by the replica count (KIP-966).",
        "Set min.insync.replicas to replication factor - 1 (2 with 3 replicas).",
    ),
    _rule(
        "topic.unclean-election",
        "topic",
        _all(ERROR, DURABLE),
        "Unclean leader election lets an out-of-sync replica become leader and truncate "
        "records that were acknowledged.",
        "Set unclean.leader.election.enable=false (topic override or broker).",
    ),
    _rule(
        "topic.under-replicated",
        "topic",
        _all(WARNING, DURABLE),
        "Some partitions have fewer in-sync replicas than replicas right now, so fewer copies "
        "stand between an acknowledged record and its loss.",
        "Bring the missing brokers back or find why followers lag (disk, network, load).",
    ),
    _rule(
        "topic.isr-at-min",
        "topic",
        _all(WARNING, DURABLE),
        "Some partitions have exactly min.insync.replicas in-sync replicas: one more replica "
        "loss stops every acks=all write to them.",
        "Restore the out-of-sync replicas before any maintenance.",
    ),
    _rule(
        "topic.offline",
        "topic",
        _all(ERROR),
        "Some partitions have no leader: nothing can be written to or read from them, so no "
        "semantic holds for their records while they are offline.",
        "Bring back a broker holding their replicas.",
    ),
    _rule(
        "topic.fewer-brokers-than-rf",
        "topic",
        _all(WARNING, DURABLE),
        "The cluster has fewer live brokers than the topic's replication factor, so some "
        "replicas can never be in sync.",
        "Add brokers, or reassign the topic to a replication factor the cluster can hold.",
    ),
    _rule(
        "topic.leaders-not-spread",
        "topic",
        _all(WARNING, DURABLE),
        "A broker holding replicas of the topic leads none of its partitions, so a "
        "sentinel on the topic will not see that broker's loss.",
        "Run a preferred leader election (kafka-leader-election --election-type PREFERRED).",
    ),
    _rule(
        "topic.retention-below-group-lag",
        "topic",
        _all(ERROR, DURABLE),
        "Records are deleted once older than the topic's retention, read or not: a consumer "
        "group that falls further behind than that never reads them (lost to retention). The "
        "group's worst lag of the last 7 days, as its watcher measured it, already did.",
        "Raise retention.ms above the group's worst lag with room to spare (kafka-configs "
        "--alter --entity-type topics --add-config retention.ms=...), or make the group keep up.",
    ),
    _rule(
        "topic.tombstones-expire-before-group-reads",
        "topic",
        _all(ERROR, DURABLE),
        "On a compacted topic a deletion is a record with no value (a tombstone), and the log "
        "cleaner removes it delete.retention.ms after compacting it. A consumer group further "
        "behind than that never reads the deletion: a state built from the topic (a cache, a "
        "table) keeps the deleted key for good. The group's worst lag of the last 7 days, as "
        "its watcher measured it, already was.",
        "Raise delete.retention.ms above the group's worst lag with room to spare "
        "(kafka-configs --alter --entity-type topics --add-config delete.retention.ms=...), or "
        "make the group keep up.",
    ),
]

CLUSTER_RULES = [
    _rule(
        "cluster.txn-log-rf",
        "cluster",
        _all(ERROR, (EXACTLY_ONCE,)),
        "The transaction state log has fewer than 3 replicas: losing them loses transaction "
        "state, and exactly-once with it.",
        "Set transaction.state.log.replication.factor=3 (before the log is first created) or "
        "reassign __transaction_state to 3 replicas.",
    ),
    _rule(
        "cluster.txn-log-min-isr",
        "cluster",
        _all(WARNING, (EXACTLY_ONCE,)),
        "The transaction state log accepts writes with one in-sync replica, so one broker "
        "loss can lose a commit marker.",
        "Set transaction.state.log.min.isr=2 (min.insync.replicas=2 on __transaction_state).",
    ),
    _rule(
        "cluster.offsets-rf",
        "cluster",
        _all(WARNING),
        "The offsets topic has fewer than 3 replicas: losing them loses committed offsets, "
        "and consumers restart from auto.offset.reset (duplicates or losses).",
        "Set offsets.topic.replication.factor=3 or reassign __consumer_offsets to 3 replicas.",
    ),
    _rule(
        "cluster.offsets-min-isr",
        "cluster",
        _all(WARNING),
        "The offsets topic accepts commits with one in-sync replica, so one broker loss can "
        "lose committed offsets.",
        "Set min.insync.replicas=2 on __consumer_offsets.",
    ),
]


# The client rules' checks are in workers.engine.lint.client; their catalogue entries live here
# so that RULES is the one catalogue.
CLIENT_RULES = [
    _rule(
        "producer.acks-weak",
        "producer",
        _all(ERROR, DURABLE),
        "With acks=0 or acks=1 a record counts as written before any follower has it, so a "
        "leader change loses acknowledged records.",
        "Set acks=all.",
    ),
    _rule(
        "producer.idempotence-off",
        "producer",
        {AT_LEAST_ONCE: WARNING, EXACTLY_ONCE: ERROR},
        "Idempotence is disabled while retries and several requests in flight are allowed: a "
        "retried batch is written twice and may land after a later one (duplicates, reordering).",
        "Set enable.idempotence=true (or max.in.flight.requests.per.connection=1).",
    ),
    _rule(
        "producer.retries-at-most-once",
        "producer",
        {AT_MOST_ONCE: WARNING},
        "A retried send whose first attempt was written produces a duplicate, which "
        "at-most-once forbids.",
        "Set retries=0 (the seed: retries=0, acks=0, enable.idempotence=false).",
    ),
    _rule(
        "producer.max-in-flight-above-5",
        "producer",
        _all(ERROR),
        "The broker tracks only the last 5 batches per idempotent producer, so more in flight "
        "breaks its deduplication and ordering (the client refuses to start).",
        "Set max.in.flight.requests.per.connection to 5 or less.",
    ),
    _rule(
        "producer.no-retries",
        "producer",
        _all(WARNING, DURABLE),
        "Without retries, a record sent during a leader election fails instead of being delivered.",
        "Leave retries at its default (unlimited, bounded by delivery.timeout.ms).",
    ),
    _rule(
        "producer.delivery-timeout-short",
        "producer",
        _all(WARNING, DURABLE),
        "delivery.timeout.ms is shorter than a leader election takes (the brokers' session "
        "timeout, or the election time observed), so records sent during one fail.",
        "Raise delivery.timeout.ms well above the election time (the default is 120000 in "
        "Java, 300000 in librdkafka).",
    ),
    _rule(
        "producer.txn-without-idempotence",
        "producer",
        _all(ERROR),
        "A transactional producer must be idempotent; with enable.idempotence=false it cannot "
        "start.",
        "Remove enable.idempotence=false (transactions imply it).",
    ),
    _rule(
        "producer.txn-timeout-above-broker-max",
        "producer",
        _all(ERROR, (EXACTLY_ONCE,)),
        "transaction.timeout.ms above the brokers' transaction.max.timeout.ms makes "
        "InitProducerId fail: the transactional producer cannot start.",
        "Lower transaction.timeout.ms below the brokers' transaction.max.timeout.ms.",
    ),
    _rule(
        "consumer.auto-commit",
        "consumer",
        {AT_MOST_ONCE: WARNING, AT_LEAST_ONCE: ERROR, EXACTLY_ONCE: ERROR},
        "Auto-commit commits on a timer, unrelated to processing: a crash loses records "
        "committed before they were processed (at-least-once) or reprocesses records processed "
        "before their commit (at-most-once, the seed's own warning).",
        "Set enable.auto.commit=false and commit after processing (at-least-once), before it "
        "(at-most-once), or in the transaction (exactly-once).",
    ),
    _rule(
        "consumer.read-uncommitted",
        "consumer",
        _all(ERROR, (EXACTLY_ONCE,)),
        "Without isolation.level=read_committed the consumer reads records of aborted "
        "transactions.",
        "Set isolation.level=read_committed.",
    ),
    _rule(
        "consumer.offset-reset-latest",
        "consumer",
        _all(WARNING, DURABLE),
        "With auto.offset.reset=latest a new group (or one whose offsets expired) skips "
        "everything written before it joined.",
        "Set auto.offset.reset=earliest.",
    ),
    _rule(
        "client.java-only-key",
        "client",
        _all(ERROR),
        "The key is a Java client setting that librdkafka does not know; the client refuses "
        "the configuration.",
        "Use the librdkafka counterpart named in the finding.",
    ),
    _rule(
        "client.librdkafka-only-key",
        "client",
        _all(ERROR),
        "The key is a librdkafka setting that the Java client ignores, so the behaviour it "
        "asks for does not happen.",
        "Use the Java counterpart named in the finding.",
    ),
]


RULES: dict[str, Rule] = {r.id: r for r in TOPIC_RULES + CLUSTER_RULES + CLIENT_RULES}


def catalogue_markdown() -> str:
    """The rule table of ``docs/lint.md`` (a test fails when the doc and this disagree)."""
    lines = [
        "| id | applies to (severity) | why | fix |",
        "|---|---|---|---|",
    ]
    for rule in RULES.values():
        applies = ", ".join(f"{s}: {rule.severity[s]}" for s in SEMANTICS if s in rule.severity)
        cells = (f"`{rule.id}`", applies, rule.why, rule.fix)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
