"""Gathers a cluster's facts for the guarantee lint, read-only.

One ``list_topics`` (brokers, partitions, replicas, ISR, leaders) and batched
``describe_configs`` calls (every topic's effective configs with their sources, and one broker's
configs). Nothing here creates, alters or deletes anything: the lint never writes to a user's
cluster (a test compares every topic config before and after a full lint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

from workers.clients.kafka import admin_with_errors, describe, in_words_after
from workers.engine.lint import topics
from workers.engine.lint.topics import ClusterFacts, PartitionFacts, Setting, TopicFacts

log = logging.getLogger(__name__)

# Topics per DescribeConfigs request: one request per batch, all batches in flight at once.
CONFIG_BATCH = 200
# Only these topic configs are kept (the rules read them; the rest would only cost memory).
TOPIC_KEYS = frozenset(
    {
        "min.insync.replicas",
        "unclean.leader.election.enable",
        "retention.ms",
        "cleanup.policy",
        "delete.retention.ms",
    }
)
BROKER_KEYS = frozenset(
    {
        "transaction.max.timeout.ms",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "offsets.topic.replication.factor",
        "default.replication.factor",
        "min.insync.replicas",
        "unclean.leader.election.enable",
        "broker.session.timeout.ms",
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
        "log.cleanup.policy",
        "log.cleaner.delete.retention.ms",
    }
)
SOURCES = {
    ConfigSource.DEFAULT_CONFIG: topics.DEFAULT,
    ConfigSource.STATIC_BROKER_CONFIG: topics.STATIC_BROKER,
    ConfigSource.DYNAMIC_BROKER_CONFIG: topics.DYNAMIC_BROKER,
    ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG: topics.DYNAMIC_CLUSTER_DEFAULT,
    ConfigSource.DYNAMIC_TOPIC_CONFIG: topics.TOPIC_OVERRIDE,
}


class FactsError(RuntimeError):
    """The cluster could not be read (unreachable, unauthorized...): librdkafka's words."""


def is_internal(topic: str) -> bool:
    """Kafka's own topics (``__consumer_offsets``, ``__transaction_state``) and the platform
    topics named the same way (``_schemas``, ``_confluent-*``)."""
    return topic.startswith("_")


def source_name(source: Any) -> str:
    try:
        return SOURCES.get(ConfigSource(int(getattr(source, "value", source))), "unknown")
    except (TypeError, ValueError):
        return "unknown"


def _settings(entries: dict[str, Any], keys: frozenset[str]) -> dict[str, Setting]:
    return {
        k: Setting(None if e.is_sensitive else e.value, source_name(e.source))
        for k, e in entries.items()
        if k in keys
    }


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def gather(
    bootstrap_servers: str,
    client_properties: dict[str, Any] | None = None,
    *,
    name: str = "",
    timeout: float = 15.0,
    observed_election_ms: int | None = None,
) -> ClusterFacts:
    """Every topic's and the brokers' facts; raises ``FactsError`` when the cluster cannot be
    read at all. A topic whose configs cannot be described keeps an ``error`` of its own."""
    # log_level 4: librdkafka's notices (a purged background queue at close) are noise here.
    conf = {"log_level": 4, **(client_properties or {}), "bootstrap.servers": bootstrap_servers}
    admin, seen = admin_with_errors(conf)
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise FactsError(in_words_after(describe(exc), conf, admin, seen)) from exc
    brokers = tuple(sorted(md.brokers))
    partitions = {
        t.topic: (
            tuple(
                PartitionFacts(p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
                for p in sorted(t.partitions.values(), key=lambda p: p.id)
            ),
            t.error.str() if t.error is not None else None,
        )
        for t in md.topics.values()
    }
    deadline = time.monotonic() + timeout
    futures = {}
    for batch in _batches(sorted(partitions), CONFIG_BATCH):
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in batch]
        futures.update(admin.describe_configs(resources, request_timeout=timeout))
    broker_configs: dict[str, Setting] = {}
    if brokers:
        resource = ConfigResource(ResourceType.BROKER, str(brokers[0]))
        futures.update(admin.describe_configs([resource], request_timeout=timeout))
    topic_configs: dict[str, dict[str, Setting]] = {}
    errors: dict[str, str] = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:  # KafkaException, or a timeout of the future
            if resource.restype == ResourceType.BROKER:
                raise FactsError(f"broker configs: {describe(exc)}") from exc
            errors[resource.name] = describe(exc)
            continue
        if resource.restype == ResourceType.BROKER:
            broker_configs = _settings(entries, BROKER_KEYS)
        else:
            topic_configs[resource.name] = _settings(entries, TOPIC_KEYS)
    topics = {
        t: TopicFacts(
            t,
            parts,
            topic_configs.get(t, {}),
            internal=is_internal(t),
            error=error or errors.get(t),
        )
        for t, (parts, error) in partitions.items()
    }
    return ClusterFacts(name, brokers, broker_configs, topics, observed_election_ms)
