"""Watching a cluster as a whole: exactly one worker per cluster runs its samplers.

Sentinels each have their own clients; what is true of a cluster as a whole (its partitions'
leaders and ISRs, its consumer groups) is sampled once per cluster, not once per sentinel. Which
clusters: those with at least one enabled sentinel (the specs give their connection and their
sentinel topics; a cluster with no sentinel is not watched).

Every worker's sentinel supervisor holds a ``ClusterWatchers`` and calls ``tick(specs)`` on
each of its ticks. For each watched cluster it takes or renews the cluster's **watch lease**
(``ClusterStore.watch_lease``, ``SET NX PX`` as for sentinels: the first worker to ask gets it);
the holder runs the cluster's samplers in a child process of their own
(``python -m workers.runtime.watch``, fork+exec: librdkafka is never forked), everyone else
leaves it. A child that exits is started again after the sentinels' back-off, under the same
lease; a worker that stops releases its leases.

A **sampler** (``Sampler``) has a ``name``, an ``interval_s`` and a ``sample()`` step. Which
samplers a watcher runs is a list of factories (``SAMPLERS``, or ``DS_WATCH_SAMPLERS``:
comma-separated ``module:callable``, or ``none``), each called once in the watch process with
the cluster (``ClusterWatch``, its client secrets opened) and a Redis client, returning a
sampler (or None: nothing to sample on this cluster). The watch process runs them one at a
time, each on its interval, and records each step (``ClusterStore.sampled``: when, under
which lease, its error).

Exactly one sampling at a time: before every step the process checks that the lease still
holds its token with at least half the lease time left (its worker renews it every tick); it
exits otherwise. During a step it proves the lease every half second and exits
(``EXIT_STUCK``) as soon as the lease is lost or could expire within a margin (its worker
stopped renewing it, Redis stopped answering). Another worker can take the lease only once it
has expired, so a step never overlaps one of another worker, however long it takes. When the worker dies, the process releases the lease and stops, so another
worker takes the cluster on its next tick instead of after the lease time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from workers.clientsecrets import SecretError, unseal
from workers.engine.env import envint, envstr
from workers.engine.spec import SentinelSpec
from workers.store.cluster import ClusterStore
from workers.store.connection import connect
from workers.store.coordination import Lease
from workers.system import PROJECT_ROOT, QUICK_EXIT_S, redis_env, respawn_backoff, terminate

log = logging.getLogger("workers.runtime.watch")

# The samplers every watcher runs (``module:callable`` factories); DS_WATCH_SAMPLERS replaces them.
SAMPLERS: tuple[str, ...] = (
    "workers.runtime.eventsampler:events",
    "workers.runtime.groups:group_sampler",
)
WATCH_MODULE = "workers.runtime.watch"
EXIT_LEASE = 71  # as workers.runtime.run: stopped because the lease is no longer ours
EXIT_STUCK = 70
EXIT_SECRETS = 78
STOP_TIMEOUT_S = 10.0
# A sampler step busy this long is stuck in a client call: the process exits (as a sentinel's).
STEP_DEADLINE_S = envint("DS_STEP_DEADLINE_S", 180, min=1)


class Sampler(Protocol):
    """One thing sampled on a cluster every ``interval_s`` seconds by its one watcher."""

    name: str
    interval_s: float

    def sample(self) -> None:
        """One step: read the cluster, record what changed. Raising is logged and recorded
        (``ClusterStore.sampled``) and the next step comes on time."""

    def close(self) -> None:
        """Release its clients (the watch process is stopping)."""


@dataclass(frozen=True)
class ClusterWatch:
    """What a watcher needs of one cluster: how to connect (client secrets sealed, as in the
    specs) and the sentinel topics on it."""

    cluster: str
    bootstrap_servers: str
    client: dict[str, Any] = field(default_factory=dict)
    topics: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["topics"] = list(self.topics)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ClusterWatch:
        return cls(**{**doc, "topics": tuple(doc.get("topics", ()))})

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def watches_from_specs(specs: Mapping[int, SentinelSpec]) -> dict[str, ClusterWatch]:
    """The clusters to watch (those of the enabled sentinels), by name, each with its sentinel
    topics (an exactly-once sentinel's output topic too). The connection is that of the
    lowest-numbered sentinel on it (every sentinel of a cluster has the cluster's)."""
    out: dict[str, ClusterWatch] = {}
    topics: dict[str, set[str]] = {}
    for _, spec in sorted(specs.items()):
        if spec.cluster not in out:
            out[spec.cluster] = ClusterWatch(
                spec.cluster, spec.bootstrap_servers, dict(spec.client)
            )
        topics.setdefault(spec.cluster, set()).update((spec.topic, spec.verified_topic))
    return {
        name: ClusterWatch(w.cluster, w.bootstrap_servers, w.client, tuple(sorted(topics[name])))
        for name, w in out.items()
    }


SamplerFactory = Callable[[ClusterWatch, redis.Redis], "Sampler | None"]


def sampler_paths() -> list[str]:
    """The sampler factories configured (``DS_WATCH_SAMPLERS`` or ``SAMPLERS``; ``none``:
    none, and no cluster is watched)."""
    configured = envstr("DS_WATCH_SAMPLERS", None)
    if configured == "none":
        return []
    paths = configured.split(",") if configured is not None else list(SAMPLERS)
    return [p.strip() for p in paths if p.strip()]


def load_factory(path: str) -> SamplerFactory:
    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"sampler {path!r}: expected module:callable")
    return getattr(importlib.import_module(module), name)


# -- the watch process ---------------------------------------------------------------------
class Watcher:
    """Runs one cluster's samplers, one step at a time, while its lease is ours."""

    def __init__(self, samplers: list[Sampler], store: ClusterStore, lease: Lease) -> None:
        self.samplers = samplers
        self.store = store
        self.lease = lease
        self.parent = os.getppid()
        self.shutdown = threading.Event()
        self.counts = {s.name: 0 for s in samplers}
        self.busy_since: float | None = None
        # Until when (monotonic) the lease is known to be ours at the latest (held, and its
        # time left), as last proven before or during a step.
        self.safe_until = 0.0
        self.reason: str | None = None  # why it stopped, when not asked to

    def lease_ok(self) -> bool:
        """Whether a step may start now: our worker is alive and the lease holds our token
        with at least half its time left. Sets ``reason`` when not."""
        if os.getppid() != self.parent:
            self.reason = "the worker that started this watcher is gone"
            with contextlib.suppress(redis.RedisError):
                self.lease.release()
            return False
        try:
            held, pttl = self.lease.held()
        except redis.RedisError as exc:
            self.reason = f"Redis unreachable, cannot prove the lease: {exc}"
            return False
        if not held:
            self.reason = "lease lost"
        elif pttl < self.lease.ttl_ms / 2:
            self.reason = f"lease not renewed ({pttl} ms left)"
        else:
            self.safe_until = time.monotonic() + pttl / 1000
        return self.reason is None

    def step(self, sampler: Sampler) -> None:
        self.busy_since = time.monotonic()
        error = None
        try:
            sampler.sample()
        except Exception as exc:  # one bad step is recorded; the next comes on time
            log.exception("cluster %s: sampler %s failed", self.store.cluster, sampler.name)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.busy_since = None
        self.counts[sampler.name] += 1
        with contextlib.suppress(redis.RedisError):
            self.store.sampled(sampler.name, self.lease.token, self.counts[sampler.name], error)

    def run(self) -> int:
        threading.Thread(target=self.watchdog, name="watch-dog", daemon=True).start()
        due = {s.name: 0.0 for s in self.samplers}
        while not self.shutdown.is_set():
            for sampler in self.samplers:
                if self.shutdown.is_set() or time.monotonic() < due[sampler.name]:
                    continue
                if not self.lease_ok():
                    log.warning("cluster %s: watcher stopping: %s", self.store.cluster, self.reason)
                    return EXIT_LEASE
                due[sampler.name] = time.monotonic() + sampler.interval_s
                self.step(sampler)
            wait = min(due.values(), default=time.monotonic() + 1.0) - time.monotonic()
            # At least once a second: notice a dead worker or a lost lease between steps.
            self.shutdown.wait(min(1.0, max(0.0, wait)))
            if not self.shutdown.is_set() and not self.lease_ok():
                log.warning("cluster %s: watcher stopping: %s", self.store.cluster, self.reason)
                return EXIT_LEASE
        return 0

    def watchdog(self) -> None:
        """While a step runs, prove the lease every half second: a step cannot be stopped
        from Python, so when the lease is lost, or could expire (and move to another worker)
        within ``margin`` (a third of the lease time: room for a slow, loaded machine to
        schedule this thread) because our worker stopped renewing it or Redis stopped answering,
        the process exits now. A step busy for ``STEP_DEADLINE_S`` is stuck in a client call:
        the process exits too (the worker starts it again)."""
        margin = self.lease.ttl_ms / 3000
        while not self.shutdown.wait(0.5):
            since = self.busy_since
            if since is None:
                continue
            with contextlib.suppress(redis.RedisError):
                held, pttl = self.lease.held()
                self.safe_until = time.monotonic() + pttl / 1000 if held else 0.0
            now = time.monotonic()
            why = None
            if now > self.safe_until - margin:
                why = "its lease is lost or about to expire during a step"
            elif now - since > STEP_DEADLINE_S:
                why = f"a sampler step has run for {now - since:.0f} s"
            if why is not None and self.busy_since is not None:
                log.error("cluster %s: %s: exiting", self.store.cluster, why)
                logging.shutdown()
                os._exit(EXIT_STUCK)


def open_watch(watch: ClusterWatch) -> ClusterWatch:
    """``watch`` with its client secrets opened in this process."""
    return ClusterWatch(watch.cluster, watch.bootstrap_servers, unseal(watch.client), watch.topics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watch", required=True, help="path of a ClusterWatch JSON document")
    parser.add_argument("--lease-token", required=True)
    parser.add_argument("--lease-ms", type=int, required=True)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default: REDIS_URL, where a password belongs (ps shows every command line)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with open(args.watch) as fh:
        watch = ClusterWatch.from_dict(json.load(fh))
    client = connect(args.redis_url)
    store = ClusterStore(client, watch.cluster)
    try:
        watch = open_watch(watch)
    except SecretError as exc:
        log.error("cluster %s: %s", watch.cluster, exc)
        return EXIT_SECRETS
    samplers = []
    for path in sampler_paths():
        sampler = load_factory(path)(watch, client)
        if sampler is not None:
            samplers.append(sampler)
    watcher = Watcher(samplers, store, store.watch_lease(args.lease_token, args.lease_ms))
    signal.signal(signal.SIGTERM, lambda *_: watcher.shutdown.set())
    signal.signal(signal.SIGINT, lambda *_: watcher.shutdown.set())
    log.info("cluster %s: watching (%s)", watch.cluster, ", ".join(s.name for s in samplers))
    try:
        return watcher.run()
    finally:
        for sampler in samplers:
            with contextlib.suppress(Exception):
                sampler.close()


def exit_in_words(code: int) -> str:
    """How a watch process ended, for the log and the cluster page."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGABRT:
            # librdkafka asserts abort the whole process (confluentinc/librdkafka#4605: its
            # admin requests to a group coordinator, as the group watcher sends, when a
            # connection drops at the wrong moment).
            return f"was killed by {name} (an abort in a client library; the worker's log has it)"
        return f"was killed by {name}"
    if code == EXIT_STUCK:
        return "ended itself: a sampler step was stuck in a client call"
    if code == EXIT_LEASE:
        return "ended itself: its lease was no longer its worker's"
    return f"exited with status {code}"


# -- in the worker -------------------------------------------------------------------------
@dataclass
class WatchChild:
    watch: ClusterWatch
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)


class ClusterWatchers:
    """A worker's part in watching clusters: takes or renews each watched cluster's lease on
    every ``tick`` and runs a watch process for each one it holds."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        redis_url: str,
        worker_id: str,
        directory: Path,
        lease_ms: int,
    ) -> None:
        self.r = client
        self.redis_url = redis_url
        self.worker_id = worker_id
        self.dir = directory
        self.lease_ms = lease_ms
        self.leases: dict[str, Lease] = {}
        self.children: dict[str, WatchChild] = {}
        self.failures: dict[str, tuple[int, float]] = {}  # cluster -> (quick exits, retry at)

    def tick(self, specs: Mapping[int, SentinelSpec]) -> None:
        wanted = watches_from_specs(specs) if sampler_paths() else {}
        for cluster in [c for c in self.leases if c not in wanted]:
            log.info("cluster %s: no sentinel on it any more: no longer watching it", cluster)
            self.stop_watch(cluster, release=True)
        for cluster, watch in wanted.items():
            try:
                self.supervise(cluster, watch)
            except redis.RedisError as exc:  # the others are still tried
                log.warning("cluster %s: cannot renew its watch lease: %s", cluster, exc)

    def supervise(self, cluster: str, watch: ClusterWatch) -> None:
        lease = self.leases.get(cluster) or ClusterStore(self.r, cluster).watch_lease(
            f"{self.worker_id}:{uuid.uuid4().hex[:8]}", self.lease_ms
        )
        if not lease.acquire_or_renew():
            self.leases.pop(cluster, None)
            if cluster in self.children:
                log.warning("cluster %s: watch lease lost to %s", cluster, lease.holder())
                self.stop_watch(cluster, release=False)
            return
        self.leases[cluster] = lease
        child = self.children.get(cluster)
        if child is not None and child.proc.poll() is not None:
            quick = time.monotonic() - child.started < QUICK_EXIT_S
            count = self.failures.get(cluster, (0, 0.0))[0] + 1 if quick else 1
            delay = respawn_backoff(count)
            self.failures[cluster] = (count, time.monotonic() + delay)
            why = exit_in_words(child.proc.returncode)
            log.warning("cluster %s: watch process %s; again in %.0f s", cluster, why, delay)
            with contextlib.suppress(redis.RedisError):  # the page's news, not worth a stop
                ClusterStore(self.r, cluster).watcher_ended(
                    self.worker_id, child.proc.returncode, why
                )
            del self.children[cluster]
            child = None
        if child is not None and child.watch != watch:
            log.info("cluster %s: its sentinels changed: restarting its watcher", cluster)
            self.stop_watch(cluster, release=False)
            child = None
        if child is None and time.monotonic() >= self.failures.get(cluster, (0, 0.0))[1]:
            self.spawn(watch, lease)

    def spawn(self, watch: ClusterWatch, lease: Lease) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(watch.cluster.encode()).hexdigest()[:16]
        path = self.dir / f"{name}.json"
        # Client secrets stay sealed, in a private file, never on the command line.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(watch.to_dict(), fh)
        argv = [
            sys.executable, "-m", WATCH_MODULE, "--watch", str(path),
            "--lease-token", lease.token, "--lease-ms", str(lease.ttl_ms),
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=redis_env(self.redis_url), start_new_session=True
        )
        self.children[watch.cluster] = WatchChild(watch, proc)
        log.info("cluster %s: watching it in process %s", watch.cluster, proc.pid)

    def stop_watch(self, cluster: str, *, release: bool) -> None:
        child = self.children.pop(cluster, None)
        if child is not None:
            terminate(child.proc, STOP_TIMEOUT_S)
        if release:
            self.failures.pop(cluster, None)
            lease = self.leases.pop(cluster, None)
            if lease is not None:
                with contextlib.suppress(redis.RedisError):
                    lease.release()

    def stop(self) -> None:
        """Stop every watch process (in parallel), then release their leases."""
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                child.proc.terminate()
        for cluster in list(self.leases) + list(self.children):
            self.stop_watch(cluster, release=True)

    def watching(self) -> set[str]:
        return {c for c, child in self.children.items() if child.proc.poll() is None}


if __name__ == "__main__":
    sys.exit(main())
