"""The exactly-once verifier: reads the copier's output ``read_committed`` and processes it
exactly once by storing its offsets in the same Redis transaction as its ledger entry."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TopicPartition,
)

from workers.clients.kafka import txn_token
from workers.engine import codec
from workers.engine.spec import SentinelSpec
from workers.roles.consumer import AssignedConsumer
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)


class CommittedVerifier(AssignedConsumer):
    """Reads the copier's output ``read_committed`` and processes each record exactly once.

    Offsets live in Redis, written in the same transaction as the ledger entry, so a crash
    can neither skip nor repeat a processing: what the ledger shows is what Kafka delivered.
    """

    role = "verifier"

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.source_topic = spec.output_topic_name
        self.offsets: dict[int, int] = {}
        self.aborted_tokens: set[bytes] = set()  # as ``txn_token`` reads them
        self._aborted_refresh = 0.0

    def consumer_conf(self) -> dict[str, Any]:
        return self.spec.consumer_conf(
            error_cb=self.on_client_error,
            **{"group.id": self.spec.group_id + ".verifier", "enable.auto.commit": "false"},
        )

    def start(self) -> None:
        self.offsets = self.store.stored_offsets(self.source_topic)
        super().start()

    def start_offsets(self, partitions: list[int]) -> list[TopicPartition]:
        return [
            TopicPartition(self.source_topic, p, self.offsets.get(p, OFFSET_BEGINNING))
            for p in partitions
        ]

    def step(self) -> None:
        # Before the poll: a Redis error here must not drop a batch the consumer is past.
        self.refresh_aborted()
        msgs = self.poll_batch()
        if not msgs:
            return
        clean, aborted = self.split_aborted(msgs)
        entry = self.decode_batch(clean)
        aborted_items = []
        for msg in aborted:
            record = codec.decode(msg.value(), sentinel_id=self.spec.id)
            if isinstance(record, codec.Record):
                aborted_items.append((record.run_id, record.partition, record.seq))
            else:
                entry.foreign += 1
        entry.aborted = aborted_items
        for msg in msgs:
            self.offsets[msg.partition()] = msg.offset() + 1
        self.process(entry, offsets=self.offsets, topic=self.source_topic)
        self.error = None

    def split_aborted(self, msgs: list[Any]) -> tuple[list[Any], list[Any]]:
        """The batch's records of transactions not known aborted, and the others (by their
        copier's token, ``txn_token``). With no transaction known aborted (the usual case) no
        token is read: reading the headers was a fifth of the verifier's time at saturation."""
        if not self.aborted_tokens:
            return msgs, []
        clean, aborted = [], []
        for msg in msgs:
            (aborted if txn_token(msg) in self.aborted_tokens else clean).append(msg)
        return clean, aborted

    def refresh_aborted(self) -> None:
        now = time.monotonic()
        if now - self._aborted_refresh >= 1.0:
            self._aborted_refresh = now
            self.aborted_tokens = {t.encode() for t in self.store.aborted_txns()}
