"""Many light sentinels in one process: ``python -m workers.runtime.host --manifest DIR``.

A worker's supervisor (``workers/runtime/supervisor.py``) runs its light sentinels here, in
one process instead of one (or three) each: each sentinel keeps its own librdkafka clients,
its own lease and its own checkpoint, in threads of its own (``RoleRunner``).

The supervisor writes one file per sentinel it holds into ``DIR`` (``{id}.json``: its spec,
lease token and lease time; private, as specs may hold client secrets) and removes it to
stop the sentinel. This process reads ``DIR`` every second, starts what is new, stops what
is gone or changed, and then writes ``DIR/host.state``: when that pass began and the
sentinels whose roles are alive, so the supervisor knows when one it removed has stopped.

Isolation: a role that fails stops its own sentinel only, which starts again after a
back-off, as a crashed process would be; its lease guard stops it alone when its lease is
lost. A step stuck in a client call cannot be stopped from Python, so then the whole process
exits (``EXIT_STUCK``) after releasing every lease it holds: the supervisor starts the
sentinels again at once (or another worker does), each from its checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from workers.clientsecrets import SecretError
from workers.engine.spec import SentinelSpec
from workers.runtime.manifest import STATE_FILE, read_manifest, write_atomically
from workers.runtime.publish import LivePublisher
from workers.runtime.run import (
    EXIT_STUCK,
    STEP_DEADLINE_S,
    LeaseGuard,
    RoleRunner,
    adopt_state,
    open_spec,
    roles_for,
)
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore
from workers.system import QUICK_EXIT_S, RESPAWN_BACKOFF_MAX_S, respawn_backoff

log = logging.getLogger("workers.runtime.host")

SYNC_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Hosted:
    """One sentinel in this process."""

    entry: dict
    runner: RoleRunner | None = None
    guard: LeaseGuard | None = None
    client: redis.Redis | None = None
    failures: int = 0
    retry_at: float = 0.0
    started: float = field(default_factory=time.monotonic)
    spec: SentinelSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = SentinelSpec.from_dict(self.entry["spec"])


class SharedHost:
    def __init__(self, directory: Path, redis_url: str, live: bool) -> None:
        self.dir = directory
        self.redis_url = redis_url
        self.client = connect(redis_url)  # this process's own writes (stuck events)
        # One publisher for every sentinel here (its start and stop are counted).
        self.publisher = LivePublisher(redis_url) if live else None
        self.sentinels: dict[int, Hosted] = {}
        self.shutdown = threading.Event()

    def write_state(self, synced_at: float) -> None:
        running = {
            str(sid): h.entry["lease_token"]
            for sid, h in self.sentinels.items()
            if h.runner is not None and h.runner.alive()
        }
        write_atomically(
            self.dir / STATE_FILE, json.dumps({"synced_at": synced_at, "running": running})
        )

    # -- one sentinel ----------------------------------------------------------------------
    def start(self, sid: int, hosted: Hosted) -> bool:
        """Start it when its lease holds our token with at least half its time left (the
        lease guard then watches it); False (and nothing started) otherwise."""
        spec = hosted.spec
        # A Redis client (and so a connection pool) of its own: one sentinel's threads can
        # never take the connections another needs (a pool is capped, 100 by default).
        store = SentinelStore(hosted.client or connect(self.redis_url), sid)
        hosted.client = store.r
        lease = store.lease(hosted.entry["lease_token"], hosted.entry["lease_ms"])
        held, pttl = lease.held()
        if not held or pttl < lease.ttl_ms / 2:
            return False
        try:
            spec = open_spec(spec)  # the manifest holds client secrets sealed
        except SecretError as exc:  # said where the status shows errors; retried
            for role in roles_for(spec):
                store.heartbeat(role, f"cannot start: {exc}", pid=os.getpid())
            raise
        adopt_state(store, spec)
        runner = RoleRunner(spec, store, roles_for(spec), self.publisher)
        hosted.runner, hosted.guard = runner, LeaseGuard(runner, lease)
        hosted.started = time.monotonic()
        runner.start()
        hosted.guard.start()
        log.info("sentinel %s started (%d in this process)", spec.name, len(self.sentinels))
        return True

    def stop(self, sid: int, timeout: float = STOP_TIMEOUT_S) -> None:
        hosted = self.sentinels.pop(sid)
        if hosted.runner is not None:
            hosted.runner.stop()
            hosted.runner.join(timeout)
        if hosted.client is not None:
            hosted.client.close()

    def ended(self, sid: int, hosted: Hosted) -> None:
        """Its roles are all gone (a failure, or its lease guard stopped it)."""
        runner, guard = hosted.runner, hosted.guard
        hosted.runner = hosted.guard = None
        if guard is not None and guard.reason:
            # Its lease was lost or not renewed in time: start it again (``start`` checks the
            # lease first) once the supervisor renews it; if the supervisor lost it, it
            # removes the entry instead.
            log.warning("sentinel %s stopped: %s", hosted.spec.name, guard.reason)
            hosted.retry_at = time.monotonic() + SYNC_INTERVAL_S
            return
        quick = time.monotonic() - hosted.started < QUICK_EXIT_S
        hosted.failures = hosted.failures + 1 if quick else 1
        delay = respawn_backoff(hosted.failures)
        hosted.retry_at = time.monotonic() + delay
        why = "; ".join(runner.failures) if runner is not None else "?"
        log.warning("sentinel %s failed (%s); restarting in %.0f s", hosted.spec.name, why, delay)

    # -- the whole process -----------------------------------------------------------------
    def sync(self) -> None:
        synced_at = time.time()
        wanted = read_manifest(self.dir)
        for sid in list(self.sentinels):
            if wanted.get(sid) != self.sentinels[sid].entry:  # gone, edited or re-leased
                self.stop(sid)
        for sid, entry in wanted.items():
            hosted = self.sentinels.setdefault(sid, Hosted(entry))
            if hosted.runner is not None and not hosted.runner.alive():
                self.ended(sid, hosted)
            if hosted.runner is None and time.monotonic() >= hosted.retry_at:
                try:
                    if not self.start(sid, hosted):
                        hosted.retry_at = time.monotonic() + SYNC_INTERVAL_S
                except (redis.RedisError, OSError, SecretError) as exc:
                    log.warning("sentinel %s: cannot start: %s", hosted.spec.name, exc)
                    hosted.retry_at = time.monotonic() + RESPAWN_BACKOFF_MAX_S
        self.write_state(synced_at)

    def stuck(self) -> list[tuple[int, list[str]]]:
        return [
            (sid, stuck)
            for sid, h in self.sentinels.items()
            if h.runner is not None and (stuck := h.runner.stuck(STEP_DEADLINE_S))
        ]

    def exit_stuck(self, stuck: list[tuple[int, list[str]]]) -> None:
        """A thread blocked in C cannot be stopped: record it, stop every other sentinel
        cleanly (their consumers commit what they processed, as at any stop), hand every lease
        over and exit; the worker starts them all again at once."""
        stuck_ids = {sid for sid, _ in stuck}
        for sid, roles in stuck:
            message = f"stuck, restarting its host process: {', '.join(roles)}"
            log.error("sentinel %s: %s", self.sentinels[sid].spec.name, message)
            with contextlib.suppress(redis.RedisError):
                SentinelStore(self.client, sid).event("stuck", message)
        for hosted in self.sentinels.values():
            if hosted.runner is not None:
                hosted.runner.stop()
        for sid, hosted in self.sentinels.items():
            if hosted.runner is not None and sid not in stuck_ids:
                hosted.runner.join(STOP_TIMEOUT_S)
        for hosted in self.sentinels.values():
            if hosted.guard is not None:
                hosted.guard.orphaned = True
                hosted.guard.release_if_orphaned()
        logging.shutdown()
        os._exit(EXIT_STUCK)

    def run(self) -> None:
        parent = os.getppid()
        while not self.shutdown.is_set():
            if os.getppid() != parent:
                log.warning("the worker that started this host is gone: stopping")
                for hosted in self.sentinels.values():
                    if hosted.guard is not None:
                        hosted.guard.orphaned = True
                break
            self.sync()
            stuck = self.stuck()
            if stuck:
                self.exit_stuck(stuck)
            self.shutdown.wait(SYNC_INTERVAL_S)
        runners = [h for h in self.sentinels.values() if h.runner is not None]
        for hosted in runners:  # stop in parallel, then wait
            hosted.runner.stop()
        for hosted in runners:
            hosted.runner.join(STOP_TIMEOUT_S)
            if hosted.guard is not None:
                hosted.guard.release_if_orphaned()
        (self.dir / STATE_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default: REDIS_URL, where a password belongs (ps shows every command line)",
    )
    parser.add_argument("--live", action="store_true", help="publish windows to the dashboard")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    gc.freeze()  # as in workers.runtime.run: few cycles, keep start-up objects out of GC
    gc.set_threshold(20_000, 20, 20)
    host = SharedHost(args.manifest, args.redis_url, args.live)
    signal.signal(signal.SIGTERM, lambda *_: host.shutdown.set())
    signal.signal(signal.SIGINT, lambda *_: host.shutdown.set())
    host.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
