"""Cluster events watcher cost: admin requests per second and CPU of one cluster's watcher.

    .venv/bin/python bench/cluster_events_bench.py [--bootstrap HOSTS] [--redis-url URL]
        [--partitions 100] [--topics 1] [--duration 60] [--interval 3]

Creates ``--topics`` topics of ``--partitions`` partitions (replication factor 3), then steps
the events sampler (``workers/roles/eventsampler.py``: the AdminClient reads, the pure diff,
the Redis write) every ``--interval`` seconds for ``--duration`` seconds in this process, as
the watch process does, and reports: the CPU this process used (all threads: Python and
librdkafka's), as a share of one core; the admin calls per second and the broker requests
they fan out to (``ListOffsets`` goes to each partition's leader: one request per leader broker
per call); and the step's wall time. Target: at most 1 % of a core per cluster of 100
partitions. Deletes the topics and the Redis keys again (also on failure or Ctrl-C).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    create_topics,
    default_bootstrap,
    default_redis_url,
    delete_topics,
    on_exit,
    percentile,
    print_machine_facts,
    require_loopback,
    start_watchdog,
)
from workers.roles.eventsampler import EventSampler  # noqa: E402
from workers.runtime.watch import ClusterWatch  # noqa: E402
from workers.store.connection import connect  # noqa: E402


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--topics", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--interval", type=float, default=3)
    args = parser.parse_args()
    require_loopback(args.bootstrap, args.redis_url)
    start_watchdog(args.duration + 600)
    print_machine_facts("cluster events watcher cost")
    names = [f"bench-events-{uuid.uuid4().hex[:8]}" for _ in range(args.topics)]
    on_exit(lambda: delete_topics(args.bootstrap, names))
    took = create_topics(args.bootstrap, names, args.partitions)
    print(f"   created {args.topics} × {args.partitions} partitions in {took:.1f} s")
    watch = ClusterWatch(f"bench-{uuid.uuid4().hex[:6]}", args.bootstrap, {}, tuple(names))
    sampler = EventSampler(watch, connect(args.redis_url))
    on_exit(sampler.store.forget)
    for _ in range(3):  # warm up: clients connected, configs read, a first sample kept
        sampler.sample()
    leaders = {
        p["leader"]
        for t in sampler.store.last_sample()["topics"].values()
        for p in t["partitions"].values()
    }
    calls0, cpu0, t0 = sampler.reader.requests, cpu_now(), time.monotonic()
    steps: list[float] = []
    events: Counter[str] = Counter()
    next_at = t0
    while time.monotonic() - t0 < args.duration:
        started = time.monotonic()
        events.update(e["kind"] for e in sampler.sample())
        steps.append(time.monotonic() - started)
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    wall = time.monotonic() - t0
    cpu = cpu_now() - cpu0
    calls = sampler.reader.requests - calls0
    # Per step: DescribeTopics and DescribeCluster (one request each), two ListOffsets calls
    # (one request per leader broker each); DescribeConfigs once a minute.
    fanned = calls - 2 * len(steps) + 2 * len(steps) * len(leaders)
    print(
        f"   steps {len(steps)} in {wall:.0f} s (every {args.interval:g} s), events {dict(events)}"
    )
    print(f"   CPU {cpu:.2f} s: {100 * cpu / wall:.2f} % of one core")
    print(
        f"   admin calls {calls / wall:.2f}/s; broker requests {fanned / wall:.2f}/s ({len(leaders)} leaders)"
    )
    print(
        f"   step wall time: median {1000 * percentile(steps, 50):.0f} ms, "
        f"max {1000 * max(steps):.0f} ms"
    )


if __name__ == "__main__":
    main()
