"""Sentinel density: N light sentinels hosted by one, then two Celery workers.

    .venv/bin/python bench/density_bench.py [--sentinels 100] [--workers 1,2] [--minutes 10]
        [--interval 15] [--warmup 60] [--bootstrap ...] [--redis-url ...]
    .venv/bin/python bench/density_bench.py --sentinels 20,40,60,80,100 --workers 1 --minutes 2

``--sentinels`` may list several counts: each is a run of its own (fresh sentinels and
topics, deleted after it unless it failed), in order, stopping after the first that fails,
so an ascending list finds the largest N that stays HOLDING.

Creates a throwaway SQLite database (migrated) with ``--sentinels`` sentinels of the three
default profiles in turn (3 partitions x 10 records/s, replication factor 3, as ``bin/up``
creates them), then for each worker count in ``--workers``: starts that many Celery workers
hosting them (as ``bin/up`` does: ``celery -A workers.runtime.celery worker``), waits until every
sentinel reports progress, lets them run ``--warmup`` seconds, and measures for ``--minutes``:

- RSS and CPU of the workers' whole process trees (workers, shared hosts, any sentinel with
  processes of its own; the brokers and Redis excluded), per sentinel;
- Redis: ``MEMORY USAGE`` of every sentinel key, per sentinel, split into the one-second
  window stream ``w1`` and the rest, and projected to the ``w1`` retention (1 h by default:
  the stream holds one window a second until then);
- how much of that CPU librdkafka's own threads (``rdk:*``) took, the rest being Python;
- with ``--local-cluster NAME:PORT`` (default: ``LOCAL_KAFKA_NAME`` / ``LOCAL_KAFKA_PORT`` when
  set), the CPU the project's local brokers took meanwhile, per sentinel: not part of the
  targets, but they share the machine's cores with the sentinels;
- each sentinel's end-to-end p99 over the last minute (status ``recent_latency_ms``), and
  its verdict and lost / duplicated totals at every sample; a run passes when every sentinel
  stays HOLDING and no sentinel counts what its semantic forbids (``FORBIDDEN``: at-most-once
  may lose records, at-least-once may duplicate them).

Targets (issue 15): 100 sentinels under 15 MB RSS and 0.5 % of a core each, Redis under
2 MB each at 1 h retention, end-to-end p99 within 50 ms of a single sentinel's, all HOLDING
with lost = duplicated = 0. ``--sentinels 1`` gives the single sentinel's p99.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from _common import (
    ROOT,
    cpu_seconds,
    default_bootstrap,
    default_redis_url,
    delete_topics,
    on_exit,
    percentile,
    print_machine_facts,
    proc_status_kb,
    process_tree,
    require_loopback,
    spawn,
    start_watchdog,
    stop_child,
    table,
    thread_cpu,
)

from workers.engine.documents import FORBIDDEN, W1_RETENTION_S
from workers.localkafka.cluster import LocalCluster
from workers.store.connection import connect
from workers.store.keys import sentinel_key
from workers.store.sentinel import SentinelStore
from workers.system import hosting_worker_argv

MB = 1024 * 1024

CREATE = """
import json, os
from dashboard.models import Cluster, Profile, Sentinel, ensure_defaults
ensure_defaults()
Sentinel.objects.all().delete()
cluster = Cluster.objects.get(is_local=True)
profiles = list(Profile.objects.order_by("name"))
tag, count = os.environ["DENSITY_TAG"], int(os.environ["DENSITY_COUNT"])
rows = [
    Sentinel(name=f"density-{tag}-{i:03d}", cluster=cluster, profile=profiles[i % len(profiles)],
             topic=f"density-{tag}-{i:03d}", partitions=3, rate_per_partition=10)
    for i in range(count)
]
Sentinel.objects.bulk_create(rows)
print("IDS", json.dumps(list(Sentinel.objects.filter(name__startswith=f"density-{tag}").values_list("pk", flat=True))))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sentinels", default="100", help="sentinel count, or ascending counts to search"
    )
    parser.add_argument("--workers", default="1,2", help="worker counts to run, in turn")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=60)
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    name, port = os.environ.get("LOCAL_KAFKA_NAME"), os.environ.get("LOCAL_KAFKA_PORT")
    parser.add_argument(
        "--local-cluster",
        default=f"{name}:{port}" if name and port else "",
        help="NAME:PORT of the local cluster serving --bootstrap, to report its brokers' CPU",
    )
    return parser.parse_args()


class Stack:
    """A throwaway database with the sentinels, and Celery workers hosting them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="density-"))
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.tmp / 'db.sqlite3'}",
            "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
            "REDIS_URL": args.redis_url,
            "SENTINELS_ENABLED": "true",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-only-" + "x" * 40,
        }
        self.env.pop("DJANGO_TEST_DB_FILE", None)
        self.workers: list = []

    def manage(self, *argv: str) -> str:
        import subprocess

        out = subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def create_sentinels(self, count: int) -> tuple[list[int], list[str]]:
        """``count`` fresh sentinels (replacing any before): their ids and topics."""
        self.manage("migrate", "--verbosity", "0")
        tag = uuid.uuid4().hex[:6]
        self.env.update(DENSITY_TAG=tag, DENSITY_COUNT=str(count))
        out = self.manage("shell", "-c", CREATE)
        ids = json.loads(next(x for x in out.splitlines() if x.startswith("IDS "))[4:])
        return ids, [f"density-{tag}-{i:03d}" for i in range(count)]

    def start_workers(self, count: int) -> None:
        for i in range(count):
            log = (self.tmp / f"worker-{i}.log").open("ab")
            self.workers.append(
                spawn(
                    hosting_worker_argv(
                        f"density{i}", f"density-{uuid.uuid4().hex[:8]}", "warning"
                    ),
                    env=self.env,
                    stdout=log,
                    stderr=log,
                )
            )

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop_child(proc, timeout=60)
        self.workers.clear()

    def pids(self) -> list[int]:
        return [pid for proc in self.workers for pid in process_tree(proc.pid)]

    def broker_pids(self) -> list[int]:
        if not self.args.local_cluster:
            return []
        name, _, port = self.args.local_cluster.partition(":")
        nodes = LocalCluster(name, broker_base_port=int(port)).status()["nodes"]
        return [n["pid"] for n in nodes if n["pid"] is not None]


def statuses(r: redis.Redis, ids: list[int]) -> list[dict | None]:
    raw = r.mget([sentinel_key(sid, "status") for sid in ids])
    return [json.loads(x) if x else None for x in raw]


def redis_per_sentinel(r: redis.Redis, ids: list[int]) -> tuple[float, float, float]:
    """Mean bytes per sentinel: all keys now, the w1 stream now, and projected to retention."""
    total = w1 = projected = 0
    for sid in ids:
        keys = list(r.scan_iter(match=sentinel_key(sid, "*"), count=200))
        for key in keys:
            size = r.memory_usage(key, samples=0) or 0
            total += size
            if key.endswith(b":w1"):
                w1 += size
                length = r.xlen(key) or 1
                projected += size / length * W1_RETENTION_S
            else:
                projected += size
    n = max(1, len(ids))
    return total / n, w1 / n, projected / n


def sample(stack: Stack, r: redis.Redis, ids: list[int]) -> dict:
    pids = stack.pids()
    docs = statuses(r, ids)
    threads = [t for p in pids for t in thread_cpu(p).values()]
    p99s = [
        d["recent_latency_ms"]["p99"]
        for d in docs
        if d and d.get("recent_latency_ms", {}).get("p99") is not None
    ]
    verdicts: dict[str, int] = {}
    for d in docs:
        v = d["verdict"] if d else "NO REPORT"
        verdicts[v] = verdicts.get(v, 0) + 1
    return {
        "t": time.monotonic(),
        "rss": sum((proc_status_kb(p, "VmRSS") or 0) * 1024 for p in pids),
        "cpu": sum(cpu_seconds(p) or 0.0 for p in pids),
        "cpu_rdkafka": sum(cpu for name, cpu in threads if name.startswith("rdk:")),
        "cpu_brokers": sum(cpu_seconds(p) or 0.0 for p in stack.broker_pids()),
        "processes": len(pids),
        "p99s": p99s,
        "verdicts": verdicts,
        "lost": sum(d["totals"]["lost"] for d in docs if d),
        "duplicated": sum(d["totals"]["duplicated"] for d in docs if d),
        "forbidden": sum(d["totals"][c] for d in docs if d for c in FORBIDDEN[d["semantic"]]),
    }


def run_phase(args, stack: Stack, r: redis.Redis, ids: list[int], workers: int) -> dict:
    print(f"\n== {len(ids)} sentinels on {workers} worker(s)", flush=True)
    stack.start_workers(workers)
    started, since = time.monotonic(), time.time()
    while True:
        docs = statuses(r, ids)
        # Reports of this phase's workers (a former phase's statuses are still there).
        running = sum(
            1 for d in docs if d and d["totals"]["processed"] > 0 and d["updated_at"] > since
        )
        if running == len(ids):
            break
        if time.monotonic() - started > 600:
            print(f"   only {running} of {len(ids)} sentinels progressing after 600 s: failed")
            stack.stop_workers()
            return {"sentinels": len(ids), "workers": workers, "passed": False}
        time.sleep(2)
    print(f"   all progressing after {time.monotonic() - started:.0f} s; warming up", flush=True)
    time.sleep(args.warmup)
    first = sample(stack, r, ids)
    rows, samples = [], [first]
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        time.sleep(args.interval)
        s = sample(stack, r, ids)
        prev = samples[-1]
        cpu = (s["cpu"] - prev["cpu"]) / (s["t"] - prev["t"]) * 100
        samples.append(s)
        rows.append(
            [
                f"{s['t'] - first['t']:.0f}",
                s["processes"],
                f"{s['rss'] / MB:.0f}",
                f"{cpu:.0f}",
                f"{percentile(s['p99s'], 50):.1f}" if s["p99s"] else "-",
                f"{max(s['p99s']):.1f}" if s["p99s"] else "-",
                " ".join(f"{k}={v}" for k, v in sorted(s["verdicts"].items())),
                s["lost"],
                s["duplicated"],
            ]
        )
        print("   " + " | ".join(str(c) for c in rows[-1]), flush=True)
    last = samples[-1]
    n = len(ids)
    redis_now, redis_w1, redis_projected = redis_per_sentinel(r, ids)
    cpu_pct = (last["cpu"] - first["cpu"]) / (last["t"] - first["t"]) * 100
    rdkafka_pct = (last["cpu_rdkafka"] - first["cpu_rdkafka"]) / (last["t"] - first["t"]) * 100
    brokers_pct = (last["cpu_brokers"] - first["cpu_brokers"]) / (last["t"] - first["t"]) * 100
    all_p99 = [p for s in samples[1:] for p in s["p99s"]]
    result = {
        "sentinels": n,
        "workers": workers,
        "processes": last["processes"],
        "rss_mb_per_sentinel": statistics.mean(s["rss"] for s in samples) / MB / n,
        "cpu_pct_per_sentinel": cpu_pct / n,
        "cpu_pct_per_sentinel_rdkafka": rdkafka_pct / n,
        "broker_cpu_pct_per_sentinel": brokers_pct / n if args.local_cluster else None,
        "redis_mb_per_sentinel_now": redis_now / MB,
        "redis_w1_mb_per_sentinel_now": redis_w1 / MB,
        "redis_mb_per_sentinel_at_retention": redis_projected / MB,
        "e2e_p99_ms_median": percentile(all_p99, 50) if all_p99 else None,
        "e2e_p99_ms_max": max(all_p99) if all_p99 else None,
        "always_holding": all(s["verdicts"] == {"HOLDING": n} for s in samples),
        "lost": last["lost"],
        "duplicated": last["duplicated"],
        "forbidden": last["forbidden"],
        "passed": all(s["verdicts"] == {"HOLDING": n} for s in samples) and not last["forbidden"],
    }
    print(
        table(
            ["t s", "procs", "RSS MB", "CPU %", "p99 median", "p99 max", "verdicts", "lost", "dup"],
            rows,
        )
    )
    print(json.dumps(result, indent=2))
    stack.stop_workers()
    return result


def main() -> int:
    args = parse_args()
    require_loopback(args.bootstrap, args.redis_url)
    counts = [int(x) for x in args.workers.split(",")]
    sizes = [int(x) for x in args.sentinels.split(",")]
    start_watchdog(len(sizes) * len(counts) * (args.minutes * 60 + args.warmup + 900) + 300)
    print_machine_facts(f"density: {sizes} sentinels, workers {counts}")
    stack = Stack(args)
    on_exit(stack.stop_workers)
    r = connect(args.redis_url)
    results = []
    for size in sizes:
        ids, topics = stack.create_sentinels(size)
        for sid in ids:  # a former run's status under the same id would look like progress
            SentinelStore(r, sid).reset()
        phases = [run_phase(args, stack, r, ids, w) for w in counts]
        results += phases
        if not all(x["passed"] for x in phases):
            # Kept, with the sentinels' Redis state, for reading what went wrong.
            print(f"   topics kept: density-{topics[0].split('-')[1]}-*")
            break
        delete_topics(args.bootstrap, topics)
    print("\n== summary")
    print(summary_table(results))
    passed = [x["sentinels"] for x in results if x["passed"]]
    if len(sizes) > 1:
        print(f"largest N that passed: {max(passed) if passed else 'none'}")
    return 0 if all(x["passed"] for x in results) else 1


def summary_table(results: list[dict]) -> str:
    headers = [
        "sentinels",
        "workers",
        "processes",
        "RSS MB/sentinel",
        "CPU %/sentinel (librdkafka)",
        "brokers' CPU %/sentinel",
        "Redis MB/sentinel (now, w1, at retention)",
        "p99 median / max ms",
        "always HOLDING",
        "lost",
        "dup",
        "forbidden",
        "passed",
    ]
    rows = []
    for x in results:
        if "processes" not in x:  # never got going
            rows.append([x["sentinels"], x["workers"], *["-"] * (len(headers) - 3), False])
            continue
        rows.append(
            [
                x["sentinels"],
                x["workers"],
                x["processes"],
                f"{x['rss_mb_per_sentinel']:.1f}",
                f"{x['cpu_pct_per_sentinel']:.2f} ({x['cpu_pct_per_sentinel_rdkafka']:.2f})",
                "-"
                if x.get("broker_cpu_pct_per_sentinel") is None
                else f"{x['broker_cpu_pct_per_sentinel']:.2f}",
                f"{x['redis_mb_per_sentinel_now']:.2f}, {x['redis_w1_mb_per_sentinel_now']:.2f}, "
                f"{x['redis_mb_per_sentinel_at_retention']:.2f}",
                f"{x['e2e_p99_ms_median']} / {x['e2e_p99_ms_max']}",
                x["always_holding"],
                x["lost"],
                x["duplicated"],
                x["forbidden"],
                x["passed"],
            ]
        )
    return table(headers, rows)


if __name__ == "__main__":
    sys.exit(main())
