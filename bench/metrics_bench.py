"""``/metrics`` server-time benchmark: 100 sentinels x 12 partitions of state in Redis.

    .venv/bin/python bench/metrics_bench.py [--sentinels 100] [--partitions 12]
                                            [--requests 200] [--redis-url URL]

Sets up (and removes again) a throwaway SQLite database with ``--sentinels`` sentinels, and in
Redis (``--redis-url``, by default database 12 of ``REDIS_URL``) a full status document for
each, as the check runner writes it: every counter for each of ``--partitions`` partitions,
cluster metadata for each partition, and the cumulative latency histograms
(``latency_buckets``). Then times ``GET /metrics`` with a bearer token, in-process with
``django.test.Client`` (middleware, token lookup, one MGET, the collector, the text format; no
network), DEBUG off, and counts the series (samples) one scrape exposes.

Target (issue 12): p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dashboard_bench import describe, setup_django, time_requests  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentinels", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--requests", type=int, default=200, help="timed scrapes")
    default_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--redis-url", default=urlunsplit(urlsplit(default_redis)._replace(path="/12"))
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return parser.parse_args()


def seed(sentinel_count: int, partitions: int, rng: random.Random) -> list:
    from dashboard.models import Cluster, Profile, Sentinel, ensure_defaults
    from dashboard.redisclient import redis_client
    from workers.engine.documents import COUNTERS, LATENCY_BUCKETS_S, latency_buckets
    from workers.engine.latency import LatencyHistogram
    from workers.store.sentinel import SentinelStore

    ensure_defaults()
    cluster = Cluster.objects.get()
    profiles = list(Profile.objects.all())
    Sentinel.objects.all().delete()
    sentinels = Sentinel.objects.bulk_create(
        Sentinel(
            name=f"bench-{i:03d}",
            cluster=cluster,
            profile=profiles[i % len(profiles)],
            topic=f"sentinel.bench-{i:03d}",
            partitions=partitions,
        )
        for i in range(sentinel_count)
    )
    now = time.time()
    e2e, ack = LatencyHistogram(), LatencyHistogram()
    e2e.record_many(rng.lognormvariate(0, 0.6) * 40.0 for _ in range(50_000))
    ack.record_many(rng.lognormvariate(0, 0.6) * 6.0 for _ in range(50_000))
    buckets = {
        "le_s": list(LATENCY_BUCKETS_S),
        "e2e": latency_buckets(e2e),
        "ack": latency_buckets(ack),
    }
    client = redis_client()
    for sentinel in sentinels:
        store = SentinelStore(client, sentinel.pk)
        store.reset()
        parts = {str(p): {k: rng.randrange(0, 10_000) for k in COUNTERS} for p in range(partitions)}
        totals = {k: sum(c[k] for c in parts.values()) for k in COUNTERS}
        store.set_status(
            {
                "id": sentinel.pk, "name": sentinel.name, "semantic": sentinel.semantic,
                "cluster": cluster.name, "topic": sentinel.topic, "run_id": 1, "runs": 3,
                "verdict": rng.choice(["HOLDING", "DEGRADED", "VIOLATED"]), "reasons": [],
                "totals": totals,
                "window": {"seconds": 300, "counts": {k: v // 300 for k, v in totals.items()}},
                "latency_ms": e2e.summary(), "recent_latency_ms": e2e.summary(),
                "produce_ack_latency_ms": ack.summary(), "latency_buckets": buckets,
                "partitions": parts,
                "metadata": {"error": None, "updated_at": now, "partitions": {
                    str(p): {"leader": 1, "leader_host": "127.0.0.1:9092",
                             "replicas": [1, 2, 3], "isr": [1, 2, 3]}
                    for p in range(partitions)}},
                "errors": [], "last_progress_at": now, "updated_at": now,
            }
        )  # fmt: skip
    return sentinels


def main() -> int:
    args = parse_args()
    rng = random.Random(12)
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        setup_django(Path(tmp) / "bench.sqlite3", args.redis_url)
        from django.contrib.auth import get_user_model
        from django.test import Client
        from prometheus_client.parser import text_string_to_metric_families

        from dashboard.models import ApiToken
        from workers.store.connection import connect
        from workers.store.sentinel import SentinelStore

        sentinels = seed(args.sentinels, args.partitions, rng)
        _row, raw = ApiToken.issue(get_user_model().objects.create_user("bench"), "bench")
        client = Client(headers={"Authorization": f"Bearer {raw}"})
        try:
            body = client.get("/metrics").content
            families = list(text_string_to_metric_families(body.decode()))
            series = sum(len(f.samples) for f in families)
            result = describe("GET /metrics", time_requests(client, ["/metrics"] * args.requests))
        finally:
            redis = connect(args.redis_url)
            for s in sentinels:
                SentinelStore(redis, s.pk).reset()
    result |= {
        "sentinels": args.sentinels,
        "partitions": args.partitions,
        "series": series,
        "bytes": len(body),
    }
    print(f"load average during the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print(
        f"{args.sentinels} sentinels x {args.partitions} partitions: {series:,} series, "
        f"{len(body):,} bytes per scrape"
    )
    print(
        f"GET /metrics x{result['requests']}: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms "
        f"(CPU p50 {result['cpu_p50_ms']} ms, p99 {result['cpu_p99_ms']} ms)"
    )
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
