"""The sentinels under test: a ``Probe`` per semantic (or profile variant), its processes.

A probe is one sentinel with fresh topics and its own Redis keys, run as ``RoleProcess``es
(each a real ``python -m workers.runtime.run --roles ...``); the lab supervises them
(``workers.lab.lab``). At the end a probe judges its final counters against what its
semantic and the fault promise (``Probe.judge()``), and when records were duplicated reads
its topics for where the copies come from (``explain_duplicates()``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException

from workers.clients.kafka import read_to_end, txn_token
from workers.engine import codec, explain
from workers.engine.clientstats import KINDS as CLIENT_STATS_EVENTS
from workers.engine.documents import COUNTERS
from workers.engine.profiles import Profile
from workers.engine.spec import SentinelSpec
from workers.lab.limits import HANG_AFTER_S
from workers.lab.outcome import Expect, SemanticResult
from workers.store.sentinel import SentinelStore
from workers.system import PROJECT_ROOT, redis_env, sentinel_argv, terminate

if TYPE_CHECKING:
    from workers.lab.lab import Lab

# Scenario sentinels get ids far above any database primary key (the codec's id is uint32).
SCENARIO_ID_BASE = 3_000_000_000
# The per-partition counters a result lists when non-zero: the record anomalies, that is
# documents.PARTITION_EVENT_COUNTERS without "failed" (a failed produce is no anomaly of a
# record); not a documents tuple of its own.
ANOMALIES = ("lost", "duplicated", "reordered", "late", "phantom", "aborted_read", "foreign")


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
        argv = sentinel_argv(
            self.probe.spec_path,
            roles=self.roles,
            # A runner that dies (SIGKILL, a lost worker) leaves no sentinel running behind.
            exit_with_parent=True,
            python=self.probe.lab.python,
        )
        with open(self.log_path, "ab") as out:  # the child keeps its own descriptor
            return subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=redis_env(self.probe.lab.redis_url),
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
        return terminate(self.popen, timeout)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Probe:
    """One sentinel under test: a semantic (or a profile variant), its topics, processes, store."""

    def __init__(
        self,
        lab: Lab,
        key: str,
        profile: Profile,
        *,
        partitions: int,
        replication_factor: int | None = None,
        min_insync_replicas: int | None = None,
    ) -> None:
        """``replication_factor`` and ``min_insync_replicas`` default to the lab's (at most 3)
        and 2 (at most the replication factor)."""
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
            client=dict(lab.stored_client),  # the spec file: secrets as stored, never clear
            partitions=partitions,
            replication_factor=(rf := replication_factor or lab.replication_factor),
            min_insync_replicas=min_insync_replicas or min(2, rf),
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
        self.fault_time: float | None = None  # Unix time of the fault, for the explanations
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
        self.fault_time = time.time()
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
        # What the producer's client said of itself (workers.engine.clientstats): how many
        # requests timed out, were retried without idempotence, epochs bumped.
        client = {kind: 0 for kind in CLIENT_STATS_EVENTS}
        own = self.store.events(200)
        for event in own:
            if event.get("kind") in client:
                client[event["kind"]] += int(event.get("count") or 0)
        if any(client.values()):
            self.detail["client_events"] = client
        self.explain_anomalies(counters, doc, own)
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

    def explain_anomalies(
        self, counters: dict[str, int], doc: dict[str, Any], own: list[dict]
    ) -> None:
        """Why each anomaly counted happened (``workers.engine.explain.explain_fault``): the run's
        cluster events on the probe's topic, its own events, its profile; in ``detail`` and,
        in words, in the notes."""
        if self.fault_time is None:
            return
        topic = self.spec.topic
        watch = self.lab.events_watch
        events = watch.events(topic) if watch is not None else []
        events += [explain.sentinel_event(e, topic) for e in own]
        why = explain.explain_fault(
            counters,
            doc.get("partitions") or {},
            topic,
            self.fault_time,
            events,
            self.profile.producer,
            self.profile.consumer,
        )
        if why:
            self.detail["explanations"] = why
            self.notes += [
                f"why {counters[c]} {c.replace('_', ' ')}: {w['text']}" for c, w in why.items()
            ]

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
            token = (txn_token(msg) or b"").decode()
            key = f"{record.run_id}:{record.partition}:{record.seq}"
            copies[key].append({"offset": msg.offset(), "txn": token or None})
    dups = [{"record": k, "copies": v} for k, v in copies.items() if len(v) > 1]
    return dups[:limit]
