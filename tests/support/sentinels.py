"""Helpers for tests that run real sentinel processes against the local cluster and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer

from tests.support.waiting import wait_until
from workers.engine import codec
from workers.engine.profiles import DEFAULT_PROFILES, Profile
from workers.engine.spec import SentinelSpec
from workers.engine.streams import AckReport, PartitionReport, offset_segments
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore
from workers.system import sentinel_argv, terminate_all

ROOT = Path(__file__).resolve().parents[2]


def bootstrap() -> str:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set: run the suite with bin/test")
    return servers


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


_next_id = [int(time.time()) % 100000 * 10]


def make_spec(semantic: str, *, profile: Profile | None = None, **overrides: Any) -> SentinelSpec:
    """A spec with a unique id and fresh topics, so tests never see each other's records."""
    _next_id[0] += 1
    sid = _next_id[0]
    base = {
        "id": sid,
        "name": f"test-{semantic}-{sid}",
        "profile": profile or DEFAULT_PROFILES[semantic],
        "bootstrap_servers": bootstrap(),
        "topic": f"sentinel-test-{sid}-{uuid.uuid4().hex[:6]}",
        "partitions": 3,
        "rate_per_partition": 20.0,
        "grace_seconds": 3.0,
        "stall_after_s": 20.0,
        # These tests judge the counts; a 2-core CI machine running three brokers and several
        # sentinels at once is allowed slow latency without turning a verdict DEGRADED.
        "slo_p99_ms": 10000.0,
    }
    base.update(overrides)
    return SentinelSpec(**base)


class SentinelProcesses:
    """Starts and stops ``python -m workers.runtime.run`` processes for one spec, one per role group."""

    def __init__(self, spec: SentinelSpec, tmp: Path) -> None:
        self.spec = spec
        self.path = tmp / f"spec-{spec.id}.json"
        self.path.write_text(json.dumps(spec.to_dict()))
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = tmp
        self.store = SentinelStore(connect(redis_url()), spec.id)

    def start(
        self, roles: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        log_path = self.logs / f"sentinel-{self.spec.id}-{roles.replace(',', '+')}.log"
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [*sentinel_argv(self.path, roles=roles, redis_url=redis_url()), *args],
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[roles] = proc
        return proc

    def stop(self, roles: str, timeout: float = 60) -> int:
        proc = self.procs.pop(roles)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def kill(self, roles: str) -> None:
        proc = self.procs.pop(roles)
        proc.kill()
        proc.wait(10)

    def stop_all(self, timeout: float = 60) -> None:
        """SIGTERM every role process at once; SIGKILL what is left after ``timeout``."""
        stop_together([self], timeout)

    def status(self) -> dict[str, Any] | None:
        return self.store.status()

    def log_tail(self) -> str:
        out = []
        for path in sorted(self.logs.glob(f"sentinel-{self.spec.id}-*.log")):
            out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, message: str
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            doc = self.status()
            return doc if doc and predicate(doc) else None

        try:
            return wait_until(check, timeout, message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self.status()}\n{self.log_tail()}") from None

    def wait_settled(self, timeout: float = 60, since: float | None = None) -> dict[str, Any]:
        """After the producer stopped: every acked record is processed or declared lost.

        Only a status computed well after this call (or after ``since``, a time well after the
        producer stopped: ``settled_after()``) counts: an older document can predate the
        producer's last delivery reports."""
        since = settled_after() if since is None else since

        def settled(doc: dict[str, Any]) -> bool:
            t = doc["totals"]
            return doc["updated_at"] > since and t["pending"] == 0 and t["acked"] > 0

        return self.wait_status(settled, timeout, "the sentinel to settle")


def settled_after() -> float:
    """For ``wait_settled``: a time well after now, when every producer stopped by now has
    written its last delivery reports. Sentinels whose producers stopped together share one,
    so that they settle at once instead of one after another."""
    return time.time() + 1.5


def stop_producers(groups: Iterable[SentinelProcesses], timeout: float = 60) -> list[int]:
    """SIGTERM the producer process of several sentinels at once (each drains on its own);
    their exit codes, in order."""
    procs = [group.procs.pop("producer") for group in groups]
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    return [proc.wait(timeout) for proc in procs]


def stop_together(groups: Iterable[SentinelProcesses], timeout: float = 60) -> None:
    """Stop the role processes of several sentinels in parallel (each one's clean shutdown,
    e.g. a producer's last flush, overlaps the others'); SIGKILL what is left after
    ``timeout``."""
    groups = list(groups)
    procs = [proc for group in groups for proc in group.procs.values()]
    for group in groups:
        group.procs.clear()
    terminate_all(procs, timeout)


def flush_redis_keys(url: str) -> None:
    redis.Redis.from_url(url).flushdb()


class Forger:
    """A fake producer run with complete control: registers a run, claims acks, writes records."""

    def __init__(self, spec: SentinelSpec) -> None:
        self.spec = spec
        self.store = SentinelStore(connect(redis_url()), spec.id)
        self.store.ensure_epoch()
        self.run = codec.new_run_id()
        self.store.register_run(self.run, {"started": time.time(), "reason": "forged by a test"})
        self.producer = Producer({"bootstrap.servers": spec.bootstrap_servers, "acks": "all"})
        # (partition, seq) -> offsets it was written at, from the delivery reports
        self.offsets: dict[tuple[int, int], list[int]] = {}

    def write(self, partition: int, seq: int, *, run: int | None = None) -> None:
        record = codec.Record(self.spec.id, run or self.run, partition, seq, time.time_ns() // 1000)

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                self.offsets.setdefault((partition, seq), []).append(msg.offset())

        self.producer.produce(
            self.spec.topic,
            codec.encode(record, self.spec.record_size),
            partition=partition,
            on_delivery=delivered,
        )

    def write_raw(self, partition: int, value: bytes) -> None:
        self.producer.produce(self.spec.topic, value, partition=partition)

    def claim(
        self,
        partition: int,
        first: int,
        last: int,
        *,
        acked: bool = True,
        at: dict[int, int] | None = None,
    ) -> None:
        """Report seqs first..last delivered (or failed), and with ``at`` ({seq: offset})
        acknowledged at those offsets."""
        seqs = range(first, last + 1)
        where = sorted(at.items()) if at else []
        report = PartitionReport.of(
            len(seqs),
            seqs if acked else (),
            () if acked else seqs,
            offset_segments([s for s, _ in where], [o for _, o in where]),
        )
        self.store.append_acks(AckReport(self.run, {partition: report}))

    def flush(self) -> None:
        assert self.producer.flush(30) == 0
