"""The soak's run: ``Soak`` starts its Redis, its two Celery workers and six sentinels, runs
the seeded fault plan with quiet periods between, and at the end reads every topic to its end
and judges each sentinel (``python -m workers.lab.soak``: ``workers.lab.soak.__main__``)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import redis

from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from workers.engine.profiles import DEFAULT_PROFILES, Profile
from workers.lab.lab import Lab
from workers.lab.limits import Load, Timeouts
from workers.lab.outcome import ProgressFn, ScenarioAborted
from workers.lab.probes import Probe
from workers.lab.soak import watch
from workers.lab.soak.faults import COST_S, Faults, Plan, Record, Step, kinds_for, plan
from workers.lab.soak.procs import SHARED, SoakRedis, SoakWorkers, sentinel_processes
from workers.lab.soak.report import write_report
from workers.lab.soak.truth import StreamTap, compare, kafka_truth, read_topics
from workers.localkafka.cluster import LocalCluster
from workers.store.connection import connect
from workers.store.sentinel import DRAIN_DONE
from workers.system import LOCAL_DIR

log = logging.getLogger(__name__)

# Each sentinel writes 10 records/s per partition (the default of a sentinel): six of them,
# 21 partitions, ~210 records/s in all, on a 2-core machine shared with the cluster.
LOAD = Load(rate_per_partition=10.0, grace_seconds=10.0, progress_records=20)


def close_reserve_s(minutes: float) -> float:
    """Time kept for the end: producers stopped, checkers settled, workers stopped, every
    topic read to its end (longer the longer the soak), the topics deleted."""
    return 25.0 + minutes


def report_dir_for(name: str) -> Path:
    """Where a soak named ``name`` keeps its report (and its Redis' files while it runs)."""
    return LOCAL_DIR / "soak" / name


def variants() -> list[tuple[str, Profile, int, bool]]:
    """``(key, profile, partitions, weak)``: the three defaults, then the variants."""
    alo = DEFAULT_PROFILES[AT_LEAST_ONCE]
    return [
        ("amo", DEFAULT_PROFILES[AT_MOST_ONCE], 3, False),
        ("alo", alo, 3, False),
        ("eos", DEFAULT_PROFILES[EXACTLY_ONCE], 3, False),
        (
            "alo-acks1",
            alo.variant(
                "at-least-once, acks=1", producer={"acks": "1", "enable.idempotence": "false"}
            ),
            3,
            True,
        ),
        (
            "alo-idem-off",
            alo.variant("at-least-once, idempotence off", producer={"enable.idempotence": "false"}),
            3,
            True,
        ),
        ("eos-6p", DEFAULT_PROFILES[EXACTLY_ONCE], 6, False),
    ]


class Soak:
    def __init__(
        self,
        *,
        minutes: float,
        seed: int,
        report_dir: Path,
        bootstrap_servers: str,
        local: LocalCluster,
        redis_port: int,
        hosting: str = SHARED,
        kinds: tuple[str, ...] | None = None,
        quiet: tuple[float, float] = (45.0, 90.0),
        repeat: bool = True,
        progress: ProgressFn | None = None,
    ) -> None:
        """``repeat``: after every kind ran once, repeat the second half's faults as time
        allows (a short soak that must fit its time runs each fault once). ``hosting``: how
        the workers host the sentinels (``procs.HOSTINGS``); ``kinds`` (default: every fault
        for that hosting, ``faults.kinds_for``) must apply to it."""
        applicable = kinds_for(hosting)
        kinds = applicable if kinds is None else kinds
        if wrong := [k for k in kinds if k not in applicable]:
            raise ValueError(f"fault(s) {wrong} do not apply to {hosting} hosting")
        self.minutes = minutes
        self.seed = seed
        self.report_dir = report_dir
        self.plan: Plan = plan(seed, kinds, quiet, repeat=repeat)
        self.kinds = kinds
        self.report_dir.mkdir(parents=True, exist_ok=True)
        work = report_dir / "work"
        self.redis = SoakRedis(redis_port, work / "redis")
        self.redis.start()
        try:
            self.lab = Lab(
                bootstrap_servers=bootstrap_servers,
                redis_url=self.redis.url,
                local=local,
                load=LOAD,
                timeouts=Timeouts(),
                progress=progress,
                workdir=work,
            )
        except Exception:
            self.redis.stop()
            raise
        self.lab.scenario_name = "soak"
        self.client = connect(self.redis.url)
        self.workers = SoakWorkers(work, self.redis.url, hosting=hosting)
        self.probes: list[Probe] = []
        self.weak: dict[str, bool] = {}
        self.first_pids: dict[int, int | None] = {}  # each sentinel's first process
        self.first_hosts: dict[str, int] = {}  # each worker's first shared host
        self.names: dict[int, str] = {}
        self._t0 = time.time()
        self.faults = Faults(self, self.lab, self.workers, self.redis)
        self.watcher: watch.Watcher | None = None
        self.second_half_from = self._t0
        self.tap: StreamTap | None = None

    def elapsed(self) -> float:
        return round(time.time() - self._t0, 1)

    # -- what the faults ask (``faults.SoakRun``) ----------------------------------------------
    def name(self, sid: int) -> str:
        return self.names[sid]

    def processed(self, sid: int) -> int:
        assert self.watcher is not None, "the faults run after start()"
        return self.watcher.processed(sid)

    def first_pid(self, sid: int) -> int | None:
        return self.first_pids.get(sid)

    def first_host(self, worker: str) -> int | None:
        return self.first_hosts.get(worker)

    def main_pid(self, sid: int) -> int | None:
        return sentinel_processes({sid}).get((sid, "main"))

    def kill_pid(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def new_run_since(self, sid: int, since: float) -> bool:
        """A producer run of ``sid`` started after ``since`` (run ids carry their start in ms)."""
        store = next(p.store for p in self.probes if p.spec.id == sid)
        try:
            return any((run >> 16) / 1000 > since for run in store.runs())
        except redis.RedisError:
            return False

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the soak end to end; the report (also written to ``report_dir``)."""
        self._t0 = time.time()
        deadline = self._t0 + self.minutes * 60
        print(f"soak: {self.minutes:g} min, plan {self.plan.describe()}", flush=True)
        report: dict[str, Any] = {}
        aborted = ""
        try:
            with self.lab.lock():
                self.lab.require_local("soak")
                self.lab.check_local_ready()
                self.lab.replication_factor = min(3, len(self.lab.check_reachable()))
                self.start()
                self.lab.progress("records flowing; faults start", 5)
                self.run_plan(deadline - close_reserve_s(self.minutes))
                self.lab.progress("stopping the producers; waiting for the checkers", 85)
                report = self.finish()
        except ScenarioAborted as exc:
            aborted = str(exc)
            log.error("soak aborted: %s", exc)
        finally:
            problems = self.close()
        if aborted or problems:
            report.setdefault("checks", []).append(
                watch.Check(
                    "the soak completed and the cluster was restored",
                    "soak",
                    False,
                    "; ".join(filter(None, [aborted, *problems])),
                    "",
                ).to_dict()
            )
            report["passed"] = False
        report.setdefault("seed", self.seed)
        report.setdefault("minutes", self.minutes)
        write_report(report, self.report_dir)
        self.lab.progress("report written", 100)
        return report

    def start(self) -> None:
        for key, profile, partitions, weak in variants():
            probe = Probe(self.lab, key, profile, partitions=partitions)
            self.lab.probes.append(probe)
            self.lab.create_topics(probe)
            self.probes.append(probe)
            self.weak[key] = weak
            self.names[probe.spec.id] = key
        self.tap = StreamTap(self.client, [p.spec for p in self.probes])
        self.tap.start()
        self.watcher = watch.Watcher(self.client, self.names, self.workers, self.redis)
        self.watcher.start()
        self.workers.publish([p.spec for p in self.probes])
        self.workers.start_all()
        self.lab.wait_flow(self.probes)
        # Each sentinel's first process, as flowing began: one that never exited.
        self.first_pids = {p.spec.id: self.main_pid(p.spec.id) for p in self.probes}
        self.first_hosts = self.workers.hosts()

    def run_plan(self, until: float) -> None:
        middle = self._t0 + (until - self._t0) / 2
        for step in self.plan.first:  # every kind once, even past the target time
            self.step(step, until)
        self.second_half_from = max(time.time(), middle)
        for step in self.plan.second:
            if time.time() + COST_S[step.kind] + step.quiet_s > until:
                break
            self.step(step, until)
        self.quiet(until - time.time(), "quiet until the end")

    def step(self, step: Step, until: float) -> None:
        percent = 5 + int(80 * (time.time() - self._t0) / max(1.0, until - self._t0))
        self.lab.progress(f"fault {step.kind}", percent)
        record = self.faults.run(step)
        print(
            f"soak: t+{record.started:.0f}s {record.kind} {record.detail} -> {record.takeovers}",
            flush=True,
        )
        self.quiet(min(step.quiet_s, until - time.time()), f"quiet after {step.kind}")

    def quiet(self, seconds: float, what: str) -> None:
        if seconds > 0:
            self.lab.hold(seconds, what)

    def finish(self) -> dict[str, Any]:
        # The producers alone stop, wherever they run (a process of their own, a thread of a
        # shared host): the consuming roles and the checkers go on with what is left.
        for probe in self.probes:
            probe.store.request_drain()
        # Their last delivery reports reach the acks stream only as they stop (a producer
        # with retries may take its delivery timeout): settling starts after that.
        self.lab.wait(
            lambda: all(p.store.drain_state() == DRAIN_DONE for p in self.probes),
            self.lab.timeouts.stop + 30,
            "the producers to drain",
        )
        self.lab.settle(self.probes)
        self.workers.stop_all()
        assert self.watcher is not None and self.tap is not None
        self.watcher.stop()
        completeness = self.tap.finish()
        self.lab.progress("reading every topic to its end", 92)
        return self.judge(completeness)

    def judge(self, completeness: dict[int, dict[str, Any]]) -> dict[str, Any]:
        assert self.watcher is not None and self.tap is not None
        samples = self.watcher.samples
        checks: list[watch.Check] = []
        sentinels: dict[str, Any] = {}
        for probe in self.probes:
            key, sid = probe.key, probe.spec.id
            totals = probe.totals()
            truth = self.tap.truths[sid]
            recount = truth.counts(set(probe.store.runs()))
            comparison = compare(recount, totals)
            topics = read_topics(self.lab.consumer_conf(), probe.spec)
            kafka = kafka_truth(truth, topics, probe.store.aborted_txns())
            windows = probe.store.windows(self._t0)
            judged = watch.judged(probe.semantic, self.weak[key])
            mine = watch.truth_checks(key, comparison, completeness[sid])
            if judged:
                mine += watch.promise_checks(key, probe.semantic, totals, kafka)
                mine += watch.verdict_checks(key, samples.status[sid], windows)
            mine += watch.monotonic_checks(key, samples.status[sid])
            checks += mine
            sentinels[key] = {
                "id": sid,
                "semantic": probe.semantic,
                "profile": probe.profile.name,
                "producer": probe.profile.producer,
                "partitions": probe.spec.partitions,
                "judged": judged,
                "totals": totals,
                "recount": recount,
                "comparison": comparison,
                "kafka": kafka,
                "verdicts_seen": samples.verdicts_seen[sid],
                "windows": [compact_window(w) for w in windows],
                "events": [
                    e
                    for e in probe.store.events(200)
                    if e.get("kind") in ("verdict", "run", "fenced", "stuck", "state-lost")
                ],
            }
        since = self.second_half_from
        mem_checks, memory = watch.memory_checks(samples, since, time.time())
        checks += mem_checks
        faults = [r.to_dict() for r in self.faults.records]
        for record in self.faults.records:
            for t in record.takeovers:
                checks.append(
                    watch.Check(
                        f"back to progress after {record.kind}",
                        t["sentinel"],
                        t["ok"],
                        t["seconds"],
                        f"<= {t['bound_s']:g} s",
                    )
                )
        return {
            "seed": self.seed,
            "minutes": self.minutes,
            "kinds": list(self.kinds),
            "started_at": self._t0,
            "finished_at": time.time(),
            "second_half_from": since - self._t0,
            "plan": self.plan.to_dict(),
            "faults": faults,
            "takeover_max_s": takeover_max(self.faults.records),
            "sentinels": sentinels,
            "memory": memory,
            "checks": [c.to_dict() for c in checks],
            "passed": all(c.ok for c in checks),
        }

    def close(self) -> list[str]:
        """Stop everything the soak started and restore the cluster; what could not be."""
        self.workers.stop_all()
        for thread in (self.watcher, self.tap):
            if thread is not None:
                thread.stopping.set()
        problems = self.lab.close()
        self.redis.stop()
        return problems


def takeover_max(records: list[Record]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for record in records:
        for t in record.takeovers:
            seconds = t["seconds"]
            if seconds is None:
                out[record.kind] = None
            elif out.get(record.kind, 0.0) is not None:
                out[record.kind] = max(out.get(record.kind) or 0.0, seconds)
    return out


def compact_window(w: dict[str, Any]) -> list[Any]:
    """[t, verdict, processed/s, pending, e2e p99 ms, lost, duplicated, aborted_read]."""
    c = w.get("counts", {})
    return [
        round(w["t"], 1),
        w.get("verdict", ""),
        c.get("processed", 0),
        c.get("pending", 0),
        (w.get("e2e") or {}).get("p99"),
        c.get("lost", 0),
        c.get("duplicated", 0),
        c.get("aborted_read", 0),
    ]
