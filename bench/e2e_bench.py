"""End-to-end sentinel throughput at saturation, against a raw confluent-kafka baseline.

    .venv/bin/python bench/e2e_bench.py [--duration 30] [--semantics at-most-once,...]
        [--layout processes|threads] [--rounds 3]
        [--bootstrap 127.0.0.1:9092,...] [--redis-url redis://127.0.0.1:6379/0]
        [--warmup 5] [--partitions 6] [--profile]
        [--secure-cluster NAME:PORT]   both pipelines on a local cluster's SASL_SSL listener

Target: for each semantic, the sentinel pipeline's records/s is at least 0.8 of a raw
confluent-kafka pipeline with the same client properties, on the same cluster, in the same run.

For each semantic, on fresh topics (6 partitions, replication factor 3, min.insync.replicas 2):

(a) raw baseline, in threads of this process: a ``Producer`` with the profile's producer
    properties producing records of ``record_size`` bytes as fast as it can (100 per partition
    per step, like ``SentinelProducer.produce_burst``), and a ``Consumer`` with the profile's
    consumer properties, assigned every partition, reading batches as the sentinel does
    (``workers.clients.kafka.consume_batch``: the first record at once, then what is already
    fetched, up to 500 and more under a backlog) and
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
import pstats
import re
import statistics
import sys
import time

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    default_bootstrap,
    default_redis_url,
    print_machine_facts,
    require_loopback,
    start_watchdog,
    table,
)
from _e2e import Measurement
from e2e_raw import measure_raw
from e2e_sentinel import measure_sentinel

from workers.engine.env import mask_url
from workers.engine.profiles import DEFAULT_PROFILES, SEMANTICS
from workers.engine.spec import SentinelSpec
from workers.localkafka.cluster import LocalCluster

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
        "--secure-cluster",
        metavar="NAME:PORT",
        help="measure over the SASL_SSL listener (SCRAM-SHA-512, TLS) of the local cluster "
        "NAME whose first plaintext port is PORT (started --secure); topics are made over "
        "plaintext. Overrides --bootstrap",
    )
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
    args.admin_bootstrap, args.client = args.bootstrap, {}
    if args.secure_cluster:
        name, _, port = args.secure_cluster.partition(":")
        cluster = LocalCluster(name, broker_base_port=int(port))
        args.client = cluster.secure_client_config()
        args.bootstrap = args.client.pop("bootstrap.servers")
        args.admin_bootstrap = cluster.bootstrap_servers
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
    print(f"   bootstrap {args.bootstrap}, redis {mask_url(args.redis_url)}", flush=True)
    if args.client:
        print(f"   {args.client['security.protocol']} {args.client['sasl.mechanism']}, TLS")
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
