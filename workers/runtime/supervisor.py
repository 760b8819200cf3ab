"""Hosting sentinels inside Celery workers: leases, one process per sentinel, failover.

Every worker runs a ``SentinelSupervisor`` thread (a worker bootstep, ``workers/runtime/celery.py``).
Each tick (2 s, and at once when one of its sentinel processes exits or a back-off ends) it
reads the enabled sentinels from the database and, for each one, tries to take or renew its
**lease** (``workers.store.coordination.Lease``: ``SET NX PX``, renewed only by its holder). The holder runs the sentinel in a child process
(``python -m workers.runtime.run``, fork+exec, so librdkafka is never forked); everyone else leaves it.

Why a child process and not a pool task: a task that never returns blocks a pool slot and is
redelivered by the Redis broker after ``visibility_timeout``; a process of its own has neither
problem and can be stopped, restarted and replaced without touching the pool.

Placement: every worker beats in a registry (``workers.store.coordination.WorkerRegistry``) each tick, with
the leases it holds and its cap (``DS_WORKER_MAX_SENTINELS``, 0 = none). A free sentinel is
taken by the least loaded live worker under its cap (equals race; the lease decides); a worker
holding two or more than another one with room hands one over per tick (stops it cleanly and
releases its lease; the other takes it on its next tick). So the counts of live workers
differ by at most one (caps aside), a worker that joins gets its share within a few ticks,
and nothing is left unrun while any worker has room. A worker that has missed three of its
beats (``PLACEMENT_TICKS``) no longer counts for placing: when one dies, the others take all
that its sentinels released at once, without waiting for its registry entry to age out.

Safety: the child watches the lease itself (``LeaseGuard`` in ``workers/runtime/run.py``) and stops when
its token is gone or has less than half the lease time left (its worker is paused, dead or cut
off from Redis), so it is gone before another worker can take the lease. When its parent
worker dies, the child stops at once and releases the lease, so a live worker takes over on
its next tick rather than after the full lease time.

Each tick also takes or renews the watch leases of the sentinels' clusters
(``workers.runtime.watch.ClusterWatchers``): one worker per cluster runs that cluster's
samplers, whichever worker first takes its lease.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from workers.engine.env import envchoice, envint
from workers.engine.spec import SentinelSpec
from workers.runtime.manifest import entry_path, read_state, write_entry
from workers.runtime.watch import ClusterWatchers
from workers.store.coordination import Lease, WorkerRegistry
from workers.store.sentinel import SentinelStore
from workers.system import (
    LOCAL_DIR,
    PROJECT_ROOT,
    QUICK_EXIT_S,
    host_argv,
    redis_env,
    respawn_backoff,
    sentinel_argv,
    terminate,
    terminate_all,
)

log = logging.getLogger(__name__)

LEASE_MS = envint("DS_LEASE_MS", 30000, min=1000)
# "processes": the producer in a process of its own (see workers/runtime/run.py); "threads": one process.
LAYOUT = envchoice("DS_SENTINEL_LAYOUT", "processes", ("processes", "threads"))
TICK_S = float(os.environ.get("DS_SUPERVISOR_TICK_S", "2.0"))
# Sentinels producing at most this many records/s in all run together in one process per
# worker (workers/runtime/host.py); faster ones get processes of their own (their `hosting`
# field can force either).
SHARED_MAX_RATE = envint("DS_SHARED_MAX_RATE", 1000, min=0)
# At most this many sentinels per worker (0: no cap); sentinels beyond every worker's cap wait.
MAX_SENTINELS = envint("DS_WORKER_MAX_SENTINELS", 0, min=0)
# Between ticks the supervisor looks this often for a sentinel process that exited or a
# back-off that ended, and ticks at once for it: a crashed sentinel is back after its back-off
# plus its start, not a tick later.
WATCH_S = 0.2
# For placing sentinels, a worker whose last beat is older than this many of its ticks is gone.
PLACEMENT_TICKS = 3
# A sentinel asked to stop gets this long before SIGKILL.
STOP_TIMEOUT_S = 20.0


@dataclass
class Child:
    """A sentinel this worker runs: in processes of its own (``proc`` is its process), or in
    the worker's shared host (``shared``; ``proc`` is the host, shared by all of them)."""

    spec: SentinelSpec
    digest: str
    proc: subprocess.Popen
    lease: Lease
    started: float = field(default_factory=time.monotonic)
    shared: bool = False
    removed_at: float | None = None  # shared: when its manifest entry was removed


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid`` (0: only check it); False when it is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we cannot signal: it exists
        return True
    return True


def spec_digest(spec: SentinelSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


class SentinelSupervisor:
    """Keeps each enabled sentinel running exactly once across all workers.

    ``load_specs`` returns the enabled sentinels' specs by id (from the database).
    """

    def __init__(
        self,
        client: redis.Redis,
        load_specs: Callable[[], dict[int, SentinelSpec]],
        *,
        redis_url: str,
        worker_id: str | None = None,
        spec_dir: Path | None = None,
        live: bool = True,
        cap: int | None = None,
    ) -> None:
        self.r = client
        self.load_specs = load_specs
        self.redis_url = redis_url
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.spec_dir = spec_dir or LOCAL_DIR / "sentinels" / self.worker_id.replace(":", "-")
        self.live = live
        self.cap = MAX_SENTINELS if cap is None else cap
        self.registry = WorkerRegistry(client)
        self.tick_s = TICK_S
        self.children: dict[int, Child] = {}
        self.leases: dict[int, Lease] = {}
        # Process groups of exited sentinels whose role processes may still be stopping.
        self.leftovers: dict[int, tuple[int, float]] = {}
        self.failures: dict[int, tuple[int, float]] = {}  # id -> (consecutive exits, retry at)
        self.leaving: dict[int, tuple[Child, float]] = {}  # handed over: (child, SIGKILL at)
        self.host: subprocess.Popen | None = None  # the shared host of light sentinels
        self.host_dir = self.spec_dir / "shared"
        self.shutdown = threading.Event()
        self._thread: threading.Thread | None = None
        # The clusters of the sentinels, each watched by exactly one worker (workers/runtime/watch.py).
        self.watchers = ClusterWatchers(
            client,
            redis_url=redis_url,
            worker_id=self.worker_id,
            directory=self.spec_dir / "watch",
            lease_ms=LEASE_MS,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="sentinel-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self.shutdown.set()
        if self._thread is not None:
            self._thread.join(timeout)
        # Signal every sentinel first, then wait: they stop in parallel.
        children, self.children = self.children, {}
        children.update((sid, child) for sid, (child, _) in self.leaving.items())
        self.leaving.clear()
        procs = {child.proc.pid: child.proc for child in children.values()}
        if self.host is not None:
            procs[self.host.pid] = self.host
        terminate_all(list(procs.values()), STOP_TIMEOUT_S)
        self.watchers.stop()
        for child in children.values():
            with contextlib.suppress(redis.RedisError):
                child.lease.release()
        self.leases.clear()
        with contextlib.suppress(redis.RedisError):
            self.registry.leave(self.worker_id)

    def run(self) -> None:
        log.info("sentinel supervisor %s started", self.worker_id)
        next_tick = 0.0
        while not self.shutdown.is_set():
            if time.monotonic() >= next_tick or self.due():
                try:
                    self.tick()
                except Exception:  # a bad tick (DB or Redis down) must not end supervision
                    log.exception("sentinel supervisor tick failed")
                next_tick = time.monotonic() + self.tick_s
            self.shutdown.wait(max(0.0, min(WATCH_S, next_tick - time.monotonic())))

    def due(self) -> bool:
        """Whether something needs a tick before the next one: a sentinel process of ours
        exited, or one waiting to start again may start now (its back-off is over and what
        was left of its processes has gone). Cheap: no Redis, no database."""
        if any(child.proc.poll() is not None for child in self.children.values()):
            return True
        return any(
            sid not in self.children and sid in self.leases and self.may_spawn(sid)
            for sid in list(self.failures)
        )

    # -- one unit of work --------------------------------------------------------------------
    def tick(self) -> None:
        specs = self.load_specs()
        for sid in list(self.children):
            if sid not in specs:
                log.info("sentinel %s disabled or deleted: stopping it", sid)
                self.stop_child(sid)
        self.finish_leaving()
        for sid in [sid for sid in self.leases if sid not in specs]:
            if sid not in self.children and sid not in self.leaving:
                self.release(sid)
        try:
            self.place(specs)
        finally:  # what we hold now, for the others' next decisions and for `placement`
            self.registry.beat(self.worker_id, self.cap, self.leases, int(self.tick_s * 1000))
        self.watchers.tick(specs)

    def place(self, specs: dict[int, SentinelSpec]) -> None:
        # A worker that has missed three of its beats is dead or stalled for placing: what it
        # held, its sentinels released (or will, at the latest when their leases expire), so
        # the others must not wait for it to have its share, nor hand it any.
        alive = self.registry.alive(LEASE_MS, ticks=PLACEMENT_TICKS)
        others = self.others_with_room(alive)
        held_by_all = len(self.leases) + sum(
            len(doc["held"]) for worker, doc in alive.items() if worker != self.worker_id
        )
        # One per tick, and only while every enabled sentinel is held (the last one handed
        # over has been taken): a move the others follow without overshooting. The highest
        # id, so that which one moves is predictable.
        if (
            not self.leaving
            and held_by_all >= len(specs)
            and any(len(doc["held"]) + 1 < len(self.leases) for doc in others.values())
        ):
            self.hand_over(max(self.leases))
        for sid, spec in specs.items():
            if sid in self.leaving:
                continue
            if sid in self.leases or self.may_take(others):
                self.supervise(sid, spec)

    def hand_over(self, sid: int) -> None:
        """Stop a sentinel for a less loaded worker to take: SIGTERM now, its lease kept (and
        renewed) until it has gone, then released (``finish_leaving``). Never blocks a tick,
        so the other leases are renewed meanwhile."""
        log.info("sentinel %s: handing it over to a less loaded worker", sid)
        child = self.children.pop(sid, None)
        if child is None:
            self.release(sid)
            return
        self.ask_to_stop(child)
        self.leaving[sid] = (child, time.monotonic() + STOP_TIMEOUT_S)

    def finish_leaving(self) -> None:
        for sid, (child, kill_at) in list(self.leaving.items()):
            if not self.gone(child):
                if time.monotonic() >= kill_at:
                    self.kill(child)
                with contextlib.suppress(redis.RedisError):
                    child.lease.acquire_or_renew()
                continue
            del self.leaving[sid]
            self.release(sid)

    def may_take(self, others: dict[str, dict]) -> bool:
        """Whether to try for one more (free) sentinel's lease: while under our cap and no
        other live worker with room holds fewer (equals race; the lease picks one)."""
        held = len(self.leases)
        if self.cap and held >= self.cap:
            return False
        return not any(len(doc["held"]) < held for doc in others.values())

    def others_with_room(self, workers: dict[str, dict]) -> dict[str, dict]:
        """The other live workers (registry documents) still under their cap."""
        return {
            worker: doc
            for worker, doc in workers.items()
            if worker != self.worker_id and (not doc["cap"] or len(doc["held"]) < doc["cap"])
        }

    def release(self, sid: int) -> None:
        lease = self.leases.pop(sid, None)
        self.failures.pop(sid, None)
        if lease is not None:
            with contextlib.suppress(redis.RedisError):
                lease.release()

    def supervise(self, sid: int, spec: SentinelSpec) -> None:
        child = self.children.get(sid)
        # The lease outlives a crashed child: this worker keeps it (renewing it through the
        # back-off) and starts the sentinel again itself, instead of waiting for it to expire.
        lease = self.leases.get(sid) or SentinelStore(self.r, sid).lease(
            f"{self.worker_id}:{uuid.uuid4().hex[:8]}", LEASE_MS
        )
        if not lease.acquire_or_renew():
            self.leases.pop(sid, None)
            if child is not None:
                log.warning(
                    "sentinel %s: lease lost to %s; stopping our copy", spec.name, lease.holder()
                )
                self.stop_child(sid, release=False)
            return
        self.leases[sid] = lease
        if child is not None and child.proc.poll() is not None:
            self.note_exit(sid, child)
            child = None
        if child is not None and child.digest != spec_digest(spec):
            log.info("sentinel %s edited: restarting it", spec.name)
            if child.shared and not spec.own_processes(SHARED_MAX_RATE):
                # The host sees its entry change, and stops and starts it in place.
                self.children.pop(sid)
                self.spawn(spec, lease)
                return
            self.stop_child(sid, release=False)
            child = None
        if child is None and self.may_spawn(sid):
            self.spawn(spec, lease)

    def note_exit(self, sid: int, child: Child) -> None:
        count, _ = self.failures.get(sid, (0, 0.0))
        count = count + 1 if time.monotonic() - child.started < QUICK_EXIT_S else 1
        delay = respawn_backoff(count)
        self.failures[sid] = (count, time.monotonic() + delay)
        log.warning(
            "sentinel %s exited with %s; restarting in %.1fs",
            child.spec.name,
            child.proc.returncode,
            delay,
        )
        # Its role processes (the producer and checker children, in its process group) stop
        # when they see it gone; ask them now, and start no replacement before they are gone,
        # so that two checkers never count the same sentinel.
        self.leftovers[sid] = (child.proc.pid, time.monotonic() + STOP_TIMEOUT_S)
        signal_group(child.proc.pid, signal.SIGTERM)
        if child.shared:  # a new host must not start it before its back-off
            entry_path(self.host_dir, sid).unlink(missing_ok=True)
        del self.children[sid]

    def may_spawn(self, sid: int) -> bool:
        _, retry_at = self.failures.get(sid, (0, 0.0))
        if sid in self.leftovers:
            group, kill_at = self.leftovers[sid]
            if signal_group(group, 0):  # still there
                if time.monotonic() < kill_at:
                    return False
                log.warning(
                    "sentinel %s: role processes left after %ss: SIGKILL", sid, STOP_TIMEOUT_S
                )
                signal_group(group, signal.SIGKILL)
                return False
            del self.leftovers[sid]
        return time.monotonic() >= retry_at

    def spawn(self, spec: SentinelSpec, lease: Lease) -> None:
        if not spec.own_processes(SHARED_MAX_RATE):
            host = self.shared_host()
            entry = {"spec": spec.to_dict(), "lease_token": lease.token, "lease_ms": lease.ttl_ms}
            write_entry(self.host_dir, spec.id, entry)
            self.children[spec.id] = Child(spec, spec_digest(spec), host, lease, shared=True)
            log.info("sentinel %s started in the shared host %s", spec.name, host.pid)
            return
        self.spec_dir.mkdir(parents=True, exist_ok=True)
        path = self.spec_dir / f"{spec.id}.json"
        # The spec may hold client secrets: a private file, never the command line.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(spec.to_dict(), fh)
        argv = self.child_argv(path, lease)
        proc = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=redis_env(self.redis_url), start_new_session=True
        )
        self.children[spec.id] = Child(spec, spec_digest(spec), proc, lease)
        log.info(
            "sentinel %s started in process %s (worker %s)", spec.name, proc.pid, self.worker_id
        )

    def shared_host(self) -> subprocess.Popen:
        """The process hosting this worker's light sentinels, started when there is none.

        A new host starts from the entries of live children only: those of a host that died
        come back one by one, each after its back-off (``note_exit``)."""
        if self.host is not None and self.host.poll() is None:
            return self.host
        self.host_dir.mkdir(parents=True, exist_ok=True)
        for path in self.host_dir.iterdir():
            if not (path.suffix == ".json" and int(path.stem) in self.children):
                path.unlink(missing_ok=True)
        self.host = subprocess.Popen(
            self.host_argv(),
            cwd=PROJECT_ROOT,
            env=redis_env(self.redis_url),
            start_new_session=True,
        )
        log.info("shared sentinel host started in process %s", self.host.pid)
        return self.host

    def host_argv(self) -> list[str]:
        return host_argv(self.host_dir, live=self.live)

    def ask_to_stop(self, child: Child) -> None:
        """Ask a sentinel to stop; ``gone`` says when it has."""
        if child.shared:
            entry_path(self.host_dir, child.spec.id).unlink(missing_ok=True)
            child.removed_at = time.time()
        else:
            child.proc.terminate()

    def gone(self, child: Child) -> bool:
        """Stopped, with nothing of it left running: its role processes (its process group)
        too, or, in the shared host, the host has seen its entry removed and runs it no more.
        Two checkers must never count one sentinel."""
        if child.proc.poll() is not None:
            return not signal_group(child.proc.pid, 0)
        if not child.shared:
            return False
        state = read_state(self.host_dir)
        return (
            state is not None
            and child.removed_at is not None
            and state["synced_at"] > child.removed_at
            and str(child.spec.id) not in state["running"]
        )

    def kill(self, child: Child) -> None:
        """The last resort for a sentinel that does not stop: in the shared host, the host
        (its other sentinels restart from their checkpoints)."""
        log.warning("sentinel %s did not stop in %ss: SIGKILL", child.spec.name, STOP_TIMEOUT_S)
        signal_group(child.proc.pid, signal.SIGKILL)

    def child_argv(self, spec_path: Path, lease: Lease) -> list[str]:
        """The command line of a sentinel's process (a private spec file; no secret in it)."""
        return sentinel_argv(
            spec_path, lease_token=lease.token, lease_ms=lease.ttl_ms, layout=LAYOUT, live=self.live
        )

    def stop_child(self, sid: int, release: bool = True, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop a sentinel; ``release``: then release its lease. One in the shared host is
        asked to stop without waiting (its lease, renewed meanwhile, is released once it has
        gone: ``finish_leaving``), so that no tick blocks the renewal of the others."""
        child = self.children.pop(sid, None)
        if child is None:
            return
        if child.shared:
            self.ask_to_stop(child)
            if release:
                self.leaving[sid] = (child, time.monotonic() + timeout)
            return
        terminate(child.proc, timeout)
        if release:
            self.leases.pop(sid, None)
            with contextlib.suppress(redis.RedisError):
                child.lease.release()
