"""The ACLs a sentinel's principal needs on a cluster with an authorizer, per semantic, and
the words for a denial (pure data: no Kafka client).

Kafka's implied operations keep the list short: Read, Write and Alter each imply Describe.
Idempotent producers need Write on a topic (Kafka 3.0+: no cluster IdempotentWrite).

=================  ==================================  ===================  ======================
semantic           resource (literal names)            operations           why
=================  ==================================  ===================  ======================
all                topic ``<topic>``                   Create, Describe     created at first start
all                topic ``<topic>``                   Write                the producer
all                topic ``<topic>``                   Read                 the consumer / copier
all                topic ``<topic>``                   Alter                only to add partitions
at-most-once,      group ``delivery-sentinel.<id>``    Read                 commits and offsets
at-least-once
exactly-once       topic ``<topic>.out``               Create, Write, Read  the copier's output
exactly-once       group ``delivery-sentinel.<id>.     Read                 the copier's offsets in
                   copier`` and ``....verifier``                            its transactions; the
                                                                            verifier's group
exactly-once       transactional id ``delivery-        Write                the two transactional
                   sentinel.<id>.producer`` and                             producers
                   ``....copier``
=================  ==================================  ===================  ======================
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.engine.documents import EXACTLY_ONCE

TOPIC = "topic"
GROUP = "group"
TRANSACTIONAL_ID = "transactional id"


@dataclass(frozen=True)
class AclNeed:
    """One ALLOW a sentinel needs: ``operation`` on the ``resource`` named ``name``."""

    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    name: str
    operation: str  # Kafka's AclOperation name: Read, Write, Create, Describe, Alter
    why: str = ""
    roles: tuple[str, ...] = ()  # the sentinel roles whose denial this explains

    def __str__(self) -> str:
        return f"{self.operation} on {self.resource} {self.name!r}"


def sentinel_acls(semantic: str, sentinel_id: int | str, topic: str) -> list[AclNeed]:
    """Every ACL a sentinel of ``semantic`` with this id and topic needs (literal names; the
    id ``*`` with the topic ``*`` gives the wildcard set for a principal of many sentinels)."""
    group = f"delivery-sentinel.{sentinel_id}" if sentinel_id != "*" else "*"
    needs = [
        AclNeed(TOPIC, topic, "Create", "the sentinel creates its topic at its first start"),
        AclNeed(TOPIC, topic, "Describe", "metadata: partitions and leaders"),
        AclNeed(TOPIC, topic, "Write", "the producer", ("producer",)),
        AclNeed(TOPIC, topic, "Read", "the consumer or copier", ("consumer", "copier")),
        AclNeed(TOPIC, topic, "Alter", "only when the partition count grows"),
    ]
    if semantic != EXACTLY_ONCE:
        return [
            *needs,
            AclNeed(GROUP, group, "Read", "the consumer's commits and offsets", ("consumer",)),
        ]
    out = f"{topic}.out" if topic != "*" else "*"
    suffix = (lambda s: f"{group}.{s}") if group != "*" else (lambda s: "*")
    needs += [
        AclNeed(TOPIC, out, "Create", "the copier's output topic"),
        AclNeed(TOPIC, out, "Write", "the copier's transactions", ("copier",)),
        AclNeed(TOPIC, out, "Read", "the read_committed verifier", ("verifier",)),
        AclNeed(GROUP, suffix("copier"), "Read", "the copier's offsets", ("copier",)),
        AclNeed(GROUP, suffix("verifier"), "Read", "the verifier's group", ("verifier",)),
        AclNeed(TRANSACTIONAL_ID, suffix("producer"), "Write", "transactions", ("producer",)),
        AclNeed(TRANSACTIONAL_ID, suffix("copier"), "Write", "transactions", ("copier",)),
    ]
    unique: dict[tuple[str, str, str], AclNeed] = {}
    for need in needs:  # the wildcard set names some entries twice
        unique.setdefault((need.resource, need.name, need.operation), need)
    return list(unique.values())


def role_acls(role: str, semantic: str, sentinel_id: int | str, topic: str) -> list[AclNeed]:
    """The ACLs ``role`` (producer, consumer, copier, verifier) uses, to name in a denial."""
    return [n for n in sentinel_acls(semantic, sentinel_id, topic) if role in n.roles]
