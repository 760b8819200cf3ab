"""Dashboard server-time benchmark: the overview page and the 24 h detail range, 100 sentinels.

    .venv/bin/python bench/dashboard_bench.py [--sentinels 100] [--requests 200]
                                               [--redis-url URL] [--w1-seconds 300]

What it sets up (and removes again):

- a throwaway SQLite database (migrated) with ``--sentinels`` sentinels and, for each, 24 h of
  one-minute ``MetricWindow`` rows (1,440 per sentinel, with counts, per-partition counts,
  latency summaries and the mergeable histograms, the size the Celery rollup writes);
- in Redis (``--redis-url``, by default database 11 of ``REDIS_URL``): each sentinel's status
  document and ``--w1-seconds`` of one-second windows. A full hour of one-second windows for
  100 sentinels is ~540 MB of Redis; neither timed request reads more than the last minutes of
  them (the overview reads only status documents, the 24 h range reads the rollups plus the
  minute not rolled up yet), so 5 minutes each is representative.

What it times, in-process with ``django.test.Client`` (middleware, session, view, template,
JSON; no network), with DEBUG off:

- ``GET /`` — the overview (all status documents, grid, template);
- ``GET /api/sentinels/<id>/windows/?range=24h`` — the detail page's 24 h chart data;
- for reference: ``GET /sentinels/<id>/`` (the detail page itself) and the 7 d range.

Targets (issue 6): overview p99 < 100 ms, 24 h detail < 300 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COUNTERS = (
    "produced", "acked", "failed", "processed", "duplicated", "lost", "late", "phantom",
    "reordered", "aborted_read", "foreign", "pending",
)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentinels", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument("--w1-seconds", type=int, default=300)
    parser.add_argument("--hours", type=int, default=24, help="hours of one-minute rollups")
    default_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--redis-url", default=urlunsplit(urlsplit(default_redis)._replace(path="/11"))
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--freeze-gc",
        action="store_true",
        help="gc.freeze() the set-up objects before timing (shows how much of the tail is GC)",
    )
    return parser.parse_args()


def setup_django(db_path: Path, redis_url: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "DATABASE_URL": f"sqlite:///{db_path}",
            "REDIS_URL": redis_url,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-only-" + "x" * 40,
            "ALLOWED_HOSTS": "testserver,127.0.0.1",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    # WhiteNoise warns that STATIC_ROOT is missing: the benchmark serves no static files.
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.test.utils import override_settings

    # DEBUG off, but no collectstatic: plain static storage instead of the manifest one.
    override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ).enable()


def histograms(rng: random.Random, n: int, centre_ms: float, count: int = 20) -> list:
    """``count`` realistic (histogram document, summary) pairs of ``n`` latencies each."""
    from workers.engine.latency import LatencyHistogram

    pool = []
    for _ in range(count):
        hist = LatencyHistogram()
        hist.record_many(rng.lognormvariate(0, 0.5) * centre_ms for _ in range(n))
        pool.append((hist.to_dict(), hist.summary()))
    return pool


def seed_database(sentinel_count: int, hours: int, rng: random.Random) -> list:
    from dashboard.models import Cluster, MetricWindow, Profile, Sentinel, ensure_defaults

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
        )
        for i in range(sentinel_count)
    )
    now = time.time()
    first = now - now % 60 - hours * 3600
    # A pool of realistic histograms (1,800 records a minute), reused across rows.
    e2e_pool, ack_pool = histograms(rng, 1800, 40.0), histograms(rng, 1800, 6.0)
    per_minute = {k: 0 for k in COUNTERS} | {"produced": 1800, "acked": 1800, "processed": 1800}
    rows = []
    for sentinel in sentinels:
        for m in range(hours * 60):
            (e2e, e2e_summary), (ack, ack_summary) = rng.choice(e2e_pool), rng.choice(ack_pool)
            rows.append(
                MetricWindow(
                    sentinel=sentinel,
                    start=datetime.fromtimestamp(first + 60 * m, UTC),
                    counts=per_minute,
                    partitions={str(p): {"produced": 600, "processed": 600} for p in range(3)},
                    latency={"e2e": e2e_summary, "ack": ack_summary},
                    hist={"e2e": e2e, "ack": ack},
                    verdict="HOLDING",
                )
            )
            if len(rows) >= 5000:
                MetricWindow.objects.bulk_create(rows)
                rows.clear()
    MetricWindow.objects.bulk_create(rows)
    return sentinels


def seed_redis(sentinels: list, w1_seconds: int, rng: random.Random) -> None:
    from dashboard.redisclient import redis_client
    from workers.store.sentinel import SentinelStore

    client = redis_client()
    now = time.time()
    e2e_pool, ack_pool = histograms(rng, 30, 40.0), histograms(rng, 30, 6.0)
    for sentinel in sentinels:
        store = SentinelStore(client, sentinel.pk)
        store.reset()
        pipe = client.pipeline(transaction=False)
        for i in range(w1_seconds):
            t = now - w1_seconds + i
            (e2e, e2e_summary), (ack, ack_summary) = rng.choice(e2e_pool), rng.choice(ack_pool)
            doc = {
                "t": round(t, 3), "seconds": 1.0, "sentinel": sentinel.pk, "verdict": "HOLDING",
                "counts": {k: 0 for k in COUNTERS} | {"produced": 30, "acked": 30, "processed": 30},
                "partitions": {str(p): {"produced": 10, "processed": 10} for p in range(3)},
                "e2e": e2e_summary, "ack": ack_summary, "hist": {"e2e": e2e, "ack": ack},
            }  # fmt: skip
            pipe.xadd(store.key("w1"), {"d": json.dumps(doc)}, id=f"{int(t * 1000)}-*")
        pipe.execute()
        totals = {k: 0 for k in COUNTERS} | {"produced": 90000, "acked": 90000, "processed": 90000}
        store.set_status(
            {
                "id": sentinel.pk, "name": sentinel.name, "semantic": sentinel.semantic,
                "cluster": "local", "topic": sentinel.topic, "run_id": 1, "runs": 1,
                "verdict": "HOLDING", "reasons": [], "totals": totals,
                "window": {"seconds": 300, "counts": {k: v // 300 for k, v in totals.items()}},
                "latency_ms": {"p50": 38.2, "p99": 90.2, "max": 115.6},
                "recent_latency_ms": {"p50": 38.2, "p99": 90.2, "max": 115.6},
                "produce_ack_latency_ms": {"p50": 6.0, "p99": 37.9, "max": 42.0},
                "partitions": {str(p): {k: v // 3 for k, v in totals.items()} for p in range(3)},
                "errors": [], "last_progress_at": now, "updated_at": now,
            }
        )  # fmt: skip


def time_requests(client, urls: list[str], warmup: int = 5) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each request (CPU time of this process: what the
    request costs the server, whatever else the machine is busy with)."""
    for url in urls[:warmup]:
        assert client.get(url).status_code == 200, url
    wall, cpu = [], []
    for url in urls:
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return wall, cpu


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def describe(name: str, timings: tuple[list[float], list[float]]) -> dict:
    wall, cpu = sorted(timings[0]), sorted(timings[1])
    return {
        "case": name,
        "requests": len(wall),
        "p50_ms": round(statistics.median(wall), 1),
        "p99_ms": round(percentile(wall, 0.99), 1),
        "max_ms": round(wall[-1], 1),
        "cpu_p50_ms": round(statistics.median(cpu), 1),
        "cpu_p99_ms": round(percentile(cpu, 0.99), 1),
    }


def main() -> int:
    args = parse_args()
    rng = random.Random(6)
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        setup_django(Path(tmp) / "bench.sqlite3", args.redis_url)
        from django.contrib.auth import get_user_model
        from django.test import Client

        from workers.engine.env import mask_url
        from workers.store.connection import connect
        from workers.store.sentinel import SentinelStore

        started = time.perf_counter()
        sentinels = seed_database(args.sentinels, args.hours, rng)
        seed_redis(sentinels, args.w1_seconds, rng)
        print(
            f"seeded {len(sentinels)} sentinels in {time.perf_counter() - started:.0f} s: "
            f"{len(sentinels) * args.hours * 60:,} one-minute rows, {args.w1_seconds} s of "
            f"one-second windows each in {mask_url(args.redis_url)}",
            flush=True,
        )
        if args.freeze_gc:
            gc.collect()
            gc.freeze()
        user = get_user_model().objects.create_user("bench")
        client = Client()
        client.force_login(user)
        ids = [s.pk for s in sentinels]
        n = args.requests
        try:
            results = [
                describe("overview GET /", time_requests(client, ["/"] * n)),
                describe(
                    "detail 24 h GET /api/sentinels/<id>/windows/?range=24h",
                    time_requests(
                        client,
                        [f"/api/sentinels/{rng.choice(ids)}/windows/?range=24h" for _ in range(n)],
                    ),
                ),
                describe(
                    "detail page GET /sentinels/<id>/",
                    time_requests(client, [f"/sentinels/{rng.choice(ids)}/" for _ in range(n)]),
                ),
                describe(
                    f"detail 7 d ({args.hours} h stored) GET .../windows/?range=7d",
                    time_requests(
                        client,
                        [
                            f"/api/sentinels/{rng.choice(ids)}/windows/?range=7d"
                            for _ in range(n // 4)
                        ],
                    ),
                ),
            ]
        finally:
            redis = connect(args.redis_url)
            for sid in ids:
                SentinelStore(redis, sid).reset()
    print(f"load average during the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    head = ("case", "requests", "p50 ms", "p99 ms", "max ms", "cpu p50", "cpu p99")
    print(f"{head[0]:<56}" + "".join(f"{h:>9}" for h in head[1:]))
    for r in results:
        values = (r["requests"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["cpu_p50_ms"],
                  r["cpu_p99_ms"])  # fmt: skip
        print(f"{r['case']:<56}" + "".join(f"{v:>9}" for v in values))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
