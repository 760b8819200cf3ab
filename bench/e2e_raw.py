"""The end-to-end benchmark's raw baseline: the same pipeline with plain confluent-kafka
clients (see e2e_bench.py)."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    create_topics,
    delete_topics,
    on_exit,
    thread_cpu_delta,
)
from _e2e import (
    BURST,
    MP,
    SAMPLE_S,
    GilProbe,
    Measurement,
    Timers,
    cpu_of,
    steady_rate,
    timer_report,
)
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from workers.clients.kafka import consume_batch
from workers.engine.profiles import COMMIT_BEFORE_PROCESS, Profile

# -------------------------------------------------------------------------------------------
# Raw baseline
# -------------------------------------------------------------------------------------------


class RawPipeline:
    """Producer -> (transactional copier ->) consumer with plain confluent-kafka clients."""

    def __init__(
        self,
        profile: Profile,
        bootstrap: str,
        topic: str,
        output_topic: str | None,
        partitions: int,
        record_size: int,
        batch: int,
        layout: str = "threads",
    ) -> None:
        self.profile = profile
        self.bootstrap = bootstrap
        self.topic = topic
        self.output_topic = output_topic
        self.partitions = partitions
        self.value = os.urandom(record_size)
        self.batch = batch
        self.layout = layout
        self.group = f"bench-raw-{uuid.uuid4().hex[:8]}"
        # Shared memory and an Event that work for threads and forked processes alike.
        self.stop = MP.Event()
        self._counts = MP.RawArray("q", 4)  # produced, copied, consumed, transactions
        self.errors: list[str] = []
        self.threads: list[Any] = []
        self.timers = Timers()

    def _counter(index: int) -> property:  # noqa: N805 - a property factory, used below
        def get(self: RawPipeline) -> int:
            return self._counts[index]

        def put(self: RawPipeline, value: int) -> None:
            self._counts[index] = value

        return property(get, put)

    produced = _counter(0)
    copied = _counter(1)
    consumed = _counter(2)  # at the end of the pipeline
    transactions = _counter(3)

    def _error(self, err: KafkaError) -> None:
        self.errors.append(f"{err.name()}: {err.str()}")  # threads layout only

    def _conf(self, base: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {**base, "bootstrap.servers": self.bootstrap, "error_cb": self._error, **extra}

    def start(self) -> None:
        targets = [("raw-producer", self._produce)]
        if self.output_topic:
            targets += [("raw-copier", self._copy), ("raw-verifier", self._verify)]
        else:
            targets += [("raw-consumer", self._consume)]
        for name, target in targets:
            if self.layout == "processes":  # each its own process, GIL and all
                worker = MP.Process(target=self._guard, args=(target,), name=name, daemon=True)
            else:
                worker = threading.Thread(
                    target=self._guard, args=(target,), name=name, daemon=True
                )
            worker.start()
            self.threads.append(worker)

    def _guard(self, target) -> None:
        try:
            target()
        except Exception as exc:  # reported with the results, never a silent stall
            self.errors.append(f"{threading.current_thread().name} died: {exc!r}")
            if self.layout == "processes":
                print(f"   !! raw {target.__name__} died: {exc!r}", file=sys.stderr, flush=True)

    def join(self, timeout: float = 30) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)

    def _produce(self) -> None:
        transactional = self.output_topic is not None  # exactly-once, like SentinelProducer
        extra = {"transactional.id": self.group + ".producer"} if transactional else {}
        producer = Producer(self._conf(self.profile.producer, **extra))
        if transactional:
            producer.init_transactions(60)
            producer.begin_transaction()
        last_commit = time.monotonic()
        topic, value, produce = self.topic, self.value, producer.produce
        while not self.stop.is_set():
            full, n = False, 0
            for partition in range(self.partitions):
                for _ in range(BURST):
                    try:
                        produce(topic, value, partition=partition)
                    except BufferError:
                        producer.poll(0.05)
                        full = True
                        break
                    n += 1
                if full:
                    break
            self.produced += n
            producer.poll(0)
            if transactional and time.monotonic() - last_commit >= 0.1:
                producer.commit_transaction(30)
                producer.begin_transaction()
                last_commit = time.monotonic()
        if transactional:
            producer.commit_transaction(30)
        producer.flush(5)

    def _consumer(self, topic: str, start: int | None = None, **extra: Any) -> Consumer:
        consumer = Consumer(self._conf(self.profile.consumer, **{"group.id": self.group, **extra}))
        consumer.assign(
            [
                TopicPartition(topic, p) if start is None else TopicPartition(topic, p, start)
                for p in range(self.partitions)
            ]
        )
        return consumer

    def _batch(self, consumer: Consumer, timeout: float, name: str) -> list[Any]:
        started = time.perf_counter()
        msgs = consume_batch(consumer, self.batch, timeout)  # the sentinel's batching policy
        self.timers.add(name + ".consume", time.perf_counter() - started)
        return [m for m in msgs if m.error() is None]

    def _process(self, msgs: list[Any]) -> None:
        """The pipeline's "processing" of a batch at its end: counting it."""
        self.consumed += len(msgs)

    def _commit(self, consumer: Consumer) -> None:
        started = time.perf_counter()
        consumer.commit(asynchronous=False)
        self.timers.add("consumer.commit", time.perf_counter() - started)

    def _consume(self) -> None:
        consumer = self._consumer(self.topic)
        commit_first = self.profile.commit_strategy == COMMIT_BEFORE_PROCESS
        try:
            while not self.stop.is_set():
                msgs = self._batch(consumer, 0.05, "consumer")
                if not msgs:
                    continue
                try:
                    if commit_first:
                        self._commit(consumer)
                        self._process(msgs)
                    else:
                        self._process(msgs)
                        self._commit(consumer)
                except KafkaException as exc:
                    self._error(exc.args[0])
        finally:
            consumer.close()

    def _copy(self) -> None:
        consumer = self._consumer(
            self.topic, **{"group.id": self.group + ".copier", "isolation.level": "read_committed"}
        )
        producer = Producer(
            self._conf(self.profile.producer, **{"transactional.id": self.group + ".copier"})
        )
        producer.init_transactions(60)
        out = self.output_topic
        try:
            while not self.stop.is_set():
                msgs = self._batch(consumer, 0.1, "copier")  # as TransactionalCopier's
                if not msgs:
                    continue
                started = time.perf_counter()
                producer.begin_transaction()
                for msg in msgs:
                    while True:
                        try:
                            producer.produce(out, msg.value(), partition=msg.partition())
                            break
                        except BufferError:
                            producer.poll(0.05)
                producer.send_offsets_to_transaction(
                    consumer.position(consumer.assignment()),
                    consumer.consumer_group_metadata(),
                    30,
                )
                mid = time.perf_counter()
                producer.commit_transaction(30)
                self.timers.add("copier.produce+offsets", mid - started)
                self.timers.add("copier.commit_transaction", time.perf_counter() - mid)
                self.copied += len(msgs)
                self.transactions += 1
        finally:
            consumer.close()
            producer.flush(5)

    def _verify(self) -> None:
        consumer = self._consumer(
            self.output_topic,
            OFFSET_BEGINNING,
            **{"group.id": self.group + ".verifier", "isolation.level": "read_committed"},
        )
        try:
            while not self.stop.is_set():
                msgs = self._batch(consumer, 0.05, "verifier")
                if msgs:
                    self._process(msgs)
        finally:
            consumer.close()


def measure_raw(args, semantic: str, profile: Profile) -> Measurement:
    suffix = uuid.uuid4().hex[:6]
    topic = f"bench-e2e-raw-{semantic}-{suffix}"
    output = f"{topic}.out" if semantic == "exactly-once" else None
    topics = [t for t in (topic, output) if t]
    create_topics(args.admin_bootstrap, topics, args.partitions, 3, 2)
    if not args.keep_topics:
        on_exit(lambda: delete_topics(args.admin_bootstrap, topics))
    # --secure-cluster: the cluster's client properties (SASL_SSL...) under the profile's.
    client = args.client
    profile = replace(
        profile,
        producer={**client, **profile.producer},
        consumer={**client, **profile.consumer},
    )
    pipe = RawPipeline(
        profile,
        args.bootstrap,
        topic,
        output,
        args.partitions,
        args.record_size,
        args.batch,
        args.layout,
    )
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    pipe.start()
    cpu = lambda: cpu_of(pipe.threads if args.layout == "processes" else [])  # noqa: E731
    cpu_start = cpu_end = None
    while (now := time.monotonic()) < t0 + args.duration:
        samples.append((now, pipe.consumed))
        if cpu_start is None and now >= t0 + args.warmup:
            cpu_start = (now, cpu(), pipe.timers.snapshot())
            probe = GilProbe()
            probe.start()
        time.sleep(SAMPLE_S)
    samples.append((time.monotonic(), pipe.consumed))
    cpu_end = (time.monotonic(), cpu(), pipe.timers.snapshot())
    gil = probe.stop() if cpu_start else "n/a"
    pipe.join()
    rate, seconds = steady_rate(samples, t0 + args.warmup, t0 + args.duration + 1)
    result = Measurement(rate=rate, interval=seconds, counted=pipe.consumed)
    if cpu_start:
        result.cpu = thread_cpu_delta(cpu_start[1], cpu_end[1])
        result.extra["cpu_interval"] = cpu_end[0] - cpu_start[0]
        result.extra["timers"] = timer_report(cpu_start[2], cpu_end[2], cpu_end[0] - cpu_start[0])
    result.extra.update(produced=pipe.produced, copied=pipe.copied, txns=pipe.transactions, gil=gil)
    if pipe.errors:
        result.notes.append(f"{len(pipe.errors)} client errors, first: {pipe.errors[0]}")
    delete_topics(args.admin_bootstrap, [] if args.keep_topics else topics)
    return result
