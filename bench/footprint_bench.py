"""Footprint of one sentinel over many partitions: worker RSS and Redis memory over time.

    .venv/bin/python bench/footprint_bench.py [--minutes 10] [--partitions 1000] [--rate 10]
        [--interval 10] [--semantic at-least-once] [--replication-factor 3]
        [--bootstrap ...] [--redis-url ...] [--w1-retention SECONDS] [--layout processes]

Target: one sentinel over 1,000 partitions at 10 records/s per partition for 10 minutes keeps
its worker's RSS under 200 MB and Redis memory flat (ledger state expires).

Creates a fresh topic (``--partitions``, replication factor 3 and min.insync.replicas 2; if the
cluster cannot create or lead that many replicas within ``--topic-timeout`` seconds, it falls
back to replication factor 1 and says so), then runs
``python -m workers.runtime.run --spec <spec> --roles all`` as a child process at ``--rate`` records/s
per partition. Every ``--interval`` seconds it samples the child's VmRSS and CPU, Redis
``INFO memory`` ``used_memory`` (the whole server: other users of the same Redis show up here)
and the memory of the sentinel's own keys (``MEMORY USAGE`` of every ``ds:<id>:*`` key), plus
the sentinel's status totals. At the end: the table, the peak RSS (VmHWM), the slope of Redis
memory over the second half in bytes/min (all of Redis and the sentinel's keys), the largest
keys, and the check that nothing was lost (``lost == 0``).

One-second windows are kept in the stream ``ds:<id>:w1`` for ``DS_W1_RETENTION_S`` (an hour
by default), so within a 10-minute run that stream grows by design; ``--w1-retention`` sets
the child's ``DS_W1_RETENTION_S`` to see the plateau in a shorter run. The breakdown by key
shows which key grows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import redis
from _common import (
    ROOT,
    bench_sentinel_id,
    cpu_seconds,
    create_topics,
    default_bootstrap,
    default_redis_url,
    delete_topics,
    on_exit,
    print_machine_facts,
    proc_status_kb,
    process_tree,
    require_loopback,
    slope,
    spawn,
    start_watchdog,
    stop_child,
    table,
)

from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES, SEMANTICS
from workers.engine.spec import SentinelSpec
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore
from workers.system import sentinel_argv

MB = 1024 * 1024


def sentinel_keys_memory(r: redis.Redis, prefix: str) -> dict[str, int]:
    """Bytes per key of the sentinel (``MEMORY USAGE ... SAMPLES 0``: exact, walks the key)."""
    out = {}
    for key in r.scan_iter(match=prefix + "*", count=1000):
        with contextlib.suppress(redis.RedisError):
            out[key.decode()[len(prefix) :]] = r.memory_usage(key, samples=0) or 0
    return out


def make_topic(args, topic: str) -> tuple[int, int, float]:
    """(replication factor, min.insync.replicas, seconds): RF 3 if the cluster manages it."""
    if args.replication_factor > 1:
        try:
            took = create_topics(
                args.bootstrap,
                [topic],
                args.partitions,
                args.replication_factor,
                2,
                timeout=args.topic_timeout,
            )
            return args.replication_factor, 2, took
        except Exception as exc:  # noqa: BLE001 - any failure: say so and fall back
            print(
                f"   !! could not create {args.partitions} partitions with replication factor "
                f"{args.replication_factor} within {args.topic_timeout:.0f}s ({exc}); "
                "falling back to replication factor 1",
                flush=True,
            )
            delete_topics(args.bootstrap, [topic])
            time.sleep(5)
            topic_rf1 = topic + "-rf1"
            args.topic = topic_rf1
    took = create_topics(
        args.bootstrap, [args.topic], args.partitions, 1, 1, timeout=args.topic_timeout
    )
    return 1, 1, took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="records/s per partition")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--semantic", default=AT_LEAST_ONCE, choices=SEMANTICS)
    parser.add_argument(
        "--layout",
        choices=("threads", "processes"),
        default="processes",
        help="the sentinel's roles as threads of one process or one process each (RSS and CPU "
        "are summed over the process tree)",
    )
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--topic-timeout", type=float, default=240.0)
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--w1-retention", type=int, help="DS_W1_RETENTION_S for the sentinel")
    parser.add_argument("--keep-topic", action="store_true")
    args = parser.parse_args(argv)
    require_loopback(args.bootstrap, args.redis_url)
    duration = args.minutes * 60
    start_watchdog(duration + 2 * args.topic_timeout + 180)

    print_machine_facts(
        f"footprint: one {args.semantic} sentinel, {args.partitions} partitions x "
        f"{args.rate:g} rec/s, {args.minutes:g} min"
    )
    sid = bench_sentinel_id()
    args.topic = f"bench-footprint-{sid}-{uuid.uuid4().hex[:6]}"
    rf, min_isr, took = make_topic(args, args.topic)
    if not args.keep_topic:
        on_exit(lambda: delete_topics(args.bootstrap, [args.topic]))
    print(
        f"   topic {args.topic}: {args.partitions} partitions, replication factor {rf}, "
        f"min.insync.replicas {min_isr}, ready in {took:.1f}s"
    )
    spec = SentinelSpec(
        id=sid,
        name=f"bench-footprint-{sid}",
        profile=DEFAULT_PROFILES[args.semantic],
        bootstrap_servers=args.bootstrap,
        topic=args.topic,
        partitions=args.partitions,
        replication_factor=rf,
        min_insync_replicas=min_isr,
        rate_per_partition=args.rate,
    )
    r = connect(args.redis_url)
    store = SentinelStore(r, sid)
    on_exit(store.reset)
    tmp = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    on_exit(lambda: shutil.rmtree(tmp, ignore_errors=True))
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec.to_dict()))
    log_path = tmp / "sentinel.log"
    env = dict(os.environ)
    if args.w1_retention:
        env["DS_W1_RETENTION_S"] = str(args.w1_retention)
    retention = env.get("DS_W1_RETENTION_S", "3600 (default)")
    print(f"   sentinel id {sid}, DS_W1_RETENTION_S {retention}", flush=True)

    redis_before = int(r.info("memory")["used_memory"])
    with open(log_path, "ab") as log:
        child = spawn(
            sentinel_argv(spec_path, roles="all", redis_url=args.redis_url, layout=args.layout),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    t0 = time.monotonic()
    rows, samples = [], []
    prev_cpu, prev_t, prev_totals = 0.0, t0, {}
    headers = [
        "t (s)", "RSS MB", "CPU %", "redis used MB", "sentinel keys MB", "w1 MB",
        "produced/s", "processed/s", "pending", "lost", "dup",
    ]  # fmt: skip
    print("\n" + table(headers, []).splitlines()[0])
    print(table(headers, []).splitlines()[1], flush=True)
    next_sample = t0 + args.interval
    while True:
        time.sleep(max(0.0, next_sample - time.monotonic()))
        next_sample += args.interval
        now = time.monotonic()
        if child.poll() is not None:
            print(f"   !! the sentinel exited with {child.returncode}; log tail:")
            print(log_path.read_text(errors="replace")[-3000:])
            break
        tree = process_tree(child.pid)  # --layout processes: the roles' processes too
        rss = sum(proc_status_kb(pid, "VmRSS") or 0 for pid in tree)
        cpu = sum(cpu_seconds(pid) or 0.0 for pid in tree)
        used = int(r.info("memory")["used_memory"])
        keys = sentinel_keys_memory(r, store.prefix)
        doc = store.status() or {}
        totals = doc.get("totals", {})
        dt = now - prev_t

        def rate(key: str, totals=totals, prev=prev_totals, dt=dt) -> str:
            if not totals or key not in prev:
                return "-"
            return f"{(totals[key] - prev[key]) / dt:,.0f}"

        sample = {
            "t": now - t0,
            "rss": rss * 1024,
            "cpu": 100 * (cpu - prev_cpu) / dt,
            "redis": used,
            "keys": sum(keys.values()),
            "by_key": keys,
            "totals": totals,
        }
        samples.append(sample)
        row = [
            f"{sample['t']:.0f}",
            f"{rss / 1024:.1f}",
            f"{sample['cpu']:.0f}",
            f"{used / MB:.2f}",
            f"{sample['keys'] / MB:.2f}",
            f"{keys.get('w1', 0) / MB:.2f}",
            rate("produced"),
            rate("processed"),
            f"{totals.get('pending', '-'):,}" if totals else "-",
            totals.get("lost", "-"),
            totals.get("duplicated", "-"),
        ]
        rows.append(row)
        print(table(headers, [row]).splitlines()[2], flush=True)
        prev_cpu, prev_t, prev_totals = cpu, now, dict(totals)
        if now - t0 >= duration:
            break

    tree = process_tree(child.pid) if child.poll() is None else []
    hwm = sum(proc_status_kb(pid, "VmHWM") or 0 for pid in tree) or None
    w1_entries = r.xlen(store.key("w1"))
    final = store.status() or {}
    stop_child(child, timeout=60)

    print(f"\n== results ({len(samples)} samples every {args.interval:g}s)")
    if not samples:
        print("   no samples: the sentinel did not run; log tail:")
        print(log_path.read_text(errors="replace")[-3000:])
        return 1
    max_rss = max(s["rss"] for s in samples)
    second_half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
    slope_redis = 60 * slope([(s["t"], s["redis"]) for s in second_half])
    slope_keys = 60 * slope([(s["t"], s["keys"]) for s in second_half])
    slope_no_w1 = 60 * slope([(s["t"], s["keys"] - s["by_key"].get("w1", 0)) for s in second_half])
    totals = final.get("totals", {})
    elapsed = samples[-1]["t"]
    produced_rate = totals.get("produced", 0) / elapsed if elapsed else 0
    print(f"   worker RSS: max sampled {max_rss / MB:.1f} MB", end="")
    print(f", peak VmHWM {hwm / 1024:.1f} MB" if hwm else "", end="")
    print(f" (target < 200 MB: {'PASS' if max(max_rss, (hwm or 0) * 1024) < 200 * MB else 'FAIL'})")
    print(f"   worker CPU: mean {sum(s['cpu'] for s in samples) / len(samples):.0f}% of one core")
    print(f"   Redis used_memory: {redis_before / MB:.2f} MB before the sentinel started")
    print(
        f"   Redis memory slope over the second half ({second_half[0]['t']:.0f}-"
        f"{second_half[-1]['t']:.0f} s): whole server {slope_redis:+,.0f} B/min, "
        f"sentinel keys {slope_keys:+,.0f} B/min, sentinel keys without w1 "
        f"{slope_no_w1:+,.0f} B/min"
    )
    last = samples[-1]["by_key"]
    biggest = sorted(last.items(), key=lambda kv: -kv[1])[:8]
    first_half = samples[len(samples) // 2]["by_key"]
    print("   sentinel keys at the end (bytes; at mid-run in brackets):")
    for key, size in biggest:
        print(f"      ds:{sid}:{key:10} {size:>12,}  ({first_half.get(key, 0):,})")
    retention_s = int(env.get("DS_W1_RETENTION_S", "3600"))
    if w1_entries and last.get("w1"):
        per_window = last["w1"] / w1_entries
        print(
            f"   w1: {w1_entries} one-second windows, {per_window / 1024:,.1f} KiB each; it grows "
            f"until {retention_s} s of windows are kept: plateau ≈ "
            f"{per_window * retention_s / MB:,.0f} MB for this sentinel"
        )
    print("   final totals: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))
    target = args.partitions * args.rate
    print(
        f"   produce rate: {produced_rate:,.0f} rec/s of {target:,.0f} targeted"
        + (
            "  !! the cluster did not keep up (backpressure, timeouts): the footprint was "
            "measured at a lower load than targeted"
            if produced_rate < 0.9 * target or totals.get("failed")
            else ""
        )
    )
    lost = totals.get("lost")
    print(f"   lost == 0: {'PASS' if lost == 0 else 'FAIL'} (lost {lost})")
    print(f"   finished {time.strftime('%Y-%m-%d %H:%M:%S %z')}", flush=True)
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
