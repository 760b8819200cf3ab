"""Latency fidelity: the sentinel's reported end-to-end latency against a raw client pair.

Also the CPU each pipeline takes over the steady interval (all threads of all its processes,
Python and librdkafka; brokers and Redis excluded): what a bare client pair doing the same
Kafka work costs, next to what the sentinel costs.

    .venv/bin/python bench/latency_fidelity.py [--duration 60] [--warmup 10] [--rounds 1]
        [--semantics at-most-once,at-least-once,exactly-once] [--rate 10] [--partitions 3]
        [--layout threads|processes] [--bootstrap 127.0.0.1:9092,...]
        [--redis-url redis://127.0.0.1:6379/0]

Targets (issue 15): at the default rate the sentinel's reported p50 is within 2 ms and its
p99 within 5 ms of the raw pair's (at-most-once, at-least-once); exactly-once within 10 % of a
raw transactional pipeline with the same commit interval.

For each semantic, in the same interval, on the same cluster, on fresh topics of their own
(``--partitions``, replication factor 3, ``min.insync.replicas`` 2), two pipelines run side by
side at the same rate (``--rate`` records/s to every partition, all partitions on the same tick,
as ``SentinelProducer.produce_due`` does):

- the sentinel, hosted as workers host it (``python -m workers.runtime.run --roles all
  --layout LAYOUT``, ``e2e_sentinel.ProcessHost``) with the semantic's default profile:
  ``--layout threads`` (the default) runs every role in one process, as the shared host runs a
  light sentinel (the default rate is one); ``processes`` as a fast sentinel runs. Its
  figure is what it *reports*: the end-to-end histograms of its one-second windows over the
  steady interval, merged (``workers.engine.documents.merge_windows``).
- the raw pair (``e2e_raw.RawPipeline``, each client in a process of its own) with the same
  client properties: a producer writing the produce time (µs, ``time.time_ns``) into each
  record, and a consumer that waits for the first record with ``poll()``, takes what the
  client has already fetched with ``consume(timeout=0)``, and commits synchronously once per
  batch, before processing under at-most-once and after it under at-least-once. Exactly-once:
  a transactional producer committing every 100 ms (the sentinel producer's acks-flush
  interval), a transactional copier (one transaction per batch, ``send_offsets_to_transaction``)
  and a ``read_committed`` consumer at the end. Its "processing" records now − produce time.

Both use the same clock (this host's wall clock, ``time.time_ns``) and the same instants: the
``produce()`` call and the processing at the end of the pipeline (docs/benchmarks.md,
"Latency fidelity"). The first ``--warmup`` seconds are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import statistics
import struct
import time
import uuid
from typing import Any

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    cpu_seconds,
    create_topics,
    default_bootstrap,
    default_redis_url,
    delete_topics,
    on_exit,
    print_machine_facts,
    process_tree,
    require_loopback,
    start_watchdog,
    table,
)
from _e2e import MP
from confluent_kafka import Consumer, Producer
from e2e_raw import RawPipeline
from e2e_sentinel import ProcessHost, bench_spec

from workers.engine.documents import Window, merge_windows
from workers.engine.env import mask_url
from workers.engine.latency import LatencyHistogram
from workers.engine.profiles import DEFAULT_PROFILES, EXACTLY_ONCE, SEMANTICS, Profile
from workers.engine.spec import SentinelSpec
from workers.roles.producer import ack_flush_interval
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

STAMP = struct.Struct(">Q")  # the produce time in µs, at the start of every raw record


class PacedPipeline(RawPipeline):
    """``RawPipeline`` at a fixed rate, with the produce time in each record and the end
    of the pipeline reporting each record's latency (ms) to ``latencies``."""

    def __init__(self, *args: Any, rate: float, latencies: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rate = rate
        self.latencies = latencies

    def _produce(self) -> None:
        transactional = self.output_topic is not None
        extra = {"transactional.id": self.group + ".producer"} if transactional else {}
        producer = Producer(self._conf(self.profile.producer, **extra))
        if transactional:
            producer.init_transactions(60)
        pad = self.value[STAMP.size :]
        commit_every = ack_flush_interval(self.partitions)
        in_txn, last_flush = False, time.monotonic()
        next_due = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_due:
                if transactional and not in_txn:
                    producer.begin_transaction()
                    in_txn = True
                # The records due since the last tick (after a stall, at most a second's
                # worth), every partition's at once: as SentinelProducer.produce_due.
                due = int((now - next_due) * self.rate) + 1
                count = min(due, max(1, int(self.rate)))
                for partition in range(self.partitions):
                    for _ in range(count):
                        stamp = STAMP.pack(time.time_ns() // 1000)
                        producer.produce(self.topic, stamp + pad, partition=partition)
                self.produced += self.partitions * count
                next_due = next_due + due / self.rate
            if now - last_flush >= commit_every:
                last_flush = now
                if in_txn:
                    producer.commit_transaction(30)
                    in_txn = False
            wake = min(next_due, last_flush + commit_every)  # as SentinelProducer.step
            producer.poll(max(0.0, min(0.05, wake - time.monotonic())))
        if in_txn:
            producer.commit_transaction(30)
        producer.flush(5)

    def _batch(self, consumer: Consumer, timeout: float, name: str) -> list[Any]:
        """The first record as soon as it arrives, then what is already fetched."""
        first = consumer.poll(timeout)
        if first is None:
            return []
        msgs = [first, *consumer.consume(num_messages=self.batch - 1, timeout=0)]
        return [m for m in msgs if m.error() is None]

    def _process(self, msgs: list[Any]) -> None:
        now_us = time.time_ns() // 1000
        self.latencies.put(
            (time.time(), [(now_us - STAMP.unpack_from(m.value())[0]) / 1000.0 for m in msgs])
        )
        super()._process(msgs)


def drain(latencies: Any, into: list[tuple[float, list[float]]]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            into.append(latencies.get_nowait())


def raw_histogram(batches: list[tuple[float, list[float]]], since: float, until: float):
    hist = LatencyHistogram()
    for t, values in batches:
        if since <= t <= until:
            hist.record_many(values)
    return hist


def sentinel_histogram(store: SentinelStore, since: float, until: float) -> LatencyHistogram:
    """What the sentinel reports: its one-second windows' e2e histograms, merged."""
    merged = merge_windows([Window.from_doc(d) for d in store.windows(since, until)])
    return (merged and merged.histogram("e2e")) or LatencyHistogram()


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of these processes and their descendants, all threads (exited: 0)."""
    return sum(cpu_seconds(pid) or 0.0 for root in pids for pid in process_tree(root))


def measure(args, semantic: str, profile: Profile) -> dict[str, Any]:
    spec = bench_spec("latency", semantic, profile, args, rate_per_partition=args.rate)
    raw_topic = f"bench-latency-raw-{semantic}-{uuid.uuid4().hex[:6]}"
    raw_output = f"{raw_topic}.out" if semantic == EXACTLY_ONCE else None
    topics = [spec.topic, raw_topic] + ([spec.output_topic_name, raw_output] if spec.eos else [])
    create_topics(args.bootstrap, topics, args.partitions, 3, 2)
    on_exit(lambda: delete_topics(args.bootstrap, topics))  # a no-op once deleted below
    store = SentinelStore(connect(args.redis_url), spec.id)
    on_exit(store.reset)
    latencies = MP.Queue()
    raw = PacedPipeline(
        profile,
        args.bootstrap,
        raw_topic,
        raw_output,
        args.partitions,
        spec.record_size,
        spec.batch_size,
        "processes",
        rate=args.rate,
        latencies=latencies,
    )
    host = ProcessHost(spec, args.redis_url, args.layout)
    batches: list[tuple[float, list[float]]] = []
    t0 = time.time()
    host.start()
    raw.start()
    since = t0 + args.warmup
    cpu_at: dict[str, float] | None = None  # CPU seconds of each pipeline at ``since``

    def cpu_now() -> dict[str, float]:
        out = {f"raw {w.name}": cpu_of([w.pid]) for w in raw.threads}
        for child in host.children:  # its processes, named by role (some share a name)
            key = f"sentinel {child.name}"
            out[key] = out.get(key, 0.0) + (cpu_seconds(child.pid) or 0.0)
        out["raw"] = sum(v for k, v in out.items() if k.startswith("raw "))
        out["sentinel"] = sum(v for k, v in out.items() if k.startswith("sentinel "))
        return {**out, "t": time.monotonic()}

    while time.time() < t0 + args.duration and not host.failures:
        drain(latencies, batches)
        if cpu_at is None and time.time() >= since:
            cpu_at = cpu_now()
        time.sleep(0.5)
    until = time.time()
    cpu_end = cpu_now()
    # Each pipeline's share of a core over the steady interval (all its processes' threads:
    # Python and librdkafka's own), the brokers and Redis excluded.
    cpu = (
        {
            who: 100 * (cpu_end.get(who, 0.0) - cpu_at.get(who, 0.0)) / (cpu_end["t"] - cpu_at["t"])
            for who in cpu_end
            if who != "t"
        }
        if cpu_at
        else {}
    )
    raw.join()
    drain(latencies, batches)
    host.stop()
    result = {
        "cpu": cpu,
        "raw": raw_histogram(batches, since, until),
        "sentinel": sentinel_histogram(store, since, until),
        "totals": (store.status() or {}).get("totals", {}),
        "errors": host.failures + raw.errors,
    }
    store.reset()
    delete_topics(args.bootstrap, topics)
    topics.clear()
    return result


def within(semantic: str, raw: float, sentinel: float, slack_ms: float) -> bool:
    if semantic == EXACTLY_ONCE:
        return sentinel <= raw * 1.10
    return sentinel - raw <= slack_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per semantic")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds skipped")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; medians reported")
    parser.add_argument("--semantics", default=",".join(SEMANTICS))
    parser.add_argument(
        "--rate", type=float, default=SentinelSpec.rate_per_partition, help="rec/s per partition"
    )
    parser.add_argument("--partitions", type=int, default=SentinelSpec.partitions)
    parser.add_argument(
        "--layout",
        choices=("threads", "processes"),
        default="threads",
        help="the sentinel's roles in one process (as light sentinels are hosted, the default)"
        " or the producer and checker in processes of their own (a fast sentinel)",
    )
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    args = parser.parse_args(argv)
    semantics = [s.strip() for s in args.semantics.split(",") if s.strip()]
    unknown = [s for s in semantics if s not in SEMANTICS]
    if unknown:
        parser.error(f"unknown semantic(s) {unknown}; choose from {SEMANTICS}")
    if args.rate <= 0 or args.warmup >= args.duration:
        parser.error("--rate must be positive and --warmup shorter than --duration")
    require_loopback(args.bootstrap, args.redis_url)
    start_watchdog(args.rounds * len(semantics) * (args.duration + 180) + 60)

    print_machine_facts("latency fidelity: the sentinel's reported e2e latency vs a raw pair")
    print(
        f"   {args.duration:.0f}s per semantic ({args.warmup:.0f}s warm-up skipped), "
        f"{args.partitions} partitions RF3 min.insync 2, {args.rate:g} rec/s per partition, "
        f"sentinel roles in {args.layout}, "
        f"bootstrap {args.bootstrap}, redis {mask_url(args.redis_url)}",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in semantics}
    for round_no in range(1, args.rounds + 1):
        for semantic in semantics:
            m = measure(args, semantic, DEFAULT_PROFILES[semantic])
            raw, sen = m["raw"], m["sentinel"]
            print(
                f"\n== round {round_no}/{args.rounds} {semantic}: "
                f"raw p50 {raw.percentile(50) or 0:.1f} p99 {raw.percentile(99) or 0:.1f} ms "
                f"({raw.count} records); sentinel p50 {sen.percentile(50) or 0:.1f} "
                f"p99 {sen.percentile(99) or 0:.1f} ms ({sen.count} records); "
                f"sentinel lost {m['totals'].get('lost')} duplicated "
                f"{m['totals'].get('duplicated')}; CPU % of a core: raw "
                f"{m['cpu'].get('raw', 0):.2f}, sentinel {m['cpu'].get('sentinel', 0):.2f}",
                flush=True,
            )
            detail = [f"{k} {v:.2f}" for k, v in m["cpu"].items() if " " in k]
            print(f"   CPU % by process: {', '.join(detail)}")
            for error in m["errors"][:3]:
                print(f"   note: {error}")
            results[semantic].append(m)

    rows, ok = [], True
    for semantic, runs in results.items():
        pick = {
            (who, q): statistics.median(r[who].percentile(q) or 0.0 for r in runs)
            for who in ("raw", "sentinel")
            for q in (50, 99)
        }
        good = [
            within(semantic, pick["raw", q], pick["sentinel", q], slack)
            for q, slack in ((50, 2.0), (99, 5.0))
        ]
        ok = ok and all(good)
        cpu = {
            who: statistics.median(r["cpu"].get(who, 0.0) for r in runs)
            for who in ("raw", "sentinel")
        }
        target = "within 10 %" if semantic == EXACTLY_ONCE else "+2 / +5 ms"
        rows.append(
            [
                semantic,
                f"{pick['raw', 50]:.1f} / {pick['raw', 99]:.1f}",
                f"{pick['sentinel', 50]:.1f} / {pick['sentinel', 99]:.1f}",
                f"{pick['sentinel', 50] - pick['raw', 50]:+.1f} / "
                f"{pick['sentinel', 99] - pick['raw', 99]:+.1f}",
                target,
                "pass" if all(good) else "FAIL",
                f"{cpu['raw']:.2f} / {cpu['sentinel']:.2f}",
            ]
        )
    print(f"\n== results (ms; medians of {args.rounds} round(s))")
    print(
        table(
            [
                "semantic",
                "raw p50 / p99",
                "sentinel p50 / p99",
                "difference",
                "target",
                "result",
                "CPU % raw / sentinel",
            ],
            rows,
        )
    )
    print(f"   finished {time.strftime('%Y-%m-%d %H:%M:%S %z')}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
