"""Redis bytes per sentinel: one-second windows (old and compact histogram encodings), the
checker checkpoint and the status document.

    .venv/bin/python bench/window_bytes.py [--seconds 120] [--sizes 3x10,1000x10]
        [--redis-url redis://127.0.0.1:6379/0]

For each size (partitions x records/s per partition) a real ``CheckRunner`` is fed synthetic
ledger and acks entries for ``--seconds`` seconds (end-to-end latencies log-normal around
6 ms, produce-ack around 4 ms) and writes its windows, checkpoint and status document to
Redis exactly as a sentinel does. The same windows are then written a second time as they
were stored before the compact form (every counter, histograms as ``LatencyHistogram.to_dict()``
JSON) under another bench id, and ``MEMORY USAGE`` of both ``w1`` streams is divided by the number of windows.
No Kafka needed; its keys are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    bench_sentinel_id,
    default_redis_url,
    on_exit,
    print_machine_facts,
    require_loopback,
    table,
)

from workers.engine.documents import W1_RETENTION_S, Window
from workers.engine.latency import LatencyHistogram
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.engine.streams import AckReport, LedgerEntry, PartitionReport
from workers.runtime.checkrunner import CheckRunner
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

RUN = 77


def feed_second(runner: CheckRunner, second: int, partitions: int, rate: int, now: float, rng):
    """One second of a healthy sentinel: every partition produces, acks and processes."""
    now_us = int(now * 1e6)
    ack = LatencyHistogram()
    acks, items = {}, []
    for p in range(partitions):
        first = second * rate
        acks[p] = PartitionReport(rate, [[first, first + rate - 1]])
        for seq in range(first, first + rate):
            delay_us = int(rng.lognormvariate(1.8, 0.35) * 1000)
            items.append((RUN, p, seq, now_us - delay_us, now_us))
        ack.record_many(rng.lognormvariate(1.4, 0.3) for _ in range(rate))
    runner.apply_acks(AckReport(RUN, acks, ack.to_compact()), now)
    runner.apply_ledger(LedgerEntry(items), now)
    runner.checker.tick(now)


def measure(redis_url: str, partitions: int, rate: int, seconds: int) -> dict[str, float]:
    client = connect(redis_url)
    spec = SentinelSpec(
        id=bench_sentinel_id(),
        name="bench-window-bytes",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",
        topic="bench-window-bytes",
        partitions=partitions,
    )
    store, old = SentinelStore(client, spec.id), SentinelStore(client, spec.id + 1)
    on_exit(store.reset)
    on_exit(old.reset)
    runner = CheckRunner(spec, store)
    runner.load()
    runner.checker.register_run(RUN)
    runner.known_runs.add(RUN)
    rng = random.Random(partitions * 1000 + rate)
    start = time.time() - seconds
    for second in range(seconds):
        now = start + second
        feed_second(runner, second, partitions, rate, now, rng)
        runner.checkpoint()
        status = runner.status(now)
        store.set_status(status)
        runner.emit_window(now, status)
    docs = store.windows(0)[1:]  # the first window after a start holds no increases
    size = lambda doc: len(json.dumps(doc, separators=(",", ":")))  # noqa: E731
    befores = []
    for doc in docs:
        w = Window.from_doc(doc)
        before = w.to_doc()  # every counter, as windows were stored before
        before["hist"] = {k: w.histogram(k).to_dict() for k in ("e2e", "ack")}
        befores.append(before)
        old.append_window(befores[-1], retention_s=W1_RETENTION_S)
    result = {
        "json_old": statistics.mean(size(d) for d in befores),
        "json_new": statistics.mean(size(d) for d in docs),
        "hist_old": statistics.mean(size(d["hist"]) for d in befores),
        "hist_new": statistics.mean(size(d["hist"]) for d in docs),
        "redis_old": (client.memory_usage(old.key("w1")) or 0) / len(docs),
        "redis_new": (client.memory_usage(store.key("w1")) or 0) / len(docs),
        "checkpoint": client.memory_usage(store.key("checker")) or 0,
        "status": client.memory_usage(store.key("status")) or 0,
    }
    store.reset()
    old.reset()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=120, help="windows per size")
    parser.add_argument("--sizes", default="3x10,100x10,1000x10", help="PARTITIONSxRATE,...")
    parser.add_argument("--redis-url", default=default_redis_url())
    args = parser.parse_args(argv)
    require_loopback("127.0.0.1:1", args.redis_url)
    sizes = []
    for size in args.sizes.split(","):
        try:
            partitions, rate = (int(x) for x in size.lower().split("x"))
        except ValueError:
            parser.error(f"--sizes: {size!r} is not PARTITIONSxRATE, e.g. 3x10")
        sizes.append((partitions, rate))
    print_machine_facts("Redis bytes per sentinel: one-second windows, checkpoint, status")
    rows = []
    for partitions, rate in sizes:
        m = measure(args.redis_url, partitions, rate, args.seconds)
        hour = W1_RETENTION_S / 1024 / 1024
        rows.append(
            [
                f"{partitions} x {rate}/s",
                f"{m['hist_old']:,.0f} -> {m['hist_new']:,.0f}",
                f"{m['json_old']:,.0f} -> {m['json_new']:,.0f}",
                f"{m['redis_old']:,.0f} -> {m['redis_new']:,.0f}",
                f"{m['redis_old'] * hour:,.1f} -> {m['redis_new'] * hour:,.1f}",
                f"{m['checkpoint'] / 1024:,.1f}",
                f"{m['status'] / 1024:,.1f}",
            ]
        )
    print(f"\n== bytes, old encoding -> compact ({args.seconds} windows per size)")
    print(
        table(
            [
                "partitions x rate",
                "histograms / window",
                "window JSON",
                "Redis / window",
                f"w1 stream at {W1_RETENTION_S} s (MB)",
                "checkpoint KB",
                "status KB",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
