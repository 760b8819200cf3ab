"""Kafka helpers the roles share: topic creation (with the one definition of a sentinel
topic's settings, ``SentinelSpec.topic_config``), metadata, batch consumption, transaction
commits, and ground-truth reads for tests and the lab."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec

from workers.clients.tlsprobe import verify_reason
from workers.engine.failures import in_words
from workers.engine.spec import SentinelSpec

log = logging.getLogger(__name__)


METADATA_REFRESH_S = 5.0
# Where copiers put their transaction's token before it became the record's key.
TXN_HEADER = "ds-txn"


def txn_token(msg: Any) -> bytes | None:
    """The token of the copier transaction that wrote an output record (the verifier tells an
    aborted transaction's records by it): the record's key, or its ``ds-txn`` header in records
    copied before the key took it (a header doubled the cost of the copier's produce())."""
    key = msg.key()
    if key:
        return key
    headers = msg.headers()
    return dict(headers).get(TXN_HEADER) if headers else None


def describe(exc: BaseException) -> str:
    """A readable one-line message: librdkafka's own words for Kafka errors."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err = exc.args[0]
        return f"{err.name()}: {err.str()}"
    return f"{type(exc).__name__}: {exc}"


def admin_with_errors(conf: dict[str, Any]) -> tuple[AdminClient, list[str]]:
    """An admin client and the list its error callback appends librdkafka's errors to (read
    by ``in_words_after``)."""
    seen: list[str] = []
    return AdminClient({**conf, "error_cb": lambda err: seen.append(err.str())}), seen


def in_words_after(message: str, conf: dict[str, Any], admin: AdminClient, seen: list[str]) -> str:
    """Why ``admin``'s request failed, in words (``workers.engine.failures``), else
    ``message``: librdkafka's exception says only "Broker transport failure"; the cause (a
    wrong password, an untrusted certificate) went to the error callback, served here."""
    admin.poll(0)
    for text in seen:
        said = in_words(
            text,
            user=conf.get("sasl.username"),
            mechanism=conf.get("sasl.mechanism") or conf.get("sasl.mechanisms"),
            tls=verify_reason(text, conf),
        )
        if said != text:
            return said
    return message


def list_topics_in_words(conf: dict[str, Any], timeout: float) -> Any:
    """``AdminClient(conf).list_topics()``; a failure's KafkaException says why in words."""
    admin, seen = admin_with_errors(conf)
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        said = in_words_after(describe(exc), conf, admin, seen)
        if said == describe(exc):
            raise
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, said)) from exc


def admin_for(spec: SentinelSpec, *, quiet: bool = False) -> AdminClient:
    """An admin client of the sentinel's cluster; ``quiet``: without librdkafka's own log
    lines (for metadata clients beside another client that already reports the cluster)."""
    conf = {**spec.client, "bootstrap.servers": spec.bootstrap_servers}
    if quiet:
        conf["log_level"] = 0
    return AdminClient(conf)


def topic_metadata(admin: AdminClient, topic: str, timeout: float) -> dict[str, Any]:
    """Leaders, replicas and in-sync replicas of ``topic``, or why they are unknown.

    ``{"error": str | None, "partitions": {"0": {"leader", "leader_host", "replicas", "isr"}},
    "brokers": {"1": "host:port"}, "controller": int | None}`` (``leader`` -1: none; brokers
    as the metadata names them); an unreachable cluster costs at most ``timeout`` seconds."""
    try:
        meta = admin.list_topics(topic, timeout=timeout)
    except (KafkaException, ValueError, TypeError) as exc:
        error = exc.args[0] if exc.args else exc
        return {"error": getattr(error, "str", lambda: str(error))(), "partitions": {}}
    brokers = {b.id: f"{b.host}:{b.port}" for b in meta.brokers.values()}
    cluster = {
        "brokers": {str(bid): host for bid, host in brokers.items()},
        "controller": meta.controller_id if meta.controller_id >= 0 else None,
    }
    topic_meta = meta.topics.get(topic)
    if topic_meta is None:
        return {"error": f"topic {topic} not found", "partitions": {}, **cluster}
    if topic_meta.error is not None:
        return {"error": topic_meta.error.str(), "partitions": {}, **cluster}
    partitions = {
        str(p.id): {
            "leader": p.leader,
            "leader_host": brokers.get(p.leader, ""),
            "replicas": list(p.replicas),
            "isr": list(p.isrs),
        }
        for p in topic_meta.partitions.values()
    }
    return {"error": None, "partitions": partitions, **cluster}


def connect_error(address: str, timeout: float) -> str | None:
    """Why a TCP connection to a broker's ``host:port`` fails (None: it accepted one).

    Learns in milliseconds that a killed broker is gone, where the cluster metadata keeps
    naming it until the controller fences it. A paused (SIGSTOP) broker still accepts
    connections: its clients' errors and the metadata tell that one."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def records_ever_written(admin: AdminClient, topic: str, timeout: float = 10) -> int:
    """The sum of ``topic``'s high watermarks: how many records were ever written to it (0 for
    a missing topic). Raises ``KafkaException`` when the cluster does not answer."""
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return 0
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in meta.partitions}
    futures = admin.list_offsets(wanted, request_timeout=timeout)
    return sum(max(0, future.result(timeout).offset) for future in futures.values())


def ensure_topic(admin: AdminClient, spec: SentinelSpec, topic: str, partitions: int) -> int:
    """Create ``topic`` if missing (sentinel defaults) and grow it to ``partitions``; its count."""
    md = admin.list_topics(topic=topic, timeout=10)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        new = NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=spec.replication_factor,
            config=spec.topic_config,
        )
        for future in admin.create_topics([new]).values():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        return wait_for_partitions(admin, topic, partitions)
    current = len(meta.partitions)
    if current < partitions:
        for future in admin.create_partitions([NewPartitions(topic, partitions)]).values():
            future.result(timeout=30)
        return wait_for_partitions(admin, topic, partitions)
    return current


def wait_for_partitions(
    admin: AdminClient, topic: str, partitions: int, timeout: float = 30
) -> int:
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        ready = meta is not None and meta.error is None and len(meta.partitions) >= partitions
        if ready and all(p.leader >= 0 for p in meta.partitions.values()):
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for every partition after {timeout}s")
        time.sleep(0.2)


def partition_count(client: Producer | Consumer | AdminClient, topic: str) -> int | None:
    """Current partition count of ``topic`` from metadata, or None when it is unknown."""
    try:
        meta = client.list_topics(topic=topic, timeout=5).topics.get(topic)
    except KafkaException:
        return None
    if meta is None or meta.error is not None:
        return None
    return len(meta.partitions)


# Under a backlog a batch takes what is already fetched, up to this many times batch_size.
BATCH_GROWTH = 8


def consume_batch(consumer: Consumer, batch_size: int, timeout: float) -> list[Any]:
    """One batch: the first record as soon as one arrives (waiting at most ``timeout``), then
    what the client has already fetched, without waiting: up to ``batch_size`` records, and
    under a backlog up to ``BATCH_GROWTH`` times as many.

    Waiting for a batch to fill would be latency the sentinel adds to what it measures:
    ``consume(batch_size, timeout)`` returns only when the batch is full or the timeout ran out,
    so at a low rate every record waited for up to ``timeout`` (end-to-end p50 34 ms where a
    plain client pair saw 6 ms). Batching still happens where it pays, under a backlog: each
    batch costs one synchronous commit (or one transaction), whose latency does not depend on
    the batch's size, and what arrives during one commit is the next batch. A fixed batch
    caps a consumer at batch_size / commit latency (500 / 33 ms on the 2-core test machine at
    1,000 partitions, just above the 10,000 records/s a sentinel of that size produces), so a
    backlog could never drain; growing it only while records are waiting keeps latency and
    the crash-time batch small when the consumer keeps up."""
    msgs = consumer.consume(num_messages=1, timeout=timeout)
    if not msgs or batch_size <= 1:
        return msgs
    msgs.extend(consumer.consume(num_messages=batch_size - 1, timeout=0))
    while len(msgs) >= batch_size and len(msgs) < batch_size * BATCH_GROWTH:
        more = consumer.consume(num_messages=batch_size, timeout=0)
        msgs.extend(more)
        if len(more) < batch_size:
            break
    return msgs


def read_to_end(
    conf: dict[str, Any], topic: str, *, isolation: str, timeout: float = 60
) -> Iterator[Any]:
    """Every record of ``topic``, all partitions from the beginning up to their current end.

    For ground truth (tests, the scenario lab): a throwaway consumer, no commits. Raises
    TimeoutError when some partition was not read to its end within ``timeout`` seconds."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"ds-read-to-end-{time.time_ns()}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        remaining = set(meta.partitions)
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end in {timeout:.0f}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                remaining.discard(msg.partition())
                continue
            yield msg
    finally:
        consumer.close()


def commit_transaction_with_retries(producer: Producer, progress: Callable[[], None]) -> None:
    """``commit_transaction``; a retriable error leaves the outcome to a retry of the same call
    (librdkafka's rule). Anything else is raised for the caller to abort or give up."""
    while True:
        try:
            producer.commit_transaction(30)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise
            progress()
