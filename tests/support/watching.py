"""Cluster watching without sentinels, for tests (tests/web/test_cluster_watch.py).

``python -m tests.support.watching --specs FILE --name NAME``: a stand-in for a worker that runs
only its ``ClusterWatchers`` (workers/runtime/watch.py), ticking twice a second over the specs
in ``FILE`` (``workers.engine.spec.specs_from_file`` format) until SIGTERM.

``counting``: a sampler factory (``DS_WATCH_SAMPLERS=tests.support.watching:counting``) whose
steps leave their traces in Redis: ``test:watch:steps`` (list of the pids of the processes
that sampled, in order), ``test:watch:active`` (steps running now) and ``test:watch:overlaps``
(steps that began while another was running).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path

import redis

from workers.engine.spec import SentinelSpec
from workers.runtime.watch import ClusterWatch, ClusterWatchers
from workers.store.connection import connect

STEPS, ACTIVE, OVERLAPS = "test:watch:steps", "test:watch:active", "test:watch:overlaps"


class CountingSampler:
    name = "counting"
    interval_s = 0.2

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def sample(self) -> None:
        if self.r.incr(ACTIVE) > 1:
            self.r.incr(OVERLAPS)
        try:
            self.r.rpush(STEPS, os.getpid())
            time.sleep(0.05)  # a step that takes a while, so that overlapping ones would meet
            if os.environ.get("TEST_WATCH_FAIL"):
                raise RuntimeError("this sampler fails on purpose")
        finally:
            self.r.decr(ACTIVE)

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
