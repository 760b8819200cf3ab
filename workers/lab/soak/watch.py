"""What the soak watches while it runs, and how it judges what it saw.

``Watcher`` samples, once a second, every sentinel's status document (verdict, totals), and
every ``RSS_EVERY_S`` the resident memory of each process of the monitor (the Celery workers,
their shared sentinel hosts, each sentinel process of its own, Redis) and Redis' own ``used_memory``. ``judge()`` turns the samples,
the one-second windows, the takeovers and the ground truth into checks that pass or fail.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from workers.engine.documents import (
    ALLOWED,
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    EXACTLY_ONCE,
    FORBIDDEN,
    Verdict,
)
from workers.lab.soak.procs import SoakRedis, SoakWorkers, rss_bytes, sentinel_processes
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)

SAMPLE_EVERY_S = 1.0
RSS_EVERY_S = 10.0
# Cumulative counters of the status document. lost may fall (a late record moves from lost to
# late), so lost + late is what must never fall; pending and in_flight are levels.
MONOTONIC = (
    "produced",
    "acked",
    "failed",
    "processed",
    "duplicated",
    "reordered",
    "phantom",
    "aborted_read",
    "foreign",
    "late",
)
# Memory is "flat" when it grew by at most this over the second half (start vs end; each
# value the median of the samples of the first / last RSS_EDGE_S of the span, so one sample
# taken mid-allocation cannot decide). Why these numbers: a Python process' RSS moves in
# steps of its allocator's arenas (256 KiB) and librdkafka's buffers (its queues fill and
# drain with the broker faults), a few MB either way; a leak per record is what matters, and
# over a 15-minute half at 30 records/s a leak of 300 bytes per record grows 8 MB: past the
# absolute allowance of MEM_ABS_MB plus MEM_REL of a ~60 MB process.
MEM_ABS_MB = 8.0
MEM_REL = 0.10
RSS_EDGE_S = 60.0
# A process is compared only when it lived through this much of the second half.
MEM_MIN_SPAN_S = 240.0


@dataclass
class Check:
    """One judged claim: ``ok`` or not, with what was seen."""

    name: str
    sentinel: str
    ok: bool
    seen: Any
    expected: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Samples:
    status: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)  # name: (t,pid,b)
    redis_used: list[tuple[float, int]] = field(default_factory=list)
    verdicts_seen: dict[int, dict[str, int]] = field(default_factory=dict)


class Watcher(threading.Thread):
    def __init__(
        self,
        client: redis.Redis,
        names: dict[int, str],
        workers: SoakWorkers,
        soak_redis: SoakRedis,
    ) -> None:
        super().__init__(name="soak-watcher", daemon=True)
        self.client = client
        self.names = names  # sentinel id -> key
        self.workers = workers
        self.redis = soak_redis
        self.samples = Samples(
            status={sid: [] for sid in names}, verdicts_seen={sid: {} for sid in names}
        )
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self._last_rss = 0.0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sample(time.time())
            except redis.RedisError:
                pass  # Redis restarting: the next sample will see it again
            except Exception:  # a sampling bug must not end the soak silently
                log.exception("soak watcher: sample failed")
            self.stopping.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)

    def sample(self, now: float) -> None:
        for sid in self.names:
            doc = SentinelStore(self.client, sid).status()
            if not doc:
                continue
            verdict = doc.get("verdict") or ""
            with self.lock:
                seen = self.samples.verdicts_seen[sid]
                seen[verdict] = seen.get(verdict, 0) + 1
                self.samples.status[sid].append(
                    {
                        "t": now,
                        "updated_at": doc.get("updated_at"),
                        "verdict": verdict,
                        "reasons": doc.get("reasons", [])[:3],
                        "totals": dict(doc.get("totals") or {}),
                        "runs": doc.get("runs"),
                    }
                )
        if now - self._last_rss >= RSS_EVERY_S:
            self._last_rss = now
            self.sample_memory(now)

    def sample_memory(self, now: float) -> None:
        pids = {f"worker {n}": pid for n, pid in self.workers.pids().items()}
        if self.redis.pid:
            pids["redis"] = self.redis.pid
        for (sid, role), pid in sentinel_processes(set(self.names)).items():
            pids[f"{self.names[sid]}/{role}"] = pid
        for name, pid in self.workers.hosts().items():
            pids[f"shared host of {name}"] = pid
        with self.lock:
            for name, pid in pids.items():
                rss = rss_bytes(pid)
                if rss is not None:
                    self.samples.rss.setdefault(name, []).append((now, pid, rss))
            used = int(self.client.info("memory")["used_memory"])
            self.samples.redis_used.append((now, used))

    def processed(self, sid: int) -> int:
        with self.lock:
            series = self.samples.status[sid]
            return int(series[-1]["totals"].get("processed", 0)) if series else 0


# -- judging ---------------------------------------------------------------------------------


def judged(semantic: str, weak: bool) -> bool:
    """The default at-least-once and exactly-once sentinels are judged; at-most-once and the
    weak variants (acks=1, idempotence off) are reported: their losses and duplicates are real."""
    return semantic in (AT_LEAST_ONCE, EXACTLY_ONCE) and not weak


def promise_checks(key: str, semantic: str, totals: dict[str, int], kafka: dict[str, int]):
    """Forbidden counters at zero in the checker's totals and in Kafka's ground truth."""
    checks = []
    for counter in FORBIDDEN[semantic]:
        if semantic == AT_MOST_ONCE:
            continue
        checks.append(
            Check(f"{counter} = 0", key, totals.get(counter, 0) == 0, totals.get(counter, 0), "0")
        )
    if semantic != AT_MOST_ONCE and "lost" not in ALLOWED[semantic]:
        checks.append(
            Check(
                "pending = 0 after settling",
                key,
                totals.get("pending", 0) == 0,
                totals.get("pending", 0),
                "0",
            )
        )
        missing = kafka.get("missing_in_output", kafka.get("missing_in_topic", 0))
        checks.append(
            Check(
                "acked records missing from Kafka = 0",
                key,
                missing == 0,
                missing,
                "0 (ground truth: topics read to their end)",
            )
        )
    if semantic == EXACTLY_ONCE:
        for name in ("committed_twice", "aborted_in_output"):
            checks.append(
                Check(
                    f"{name} = 0",
                    key,
                    kafka.get(name, 0) == 0,
                    kafka.get(name, 0),
                    "0 (ground truth: output read_committed)",
                )
            )
    return checks


def verdict_checks(key: str, samples: list[dict], windows: list[dict]) -> list[Check]:
    violated = [s["t"] for s in samples if s["verdict"] == Verdict.VIOLATED]
    violated += [w["t"] for w in windows if w.get("verdict") == Verdict.VIOLATED]
    return [
        Check(
            "never VIOLATED",
            key,
            not violated,
            sorted(violated)[:5],
            f"no VIOLATED in {len(samples)} status samples and {len(windows)} windows",
        )
    ]


def monotonic_checks(key: str, samples: list[dict]) -> list[Check]:
    falls = []
    prev: dict[str, int] = {}
    for s in samples:
        t = s["totals"]
        now = {c: int(t.get(c, 0)) for c in MONOTONIC}
        now["lost+late"] = int(t.get("lost", 0)) + int(t.get("late", 0))
        for c, v in now.items():
            if c in prev and v < prev[c]:
                falls.append({"t": s["t"], "counter": c, "from": prev[c], "to": v})
        prev = now
    return [
        Check(
            "counters never decrease",
            key,
            not falls,
            falls[:5],
            f"no fall in {len(samples)} samples",
        )
    ]


def truth_checks(key: str, comparison: dict[str, Any], completeness: dict[str, Any]):
    seen, added = completeness["entries_seen"], completeness["entries_added"]
    return [
        Check(
            "ground truth complete",
            key,
            seen == added,
            completeness,
            "every acks and ledger entry ever appended was tapped",
        ),
        Check(
            "counts equal the ground truth",
            key,
            not comparison["differ"],
            comparison["pairs"],
            "checker totals == recount from the raw streams",
        ),
    ]


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2]) if ordered else 0.0


def memory_checks(samples: Samples, since: float, until: float) -> tuple[list[Check], dict]:
    """Each process alive through ``since..until`` (one pid), and Redis' used_memory."""
    checks, table = [], {}
    series = {
        name: [(t, pid, b) for t, pid, b in pts if since <= t <= until]
        for name, pts in samples.rss.items()
    }
    series["redis used_memory"] = [(t, 0, b) for t, b in samples.redis_used if since <= t <= until]
    for name, pts in sorted(series.items()):
        if not pts:
            continue
        last_pid = pts[-1][1]
        own = [(t, b) for t, pid, b in pts if pid == last_pid]  # its current incarnation
        span = own[-1][0] - own[0][0]
        if span < MEM_MIN_SPAN_S:
            table[name] = {"compared": False, "span_s": round(span)}
            continue
        start = _median([b for t, b in own if t <= own[0][0] + RSS_EDGE_S])
        end = _median([b for t, b in own if t >= own[-1][0] - RSS_EDGE_S])
        allowed = MEM_ABS_MB * 2**20 + MEM_REL * start
        row = {
            "compared": True,
            "span_s": round(span),
            "start_mb": round(start / 2**20, 1),
            "end_mb": round(end / 2**20, 1),
            "allowed_growth_mb": round(allowed / 2**20, 1),
        }
        table[name] = row
        checks.append(
            Check(
                "memory flat",
                name,
                end - start <= allowed,
                row,
                f"growth <= {MEM_ABS_MB:g} MB + {MEM_REL:.0%} of start",
            )
        )
    return checks, table
