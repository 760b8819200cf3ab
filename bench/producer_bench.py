"""The sentinel producer alone at saturation: records acknowledged per second and CPU per record.

    .venv/bin/python bench/producer_bench.py [--semantic at-least-once] [--duration 15] [--rounds 3]

At saturation (``rate_per_partition=0``) the end-to-end benchmark's sentinel pipeline is bound by
its producer on a 2-core machine (produced = processed, the consumer keeps up). This runs the
producer role by itself (``SentinelProducer.step`` in a loop, in this process, against the real
cluster and Redis) on a fresh 6-partition topic, so that its own cost per record can be compared
between two versions of the code without the consumer, the checker and the other pipeline taking
turns on the same cores. CPU is this process's (every thread: Python and librdkafka's), per
acknowledged record; the rate is records acknowledged (the acks entries written) per second.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from _common import ROOT, create_topics, delete_topics  # noqa: F401  (puts the project on sys.path)
from e2e_sentinel import bench_spec

from workers.engine.profiles import DEFAULT_PROFILES
from workers.roles.producer import SentinelProducer
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore


class AckCounter(SentinelStore):
    """The real store, counting the records its acks entries report delivered."""

    acked = 0

    def for_writer(self) -> AckCounter:
        return self

    def append_acks(self, report: Any) -> None:
        super().append_acks(report)
        self.acked += sum(hi - lo + 1 for p in report.partitions.values() for lo, hi in p.acked)


def one_round(args: argparse.Namespace) -> tuple[float, float]:
    profile = DEFAULT_PROFILES[args.semantic]
    spec = bench_spec("producer", args.semantic, profile, args, rate_per_partition=0)
    create_topics(args.bootstrap, [spec.topic], args.partitions)
    store = AckCounter(connect(args.redis_url), spec.id)
    role = SentinelProducer(spec, store)
    try:
        role.start()
        warm_until = time.monotonic() + args.warmup
        while time.monotonic() < warm_until:
            role.step()
        acked0, cpu0, wall0 = store.acked, time.process_time(), time.monotonic()
        while time.monotonic() - wall0 < args.duration:
            role.step()
        acked, cpu, wall = (
            store.acked - acked0,
            time.process_time() - cpu0,
            time.monotonic() - wall0,
        )
    finally:
        role.close()
        store.r.delete(*store.r.keys(f"*{spec.id}*") or ["-"])
        delete_topics(args.bootstrap, [spec.topic])
    return acked / wall, cpu * 1e6 / max(acked, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--semantic", default="at-least-once", choices=sorted(DEFAULT_PROFILES))
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    rates, costs = [], []
    for n in range(args.rounds):
        rate, us = one_round(args)
        rates.append(rate)
        costs.append(us)
        print(f"round {n + 1}: {rate:,.0f} acked records/s, {us:.2f} µs CPU per record", flush=True)
    print(
        f"median: {statistics.median(rates):,.0f} records/s, "
        f"{statistics.median(costs):.2f} µs CPU per record ({args.semantic})"
    )


if __name__ == "__main__":
    main()
