"""The lab: where one scenario runs, and everything it must clean up.

A ``Lab`` is the environment of one run (``workers.lab.runner.run()``): the target cluster
and what the run did to it (``BrokerActions``), Redis, the probes and their role processes,
progress reporting, and the waits. Every wait is on a condition with a limit
(``workers.lab.limits``) and supervises the role processes meanwhile: one that dies or hangs
unexpectedly is restarted, as a lease would hand its work over. ``close()`` leaves nothing
behind, and one scenario at a time runs per Redis (``lock()``, a ``workers.store.lab.LabLock``).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from workers.lab.brokeractions import BrokerActions
from workers.lab.events import EventsWatch
from workers.lab.limits import HANG_AFTER_S, HANG_CHECK_S, MAX_RESTARTS, POLL_S, Load, Timeouts
from workers.lab.outcome import ProgressFn, ScenarioAborted
from workers.lab.probes import Probe, RoleProcess
from workers.localkafka import LocalClusterError
from workers.localkafka.cluster import LocalCluster
from workers.store.connection import connect
from workers.store.lab import LabLock, ScenarioRuns
from workers.system import terminate_all

log = logging.getLogger(__name__)

# The lab lock lives this long unless renewed: the run's keeper renews it every BEAT_S, so
# the lock of a runner that died frees itself within a minute.
LOCK_TTL_MS = 60_000
BEAT_S = 2.0


class Lab(BrokerActions):
    """The environment of one scenario run: target cluster, Redis, local cluster, bookkeeping.

    ``local`` is the project's ``LocalCluster`` when the target is that cluster, else None
    (broker faults are then refused). One lab serves one ``workers.lab.runner.run()`` call.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        redis_url: str,
        local: LocalCluster | None = None,
        cluster_name: str = "local",
        client: dict[str, Any] | None = None,
        timeouts: Timeouts | None = None,
        load: Load | None = None,
        progress: ProgressFn | None = None,
        workdir: Path | None = None,
        python: str = sys.executable,
        keep: bool = False,
        run_id: str | None = None,
    ) -> None:
        """``keep`` leaves the topics and the sentinels' Redis keys for inspection; ``run_id``
        names the caller's record of the run (its heartbeat and cancel requests in Redis)."""
        super().__init__(
            bootstrap_servers=bootstrap_servers,
            local=local,
            cluster_name=cluster_name,
            client=client,
            timeouts=timeouts or Timeouts(),
        )
        self.redis_url = redis_url
        self.redis = connect(redis_url)
        self.load = load or Load()
        self._progress = progress
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ds-scenario-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.keep = keep
        self.processes: list[RoleProcess] = []
        self.probes: list[Probe] = []
        self._closed: list[str] | None = None
        self._last_hang_check = 0.0
        self._percent = 0
        self.last_restart = 0.0  # monotonic time of the last supervised restart
        self._t0 = time.monotonic()
        self.run_id = run_id
        self.cancelled: str | None = None  # why, once somebody asked to cancel the run
        self.events_watch: EventsWatch | None = None  # the probes' topics, while the run lasts

    # -- progress and waiting ---------------------------------------------------------------
    def progress(self, phase: str, percent: int) -> None:
        """Report a phase; the percent never goes backwards and stays within 0..100."""
        self.check_cancelled()
        self._percent = max(self._percent, min(100, int(percent)))
        log.info("scenario %s: %s (%d%%)", self.scenario_name, phase, self._percent)
        if self._progress is not None:
            self._progress(phase, self._percent)

    def elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 1)

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``condition`` until truthy (its value is returned); abort after ``timeout``
        (counted again from a supervised restart of a role process).

        Every poll also supervises the role processes (``supervise()``)."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            self.check_cancelled()
            self.supervise()
            value = condition()
            if value:
                log.info(
                    "scenario %s: %s after %.1fs",
                    self.scenario_name,
                    what,
                    time.monotonic() - started,
                )
                return value
            # A supervised restart gives whatever was being waited for a fresh chance.
            deadline = max(deadline, self.last_restart + timeout)
            if time.monotonic() >= deadline:
                raise ScenarioAborted(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(POLL_S)

    def hold(self, seconds: float, what: str) -> None:
        """Keep a fault in place for its defined duration, supervising meanwhile."""
        until = time.monotonic() + seconds
        self.wait(lambda: time.monotonic() >= until, seconds + 5, what)

    def supervise(self) -> None:
        """Restart a role process that died, or hung, unexpectedly (as a lease would hand its
        work over). Each restart is a note on its probe; after ``MAX_RESTARTS`` of one process
        the run is aborted."""
        check_hangs = time.monotonic() - self._last_hang_check >= HANG_CHECK_S
        if check_hangs:
            self._last_hang_check = time.monotonic()
        for proc in self.processes:
            if proc.expect_exit:
                continue
            if proc.alive():
                hung = proc.hung_roles(time.time()) if check_hangs else []
                if not hung:
                    continue
                proc.kill()
                why = f"hung (no heartbeat from {', '.join(hung)} for {HANG_AFTER_S:g}s) and was killed"
            else:
                why = f"exited unexpectedly (exit {proc.popen.returncode})"
            self.restart(proc, why)

    def restart(self, proc: RoleProcess, why: str) -> None:
        if proc.restarts >= MAX_RESTARTS:
            raise ScenarioAborted(
                f"{proc.probe.key}: the {proc.roles} process keeps failing ({why}):\n"
                + proc.log_tail()
            )
        proc.probe.notes.append(f"{proc.roles} process {why} at t+{self.elapsed()}s; restarted")
        log.warning("scenario %s: %s %s:\n%s", self.scenario_name, proc.roles, why, proc.log_tail())
        proc.respawn()
        self.last_restart = time.monotonic()

    def wait_flow(self, probes: list[Probe], what: str = "records to flow") -> None:
        need = self.load.flow_records
        self.wait(
            lambda: all(p.processed() >= need for p in probes),
            self.timeouts.flow,
            f"{what} ({need} processed per sentinel)",
        )

    def wait_progress(self, probes: list[Probe], what: str) -> None:
        """Wait until every probe processed ``load.progress_records`` more than now."""
        base = {p.key: p.processed() for p in probes}
        need = self.load.progress_records

        def moved() -> bool:
            return all(p.processed() >= base[p.key] + need for p in probes)

        try:
            self.wait(moved, self.timeouts.progress, f"records to flow again {what}")
        except ScenarioAborted as exc:
            stuck = [p.key for p in probes if p.processed() < base[p.key] + need]
            raise ScenarioAborted(f"{exc} (no progress: {', '.join(stuck)})") from None

    def wait_in_sync(self, topics: list[str] | None = None) -> None:
        self.wait(lambda: self.isr_full(topics), self.timeouts.broker, "every replica back in sync")

    def settle(self, probes: list[Probe]) -> None:
        """Stop the producers, then wait until each checker has counted everything.

        Settled: a status written after the producer exited (its last delivery reports are in)
        with nothing pending; or, when records stay pending, no change for a quiet period
        (they were never passed by the consumer; noted on the probe)."""
        for probe in probes:
            probe.stop_producer()
        log.info("scenario %s: producers stopped", self.scenario_name)
        quiet_s = max(6.0, 3 * self.load.grace_seconds)
        seen: dict[str, tuple[tuple[int, int], float]] = {}

        def settled(probe: Probe) -> bool:
            doc = probe.status()
            if not doc or doc["updated_at"] < (probe.producer_stopped_at or 0) + 1.0:
                return False
            t = doc["totals"]
            if t["pending"] == 0:
                return True
            sig = (t["processed"], t["pending"])
            if seen.get(probe.key, (None, 0.0))[0] != sig:
                seen[probe.key] = (sig, time.monotonic())
            return time.monotonic() - seen[probe.key][1] >= quiet_s

        self.wait(
            lambda: all(settled(p) for p in probes), self.timeouts.settle, "the checkers to settle"
        )
        for probe in probes:
            pending = probe.totals()["pending"]
            if pending:
                probe.notes.append(f"{pending} acked records were never passed by the consumer")

    def check_cancelled(self) -> None:
        """End the run (aborted, then ``close()`` restores the cluster) once cancelled."""
        if self.cancelled:
            raise ScenarioAborted(self.cancelled)

    # -- lock and heartbeat --------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One scenario at a time per Redis: faults of two runs would corrupt both. While
        held, a keeper thread renews it and the run's heartbeat, and watches for a cancel."""
        token = secrets.token_hex(8)
        lock = LabLock(self.redis, LOCK_TTL_MS)
        other = lock.acquire(token, self.scenario_name, run_id=self.run_id)
        if other is not None:
            raise ScenarioAborted(f"another scenario ({other}) is running; one at a time")
        done = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(lock, token, done), name="lab-keeper", daemon=True
        )
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join(10)
            lock.release(token)

    def _keep(self, lock: LabLock, token: str, done: threading.Event) -> None:
        """Every ``BEAT_S``: renew the lock, beat the run's heartbeat, take a cancel request.
        Runs in a thread, so a step that blocks for long (a broker restart) still beats."""
        runs = ScenarioRuns(self.redis)
        while not done.is_set():
            try:
                lock.renew(token)
                if self.run_id is not None:
                    runs.beat(self.run_id)
                    if (by := runs.cancel_requested(self.run_id)) and not self.cancelled:
                        log.warning("scenario %s: cancelled by %s", self.scenario_name, by)
                        self.cancelled = f"cancelled by {by}"
            except redis.RedisError as exc:  # the lock's own time limit covers a long outage
                log.warning("scenario %s: heartbeat: %s", self.scenario_name, exc)
            done.wait(BEAT_S)

    # -- cleanup -----------------------------------------------------------------------------
    def watch_events(self, topics: list[str]) -> None:
        """Record the cluster's events on ``topics`` until the run ends (``EventsWatch``)."""
        if self.events_watch is None:
            self.events_watch = EventsWatch(self.redis, self.bootstrap_servers, self.client, topics)

    def stop_processes(self) -> None:
        """SIGTERM every live role process at once; SIGKILL what is left after the timeout."""
        live = [proc for proc in self.processes if proc.alive()]
        for proc in self.processes:
            proc.expect_exit = True
        if terminate_all([proc.popen for proc in live], self.timeouts.stop):
            return
        for proc in live:
            if proc.popen.returncode == -signal.SIGKILL:
                log.warning("%s: %s ignored SIGTERM; SIGKILL", proc.probe.key, proc.roles)

    def close(self) -> list[str]:
        """Leave nothing behind: processes, broker faults, topics, Redis keys, temp files.

        Returns what could not be restored; a second call returns the first call's answer."""
        if self._closed is not None:
            return self._closed
        problems: list[str] = []
        if self.events_watch is not None:
            self.events_watch.close()
        # Frozen brokers first: a producer cannot flush into a frozen leader.
        for node in sorted(self.paused_nodes):
            with contextlib.suppress(LocalClusterError):
                self.resume_node(node)
        self.stop_processes()
        problems += self.restore()
        if not self.keep:
            self.delete_topics([t for p in self.probes for t in p.topics])
            for probe in self.probes:
                with contextlib.suppress(redis.RedisError):
                    probe.store.reset()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._closed = problems
        return problems
