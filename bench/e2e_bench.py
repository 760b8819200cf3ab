"""End-to-end sentinel throughput at saturation, against a raw confluent-kafka baseline.

    .venv/bin/python bench/e2e_bench.py [--duration 30] [--semantics at-most-once,...]
        [--layout processes|threads] [--rounds 3]
        [--bootstrap 127.0.0.1:9092,...] [--redis-url redis://127.0.0.1:6379/0]
        [--warmup 5] [--partitions 6] [--profile]

Target: for each semantic, the sentinel pipeline's records/s is at least 0.8 of a raw
confluent-kafka pipeline with the same client properties, on the same cluster, in the same run.

For each semantic, on fresh topics (6 partitions, replication factor 3, min.insync.replicas 2):

(a) raw baseline, in threads of this process: a ``Producer`` with the profile's producer
    properties producing records of ``record_size`` bytes as fast as it can (100 per partition
    per step, like ``SentinelProducer.produce_burst``), and a ``Consumer`` with the profile's
    consumer properties, assigned every partition, reading batches as the sentinel does
    (``workers.roles.kafka.consume_batch``: 500, more when a backlog is already fetched) and
    committing synchronously once per batch: before "processing" (counting) under
    at-most-once, after it under at-least-once. Exactly-once: a transactional producer
    writes the input topic (a transaction per 100 ms, like the sentinel's), a
    transactional copier moves each batch to the output topic in one transaction with
    ``send_offsets_to_transaction``, and a ``read_committed`` consumer counts the output.
    Throughput = records counted at the end of the pipeline per second.
(b) the sentinel: ``RoleRunner`` with every role of the semantic (``rate_per_partition=0``),
    in threads of this process. Throughput = increase of the checker's ``totals["processed"]``
    per second, timed by the status documents' ``updated_at``.

Both skip the first ``--warmup`` seconds. After the sentinel's measurement the producer stops
and the rest drains until nothing is pending (``--settle`` seconds at most), then the final
lost / duplicated counts are printed: both must be 0 on a healthy cluster.

Per-thread CPU seconds over the steady interval are printed for both pipelines (librdkafka's
threads grouped), plus the sentinel's stage rates (produced, acked, written to the processing
ledger, classified by the checker), which show where a pipeline stalls. ``--profile`` runs each
sentinel role under cProfile (slower; its throughput is not the benchmark figure) and prints
the top functions per role.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    bench_sentinel_id,
    cpu_seconds,
    create_topics,
    default_bootstrap,
    default_redis_url,
    delete_topics,
    on_exit,
    print_machine_facts,
    process_tree,
    require_loopback,
    spawn,
    start_watchdog,
    stop_child,
    table,
    thread_cpu,
    thread_cpu_delta,
)
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from workers.engine.profiles import COMMIT_BEFORE_PROCESS, DEFAULT_PROFILES, SEMANTICS, Profile
from workers.engine.spec import SentinelSpec
from workers.roles.kafka import consume_batch
from workers.runtime.run import RoleRunner, roles_for
from workers.store import SentinelStore, connect

BURST = 100  # records per partition per producer step, as SentinelProducer.produce_burst
MP = multiprocessing.get_context("fork")
SAMPLE_S = 0.5


@dataclass
class Measurement:
    rate: float = 0.0
    interval: float = 0.0
    counted: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def steady_rate(
    samples: list[tuple[float, float]], start: float, end: float
) -> tuple[float, float]:
    """Rate of a counter over [start, end] from ``(time, value)`` samples; (rate, seconds)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return 0.0, 0.0
    (t1, v1), (t2, v2) = inside[0], inside[-1]
    return ((v2 - v1) / (t2 - t1) if t2 > t1 else 0.0), t2 - t1


class Timers:
    """Calls and seconds per named operation: cheap, per-batch timing counters."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, obj: Any, method: str, name: str) -> None:
        """Time every call of ``obj.method`` (an instance attribute shadows the class's)."""
        original = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        setattr(obj, method, timed)

    def snapshot(self) -> dict[str, tuple[int, float]]:
        with self.lock:
            return {k: (self.calls[k], self.seconds[k]) for k in self.calls}


def timer_report(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]], wall: float
) -> list[str]:
    """``name: ms per call, share of wall time`` for what happened between two snapshots."""
    lines = []
    for name in sorted(after):
        calls = after[name][0] - before.get(name, (0, 0.0))[0]
        seconds = after[name][1] - before.get(name, (0, 0.0))[1]
        if calls:
            lines.append(
                f"{name} {calls}x {1000 * seconds / calls:.2f} ms = {100 * seconds / wall:.0f}%"
            )
    return lines


class GilProbe(threading.Thread):
    """Sleeps 2 ms in a loop and records the overshoot: how long a thread that wakes up from a
    blocking call waits for the GIL (plus the kernel's wake-up latency). Compare raw vs sentinel.
    """

    def __init__(self) -> None:
        super().__init__(name="gil-probe", daemon=True)
        self.stopped = threading.Event()
        self.delays: list[float] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.perf_counter()
            time.sleep(0.002)
            self.delays.append(time.perf_counter() - started - 0.002)

    def stop(self) -> str:
        self.stopped.set()
        self.join(2)
        d = sorted(self.delays)
        if not d:
            return "no samples"
        pick = lambda q: 1000 * d[min(len(d) - 1, int(q * len(d)))]  # noqa: E731
        return f"p50 {pick(0.5):.2f} ms, p90 {pick(0.9):.2f} ms, p99 {pick(0.99):.2f} ms"


def cpu_of(children: list[Any]) -> dict[int, tuple[str, float]]:
    """CPU seconds of this process's threads and of each child process (by its name)."""
    out = thread_cpu()
    for child in children:
        out[child.pid] = (f"{child.name} (process)", cpu_seconds(child.pid) or 0.0)
    return out


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
                        self.consumed += len(msgs)  # "processing"
                    else:
                        self.consumed += len(msgs)
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
                self.consumed += len(self._batch(consumer, 0.05, "verifier"))
        finally:
            consumer.close()


def measure_raw(args, semantic: str, profile: Profile) -> Measurement:
    suffix = uuid.uuid4().hex[:6]
    topic = f"bench-e2e-raw-{semantic}-{suffix}"
    output = f"{topic}.out" if semantic == "exactly-once" else None
    topics = [t for t in (topic, output) if t]
    create_topics(args.bootstrap, topics, args.partitions, 3, 2)
    if not args.keep_topics:
        on_exit(lambda: delete_topics(args.bootstrap, topics))
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
    delete_topics(args.bootstrap, [] if args.keep_topics else topics)
    return result


# -------------------------------------------------------------------------------------------
# Sentinel pipeline
# -------------------------------------------------------------------------------------------


class CountingStore(SentinelStore):
    """The real store, plus counters: records and time spent writing the ledger and acks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger_records = 0
        self.ledger_calls = 0
        self.ledger_s = 0.0
        self.acks_calls = 0
        self.acks_s = 0.0

    def append_ledger(self, items, **kwargs):  # type: ignore[override]
        started = time.perf_counter()
        super().append_ledger(items, **kwargs)
        self.ledger_s += time.perf_counter() - started
        self.ledger_calls += 1
        self.ledger_records += len(items)

    def append_acks(self, *args, **kwargs):  # type: ignore[override]
        started = time.perf_counter()
        super().append_acks(*args, **kwargs)
        self.acks_s += time.perf_counter() - started
        self.acks_calls += 1


TIMED = {
    "producer": ("step", "produce_burst", "flush_acks"),
    "consumer": ("step", "poll_batch", "decode_batch", "process", "commit"),
    "copier": ("step", "poll_batch", "commit_transaction"),
    "verifier": ("step", "poll_batch", "decode_batch", "process"),
    "checker": ("step", "read_acks", "read_ledger", "checkpoint", "status", "emit_window"),
}


def instrument(loop, timers: Timers) -> None:
    for method in TIMED.get(loop.role, ()):
        if hasattr(loop, method):
            timers.wrap(loop, method, f"{loop.role}.{method}")


def profiled(loop, profiles: dict[str, cProfile.Profile]) -> None:
    """Run ``loop.run`` under cProfile, inside the loop's own thread."""
    original = loop.run
    prof = profiles[loop.role] = cProfile.Profile()

    def run() -> None:
        prof.enable()
        try:
            original()
        finally:
            prof.disable()

    loop.run = run


class ProcessHost:
    """The sentinel as workers host it (``--layout processes``): ``python -m workers.runtime.run
    --roles all --layout processes``, whose producer runs in a child process of its own."""

    def __init__(self, spec: SentinelSpec, redis_url: str) -> None:
        self.spec, self.redis_url = spec, redis_url
        self.dir = Path(tempfile.mkdtemp(prefix="e2e-sentinel-"))
        on_exit(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.path = self.dir / "spec.json"
        self.path.write_text(json.dumps(spec.to_dict()))
        self.proc: Any = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "workers.runtime.run",
            "--spec",
            str(self.path),
            "--roles",
            "all",
        ]
        argv += ["--layout", "processes", "--redis-url", self.redis_url]
        with open(self.dir / "sentinel.log", "wb") as log:
            self.proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        self.proc.name = "sentinel"

    @property
    def children(self) -> list[Any]:
        """The sentinel's processes, for CPU accounting (named by their roles)."""
        out = []
        for pid in process_tree(self.proc.pid):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if pid else []
            role = next((r for r in ("producer", "checker") if r.encode() in cmd), "consumers")
            out.append(type("P", (), {"pid": pid, "name": role})())
        return out

    @property
    def failures(self) -> list[str]:
        if self.proc.poll() not in (None, 0):
            tail = (self.dir / "sentinel.log").read_text(errors="replace")[-800:]
            return [f"exited with {self.proc.returncode}: {tail}"]
        return []

    def stop_role(self, role: str) -> None:
        """SIGTERM to the producer process alone: the rest drains (workers/runtime/run.py)."""
        for child in self.children:
            if child.name == role and child.pid != self.proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    def stop(self) -> None:
        stop_child(self.proc, timeout=60)

    def join(self, timeout: float) -> None:
        pass  # stop() waits


def measure_sentinel(args, semantic: str, profile: Profile) -> Measurement:
    sid = bench_sentinel_id()
    spec = SentinelSpec(
        id=sid,
        name=f"bench-e2e-{semantic}-{sid}",
        profile=profile,
        bootstrap_servers=args.bootstrap,
        topic=f"bench-e2e-sentinel-{semantic}-{sid}",
        partitions=args.partitions,
        replication_factor=3,
        min_insync_replicas=2,
        rate_per_partition=0,
        record_size=args.record_size,
        batch_size=args.batch,
    )
    topics = [spec.topic] + ([spec.output_topic_name] if spec.eos else [])
    create_topics(args.bootstrap, topics, args.partitions, 3, 2)
    store = CountingStore(connect(args.redis_url), sid)
    on_exit(store.reset)
    if not args.keep_topics:
        on_exit(lambda: delete_topics(args.bootstrap, topics))
    timers = Timers()
    profiles: dict[str, cProfile.Profile] = {}
    if args.layout == "processes":
        host = ProcessHost(spec, args.redis_url)
    else:
        host = RoleRunner(spec, store, roles_for(spec))
        for loop in host.loops:
            instrument(loop, timers)
            if args.profile:
                profiled(loop, profiles)

    samples: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("processed", "produced", "acked", "ledger")
    }
    last_update = 0.0
    t0 = time.time()
    host.start()

    def children() -> list[Any]:
        return host.children if args.layout == "processes" else []

    cpu_start = cpu_end = None
    while (now := time.time()) < t0 + args.duration:
        doc = store.status()
        if doc and doc["updated_at"] != last_update:
            last_update = doc["updated_at"]
            for key in ("processed", "produced", "acked"):
                samples[key].append((doc["updated_at"], doc["totals"][key]))
        if args.layout == "threads":
            samples["ledger"].append((now, store.ledger_records))
        if cpu_start is None and now >= t0 + args.warmup:
            cpu_start = (now, cpu_of(children()), timers.snapshot())
            probe = GilProbe()
            probe.start()
        time.sleep(SAMPLE_S)
    cpu_end = (time.time(), cpu_of(children()), timers.snapshot())
    gil = probe.stop() if cpu_start else "n/a"
    backlog = {
        "ledger entries unread by the checker": store.r.xlen(store.key("ledger")),
        "acks entries unread by the checker": store.r.xlen(store.key("acks")),
    }
    # Stop producing, let the rest drain, then read the final verdict on the run.
    host.stop_role("producer")
    stopped_at = time.time()
    settled, final = False, store.status()
    while time.time() < stopped_at + args.settle and not host.failures:
        final = store.status()
        t = final["totals"] if final else None
        if (
            t
            and final["updated_at"] > stopped_at + 2
            and t["pending"] == 0
            and t["produced"] == t["acked"] + t["failed"]
        ):
            settled = True
            break
        time.sleep(0.5)
    host.stop()
    host.join(30)
    final = store.status() or final
    store.reset()
    delete_topics(args.bootstrap, [] if args.keep_topics else topics)

    end = t0 + args.duration + 1
    rate, seconds = steady_rate(samples["processed"], t0 + args.warmup, end)
    result = Measurement(rate=rate, interval=seconds)
    result.extra["stage_rates"] = {
        key: steady_rate(samples[key], t0 + args.warmup, end)[0] for key in samples
    }
    result.extra["backlog"] = backlog
    result.extra["gil"] = gil
    result.extra["totals"] = final["totals"] if final else {}
    result.extra["settled"] = settled
    result.extra["errors"] = (final or {}).get("errors", [])
    result.extra["store"] = (
        {}
        if args.layout == "processes"
        else {
            "ledger appends": store.ledger_calls,
            "ledger records/append": round(store.ledger_records / max(1, store.ledger_calls), 1),
            "ledger ms/append": round(1000 * store.ledger_s / max(1, store.ledger_calls), 3),
            "acks appends": store.acks_calls,
            "acks ms/append": round(1000 * store.acks_s / max(1, store.acks_calls), 3),
        }
    )
    if cpu_start:
        result.cpu = thread_cpu_delta(cpu_start[1], cpu_end[1])
        result.extra["cpu_interval"] = cpu_end[0] - cpu_start[0]
        result.extra["timers"] = timer_report(cpu_start[2], cpu_end[2], cpu_end[0] - cpu_start[0])
    if host.failures:
        result.notes.append("role failures: " + "; ".join(host.failures))
    if profiles:
        result.extra["profiles"] = profiles
    return result


# -------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------


def print_cpu(label: str, m: Measurement) -> None:
    interval = m.extra.get("cpu_interval") or 0
    if not m.cpu or not interval:
        return
    # Sentinel threads are named "<spec name>-<role>": keep the role.
    cpu: dict[str, float] = {}
    for name, used in m.cpu.items():
        short = re.sub(r"^bench-e2e-.*-\d+-", "", name)
        cpu[short] = cpu.get(short, 0.0) + used
    busy = sorted(((v, k) for k, v in cpu.items() if v > 0.005 * interval), reverse=True)
    parts = ", ".join(f"{k} {100 * v / interval:.0f}%" for v, k in busy)
    total = 100 * sum(m.cpu.values()) / interval
    print(f"   {label} CPU over {interval:.0f}s (100% = one core): total {total:.0f}%: {parts}")
    print(f"   {label} wake-up delay of a 2 ms sleep (GIL + scheduler): {m.extra.get('gil')}")
    timers = m.extra.get("timers")
    if timers:
        print(f"   {label} time per operation (share of wall time):")
        for line in timers:
            print(f"      {line}")


def print_profile(role: str, prof: cProfile.Profile, limit: int = 14) -> None:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    text = out.getvalue()
    body = text[text.find("ncalls") :] if "ncalls" in text else text
    print(f"\n   -- cProfile {role}, by own time (top {limit})")
    for line in body.rstrip().splitlines():
        print("   " + line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, help="seconds skipped (default min(5, D/3))")
    parser.add_argument("--semantics", default=",".join(SEMANTICS))
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--record-size", type=int, default=SentinelSpec.record_size)
    parser.add_argument("--batch", type=int, default=500, help="consume() batch (sentinel too)")
    parser.add_argument("--settle", type=float, default=90.0, help="max drain after producing")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat raw+sentinel pairs, alternating the order"
    )
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument(
        "--layout",
        choices=("processes", "threads"),
        default="processes",
        help="processes: the sentinel as workers host it, each raw client in a process of its "
        "own; threads: both pipelines in threads of this process (adds per-operation timers)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile every sentinel role")
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="sys.setswitchinterval() in seconds for both pipelines (experiment; default 0.005)",
    )
    args = parser.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else min(5.0, args.duration / 3)
    semantics = [s.strip() for s in args.semantics.split(",") if s.strip()]
    unknown = [s for s in semantics if s not in SEMANTICS]
    if unknown:
        parser.error(f"unknown semantic(s) {unknown}; choose from {SEMANTICS}")
    require_loopback(args.bootstrap, args.redis_url)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    # Every measurement is bounded; the watchdog is the backstop for a hung cluster.
    start_watchdog(args.rounds * len(semantics) * (2 * args.duration + args.settle + 240) + 60)

    print_machine_facts("end-to-end throughput at saturation: sentinel vs raw confluent-kafka")
    print(
        f"   duration {args.duration:.0f}s per measurement, warm-up {args.warmup:.0f}s skipped, "
        f"{args.partitions} partitions RF3 min.insync 2, records of {args.record_size} B, "
        f"consume batches of {args.batch}"
    )
    print(f"   bootstrap {args.bootstrap}, redis {args.redis_url}", flush=True)
    if args.profile:
        print("   --profile: sentinel roles run under cProfile; their rates are not the figure")
    print(f"   GIL switch interval {sys.getswitchinterval() * 1000:g} ms", flush=True)

    results: dict[str, list[tuple[Measurement, Measurement]]] = {s: [] for s in semantics}
    for round_no in range(1, args.rounds + 1):
        for semantic in semantics:
            profile = DEFAULT_PROFILES[semantic]
            label = f"round {round_no}/{args.rounds}, " if args.rounds > 1 else ""
            print(
                f"\n== {label}{semantic}: producer {profile.producer} consumer {profile.consumer}"
            )
            # Alternate which pipeline goes first, so a drifting machine load favours neither.
            if round_no % 2:
                raw = measure_raw(args, semantic, profile)
                report_raw(raw)
                sentinel = measure_sentinel(args, semantic, profile)
                report_sentinel(sentinel)
            else:
                sentinel = measure_sentinel(args, semantic, profile)
                report_sentinel(sentinel)
                raw = measure_raw(args, semantic, profile)
                report_raw(raw)
            ratio = sentinel.rate / raw.rate if raw.rate else 0.0
            print(f"   ratio {ratio:.2f}", flush=True)
            results[semantic].append((raw, sentinel))

    rows, clean = [], True
    for semantic, pairs in results.items():
        ratios = [s.rate / r.rate if r.rate else 0.0 for r, s in pairs]
        lost = sum(s.extra["totals"].get("lost", 0) for _, s in pairs)
        dup = sum(s.extra["totals"].get("duplicated", 0) for _, s in pairs)
        clean = clean and lost == 0 and dup == 0
        rows.append(
            [
                semantic,
                f"{statistics.median(r.rate for r, _ in pairs):,.0f}",
                f"{statistics.median(s.rate for _, s in pairs):,.0f}",
                f"{statistics.median(ratios):.2f}"
                + (f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""),
                lost,
                dup,
                "yes" if all(s.extra["settled"] for _, s in pairs) else "no",
            ]
        )
    what = "medians over rounds; ratio: median (min-max)" if args.rounds > 1 else "one round"
    print(f"\n== results ({what}; target: ratio >= 0.80, lost = duplicated = 0)")
    print(
        table(
            ["semantic", "raw rec/s", "sentinel rec/s", "ratio", "lost", "duplicated", "settled"],
            rows,
        )
    )
    if not clean:
        print(
            "   !! lost or duplicated records: see the notes above (under at-most-once, acks=0 "
            "and retries=0 lose whatever is in flight when a broker connection drops)"
        )
    print(f"   finished {time.strftime('%Y-%m-%d %H:%M:%S %z')}", flush=True)
    return 0 if clean else 1


def report_raw(raw: Measurement) -> None:
    print(
        f"   raw:      {raw.rate:12,.0f} rec/s over {raw.interval:.1f}s "
        f"(produced {raw.extra['produced']:,}, consumed {raw.counted:,}"
        + (f", {raw.extra['txns']:,} transactions" if raw.extra["txns"] else "")
        + ")",
        flush=True,
    )
    for note in raw.notes:
        print(f"   raw note: {note}")
    print_cpu("raw", raw)


def report_sentinel(sentinel: Measurement) -> None:
    totals = sentinel.extra["totals"]
    stage = sentinel.extra["stage_rates"]
    print(
        f"   sentinel: {sentinel.rate:12,.0f} rec/s over {sentinel.interval:.1f}s "
        f"(stage rates/s: produced {stage['produced']:,.0f}, acked {stage['acked']:,.0f}, "
        f"ledger {stage['ledger']:,.0f}, checker {stage['processed']:,.0f})",
        flush=True,
    )
    print(f"   sentinel backlog at the end of the measurement: {sentinel.extra['backlog']}")
    print(f"   sentinel store: {sentinel.extra['store']}")
    print_cpu("sentinel", sentinel)
    print(
        "   sentinel final totals"
        + ("" if sentinel.extra["settled"] else " (NOT settled: producer stopped, still pending)")
        + ": "
        + ", ".join(f"{k} {v:,}" for k, v in totals.items())
    )
    for note in sentinel.notes:
        print(f"   sentinel note: {note}")
    for error in sentinel.extra["errors"]:
        print(f"   sentinel status error (after the producer was stopped on purpose): {error}")
    for role, prof in sentinel.extra.get("profiles", {}).items():
        print_profile(role, prof)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
