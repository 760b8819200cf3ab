"""Semantic profiles: the producer and consumer settings each delivery semantic needs.

A profile is data: a semantic, librdkafka producer and consumer properties, and a commit
strategy. The three defaults follow the user's document (``seed/delivery-semantics.txt``);
variants (``acks=1``, idempotence off, ...) are the same structure with other properties.

The rules that need no client live here (Java-only and reserved keys, settings that
contradict the commit strategy); ``workers.clients.validation`` adds librdkafka's own verdict by
constructing the real client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SEMANTICS
from workers.engine.redact import MASK, is_secret_key

COMMIT_BEFORE_PROCESS = "commit-before-process"
PROCESS_BEFORE_COMMIT = "process-before-commit"
TRANSACTIONAL = "transactional"
COMMIT_STRATEGIES = (COMMIT_BEFORE_PROCESS, PROCESS_BEFORE_COMMIT, TRANSACTIONAL)

# Keys a Java client understands and librdkafka does not, with what to use instead.
JAVA_ONLY_KEYS = {
    "sasl.jaas.config": (
        "sasl.jaas.config is a Java client setting; librdkafka takes sasl.mechanism with "
        "sasl.username and sasl.password (PLAIN, SCRAM) or the sasl.oauthbearer.* properties"
    ),
    "ssl.truststore.location": (
        "JKS truststores are Java-only; give librdkafka the CA certificates as a PEM file "
        "in ssl.ca.location (or ssl.ca.pem)"
    ),
    "ssl.truststore.password": (
        "JKS truststores are Java-only; librdkafka reads a PEM file from ssl.ca.location, "
        "which needs no password"
    ),
    "ssl.truststore.type": "librdkafka reads CA certificates as PEM from ssl.ca.location",
    "ssl.keystore.type": (
        "librdkafka reads a PKCS#12 keystore from ssl.keystore.location, or PEM files from "
        "ssl.certificate.location and ssl.key.location; convert a JKS keystore to one of those"
    ),
    "key.serializer": "serializers are Java client settings; the sentinel writes its own bytes",
    "value.serializer": "serializers are Java client settings; the sentinel writes its own bytes",
    "key.deserializer": "deserializers are Java client settings; the sentinel reads its own bytes",
    "value.deserializer": "deserializers are Java client settings; the sentinel reads its own bytes",
    "max.poll.records": (
        "max.poll.records is a Java consumer setting; librdkafka takes the batch size per call "
        "(consume(num_messages=...))"
    ),
    "buffer.memory": (
        "buffer.memory is a Java producer setting; librdkafka bounds its queue with "
        "queue.buffering.max.kbytes and queue.buffering.max.messages"
    ),
    "partitioner.class": "partitioner.class is Java-only; librdkafka names a built-in partitioner",
}

# Keys librdkafka understands and the Java client does not, with the Java counterpart.
LIBRDKAFKA_ONLY_KEYS = {
    "message.timeout.ms": "message.timeout.ms is librdkafka's name; Java uses delivery.timeout.ms",
    "message.send.max.retries": "message.send.max.retries is librdkafka's name; Java uses retries",
    "request.required.acks": "request.required.acks is librdkafka's name; Java uses acks",
    "queue.buffering.max.ms": "queue.buffering.max.ms is librdkafka's name; Java uses linger.ms",
    "queue.buffering.max.kbytes": "Java bounds the producer's buffer with buffer.memory (bytes)",
    "queue.buffering.max.messages": "Java bounds the producer's buffer with buffer.memory (bytes)",
    "max.in.flight": (
        "max.in.flight is librdkafka's name; Java uses max.in.flight.requests.per.connection"
    ),
    "enable.auto.offset.store": (
        "enable.auto.offset.store is librdkafka-only; a Java consumer commits what it polled, "
        "or what it passes to commitSync(offsets)"
    ),
    "ssl.ca.location": "Java reads CA certificates from ssl.truststore.location",
    "ssl.certificate.location": "Java reads client certificates from ssl.keystore.location",
    "ssl.key.location": "Java reads the client key from ssl.keystore.location",
    "sasl.username": "Java takes SASL credentials in sasl.jaas.config",
    "sasl.password": "Java takes SASL credentials in sasl.jaas.config",
    "topic.metadata.refresh.interval.ms": (
        "topic.metadata.refresh.interval.ms is librdkafka's name; Java uses metadata.max.age.ms"
    ),
    "statistics.interval.ms": "Java exposes metrics through JMX and metric.reporters",
}


# Set by the sentinel itself; a profile may not override them.
RESERVED_KEYS = frozenset({"bootstrap.servers", "group.id", "transactional.id", "on_delivery"})


def mask_secrets(props: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``props`` with every secret value replaced by ``******``."""
    return {k: (MASK if is_secret_key(k) else v) for k, v in props.items()}


@dataclass(frozen=True)
class Profile:
    """A named set of client properties plus the consumer's commit strategy."""

    name: str
    semantic: str
    producer: dict[str, Any] = field(default_factory=dict)
    consumer: dict[str, Any] = field(default_factory=dict)
    commit_strategy: str = PROCESS_BEFORE_COMMIT

    def __post_init__(self) -> None:
        if self.semantic not in SEMANTICS:
            raise ValueError(f"unknown semantic {self.semantic!r}; expected one of {SEMANTICS}")
        if self.commit_strategy not in COMMIT_STRATEGIES:
            raise ValueError(
                f"unknown commit strategy {self.commit_strategy!r}; expected one of {COMMIT_STRATEGIES}"
            )

    @property
    def acks_zero(self) -> bool:
        """Its producer asks for no acknowledgement (``acks=0``): a delivery report then says
        only that the record left the client, and the offset librdkafka puts in it is not
        the record's (None for some, made-up small numbers for others)."""
        acks = self.producer.get("acks", self.producer.get("request.required.acks", "all"))
        return str(acks).strip() == "0"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "semantic": self.semantic,
            "producer": dict(self.producer),
            "consumer": dict(self.consumer),
            "commit_strategy": self.commit_strategy,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Profile:
        return cls(
            name=doc["name"],
            semantic=doc["semantic"],
            producer=dict(doc.get("producer", {})),
            consumer=dict(doc.get("consumer", {})),
            commit_strategy=doc.get("commit_strategy", PROCESS_BEFORE_COMMIT),
        )

    def variant(
        self, name: str, *, producer: dict | None = None, consumer: dict | None = None
    ) -> Profile:
        """The same profile with some properties changed (``None`` values remove a key)."""

        def merged(base: dict, changes: dict | None) -> dict:
            out = dict(base)
            for key, value in (changes or {}).items():
                if value is None:
                    out.pop(key, None)
                else:
                    out[key] = value
            return out

        return Profile(
            name=name,
            semantic=self.semantic,
            producer=merged(self.producer, producer),
            consumer=merged(self.consumer, consumer),
            commit_strategy=self.commit_strategy,
        )


DEFAULT_PROFILES: dict[str, Profile] = {
    AT_MOST_ONCE: Profile(
        name=AT_MOST_ONCE,
        semantic=AT_MOST_ONCE,
        # Fire and forget: no acknowledgement, no retry; idempotence would contradict both.
        producer={"acks": "0", "retries": "0", "enable.idempotence": "false"},
        # Commit right after the poll, then process: a crash in between loses the batch.
        consumer={"enable.auto.commit": "false", "auto.offset.reset": "earliest"},
        commit_strategy=COMMIT_BEFORE_PROCESS,
    ),
    AT_LEAST_ONCE: Profile(
        name=AT_LEAST_ONCE,
        semantic=AT_LEAST_ONCE,
        # acks=all with retries left at their (unlimited) default, bounded by delivery.timeout.ms.
        producer={"acks": "all", "enable.idempotence": "true", "delivery.timeout.ms": "30000"},
        # Process, then commit: a crash in between reprocesses the batch.
        consumer={"enable.auto.commit": "false", "auto.offset.reset": "earliest"},
        commit_strategy=PROCESS_BEFORE_COMMIT,
    ),
    EXACTLY_ONCE: Profile(
        name=EXACTLY_ONCE,
        semantic=EXACTLY_ONCE,
        # Idempotent, transactional (transactional.id is set per sentinel by the copier).
        producer={"acks": "all", "enable.idempotence": "true", "delivery.timeout.ms": "30000"},
        # The copier reads committed input; the verifier reads the output read_committed.
        consumer={
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        },
        commit_strategy=TRANSACTIONAL,
    ),
}


def java_only_errors(props: dict[str, Any]) -> dict[str, str]:
    return {key: JAVA_ONLY_KEYS[key] for key in props if key in JAVA_ONLY_KEYS}


def static_errors(props: dict[str, Any]) -> dict[str, str]:
    """Errors a property set has whatever librdkafka says: Java-only keys, and keys the
    sentinel sets itself."""
    errors = java_only_errors(props)
    for key in props:
        if key in RESERVED_KEYS:
            errors[key] = f"{key} is set by the sentinel itself and cannot be overridden"
    return errors


def semantic_errors(profile: Profile) -> dict[str, str]:
    """Settings that contradict the profile's commit strategy (``producer.<prop>`` keys)."""
    errors = {}
    if profile.commit_strategy == TRANSACTIONAL:
        if str(profile.producer.get("enable.idempotence", "true")).lower() == "false":
            errors["producer.enable.idempotence"] = "exactly-once needs enable.idempotence=true"
        if str(profile.consumer.get("isolation.level", "read_committed")) != "read_committed":
            errors["consumer.isolation.level"] = "exactly-once verification reads read_committed"
    return errors
