"""Run one sentinel's roles until SIGTERM / SIGINT: one thread each, or one process each.

    python -m workers.runtime.run --spec sentinel.json [--roles producer,consumer,checker]
        [--layout threads|processes]

Roles: ``producer``, ``consumer`` (at-most-once / at-least-once), ``copier`` and ``verifier``
(exactly-once), ``checker``; ``all`` means every role the sentinel's semantic needs. Each role
can also run in a process of its own, which is how the tests and the scenario lab crash one
without the others.

``--layout processes`` (how workers host sentinels, ``DS_SENTINEL_LAYOUT``) runs the producer
and the checker in child ``workers.runtime.run --roles ROLE`` processes and the consuming roles here:
their Python work (encoding, delivery reports, classifying) then never holds the GIL while the
consumer waits to take a batch or to time a record (docs/benchmarks.md, "End to end"). A child
that fails stops the sentinel, which exits with its code so the worker restarts it; one stopped
cleanly (SIGTERM to it alone, e.g. the producer) leaves the others running to drain.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import replace

import redis

from workers.clientsecrets import SecretError, unseal
from workers.engine.env import envint
from workers.engine.spec import SentinelSpec
from workers.roles.consumer import SentinelConsumer
from workers.roles.copier import TransactionalCopier
from workers.roles.producer import SentinelProducer
from workers.roles.verifier import CommittedVerifier
from workers.runtime.checkrunner import CheckRunner
from workers.runtime.publish import LivePublisher
from workers.store.connection import connect
from workers.store.coordination import Lease
from workers.store.sentinel import SentinelStore
from workers.system import redis_env, sentinel_argv, terminate_all

log = logging.getLogger("workers.runtime.run")

# A step busy for longer than this is stuck in a call that will not return; the process exits
# with EXIT_STUCK so the worker restarts the sentinel (a thread blocked in C cannot be stopped).
STEP_DEADLINE_S = envint("DS_STEP_DEADLINE_S", 180, min=1)
EXIT_STUCK = 70
EXIT_SECRETS = 78  # EX_CONFIG: a client secret cannot be opened here (no key, unset variable)
# Stopped by its LeaseGuard: not a clean stop, so a role process's parent stops the sentinel
# too (a producer stopped alone while the rest went on would leave a sentinel that produces
# nothing) and the worker starts it again if it holds the lease.
EXIT_LEASE = 71
LAYOUTS = ("threads", "processes")

ROLE_CLASSES = {
    "producer": SentinelProducer,
    "consumer": SentinelConsumer,
    "copier": TransactionalCopier,
    "verifier": CommittedVerifier,
    "checker": CheckRunner,
}


def roles_for(spec: SentinelSpec) -> list[str]:
    if spec.eos:
        return ["producer", "copier", "verifier", "checker"]
    return ["producer", "consumer", "checker"]


class RoleRunner:
    """Runs a set of roles of one sentinel in threads; ``stop()`` ends them all."""

    def __init__(
        self,
        spec: SentinelSpec,
        store: SentinelStore,
        roles: Iterable[str],
        publisher: LivePublisher | None = None,
    ) -> None:
        self.spec = spec
        self.loops = [
            CheckRunner(spec, store, publisher)
            if role == "checker"
            else ROLE_CLASSES[role](spec, store)
            for role in roles
        ]
        self.threads: list[threading.Thread] = []
        self.failures: list[str] = []

    def start(self) -> None:
        for loop in self.loops:
            thread = threading.Thread(
                target=self._run, args=(loop,), name=f"{self.spec.name}-{loop.role}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def _run(self, loop) -> None:
        try:
            loop.run()
        except Exception as exc:  # a role that dies reports why and stops the host
            log.exception("sentinel %s: %s stopped", self.spec.name, loop.role)
            self.failures.append(f"{loop.role}: {exc}")
            self.stop()

    def stop(self) -> None:
        for loop in self.loops:
            loop.shutdown.set()

    def stop_role(self, role: str) -> None:
        """Stop one role (e.g. the producer, to let the others drain); the rest go on."""
        for loop in self.loops:
            if loop.role == role:
                loop.shutdown.set()

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def stuck(self, deadline_s: float) -> list[str]:
        """Roles whose current step has been busy for more than ``deadline_s``, or whose
        client call is well past its own timeout (``Loop.bounded_call``)."""
        now = time.monotonic()
        out = []
        for loop in self.loops:
            if (since := loop.busy_since) is not None and now - since > deadline_s:
                out.append(f"{loop.role} ({now - since:.0f} s in one step)")
            elif (deadline := loop.call_deadline) is not None and now > deadline:
                out.append(f"{loop.role} (a client call {now - deadline:.0f} s past its timeout)")
        return out


class LeaseGuard(threading.Thread):
    """Stops the host when this process may no longer be the sentinel's only instance.

    Checked every second: the lease still holds our token, with at least half its time left
    (our worker renews it every couple of seconds), Redis answers, and our parent (the worker
    that started us) is alive. When the parent is gone we release the lease after stopping,
    so another worker takes over at once instead of after the lease time.
    """

    def __init__(self, host: RoleRunner, lease: Lease, *, role_process: bool = False) -> None:
        """``role_process``: this is a role process (``--exit-with-parent``) whose parent is the
        sentinel's first process, not the worker: when that parent dies (a crash of the
        sentinel), the worker still holds the lease and restarts the sentinel itself, so the
        lease is not ours to release."""
        super().__init__(name="lease-guard", daemon=True)
        self.host, self.lease = host, lease
        self.role_process = role_process
        self.parent = os.getppid()
        self.orphaned = False
        self.reason: str | None = None

    def run(self) -> None:
        last_ok = time.monotonic()
        while self.host.alive() and self.reason is None:
            if os.getppid() != self.parent:
                self.orphaned = not self.role_process
                self.reason = (
                    "the sentinel process that started this role is gone"
                    if self.role_process
                    else "the worker that started this sentinel is gone"
                )
                break
            try:
                held, pttl = self.lease.held()
                last_ok = time.monotonic()
                if not held:
                    self.reason = "lease lost"
                elif pttl < self.lease.ttl_ms / 2:
                    self.reason = f"lease not renewed ({pttl} ms left)"
            except redis.RedisError as exc:
                if (time.monotonic() - last_ok) * 1000 > self.lease.ttl_ms / 2:
                    self.reason = f"Redis unreachable, cannot prove the lease: {exc}"
            time.sleep(1.0)
        if self.reason:
            log.warning("sentinel %s: stopping: %s", self.host.spec.name, self.reason)
            self.host.stop()

    def release_if_orphaned(self) -> None:
        if self.orphaned:
            with contextlib.suppress(redis.RedisError):
                self.lease.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", required=True, help="path of a SentinelSpec JSON document")
    parser.add_argument("--roles", default="all")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default: REDIS_URL, where a password belongs (ps shows every command line)",
    )
    parser.add_argument("--live", action="store_true", help="publish windows to the dashboard")
    parser.add_argument(
        "--lease-token", help="run only while the sentinel's lease holds this token"
    )
    parser.add_argument("--lease-ms", type=int, default=30000)
    parser.add_argument("--layout", choices=LAYOUTS, default="threads")
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with open(args.spec) as fh:
        spec = SentinelSpec.from_dict(json.load(fh))
    roles = roles_for(spec) if args.roles == "all" else args.roles.split(",")
    unknown = [r for r in roles if r not in ROLE_CLASSES]
    if unknown:
        parser.error(f"unknown role(s) {unknown}; choose from {sorted(ROLE_CLASSES)}")
    store = SentinelStore(connect(args.redis_url), spec.id)
    try:
        spec = open_spec(spec)
    except SecretError as exc:  # said where the status shows errors; the worker retries
        log.error("sentinel %s: %s", spec.name, exc)
        with contextlib.suppress(redis.RedisError):
            for role in roles:
                store.heartbeat(role, f"cannot start: {exc}", pid=os.getpid())
        return EXIT_SECRETS
    if not args.exit_with_parent:  # the first process of the sentinel; its children follow it
        adopt_state(store, spec)
    # --layout processes: the producer and the checker in child processes, the rest here.
    children: dict[str, subprocess.Popen] = {}
    if args.layout == "processes" and len(roles) > 1:
        for role in [r for r in roles if r in ("producer", "checker")][: len(roles) - 1]:
            children[role] = start_role_process(args, role)
        roles = [r for r in roles if r not in children]
    # The loops allocate a few tuples per record and almost no reference cycles: collect the
    # young generation every 20,000 allocations instead of 700, and keep what start-up loaded
    # (modules, clients) out of every collection.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    publisher = LivePublisher(args.redis_url) if args.live else None
    host = RoleRunner(spec, store, roles, publisher)

    def on_signal(signum, _frame):
        host.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host.start()
    if args.exit_with_parent:
        parent = os.getppid()
        threading.Thread(
            target=_stop_when_orphaned, args=(host, parent), name="parent-watch", daemon=True
        ).start()
    guard = None
    if args.lease_token:
        guard = LeaseGuard(
            host, store.lease(args.lease_token, args.lease_ms), role_process=args.exit_with_parent
        )
        guard.start()
    exit_code = 0
    while host.alive():
        host.join(0.5)
        for role, proc in list(children.items()):
            if proc.poll() is None:
                continue
            del children[role]
            if proc.returncode != 0:  # failed: stop the sentinel (its worker restarts it)
                log.warning("sentinel %s: %s exited with %s", spec.name, role, proc.returncode)
                exit_code = proc.returncode if proc.returncode > 0 else 1
                host.stop()
        stuck = host.stuck(STEP_DEADLINE_S)
        if stuck:
            message = f"stuck, exiting so the sentinel is restarted: {', '.join(stuck)}"
            log.error("sentinel %s: %s", spec.name, message)
            with contextlib.suppress(redis.RedisError):
                store.event("stuck", message)
            if guard is not None:
                guard.orphaned = True  # hand the lease over now, not after it expires
                guard.release_if_orphaned()
            logging.shutdown()
            os._exit(EXIT_STUCK)
    terminate_all(children.values(), 60)
    if guard is not None:
        guard.release_if_orphaned()
    if exit_code:
        return exit_code
    if host.failures:
        print("; ".join(host.failures), file=sys.stderr)
        return 1
    if guard is not None and guard.reason:
        return EXIT_LEASE
    return 0


def open_spec(spec: SentinelSpec) -> SentinelSpec:
    """``spec`` with its client secrets opened in this process: decrypted with
    ``DS_SECRETS_KEY``, ``env:`` / ``file:`` references resolved (``workers.clientsecrets``).
    The spec file itself holds them sealed."""
    profile = replace(
        spec.profile,
        producer=unseal(spec.profile.producer),
        consumer=unseal(spec.profile.consumer),
    )
    return replace(spec, client=unseal(spec.client), profile=profile)


def adopt_state(store: SentinelStore, spec: SentinelSpec) -> None:
    """Forget Redis state that belonged to another sentinel under this id (``adopt``)."""
    if spec.incarnation and store.adopt(spec.incarnation):
        message = "state of a former sentinel with this id cleared"
        log.info("sentinel %s: %s", spec.name, message)
        store.event("state-reset", message)


def start_role_process(args: argparse.Namespace, role: str) -> subprocess.Popen:
    """``role`` in a child ``workers.runtime.run``, with this process's options."""
    argv = sentinel_argv(
        args.spec,
        roles=role,
        layout="threads",
        exit_with_parent=True,
        live=args.live,
        lease_token=args.lease_token or None,
        lease_ms=args.lease_ms,
    )
    return subprocess.Popen(argv, env=redis_env(args.redis_url))


def _stop_when_orphaned(host: RoleRunner, parent: int) -> None:
    while host.alive():
        if os.getppid() != parent:
            log.warning("sentinel %s: the process that started this role is gone", host.spec.name)
            host.stop()
            return
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
