"""Cluster watching without sentinels, for tests (tests/web/test_cluster_watch.py).

``python -m tests.support.watching --specs FILE --name NAME``: a stand-in for a worker that runs
only its ``ClusterWatchers`` (workers/runtime/watch.py), ticking twice a second over the specs
in ``FILE`` (``workers.engine.spec.specs_from_file`` format) until SIGTERM.

``counting``: a sampler factory (``DS_WATCH_SAMPLERS=tests.support.watching:counting``) whose
steps leave their traces in Redis: ``test:watch:steps`` (list of the pids of the processes
that sampled, in order), ``test:watch:active`` (the pid of the process in a step now; one
killed mid-step leaves its pid, but is no longer alive) and ``test:watch:overlaps`` (steps
that began while another live process was in one, or ended finding another began); setting
``test:watch:abort`` makes the next step abort its process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from workers.engine.spec import SentinelSpec
from workers.runtime.watch import ClusterWatch, ClusterWatchers
from workers.store.connection import connect

STEPS, ACTIVE, OVERLAPS = "test:watch:steps", "test:watch:active", "test:watch:overlaps"
# Set: the next step aborts its process (as a librdkafka assertion does), once.
ABORT = "test:watch:abort"


ROOT = Path(__file__).resolve().parents[2]


class WatchFleet:
    """Stand-in workers (``python -m tests.support.watching``) over one specs file, for tests:
    ``enable`` the sentinels, ``start`` a worker by name (its log in ``tmp``), ``stop`` all.
    ``env``: what every worker's environment adds (its samplers, their settings);
    ``lease_ms``: the watch lease each one asks for, None for the module's default."""

    def __init__(
        self, tmp: Path, url: str, env: dict[str, str] | None = None, lease_ms: int | None = None
    ) -> None:
        self.tmp, self.url, self.env, self.lease_ms = tmp, url, env or {}, lease_ms
        self.specs = tmp / "specs.json"
        self.procs: dict[str, subprocess.Popen] = {}

    def enable(self, *specs: SentinelSpec) -> None:
        tmp = self.specs.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(s.id): s.to_dict() for s in specs}))
        tmp.replace(self.specs)

    def start(self, name: str, lease_ms: int | None = None, **env: str) -> None:
        lease_ms = self.lease_ms if lease_ms is None else lease_ms
        argv = [sys.executable, "-m", "tests.support.watching", "--specs", str(self.specs),
                "--name", name]  # fmt: skip
        if lease_ms is not None:
            argv += ["--lease-ms", str(lease_ms)]
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": self.url, **self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            proc.wait(30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class CountingSampler:
    name = "counting"
    interval_s = 0.2

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def sample(self) -> None:
        if self.r.delete(ABORT):
            os.abort()
        me = str(os.getpid())
        before = self.r.getset(ACTIVE, me)
        if before is not None and before.decode() != me and alive(int(before)):
            self.r.incr(OVERLAPS)  # another watch process is in a step now
        self.r.rpush(STEPS, me)
        # A step that takes a while, so that overlapping ones would meet.
        time.sleep(float(os.environ.get("TEST_WATCH_STEP_S", "0.05")))
        if self.r.get(ACTIVE) == me.encode():
            self.r.delete(ACTIVE)
        else:
            self.r.incr(OVERLAPS)  # another one began while this one ran
        if os.environ.get("TEST_WATCH_FAIL"):
            raise RuntimeError("this sampler fails on purpose")

    def close(self) -> None:
        pass


def counting(watch: ClusterWatch, client: redis.Redis) -> CountingSampler:
    return CountingSampler(client)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--lease-ms", type=int, default=4000)
    args = parser.parse_args()
    url = os.environ["REDIS_URL"]
    watchers = ClusterWatchers(
        connect(url),
        redis_url=url,
        worker_id=args.name,
        directory=args.specs.parent / f"watch-{args.name}",
        lease_ms=args.lease_ms,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        doc = json.loads(args.specs.read_text())
        watchers.tick({int(k): SentinelSpec.from_dict(v) for k, v in doc.items()})
        stop.wait(0.5)
    watchers.stop()


if __name__ == "__main__":
    main()
