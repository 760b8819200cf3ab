"""The end-to-end benchmark's sentinel pipeline, hosted as workers host it (see
e2e_bench.py)."""

from __future__ import annotations

import contextlib
import cProfile
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    bench_sentinel_id,
    create_topics,
    delete_topics,
    on_exit,
    process_tree,
    spawn,
    stop_child,
    thread_cpu_delta,
)
from _e2e import SAMPLE_S, GilProbe, Measurement, Timers, cpu_of, steady_rate, timer_report

from workers.clientsecrets import seal
from workers.engine.profiles import Profile
from workers.engine.spec import SentinelSpec
from workers.runtime.run import RoleRunner, open_spec, roles_for
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore
from workers.system import sentinel_argv

# -------------------------------------------------------------------------------------------
# Sentinel pipeline
# -------------------------------------------------------------------------------------------


@dataclass
class WriteCounts:
    """Records and time spent writing the ledger and acks, shared by every role's store. Each
    field is added to by one role's thread only (the ledger by the consumer or verifier, the
    acks by the producer), so no lock is needed."""

    ledger_records: int = 0
    ledger_calls: int = 0
    ledger_s: float = 0.0
    acks_calls: int = 0
    acks_s: float = 0.0


class CountingStore(SentinelStore):
    """The real store, plus counters (``counts``, shared by the stores ``for_writer`` makes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts = WriteCounts()

    # for_writer() is the real one: each role joins the state epoch as a writer of its own (a
    # store shared by every role's thread made their epoch checks race: one role's write seen
    # as Redis going back in time by another, a new epoch begun, then "state epoch gone"
    # everywhere). Its shallow copy shares ``counts``.

    def append_ledger(self, entry, **kwargs):  # type: ignore[override]
        started = time.perf_counter()
        super().append_ledger(entry, **kwargs)
        self.counts.ledger_s += time.perf_counter() - started
        self.counts.ledger_calls += 1
        self.counts.ledger_records += len(entry.items)

    def append_acks(self, *args, **kwargs):  # type: ignore[override]
        started = time.perf_counter()
        super().append_acks(*args, **kwargs)
        self.counts.acks_s += time.perf_counter() - started
        self.counts.acks_calls += 1


TIMED = {
    "producer": ("step", "produce_burst", "flush_acks"),
    # commit: at-most-once's, before processing; await_commit: how long at-least-once's step
    # still waits for the commit behind it (the rest of that commit overlaps the next batch).
    "consumer": ("step", "poll_batch", "decode_batch", "process", "commit", "await_commit"),
    "copier": ("step", "poll_batch", "produce_copies", "commit_transaction"),
    "verifier": ("step", "poll_batch", "decode_batch", "process"),
    "checker": ("step", "read_all", "checkpoint", "status", "emit_window"),
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
    """The sentinel as workers host it: ``python -m workers.runtime.run --roles all --layout
    LAYOUT``. ``processes`` (a sentinel with processes of its own, as a fast one is hosted):
    its producer and checker in child processes; ``threads``: every role in one process, as
    in the shared host of light sentinels (``workers.runtime.host``)."""

    def __init__(self, spec: SentinelSpec, redis_url: str, layout: str = "processes") -> None:
        self.spec, self.redis_url, self.layout = spec, redis_url, layout
        self.dir = Path(tempfile.mkdtemp(prefix="e2e-sentinel-"))
        on_exit(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.path = self.dir / "spec.json"
        self.path.write_text(json.dumps(spec.to_dict()))
        self.proc: Any = None

    def start(self) -> None:
        argv = sentinel_argv(self.path, roles="all", layout=self.layout, redis_url=self.redis_url)
        with open(self.dir / "sentinel.log", "wb") as log:
            self.proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        self.proc.name = "sentinel"

    @property
    def children(self) -> list[Any]:
        """The sentinel's processes, for CPU accounting (named by their roles)."""
        out = []
        for pid in process_tree(self.proc.pid):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if pid else []
            rest = "consumers" if self.layout == "processes" else "all roles"
            role = next((r for r in ("producer", "checker") if r.encode() in cmd), rest)
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


def bench_spec(bench: str, semantic: str, profile: Profile, args, **fields: Any) -> SentinelSpec:
    """A sentinel of its own for one measurement: a fresh id and topic, RF 3, min.insync 2."""
    sid = bench_sentinel_id()
    return SentinelSpec(
        id=sid,
        name=f"bench-{bench}-{semantic}-{sid}",
        profile=profile,
        bootstrap_servers=args.bootstrap,
        client=seal(getattr(args, "client", {})),  # sealed in the spec file, as a worker's
        topic=f"bench-{bench}-sentinel-{semantic}-{sid}",
        partitions=args.partitions,
        replication_factor=3,
        min_insync_replicas=2,
        **fields,
    )


def measure_sentinel(args, semantic: str, profile: Profile) -> Measurement:
    spec = bench_spec(
        "e2e",
        semantic,
        profile,
        args,
        rate_per_partition=0,
        record_size=args.record_size,
        batch_size=args.batch,
    )
    sid = spec.id
    topics = [spec.topic] + ([spec.output_topic_name] if spec.eos else [])
    create_topics(args.admin_bootstrap, topics, args.partitions, 3, 2)
    store = CountingStore(connect(args.redis_url), sid)
    on_exit(store.reset)
    if not args.keep_topics:
        on_exit(lambda: delete_topics(args.admin_bootstrap, topics))
    timers = Timers()
    profiles: dict[str, cProfile.Profile] = {}
    if args.layout == "processes":
        host = ProcessHost(spec, args.redis_url)
    else:
        host = RoleRunner(open_spec(spec), store, roles_for(spec))
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
            samples["ledger"].append((now, store.counts.ledger_records))
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
    delete_topics(args.admin_bootstrap, [] if args.keep_topics else topics)

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
            "ledger appends": store.counts.ledger_calls,
            "ledger records/append": round(
                store.counts.ledger_records / max(1, store.counts.ledger_calls), 1
            ),
            "ledger ms/append": round(
                1000 * store.counts.ledger_s / max(1, store.counts.ledger_calls), 3
            ),
            "acks appends": store.counts.acks_calls,
            "acks ms/append": round(
                1000 * store.counts.acks_s / max(1, store.counts.acks_calls), 3
            ),
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
