"""The failure scenario lab: inject a fault into real sentinel processes, measure, judge.

A scenario starts one sentinel per semantic (or per profile variant of one) on fresh topics,
each role a real ``python -m workers.runtime.run`` process; waits until records flow; injects its
fault (a ``FaultHook`` crash point armed in a consumer loop, a SIGKILL of a role process, or a
broker SIGKILL / SIGSTOP / clean restart through ``LocalCluster``); waits for recovery; stops
the producers; waits until every checker has settled; and compares each sentinel's counters
with what its semantic promises (``Expect``).

Framework-free (no Django): the caller builds a ``Lab`` (target cluster, Redis, the
``LocalCluster`` or None, timeouts, a progress callback) and calls ``run_scenario()``.

Contracts:

- Every wait is on a condition, with a timeout from ``Timeouts``; a timeout ends the run as
  ``aborted`` with the reason. The only fixed-length wait is a fault whose definition is a
  duration (the leader frozen for N seconds).
- Broker faults are refused unless the lab has a ``LocalCluster`` serving exactly the target's
  bootstrap servers; consumer- and producer-side scenarios run against any cluster.
- ``run_scenario()`` returns only after every process it started is gone, every node it
  stopped or froze runs again with all brokers in the metadata, and its topics and Redis keys
  are deleted; a failure to restore turns the outcome into ``aborted`` and says why.
- The progress callback receives ``(phase, percent)``; an exception it raises aborts the run
  (that is how a caller cancels).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import redis
from confluent_kafka import ElectionType, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from workers.engine import codec
from workers.engine.documents import COUNTERS
from workers.engine.profiles import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    DEFAULT_PROFILES,
    EXACTLY_ONCE,
    SEMANTICS,
    Profile,
)
from workers.engine.spec import SentinelSpec
from workers.localkafka.cluster import LocalCluster, LocalClusterError
from workers.roles.kafka import TXN_HEADER, read_to_end
from workers.store import LabLock, SentinelStore, connect
from workers.system import PROJECT_ROOT

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int], None]

QUEUED, RUNNING, PASSED, FAILED, ABORTED = "queued", "running", "passed", "failed", "aborted"
STATES = (QUEUED, RUNNING, PASSED, FAILED, ABORTED)

LOCK_TTL_MS = 3600 * 1000
# Scenario sentinels get ids far above any database primary key (the codec's id is uint32).
SCENARIO_ID_BASE = 3_000_000_000
POLL_S = 0.2
MAX_RESTARTS = 3
# A role loop heartbeats about once a second; its longest legitimate block is a 60 s
# init_transactions(). Silent longer than this while its process lives means hung (e.g. in
# librdkafka's send_offsets_to_transaction(), which can ignore its timeout: librdkafka#5456).
HANG_AFTER_S = 65.0
HANG_CHECK_S = 2.0
ANOMALIES = ("lost", "duplicated", "reordered", "late", "phantom", "aborted_read", "foreign")


class ScenarioAborted(Exception):
    """The run cannot complete; ``str(exc)`` is the reason shown to the user."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of wait may take before the run is aborted."""

    flow: float = 90.0  # records flowing after the sentinels start
    fault: float = 60.0  # a fault to land (crash point reached, leader re-elected, fencing)
    progress: float = 90.0  # records flowing again after a fault or a restart
    broker: float = 120.0  # a node back in the metadata, every replica back in sync
    settle: float = 90.0  # every checker settled after the producers stopped
    stop: float = 30.0  # a role process to exit after SIGTERM


@dataclass(frozen=True)
class Load:
    """How hard the scenario sentinels write: small and slow, so runs are quick and exact."""

    rate_per_partition: float = 25.0
    batch_size: int = 50
    grace_seconds: float = 2.0
    record_size: int = 64
    flow_records: int = 30  # processed per sentinel before the fault
    progress_records: int = 30  # processed per sentinel after a recovery step


# ---------------------------------------------------------------------------------------
# Expectations and results
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """One claim about a final counter: ``counter == value`` (or ``== ref`` counter), or
    ``may`` (any value is within the promise; the count is reported, not judged)."""

    counter: str
    op: str = "eq"  # "eq" or "may"
    value: int = 0
    ref: str | None = None

    def target(self, counters: dict[str, int]) -> int:
        return counters.get(self.ref, 0) if self.ref else self.value

    def holds(self, counters: dict[str, int]) -> bool:
        if self.op == "may":
            return True
        return counters.get(self.counter, 0) == self.target(counters)

    def text(self, counters: dict[str, int]) -> str:
        if self.op == "may":
            return f"{self.counter}: may be > 0 (reported)"
        if self.ref:
            return f"{self.counter} = {self.ref} ({self.target(counters)})"
        return f"{self.counter} = {self.value}"


def promise(semantic: str) -> list[Expect]:
    """What the semantic itself promises, whatever the fault (DESIGN.md, verdict rules)."""
    if semantic == AT_MOST_ONCE:
        return [Expect("duplicated"), Expect("aborted_read"), Expect("lost", "may")]
    if semantic == AT_LEAST_ONCE:
        return [Expect("lost"), Expect("pending"), Expect("duplicated", "may")]
    return [Expect("lost"), Expect("pending"), Expect("duplicated"), Expect("aborted_read")]


def override(base: list[Expect], *changes: Expect) -> list[Expect]:
    """``base`` with the claims on the same counters replaced by ``changes``."""
    replaced = {c.counter for c in changes}
    return [e for e in base if e.counter not in replaced] + list(changes)


@dataclass
class SemanticResult:
    """What one sentinel saw in one scenario, and whether that is what it promises."""

    semantic: str
    profile: str
    fault: str
    fault_at: float | None  # seconds after the scenario started
    counters: dict[str, int]
    expected: list[str]
    matched: bool
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScenarioOutcome:
    scenario: str
    state: str  # passed / failed / aborted
    reason: str
    results: list[SemanticResult]
    started_at: float
    finished_at: float

    @property
    def duration_s(self) -> float:
        return round(self.finished_at - self.started_at, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "state": self.state,
            "reason": self.reason,
            "results": [r.to_dict() for r in self.results],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
        }


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------


class RoleProcess:
    """One ``python -m workers.runtime.run --roles ROLES`` process of a probe."""

    def __init__(self, probe: Probe, roles: str, *, expect_exit: bool = False) -> None:
        self.probe = probe
        self.roles = roles
        self.expect_exit = expect_exit  # a fault will end it: do not restart it
        self.restarts = 0
        self.log_path = probe.lab.workdir / f"{probe.key}-{roles.replace(',', '+')}.log"
        self.popen = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [
            self.probe.lab.python,
            "-m",
            "workers.runtime.run",
            "--spec",
            str(self.probe.spec_path),
            "--roles",
            self.roles,
            "--redis-url",
            self.probe.lab.redis_url,
        ]
        with open(self.log_path, "ab") as out:  # the child keeps its own descriptor
            return subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def respawn(self) -> None:
        self.restarts += 1
        self.popen = self._spawn()

    def hung_roles(self, now: float) -> list[str]:
        """Roles of this live process whose heartbeat stopped more than HANG_AFTER_S ago."""
        health = self.probe.store.health()
        hung = []
        for role in self.roles.split(","):
            beat = health.get(role, {})
            if beat.get("pid") != self.pid or beat.get("error") == "stopped":
                continue
            if now - beat.get("ts", now) > HANG_AFTER_S:
                hung.append(role)
        return hung

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.alive():
            self.popen.kill()
        self.popen.wait(10)

    def stop(self, timeout: float) -> bool:
        """SIGTERM (a clean stop); SIGKILL after ``timeout``. True when it stopped cleanly."""
        self.expect_exit = True
        if not self.alive():
            return True
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Probe:
    """One sentinel under test: a semantic (or a profile variant), its topics, processes, store."""

    def __init__(self, lab: Lab, key: str, profile: Profile, *, partitions: int) -> None:
        self.lab = lab
        self.key = key
        self.profile = profile
        sid = SCENARIO_ID_BASE + secrets.randbelow(1_000_000_000)
        token = secrets.token_hex(3)
        self.spec = SentinelSpec(
            id=sid,
            name=f"scenario-{lab.scenario_name}-{key}",
            profile=profile,
            bootstrap_servers=lab.bootstrap_servers,
            topic=f"ds-scenario.{lab.scenario_name}.{key}.{token}",
            cluster=lab.cluster_name,
            client=dict(lab.client),
            partitions=partitions,
            replication_factor=lab.replication_factor,
            min_insync_replicas=min(2, lab.replication_factor),
            rate_per_partition=lab.load.rate_per_partition,
            record_size=lab.load.record_size,
            grace_seconds=lab.load.grace_seconds,
            stall_after_s=60.0,
            batch_size=lab.load.batch_size,
        )
        self.spec_path = lab.workdir / f"{key}.spec.json"
        self.spec_path.write_text(json.dumps(self.spec.to_dict()))
        self.store = SentinelStore(lab.redis, sid)
        self.procs: dict[str, RoleProcess] = {}
        self.fault = "none"
        self.fault_at: float | None = None
        self.detail: dict[str, Any] = {}
        self.notes: list[str] = []
        self.extra: dict[str, int] = {}  # observations that are not checker counters
        self.producer_stopped_at: float | None = None

    @property
    def semantic(self) -> str:
        return self.profile.semantic

    @property
    def topics(self) -> list[str]:
        return (
            [self.spec.topic, self.spec.output_topic_name] if self.spec.eos else [self.spec.topic]
        )

    @property
    def consumer_roles(self) -> str:
        return "copier,verifier" if self.spec.eos else "consumer"

    def start(
        self, roles: str, *, name: str | None = None, expect_exit: bool = False
    ) -> RoleProcess:
        proc = RoleProcess(self, roles, expect_exit=expect_exit)
        self.procs[name or roles] = proc
        self.lab.processes.append(proc)
        return proc

    def status(self) -> dict[str, Any] | None:
        return self.store.status()

    def totals(self) -> dict[str, int]:
        doc = self.status()
        return dict(doc["totals"]) if doc else dict.fromkeys(COUNTERS, 0)

    def processed(self) -> int:
        return self.totals()["processed"]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.store.events(200) if e.get("kind") == kind]

    def mark_fault(self, fault: str, **detail: Any) -> None:
        self.fault = fault
        self.fault_at = self.lab.elapsed()
        self.detail.update(detail)
        self.detail.setdefault("processed_before", self.processed())

    def stop_producer(self) -> None:
        proc = self.procs.get("producer")
        if proc is not None and not proc.stop(self.lab.timeouts.stop):
            self.notes.append("the producer did not stop within the timeout and was killed")
        self.producer_stopped_at = time.time()

    def judge(self, expectations: list[Expect]) -> SemanticResult:
        """The final counters against ``expectations``; anomalies per partition in ``detail``."""
        doc = self.status() or {}
        counters = {**dict(doc.get("totals") or dict.fromkeys(COUNTERS, 0)), **self.extra}
        anomalies = {
            p: {k: v for k, v in c.items() if k in ANOMALIES and v}
            for p, c in (doc.get("partitions") or {}).items()
            if any(c.get(k) for k in ANOMALIES)
        }
        if anomalies:
            self.detail["partitions"] = anomalies
        failed = [e for e in expectations if not e.holds(counters)]
        if counters.get("duplicated"):
            self.detail["duplicates_in_topics"] = evidence = self.duplicate_evidence()
            self.notes.append(explain_duplicates(self.spec, evidence))
        notes = list(self.notes)
        notes += [f"expected {e.text(counters)}, saw {counters.get(e.counter, 0)}" for e in failed]
        return SemanticResult(
            semantic=self.semantic,
            profile=self.profile.name,
            fault=self.fault,
            fault_at=self.fault_at,
            counters=counters,
            expected=[e.text(counters) for e in expectations],
            matched=not failed,
            notes=notes,
            detail=self.detail,
        )

    def duplicate_evidence(self) -> dict[str, Any]:
        """Ground truth for duplicates: the records each topic holds more than
        once, with their offsets and transaction tokens. None anywhere means the record was
        written once and processed twice; copies in one topic show where it was written twice."""
        out: dict[str, Any] = {}
        for topic in self.topics:
            isolation = (
                "read_committed" if topic == self.spec.output_topic_name else "read_uncommitted"
            )
            try:
                out[topic] = topic_duplicates(self.lab.consumer_conf(), topic, isolation)
            except (KafkaException, TimeoutError) as exc:
                out[topic] = f"could not read: {exc}"
        return out


def explain_duplicates(spec: SentinelSpec, evidence: dict[str, Any]) -> str:
    """Where the duplicates come from, in words, from ``Probe.duplicate_evidence()``."""
    written = evidence.get(spec.topic)
    if isinstance(written, list) and written:
        idempotent = str(spec.profile.producer.get("enable.idempotence", "true")).lower()
        why = (
            "although idempotent: an epoch bump across a leader change re-sends persisted "
            "batches as new ones, librdkafka#4953"
            if idempotent == "true"
            else "a retried request whose first attempt had been written (idempotence off)"
        )
        return f"{spec.topic} holds {len(written)}+ records twice: the producer wrote them twice, {why}"
    copied = evidence.get(spec.output_topic_name) if spec.eos else None
    if isinstance(copied, list) and copied:
        return (
            f"committed transactions wrote {len(copied)}+ records twice to {spec.output_topic_name}"
        )
    return "every topic holds each record once: the duplicates are repeated processings"


def topic_duplicates(
    conf: dict[str, Any], topic: str, isolation: str, limit: int = 10
) -> list[dict[str, Any]]:
    """Up to ``limit`` sentinel records found more than once in ``topic`` (read to its end)."""
    copies: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for msg in read_to_end(conf, topic, isolation=isolation, timeout=60):
        record = codec.decode(msg.value())
        if isinstance(record, codec.Record):
            token = dict(msg.headers() or []).get(TXN_HEADER, b"").decode()
            key = f"{record.run_id}:{record.partition}:{record.seq}"
            copies[key].append({"offset": msg.offset(), "txn": token or None})
    dups = [{"record": k, "copies": v} for k, v in copies.items() if len(v) > 1]
    return dups[:limit]


# ---------------------------------------------------------------------------------------
# The lab: where a scenario runs, and everything it must clean up
# ---------------------------------------------------------------------------------------


class Lab:
    """The environment of one scenario run: target cluster, Redis, local cluster, bookkeeping.

    ``local`` is the project's ``LocalCluster`` when the target is that cluster, else None
    (broker faults are then refused). One lab serves one ``run_scenario()`` call.
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
    ) -> None:
        """``keep`` leaves the topics and the sentinels' Redis keys for inspection."""
        self.bootstrap_servers = bootstrap_servers
        self.redis_url = redis_url
        self.redis = connect(redis_url)
        self.local = local
        self.cluster_name = cluster_name
        self.client = dict(client or {})
        self.timeouts = timeouts or Timeouts()
        self.load = load or Load()
        self._progress = progress
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ds-scenario-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.keep = keep
        self.scenario_name = "scenario"
        self.replication_factor = 3
        self.processes: list[RoleProcess] = []
        self.probes: list[Probe] = []
        self.stopped_nodes: set[int] = set()  # nodes this run killed or stopped
        self.paused_nodes: set[int] = set()  # nodes this run froze
        self.touched_nodes: set[int] = set()  # nodes this run did anything to
        self.victim = -1  # the broker a broker scenario injects its fault into
        self._admins: dict[str, AdminClient] = {}
        self._closed: list[str] | None = None
        self._last_hang_check = 0.0
        self._percent = 0
        self.last_restart = 0.0  # monotonic time of the last supervised restart
        self._t0 = time.monotonic()

    # -- progress and waiting ---------------------------------------------------------------
    def progress(self, phase: str, percent: int) -> None:
        """Report a phase; the percent never goes backwards and stays within 0..100."""
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

    # -- preflight, lock -------------------------------------------------------------------
    def require_local(self, scenario: str) -> LocalCluster:
        """The local cluster, or a refusal: broker faults only ever hit the project's own."""
        if self.local is None:
            raise ScenarioAborted(
                f"refused: scenario {scenario!r} injects broker faults (SIGKILL, SIGSTOP or "
                f"restart of Kafka nodes), which the lab only does to the project's local "
                f"cluster; cluster {self.cluster_name!r} is not it. Run it against the local "
                f"cluster, or choose a consumer-side scenario."
            )
        mine = set(self.local.bootstrap_servers.split(","))
        if set(self.bootstrap_servers.split(",")) != mine:
            raise ScenarioAborted(
                f"refused: scenario {scenario!r} injects broker faults, and the local cluster "
                f"{self.local.name!r} serves {self.local.bootstrap_servers}, not the target "
                f"cluster {self.cluster_name!r} ({self.bootstrap_servers})"
            )
        return self.local

    def check_local_ready(self) -> None:
        local = self.local
        assert local is not None
        status = local.status()
        states = {n["id"]: n["state"] for n in status["nodes"]}
        if any(state != "running" for state in states.values()):
            raise ScenarioAborted(f"local cluster {local.name!r} not ready: nodes {states}")
        if sorted(status["brokers"] or []) != sorted(states):
            raise ScenarioAborted(
                f"local cluster {local.name!r} not ready: brokers {status['brokers']} in the "
                f"metadata, {sorted(states)} expected"
            )

    def check_reachable(self) -> list[int]:
        """Broker ids of the target cluster; aborts when it does not answer."""
        try:
            meta = self.admin().list_topics(timeout=10)
        except KafkaException as exc:
            raise ScenarioAborted(
                f"cluster {self.cluster_name!r} ({self.bootstrap_servers}) not reachable: {exc}"
            ) from None
        return sorted(meta.brokers)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One scenario at a time per Redis: faults of two runs would corrupt both."""
        token = secrets.token_hex(8)
        lock = LabLock(self.redis, LOCK_TTL_MS)
        other = lock.acquire(token, self.scenario_name)
        if other is not None:
            raise ScenarioAborted(f"another scenario ({other}) is running; one at a time")
        try:
            yield
        finally:
            lock.release(token)

    # -- topics ------------------------------------------------------------------------------
    def consumer_conf(self) -> dict[str, Any]:
        return {**self.client, "bootstrap.servers": self.bootstrap_servers, "log_level": 2}

    def admin(self) -> AdminClient:
        """An admin client over the brokers that can answer now (a frozen one answers nothing)."""
        bootstrap = self.bootstrap_servers
        if self.local is not None and self.paused_nodes:
            bootstrap = ",".join(
                f"127.0.0.1:{node.broker_port}"
                for node in self.local.nodes.values()
                if node.id not in self.paused_nodes | self.stopped_nodes
            )
        client = self._admins.get(bootstrap)
        if client is None:
            conf = {**self.client, "bootstrap.servers": bootstrap, "log_level": 2}
            client = self._admins[bootstrap] = AdminClient(conf)
        return client

    def create_topics(self, probe: Probe, leader: int | None = None) -> None:
        """Fresh topics for ``probe``; with ``leader``, that broker leads every partition."""
        topics = []
        for name in probe.topics:
            config = {
                "min.insync.replicas": str(probe.spec.min_insync_replicas),
                "unclean.leader.election.enable": "false",
            }
            if leader is None:
                topics.append(
                    NewTopic(
                        name, probe.spec.partitions, probe.spec.replication_factor, config=config
                    )
                )
            else:
                replicas = self.assignment(probe, leader)
                # confluent-kafka 2.16 wants the partition count to match the assignment.
                topics.append(
                    NewTopic(name, len(replicas), replica_assignment=replicas, config=config)
                )
        for name, future in self.admin().create_topics(topics, operation_timeout=30).items():
            try:
                future.result(timeout=60)
            except KafkaException as exc:
                raise ScenarioAborted(f"could not create topic {name}: {exc}") from None

    def assignment(self, probe: Probe, leader: int) -> list[list[int]]:
        assert self.local is not None
        others = sorted(n for n in self.local.nodes if n != leader)
        replicas = [leader, *others][: probe.spec.replication_factor]
        return [replicas for _ in range(probe.spec.partitions)]

    def delete_topics(self) -> None:
        """Delete the probes' topics (best effort: a failure is logged, not raised)."""
        names = [t for p in self.probes for t in p.topics]
        if not names:
            return
        try:
            futures = self.admin().delete_topics(names, operation_timeout=30)
        except KafkaException as exc:
            log.warning("scenario %s: could not delete topics: %s", self.scenario_name, exc)
            return
        for name, future in futures.items():
            try:
                future.result(timeout=60)
            except Exception as exc:
                log.warning("scenario %s: could not delete %s: %s", self.scenario_name, name, exc)

    def isr_full(self, topics: list[str] | None = None) -> bool:
        """Every partition (of ``topics``, else of every topic) has all replicas in sync."""
        try:
            meta = self.admin().list_topics(timeout=5)
        except KafkaException:
            return False
        chosen = topics if topics is not None else list(meta.topics)
        for name in chosen:
            info = meta.topics.get(name)
            if info is None or info.error is not None:
                return False
            for part in info.partitions.values():
                if part.leader < 0 or set(part.isrs) != set(part.replicas):
                    return False
        return True

    # -- broker faults (tracked, so that restore() can undo them) ------------------------------
    def kill_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        self.touched_nodes.add(node)
        self.stopped_nodes.add(node)
        local.kill(node)

    def pause_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        self.touched_nodes.add(node)
        self.paused_nodes.add(node)
        local.pause(node)

    def resume_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        local.resume(node)
        self.paused_nodes.discard(node)

    def start_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        started = time.monotonic()
        self.spawn_node(node)
        self.wait_brokers({node})
        self.stopped_nodes.discard(node)
        log.info(
            "scenario %s: node %d started in %.1fs",
            self.scenario_name,
            node,
            time.monotonic() - started,
        )

    def spawn_node(self, node: int) -> None:
        """``LocalCluster.start_node``, waiting out ports the stopped node's sockets still
        hold for a moment (its check refuses a port in use; TIME_WAIT sockets of a JVM that
        just exited sometimes count)."""
        local = self.local
        assert local is not None
        deadline = time.monotonic() + self.timeouts.broker
        while True:
            try:
                local.start_node(node)
                return
            except LocalClusterError as exc:
                if "in use" not in str(exc) or time.monotonic() >= deadline:
                    raise
                log.info("scenario %s: node %d: %s; retrying", self.scenario_name, node, exc)
                time.sleep(1.0)

    def stop_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        self.touched_nodes.add(node)
        self.stopped_nodes.add(node)
        started = time.monotonic()
        local.stop_node(node, timeout=self.timeouts.stop)
        log.info(
            "scenario %s: node %d stopped in %.1fs",
            self.scenario_name,
            node,
            time.monotonic() - started,
        )

    def wait_brokers(self, nodes: set[int]) -> None:
        local = self.local
        assert local is not None
        try:
            local.wait_for_brokers(nodes, self.timeouts.broker)
        except LocalClusterError as exc:
            raise ScenarioAborted(f"node(s) {sorted(nodes)} did not come back: {exc}") from None

    def wait_in_sync(self, topics: list[str] | None = None) -> None:
        self.wait(lambda: self.isr_full(topics), self.timeouts.broker, "every replica back in sync")

    # -- cleanup -----------------------------------------------------------------------------
    def stop_processes(self) -> None:
        """SIGTERM every live role process at once; SIGKILL what is left after the timeout."""
        live = [proc for proc in self.processes if proc.alive()]
        for proc in self.processes:
            proc.expect_exit = True
        for proc in live:
            proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.timeouts.stop
        for proc in live:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s: %s ignored SIGTERM; SIGKILL", proc.probe.key, proc.roles)
                proc.kill()

    def restore(self) -> list[str]:
        """Undo this run's broker faults: resume frozen nodes, start stopped ones, wait until
        every broker is in the metadata. Returns what could not be restored."""
        problems: list[str] = []
        local = self.local
        if local is None:
            return problems
        for node in sorted(self.paused_nodes):
            try:
                self.resume_node(node)
            except LocalClusterError as exc:
                problems.append(f"resume node {node}: {exc}")
        for node in sorted(self.stopped_nodes):
            try:
                self.spawn_node(node)
            except LocalClusterError as exc:
                problems.append(f"start node {node}: {exc}")
        if self.touched_nodes and not problems:
            try:
                local.wait_for_brokers(set(local.nodes), self.timeouts.broker)
                self.stopped_nodes.clear()
            except LocalClusterError as exc:
                problems.append(f"brokers not back: {exc}")
            else:
                self.rebalance_leaders()
        return problems

    def rebalance_leaders(self) -> None:
        """Give every partition back to its preferred leader once all replicas are in sync.

        Kafka would do it by itself up to leader.imbalance.check.interval.seconds later, in
        the middle of the next run, where a leadership move loses acks=0 records. Best effort:
        a cluster whose leaders are not preferred is still healthy."""
        deadline = time.monotonic() + self.timeouts.broker
        while not self.isr_full():
            if time.monotonic() >= deadline:
                log.warning(
                    "scenario %s: replicas not in sync; leaders left as they are",
                    self.scenario_name,
                )
                return
            time.sleep(POLL_S)
        try:
            self.admin().elect_leaders(ElectionType.PREFERRED, None).result(timeout=30)
        except Exception as exc:  # per-partition "election not needed" is an error here
            log.info("scenario %s: preferred leader election: %s", self.scenario_name, exc)

    def close(self) -> list[str]:
        """Leave nothing behind: processes, broker faults, topics, Redis keys, temp files.

        Returns what could not be restored; a second call returns the first call's answer."""
        if self._closed is not None:
            return self._closed
        problems: list[str] = []
        # Frozen brokers first: a producer cannot flush into a frozen leader.
        for node in sorted(self.paused_nodes):
            with contextlib.suppress(LocalClusterError):
                self.resume_node(node)
        self.stop_processes()
        problems += self.restore()
        if not self.keep:
            self.delete_topics()
            for probe in self.probes:
                with contextlib.suppress(redis.RedisError):
                    probe.store.reset()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._closed = problems
        return problems


# ---------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------


class Scenario:
    """A fault scenario: probes (sentinels under test), a fault, a recovery, expectations.

    ``run()`` is the template: start, wait for records, ``inject()``, ``recover()``, settle,
    judge each probe against ``expectations()``. Subclasses fill in the steps.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    broker_fault: ClassVar[bool] = False
    partitions: ClassVar[int] = 3

    def variants(self) -> list[tuple[str, Profile]]:
        """``(key, profile)`` of every sentinel under test; default: the three semantics."""
        return [(semantic, DEFAULT_PROFILES[semantic]) for semantic in SEMANTICS]

    def semantics(self) -> list[str]:
        return sorted({p.semantic for _key, p in self.variants()}, key=SEMANTICS.index)

    def layout(self, probe: Probe) -> list[str]:
        """Role groups of ``probe``, one process each."""
        return ["producer", probe.consumer_roles, "checker"]

    def leader(self, lab: Lab) -> int | None:
        """The broker that must lead every sentinel partition (broker scenarios), else None."""
        return None

    def preflight(self, lab: Lab) -> None:
        """Refuse or abort before anything starts."""
        if self.broker_fault:
            lab.require_local(self.name)
            lab.check_local_ready()
        brokers = lab.check_reachable()
        lab.replication_factor = min(3, len(brokers))

    def run(self, lab: Lab) -> list[SemanticResult]:
        lab.progress("creating topics and starting the sentinels", 2)
        probes = self.start(lab)
        lab.progress("waiting for records to flow", 10)
        lab.wait_flow(probes)
        lab.progress("injecting the fault", 25)
        self.inject(lab, probes)
        lab.progress("recovering", 45)
        self.recover(lab, probes)
        lab.progress("stopping the producers; waiting for the checkers to settle", 80)
        lab.settle(probes)
        lab.progress("judging", 97)
        return [probe.judge(self.expectations(probe)) for probe in probes]

    def start(self, lab: Lab) -> list[Probe]:
        leader = self.leader(lab)
        probes = []
        for key, profile in self.variants():
            probe = Probe(lab, key, profile, partitions=self.partitions)
            lab.probes.append(probe)
            lab.create_topics(probe, leader)
            probes.append(probe)
        for probe in probes:
            for roles in self.layout(probe):
                probe.start(roles)
        return probes

    def inject(self, lab: Lab, probes: list[Probe]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        lab.wait_progress(probes, "after the fault")

    def expectations(self, probe: Probe) -> list[Expect]:
        return promise(probe.semantic)


class ConsumerCrash(Scenario):
    """The consumer process is SIGKILLed by its fault hook at ``point``, then restarted.

    At-most-once and at-least-once: the hook in the consumer loop kills the process at the
    crash point, holding a batch; the fault event says which records. Exactly-once has no
    gap between commit and processing: its copier+verifier process is SIGKILLed from outside
    at whatever point it is."""

    point: ClassVar[str] = ""

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        for probe in probes:
            proc = probe.procs[probe.consumer_roles]
            proc.expect_exit = True
            if probe.spec.eos:
                proc.kill()
                probe.mark_fault("copier and verifier process SIGKILLed from outside", pid=proc.pid)
            else:
                probe.store.arm_fault(self.point)
        for probe in probes:
            if not probe.spec.eos:
                self.await_hook(lab, probe)

    def await_hook(self, lab: Lab, probe: Probe) -> None:
        proc = probe.procs[probe.consumer_roles]
        lab.wait(
            lambda: not proc.alive() and probe.events("fault"),
            lab.timeouts.fault,
            f"the {probe.key} consumer to reach its {self.point!r} crash point",
        )
        event = probe.events("fault")[0]
        probe.mark_fault(
            f"consumer SIGKILLed by its fault hook at {self.point!r}, holding a batch of "
            f"{event['batch']} records",
            point=self.point,
            batch=event["batch"],
            ranges=event["ranges"],
            pid=event.get("pid"),
        )

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        for probe in probes:
            probe.start(probe.consumer_roles)
        lab.wait_progress(probes, "after the consumer restart")


class CrashAfterCommit(ConsumerCrash):
    name = "consumer-crash-after-commit"
    title = "Consumer crash after commit"
    description = (
        "The consumer is SIGKILLed right after committing a batch. At-most-once commits "
        "before processing, so it loses exactly that batch and duplicates nothing; "
        "at-least-once had already processed it; exactly-once has no such gap."
    )
    point = "after-commit"

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.semantic == AT_MOST_ONCE:
            return override(base, Expect("lost", value=probe.detail["batch"]), Expect("pending"))
        if probe.semantic == AT_LEAST_ONCE:
            return override(base, Expect("duplicated"))
        return base


class CrashBeforeCommit(ConsumerCrash):
    name = "consumer-crash-before-commit"
    title = "Consumer crash before commit"
    description = (
        "The consumer is SIGKILLed right after processing a batch. At-least-once processes "
        "before committing, so the restarted consumer processes exactly that batch again and "
        "loses nothing; at-most-once had already committed it; exactly-once has no such gap."
    )
    point = "after-process"

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.semantic == AT_LEAST_ONCE:
            return override(base, Expect("duplicated", value=probe.detail["batch"]))
        if probe.semantic == AT_MOST_ONCE:
            probe.notes.append(
                "at-most-once commits before it processes: this crash came after both, so it "
                "lost nothing by itself (its acks=0 producer still may)"
            )
        return base


class BrokerScenario(Scenario):
    """A fault on the broker leading every sentinel partition (one partition per topic).

    The leader is chosen, not found: every sentinel topic is created with the same replica
    assignment, led by a node that is not the active KRaft controller, so one fault hits every
    semantic at the same moment and the controller quorum stays out of the picture."""

    broker_fault = True
    partitions = 1

    def layout(self, probe: Probe) -> list[str]:
        return ["producer", probe.consumer_roles + ",checker"]

    def leader(self, lab: Lab) -> int | None:
        local = lab.require_local(self.name)
        controller = local.status()["controller"]
        choices = [n for n in sorted(local.nodes) if n != controller]
        return choices[-1] if choices else sorted(local.nodes)[-1]

    def start(self, lab: Lab) -> list[Probe]:
        probes = super().start(lab)
        lab.victim = self.leader_now(lab, probes)
        return probes

    def leader_now(self, lab: Lab, probes: list[Probe]) -> int:
        local = lab.require_local(self.name)
        leaders = {local.leader_of(t, 0) for p in probes for t in p.topics}
        if len(leaders) != 1 or -1 in leaders:
            raise ScenarioAborted(f"sentinel partitions are not led by one broker: {leaders}")
        return leaders.pop()

    def wait_new_leader(self, lab: Lab, probes: list[Probe], old: int) -> None:
        local = lab.require_local(self.name)
        topics = [t for p in probes for t in p.topics]

        def elected() -> bool:
            try:
                return all(local.leader_of(t, 0) not in (old, -1) for t in topics)
            except (LocalClusterError, KafkaException):
                return False

        lab.wait(elected, lab.timeouts.fault, f"a new leader after node {old} failed")


class LostAcksAndRetries(BrokerScenario):
    name = "lost-acks-and-retries"
    title = "Lost acknowledgements and retries"
    description = (
        "The partition leader is frozen (SIGSTOP) longer than the producers' request timeout, "
        "so produce requests time out and are retried, then thawed (SIGCONT). At-least-once "
        "without idempotence may write a retried batch twice; with enable.idempotence=true it "
        "must not; at-most-once may lose."
    )
    pause_s = 5.0
    # librdkafka times a produce request out locally after socket.timeout.ms (request.timeout.ms
    # is the broker's wait for replicas); delivery.timeout.ms leaves room for retries.
    fast_timeouts: ClassVar[dict[str, str]] = {
        "socket.timeout.ms": "1500",
        "request.timeout.ms": "1500",
        "delivery.timeout.ms": "20000",
        "retry.backoff.ms": "100",
    }

    def variants(self) -> list[tuple[str, Profile]]:
        alo = DEFAULT_PROFILES[AT_LEAST_ONCE]
        return [
            (AT_MOST_ONCE, DEFAULT_PROFILES[AT_MOST_ONCE]),
            (
                "alo-idempotence-off",
                alo.variant(
                    "at-least-once, idempotence off",
                    producer={
                        **self.fast_timeouts,
                        "enable.idempotence": "false",
                        "max.in.flight.requests.per.connection": "5",
                    },
                ),
            ),
            (
                "alo-idempotence-on",
                alo.variant(
                    "at-least-once, idempotence on",
                    producer={**self.fast_timeouts, "enable.idempotence": "true"},
                ),
            ),
            (EXACTLY_ONCE, DEFAULT_PROFILES[EXACTLY_ONCE]),
        ]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        victim = lab.victim
        lab.pause_node(victim)
        for probe in probes:
            probe.mark_fault(
                f"leader node {victim} frozen (SIGSTOP) for {self.pause_s:g}s", node=victim
            )
        lab.hold(self.pause_s, f"node {victim} to stay frozen for {self.pause_s:g}s")
        lab.resume_node(victim)
        for probe in probes:
            timeouts = self.request_timeouts(probe)
            probe.detail["request_timeouts"] = timeouts
            probe.notes.append(f"{timeouts} produce requests timed out during the freeze")

    @staticmethod
    def request_timeouts(probe: Probe) -> int:
        """Produce requests librdkafka timed out (its REQTMOUT log lines), so retried."""
        proc = probe.procs["producer"]
        try:
            text = proc.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Timed out ProduceRequest in flight")

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.key == "alo-idempotence-on":
            return override(base, Expect("duplicated"))
        if probe.key == "alo-idempotence-off":
            return override(base, Expect("reordered", "may"))
        return base


class LeaderKill(BrokerScenario):
    name = "leader-kill"
    title = "Leader killed"
    description = (
        "The leader of the sentinel partitions is SIGKILLed under load, a new leader is "
        "elected, then the node is restarted. acks=all with min.insync.replicas=2 loses "
        "nothing acked; acks=1 and acks=0 report what they lost."
    )

    def variants(self) -> list[tuple[str, Profile]]:
        alo = DEFAULT_PROFILES[AT_LEAST_ONCE]
        return [
            ("acks-0", DEFAULT_PROFILES[AT_MOST_ONCE]),
            (
                "acks-1",
                alo.variant(
                    "at-least-once, acks=1", producer={"acks": "1", "enable.idempotence": "false"}
                ),
            ),
            ("acks-all", alo),
            (EXACTLY_ONCE, DEFAULT_PROFILES[EXACTLY_ONCE]),
        ]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        victim = lab.victim
        lab.kill_node(victim)
        for probe in probes:
            probe.mark_fault(f"leader node {victim} SIGKILLed", node=victim)

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        victim = lab.victim
        self.wait_new_leader(lab, probes, victim)
        lab.wait_progress(probes, "under the new leader")
        lab.progress(f"restarting node {victim}", 60)
        lab.start_node(victim)
        lab.wait_in_sync([t for p in probes for t in p.topics])
        lab.wait_progress(probes, f"after node {victim} rejoined")

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.key == "acks-1":
            return override(base, Expect("lost", "may"), Expect("pending", "may"))
        return base


class RollingRestart(BrokerScenario):
    name = "rolling-restart"
    title = "Rolling restart"
    description = (
        "Every broker is restarted cleanly in turn (SIGTERM, controlled shutdown) under load, "
        "each once every replica is back in sync. At-least-once and exactly-once lose "
        "nothing; exactly-once duplicates nothing."
    )
    partitions = 3

    def leader(self, lab: Lab) -> int | None:
        return None

    def start(self, lab: Lab) -> list[Probe]:
        return Scenario.start(self, lab)

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        local = lab.require_local(self.name)
        nodes = sorted(local.nodes)
        for probe in probes:
            probe.mark_fault(f"nodes {nodes} restarted cleanly one by one", nodes=nodes)
        for i, node in enumerate(nodes):
            lab.progress(
                f"restarting node {node} ({i + 1}/{len(nodes)})", 25 + 50 * i // len(nodes)
            )
            lab.stop_node(node)
            lab.start_node(node)
            lab.wait_in_sync()
            lab.wait_progress(probes, f"after node {node} restarted")

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        pass


class TransactionFencing(Scenario):
    name = "transaction-fencing"
    title = "Transaction fencing"
    description = (
        "Exactly-once only. (a) The copier is SIGKILLed in the middle of a transaction and a "
        "new instance with the same transactional.id takes over; (b) a second copier starts "
        "while the first runs, and the first is fenced. No loss, no duplicate, no aborted read."
    )

    def variants(self) -> list[tuple[str, Profile]]:
        eos = DEFAULT_PROFILES[EXACTLY_ONCE]
        return [
            ("crash-mid-transaction", eos.variant("exactly-once, copier crash mid-transaction")),
            ("two-instances", eos.variant("exactly-once, two copier instances")),
        ]

    def layout(self, probe: Probe) -> list[str]:
        return ["producer", "copier", "verifier,checker"]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        crash, twins = probes
        crash.procs["copier"].expect_exit = True
        crash.store.arm_fault("mid-transaction")
        first = twins.procs["copier"]
        first.expect_exit = True
        twins.start("copier", name="copier-2")
        twins.mark_fault("a second copier started with the same transactional.id", pid=first.pid)
        self.await_crash(lab, crash)
        lab.wait(
            lambda: not first.alive() and twins.events("fenced"),
            lab.timeouts.fault,
            "the first copier to be fenced and stop",
        )
        twins.extra["fenced"] = len(twins.events("fenced"))
        twins.notes.append(twins.events("fenced")[0]["message"])

    def await_crash(self, lab: Lab, probe: Probe) -> None:
        proc = probe.procs["copier"]
        lab.wait(
            lambda: not proc.alive() and probe.events("fault"),
            lab.timeouts.fault,
            "the copier to reach its 'mid-transaction' crash point",
        )
        event = probe.events("fault")[0]
        probe.mark_fault(
            f"copier SIGKILLed mid-transaction with {event['batch']} records in the open "
            f"transaction",
            batch=event["batch"],
            token=event.get("token"),
        )

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        crash = probes[0]
        crash.start("copier", name="copier-2")
        lab.wait_progress(probes, "after the takeover")
        crash.extra["txn_aborted_events"] = len(crash.events("txn-aborted"))

    def expectations(self, probe: Probe) -> list[Expect]:
        base = override(promise(EXACTLY_ONCE), Expect("processed", ref="acked"))
        if probe.key == "two-instances":
            return [*base, Expect("fenced", value=1)]
        return base


SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        CrashAfterCommit,
        CrashBeforeCommit,
        LostAcksAndRetries,
        LeaderKill,
        RollingRestart,
        TransactionFencing,
    )
}


def catalog() -> list[dict[str, Any]]:
    """Every scenario as plain data, in registry order (for the CLI and the pages)."""
    out = []
    for name, cls in SCENARIOS.items():
        scenario = cls()
        out.append(
            {
                "name": name,
                "title": cls.title,
                "description": cls.description,
                "broker_fault": cls.broker_fault,
                "semantics": scenario.semantics(),
                "variants": [
                    {"key": key, "semantic": p.semantic, "profile": p.name}
                    for key, p in scenario.variants()
                ],
            }
        )
    return out


def run_scenario(name: str, lab: Lab) -> ScenarioOutcome:
    """Run scenario ``name`` in ``lab``; never raises for a failed or aborted run.

    passed: every probe's observation matched its expectations; failed: at least one did
    not; aborted: the run could not complete (refused, cluster not ready, timeout, crash,
    cancelled) or the cluster could not be restored afterwards; ``reason`` says which."""
    started = time.time()
    if name not in SCENARIOS:
        return ScenarioOutcome(
            name, ABORTED, f"no scenario named {name!r}", [], started, time.time()
        )
    lab.scenario_name = name
    results: list[SemanticResult] = []
    state, reason, problems = ABORTED, "", []
    try:
        with lab.lock():
            try:
                results, state = _run(SCENARIOS[name](), lab), ""
            except ScenarioAborted as exc:
                reason = str(exc)
            except Exception as exc:  # a crash of the lab itself ends the run, with the reason
                log.exception("scenario %s crashed", name)
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                problems = lab.close()
    except ScenarioAborted as exc:  # the lock is held by another run
        reason = str(exc)
        lab.close()
    if problems:
        reason = "; ".join(filter(None, [reason, "cluster not restored: " + "; ".join(problems)]))
        state = ABORTED
    if not state:
        state = PASSED if all(r.matched for r in results) else FAILED
    return ScenarioOutcome(name, state, reason, results, started, time.time())


def _run(scenario: Scenario, lab: Lab) -> list[SemanticResult]:
    scenario.preflight(lab)
    return scenario.run(lab)
