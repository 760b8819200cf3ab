"""The exactly-once copier: consume-transform-produce from the input topic to the output
topic in transactions, offsets sent to each transaction."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from confluent_kafka import (
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from workers.clients.kafka import (
    admin_for,
    commit_transaction_with_retries,
    describe,
    ensure_topic,
)
from workers.engine import codec
from workers.engine.spec import SentinelSpec
from workers.roles.consumer import AssignedConsumer
from workers.roles.faults import FaultHook
from workers.roles.loop import RestartRole
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)


SEND_OFFSETS_ATTEMPTS = 3
SEND_OFFSETS_TIMEOUT_S = 30.0


class TransactionalCopier(AssignedConsumer):
    """Exactly-once consume-transform-produce: input topic -> output topic, one transaction a batch.

    Each output record carries a header with its transaction token, so a record from an
    aborted transaction is recognisable if it ever reaches the read_committed verifier.
    """

    role = "copier"
    # Each batch is a transaction, begun as soon as a record is there (``consume_batch``): at a
    # low rate the input's records arrive together, one producer transaction at a time, and
    # under a backlog a transaction takes what arrived during the previous one.

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        super().__init__(spec, store)
        self.source_topic = spec.topic
        self.producer: Producer | None = None
        self.instance = codec.new_run_id()
        self.txn_seq = 0
        self.fenced = False
        self.fault = FaultHook(store)

    def consumer_conf(self) -> dict[str, Any]:
        return self.spec.consumer_conf(
            error_cb=self.on_client_error,
            **{"group.id": self.spec.group_id + ".copier", "isolation.level": "read_committed"},
        )

    def start(self) -> None:
        admin = admin_for(self.spec)
        count = ensure_topic(admin, self.spec, self.spec.topic, self.spec.partitions)
        ensure_topic(admin, self.spec, self.spec.output_topic_name, count)
        self.producer = Producer(
            self.spec.producer_conf(
                **{"transactional.id": self.spec.transactional_id, "error_cb": self.on_client_error}
            )
        )
        # Fences any previous instance with this transactional.id and aborts its open transaction.
        self.producer.init_transactions(60)
        # Only now: a previous instance still alive could commit its "open" transaction until
        # init_transactions() fenced it (a false aborted read and loss otherwise).
        self.recover_previous_transaction()
        super().start()

    def recover_previous_transaction(self) -> None:
        """A previous instance died mid-transaction: that transaction can only have aborted.

        A token marked "open" never reached commit_transaction(), so the coordinator aborts it
        when this instance calls init_transactions(). One marked "committing" may or may not
        have committed, so it is not claimed either way.
        """
        state, token = self.store.txn_state()
        if state == "open" and token:
            self.store.add_aborted_txn(token)
            self.store.event(
                "txn-aborted", f"copier transaction {token} was left open and is aborted"
            )

    def follow_partitions(self, force: bool = False) -> None:
        before = self.assigned
        super().follow_partitions(force)
        if self.assigned > before and not force and self.producer is not None:
            ensure_topic(
                admin_for(self.spec), self.spec, self.spec.output_topic_name, self.assigned
            )

    def step(self) -> None:
        assert self.producer is not None and self.consumer is not None
        msgs = self.poll_batch()
        if not msgs:
            return
        self.txn_seq += 1
        token = f"{self.instance}:{self.txn_seq}"
        committed = False
        try:
            self.store.set_txn_state("open", token)
            self.producer.begin_transaction()
            self.produce_copies(msgs, token)
            self.fault.at("mid-transaction", batch=len(msgs), token=token)
            self.send_offsets_with_retries()
            if self.fault.at("abort-transaction", kill=False, batch=len(msgs), token=token):
                self.producer.flush(10)  # the records reach the log, then the abort marks them
                raise_abortable()
            self.store.set_txn_state("committing", token)
            self.commit_transaction()
            committed = True
            # No "committed" state: the next transaction's "open" replaces "committing" at
            # once, and a copier that dies in between leaves "committing", which a successor
            # does not claim either way (``recover_previous_transaction``), as "committed".
            self.error = None
        except KafkaException as exc:
            self.handle_txn_error(exc.args[0], token, msgs)
        except redis.RedisError:
            # Redis went away mid-batch (the loop reports it and steps again). The consumer is
            # past the batch: before the commit, abort its transaction and read it again, or
            # the next transaction would commit offsets past records it never copied (a loss
            # Kafka never caused).
            if not committed:
                self.abandon(token, msgs)
            raise

    def produce_copies(self, msgs: list[Any], token: str) -> None:
        """Copy each record to the output topic's same partition, keyed with the
        transaction's token (``txn_token``: the verifier tells aborted transactions' records
        by it)."""
        assert self.producer is not None
        produce, poll = self.producer.produce, self.producer.poll
        topic, key = self.spec.output_topic_name, token.encode()
        for msg in msgs:
            while True:
                try:
                    produce(topic, msg.value(), key, partition=msg.partition())
                    break
                except BufferError:
                    poll(0.05)

    def send_offsets_with_retries(self) -> None:
        """Add the batch's positions to the transaction; librdkafka: a retriable error "may
        be retried". After ``SEND_OFFSETS_ATTEMPTS`` the error goes to ``handle_txn_error``,
        which aborts the transaction and reads the batch again."""
        assert self.producer is not None and self.consumer is not None
        positions = self.consumer.position(self.consumer.assignment())
        group = self.consumer.consumer_group_metadata()
        for attempt in range(1, SEND_OFFSETS_ATTEMPTS + 1):
            try:
                with self.bounded_call(SEND_OFFSETS_TIMEOUT_S):
                    self.producer.send_offsets_to_transaction(
                        positions, group, SEND_OFFSETS_TIMEOUT_S
                    )
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == SEND_OFFSETS_ATTEMPTS:
                    raise
                self.error = f"retrying send_offsets_to_transaction: {exc.args[0].str()}"
                self.progress()

    def commit_transaction(self) -> None:
        assert self.producer is not None
        commit_transaction_with_retries(self.producer, self.progress)

    def handle_txn_error(self, err: KafkaError, token: str, msgs: list[Any]) -> None:
        assert self.producer is not None
        if err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            # Another instance owns the transactional.id now: stop and let the lease hand over.
            self.fenced = True
            self.error = f"fenced: {err.str()}"
            self.store.event("fenced", f"copier instance {self.instance} was fenced: {err.str()}")
            self.shutdown.set()
            return
        if err.txn_requires_abort() or err.code() == KafkaError._STATE or err.retriable():
            # Retriable here means before the commit (begin, produce, send_offsets after its
            # retries): the transaction may be open with this batch in it. Carrying on would
            # fail the next begin_transaction, and only the next batch would be read again.
            self.abort_and_rewind(token, msgs, err)
            return
        raise KafkaException(err)

    def abort_and_rewind(self, token: str, msgs: list[Any], err: KafkaError) -> None:
        """Abort the batch's transaction and read the batch again from its first offsets."""
        self.abandon(token, msgs)
        self.store.set_txn_state("aborted", token)
        self.error = f"transaction aborted, batch read again: {err.str()}"

    def abandon(self, token: str, msgs: list[Any]) -> None:
        """Abort the batch's transaction (if one is open) and read the batch again from its
        first offsets. Needs no Redis (when Redis is what failed, the token stays "open"
        there, which a restarted copier treats as aborted)."""
        assert self.producer is not None
        try:
            self.producer.abort_transaction(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:  # _STATE: no transaction was open
                # The consumer is past the batch and its transaction is in an unknown state:
                # start again from the committed offsets (init_transactions aborts it).
                raise RestartRole(f"abort_transaction failed: {describe(exc)}") from exc
        else:
            with contextlib.suppress(redis.RedisError):
                self.store.add_aborted_txn(token)
        self.rewind(msgs)

    def rewind(self, msgs: list[Any]) -> None:
        """After an abort, read the batch again from its first offsets."""
        assert self.consumer is not None
        firsts: dict[int, int] = {}
        for msg in msgs:
            firsts.setdefault(msg.partition(), msg.offset())
        for partition, offset in firsts.items():
            self.consumer.seek(TopicPartition(self.source_topic, partition, offset))

    def close(self) -> None:
        super().close()
        if self.producer is not None:
            producer, self.producer = self.producer, None
            if not self.fenced:
                producer.flush(10)


def raise_abortable() -> None:
    """Used by the ``abort-transaction`` fault: behave as if the broker demanded an abort."""
    raise KafkaException(
        KafkaError(
            KafkaError._STATE, "fault injection: abort this transaction", txn_requires_abort=True
        )
    )
