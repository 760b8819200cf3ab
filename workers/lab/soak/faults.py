"""The soak's faults: a schedule drawn from a seed, each fault's action, and its takeover.

``plan(seed, kinds, ...)`` draws the order of the faults, which victim each picks (a number
the fault maps to a broker, a sentinel or a worker when it runs) and the quiet period after
each: the same seed and options give the same plan, printed at the start so a run can be
replayed. The first half of a soak runs every kind once; the second half repeats only the
faults that leave the monitor's long-lived processes (the Celery workers, Redis, most sentinel
processes) running, so that their memory can be compared from its start to its end.

After each fault the affected sentinels must be back to progress (``Load.progress_records``
more processed, and for a fault that ended their processes, from a producer run started after
it) within the fault's bound (``bound()``); the time each took is its takeover time.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import KafkaException

from workers.lab.limits import POLL_S
from workers.lab.soak.procs import (
    LEASE_MS,
    OWN,
    SHARED,
    SUPERVISOR_TICK_S,
    SoakRedis,
    SoakWorkers,
    lease_holder_pid,
    process_age_s,
)
from workers.localkafka import LocalClusterError
from workers.system import QUICK_EXIT_S, RESPAWN_FIRST_BACKOFF_S

if TYPE_CHECKING:
    from workers.lab.lab import Lab
    from workers.lab.probes import Probe

log = logging.getLogger(__name__)

LEADER_KILL = "leader-kill"
BROKER_PAUSE = "broker-pause"
ROLLING_RESTART = "rolling-restart"
SENTINEL_KILL = "sentinel-kill"
HOST_KILL = "host-kill"
WORKER_KILL = "worker-kill"
REDIS_RESTART = "redis-restart"
RESTART_ALL = "restart-all"
KINDS = (
    LEADER_KILL,
    BROKER_PAUSE,
    ROLLING_RESTART,
    SENTINEL_KILL,
    HOST_KILL,
    WORKER_KILL,
    REDIS_RESTART,
    RESTART_ALL,
)
# The fault that kills what runs a sentinel, by hosting (``procs.HOSTINGS``): one sentinel's
# own process, or the worker's shared host with every sentinel in it.
PROCESS_KILL = {OWN: SENTINEL_KILL, SHARED: HOST_KILL}


def kinds_for(hosting: str) -> tuple[str, ...]:
    """Every fault that applies to sentinels hosted ``hosting``."""
    other = PROCESS_KILL[OWN if hosting == SHARED else SHARED]
    return tuple(k for k in KINDS if k != other)


# Faults after which every long-lived process of the monitor still runs (one sentinel's
# processes excepted): the second half's, so that memory is compared across it.
KEEP_PROCESSES = (LEADER_KILL, BROKER_PAUSE, ROLLING_RESTART, SENTINEL_KILL)
PAUSE_S = 20.0
# What a fault takes besides its quiet period, roughly: to plan the second half in time.
COST_S = {
    LEADER_KILL: 60,
    BROKER_PAUSE: 35,
    ROLLING_RESTART: 300,
    SENTINEL_KILL: 15,
    HOST_KILL: 20,
    WORKER_KILL: 30,
    REDIS_RESTART: 15,
    RESTART_ALL: 60,
}
# A sentinel process starting on this machine: Python, its imports, librdkafka clients, a
# consumer group join, the first records through (the 2-core machine is shared and busy).
START_ALLOWANCE_S = 10.0
# A broker fault heals by Kafka's own means (a new leader, a node back); the scenario lab's
# progress limit (``Timeouts.progress``) bounds it.
BROKER_BOUND_S = 90.0
# How often a shared host reads its manifest (``workers.runtime.host.SYNC_INTERVAL_S``).
HOST_SYNC_S = 1.0
# A Celery worker booting (Django settings, the app, the supervisor's first tick).
WORKER_BOOT_S = 30.0


def bound(kind: str) -> float:
    """Seconds from the fault (its end, for a freeze or a restart) to progress again."""
    crash = RESPAWN_FIRST_BACKOFF_S + SUPERVISOR_TICK_S + START_ALLOWANCE_S
    failover = LEASE_MS / 1000 + SUPERVISOR_TICK_S + START_ALLOWANCE_S
    return {
        SENTINEL_KILL: crash,  # the worker keeping the lease restarts it after its back-off
        # The worker starts a new host at its next tick, and gives it each sentinel back
        # after the first back-off; the host takes a new entry at its next manifest read.
        HOST_KILL: crash + HOST_SYNC_S,
        WORKER_KILL: failover,  # children release their leases at once; at worst they expire
        REDIS_RESTART: failover,  # a lease guard that lost Redis stops its sentinel
        RESTART_ALL: WORKER_BOOT_S + SUPERVISOR_TICK_S + START_ALLOWANCE_S,
    }.get(kind, BROKER_BOUND_S)


@dataclass
class Step:
    kind: str
    pick: int  # which victim: an index the fault maps onto what exists when it runs
    quiet_s: float


@dataclass
class Plan:
    seed: int
    first: list[Step]
    second: list[Step]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "first": [asdict(s) for s in self.first],
            "second": [asdict(s) for s in self.second],
        }

    def describe(self) -> str:
        def line(steps: list[Step]) -> str:
            return ", ".join(f"{s.kind}#{s.pick} +{s.quiet_s:.0f}s quiet" for s in steps)

        return (
            f"seed {self.seed}\n  first half: {line(self.first)}\n  second half (as time "
            f"allows): {line(self.second[:12])} ..."
        )


def plan(
    seed: int, kinds: tuple[str, ...], quiet: tuple[float, float], *, repeat: bool = True
) -> Plan:
    """The plan for ``seed``: every kind once, then (``repeat``) the second half's faults."""
    rng = random.Random(seed)

    def step(kind: str) -> Step:
        return Step(kind, rng.randrange(1_000_000), round(rng.uniform(*quiet), 1))

    first = [step(k) for k in rng.sample(list(kinds), len(kinds))]
    again = [k for k in kinds if k in KEEP_PROCESSES]
    second = [step(rng.choice(again)) for _ in range(60)] if again and repeat else []
    return Plan(seed, first, second)


@dataclass
class Record:
    """One fault as it happened."""

    kind: str
    started: float  # seconds since the soak started
    ended: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    takeovers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SoakRun(Protocol):
    """What the faults ask of the soak's run (``workers.lab.soak.run.Soak``), and all they
    ask: its sentinels, its clock, and what it knows of their processes and progress."""

    probes: list[Probe]  # the sentinels under test

    def elapsed(self) -> float:
        """Seconds since the soak started."""
        ...

    def name(self, sid: int) -> str:
        """The report's name of sentinel ``sid``."""
        ...

    def processed(self, sid: int) -> int:
        """The records sentinel ``sid`` has processed so far, as last sampled."""
        ...

    def main_pid(self, sid: int) -> int | None:
        """The pid of sentinel ``sid``'s main process, None when it has none."""
        ...

    def first_pid(self, sid: int) -> int | None:
        """The pid of the first process sentinel ``sid`` had in the soak."""
        ...

    def first_host(self, worker: str) -> int | None:
        """The pid of the first shared host worker ``worker`` had in the soak."""
        ...

    def kill_pid(self, pid: int) -> None:
        """SIGKILL ``pid`` (gone already is fine)."""
        ...

    def new_run_since(self, sid: int, since: float) -> bool:
        """A producer run of ``sid`` started after ``since``."""
        ...


class Faults:
    """Runs the plan's steps: on the cluster through ``lab``, on the soak's own processes
    through ``workers`` and ``redis``, asking ``soak`` about the sentinels."""

    def __init__(self, soak: SoakRun, lab: Lab, workers: SoakWorkers, redis: SoakRedis) -> None:
        self.soak = soak
        self.lab = lab
        self.workers = workers
        self.redis = redis
        self.records: list[Record] = []

    def run(self, step: Step) -> Record:
        record = Record(step.kind, self.soak.elapsed())
        self.records.append(record)
        log.info("soak: fault %s (pick %d)", step.kind, step.pick)
        getattr(self, step.kind.replace("-", "_"))(step.pick, record)
        record.ended = self.soak.elapsed()
        return record

    # -- the faults -----------------------------------------------------------------------
    def leader_kill(self, pick: int, record: Record) -> None:
        probe = self.soak.probes[pick % len(self.soak.probes)]
        node = self.leader(probe.spec.topic)
        record.detail.update(node=node, topic=probe.spec.topic)
        base = self.mark()
        self.lab.kill_node(node)
        self.await_progress(record, base, set(base), new_run=False)
        self.lab.start_node(node)
        self.lab.wait_in_sync()

    def broker_pause(self, pick: int, record: Record) -> None:
        node = sorted(self.lab.local.nodes)[pick % 3]
        record.detail.update(node=node, seconds=PAUSE_S)
        self.lab.pause_node(node)
        self.lab.hold(PAUSE_S, f"node {node} frozen for {PAUSE_S:g}s")
        base = self.mark()
        self.lab.resume_node(node)
        self.await_progress(record, base, set(base), new_run=False)

    def rolling_restart(self, pick: int, record: Record) -> None:
        nodes = sorted(self.lab.local.nodes)
        order = nodes[pick % 3 :] + nodes[: pick % 3]
        record.detail.update(order=order)
        for node in order:
            self.lab.stop_node(node)
            self.lab.start_node(node)
            self.lab.wait_in_sync()
        base = self.mark()
        self.await_progress(record, base, set(base), new_run=False)

    def sentinel_kill(self, pick: int, record: Record) -> None:
        """SIGKILL the first process of a sentinel, one that never exited before or has run
        for longer than a quick exit (``QUICK_EXIT_S``): its worker restarts it after the
        first back-off, which the bound assumes. (A crash loop's doubling back-off is the
        supervisor's tests' to check, not a takeover.) The pick's sentinel, or the next such
        one in turn; when none is, the first to become one."""
        count = len(self.soak.probes)
        probes = [self.soak.probes[(pick + i) % count] for i in range(count)]

        def victim() -> tuple[Probe, int] | None:
            for probe in probes:
                pid = self.soak.main_pid(probe.spec.id)
                if pid is None:
                    continue
                first = self.soak.first_pid(probe.spec.id) == pid
                if first or (process_age_s(pid) or 0) > QUICK_EXIT_S:
                    return probe, pid
            return None

        probe, pid = self.lab.wait(
            victim, QUICK_EXIT_S + 60, "a sentinel process that never exited or ran a minute"
        )
        record.detail.update(sentinel=probe.key, pid=pid)
        base = self.mark()
        self.soak.kill_pid(pid)
        self.await_progress(record, base, {probe.spec.id}, new_run=True)

    def host_kill(self, pick: int, record: Record) -> None:
        """SIGKILL a worker's shared sentinel host (every sentinel in it ends at once), one
        that never exited before or has run for longer than a quick exit, as
        ``sentinel_kill`` picks: the worker starts a new host and gives it each sentinel back
        after the first back-off, which the bound assumes."""
        names = sorted(self.workers.names)
        order = [names[(pick + i) % len(names)] for i in range(len(names))]

        def victim() -> tuple[str, int, set[int]] | None:
            hosts = self.workers.hosts()
            for name in order:
                pid, hosted = hosts.get(name), self.held_by(name)
                if pid is None or not hosted:
                    continue
                if self.soak.first_host(name) == pid or (process_age_s(pid) or 0) > QUICK_EXIT_S:
                    return name, pid, hosted
            return None

        name, pid, hosted = self.lab.wait(
            victim, QUICK_EXIT_S + 60, "a shared host that never exited or ran a minute"
        )
        record.detail.update(
            worker=name, pid=pid, sentinels=[self.soak.name(s) for s in sorted(hosted)]
        )
        base = self.mark()
        self.soak.kill_pid(pid)
        self.await_progress(record, base, hosted, new_run=True)

    def held_by(self, worker: str) -> set[int]:
        """The sentinels whose lease the worker ``worker`` holds."""
        pid = self.workers.pids().get(worker)
        return {
            p.spec.id
            for p in self.soak.probes
            if pid is not None and lease_holder_pid(p.store.lease("", 0).holder()) == pid
        }

    def worker_kill(self, pick: int, record: Record) -> None:
        probe = self.soak.probes[pick % len(self.soak.probes)]
        holders = {
            p.spec.id: lease_holder_pid(p.store.lease("", 0).holder()) for p in self.soak.probes
        }
        victim_pid = holders[probe.spec.id]
        name = self.workers.name_of(victim_pid)
        if name is None:
            record.detail["skipped"] = f"{probe.key} held by no worker of the soak"
            return
        hosted = {sid for sid, pid in holders.items() if pid == victim_pid}
        record.detail.update(
            worker=name, pid=victim_pid, sentinels=[self.soak.name(s) for s in sorted(hosted)]
        )
        base = self.mark()
        self.workers.kill(name)
        self.await_progress(record, base, hosted, new_run=True)
        self.workers.start(name)  # two workers again for the faults to come

    def redis_restart(self, pick: int, record: Record) -> None:
        base = self.mark()
        self.redis.restart()
        record.detail["note"] = "SIGTERM (the append-only file is fsynced), start, same files"
        self.await_progress(record, base, set(base), new_run=False)

    def restart_all(self, pick: int, record: Record) -> None:
        self.workers.stop_all()
        self.redis.restart()
        base = self.mark()
        self.workers.start_all()
        record.detail["restarted"] = ["workers", "sentinels", "redis"]
        self.await_progress(record, base, set(base), new_run=True)

    # -- helpers ------------------------------------------------------------------------------
    def leader(self, topic: str) -> int:
        def now() -> int | None:
            try:
                node = self.lab.local.leader_of(topic, 0)
            except (LocalClusterError, KafkaException):
                return None
            return node if node > 0 else None

        return self.lab.wait(now, 60, f"a leader for {topic}")

    def mark(self) -> dict[int, tuple[float, int]]:
        """(time, processed) of every sentinel now: the point progress is counted from."""
        now = time.time()
        return {p.spec.id: (now, self.soak.processed(p.spec.id)) for p in self.soak.probes}

    def await_progress(
        self, record: Record, base: dict[int, tuple[float, int]], ids: set[int], *, new_run: bool
    ) -> None:
        """Wait until each sentinel of ``ids`` progressed, recording how long each took; a
        sentinel still stuck at twice its bound (at least a minute more) is recorded as such,
        and the soak goes on: one missed bound fails the soak, not the rest of its faults."""
        limit = bound(record.kind)
        need = self.lab.load.progress_records
        waiting = set(ids)
        deadline = time.monotonic() + max(2 * limit, limit + 60)
        while waiting and time.monotonic() < deadline:
            self.lab.supervise()
            for sid in sorted(waiting):
                since, processed = base[sid]
                if self.soak.processed(sid) < processed + need:
                    continue
                if new_run and not self.soak.new_run_since(sid, since):
                    continue
                took = round(time.time() - since, 1)
                record.takeovers.append(
                    {
                        "sentinel": self.soak.name(sid),
                        "seconds": took,
                        "bound_s": limit,
                        "ok": took <= limit,
                    }
                )
                waiting.discard(sid)
            time.sleep(POLL_S)
        for sid in sorted(waiting):
            record.takeovers.append(
                {"sentinel": self.soak.name(sid), "seconds": None, "bound_s": limit, "ok": False}
            )
