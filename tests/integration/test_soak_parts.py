"""The soak's parts that need no cluster: the auditor's hold on stream trimming, the spec
file workers read, the seeded plan, the ground-truth recount and the judging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SPECS_FILE_ENV, SentinelSpec, specs_from_file
from workers.engine.streams import AckReport, LedgerEntry, PartitionReport
from workers.lab.soak.faults import (
    HOST_KILL,
    KEEP_PROCESSES,
    KINDS,
    SENTINEL_KILL,
    kinds_for,
    plan,
)
from workers.lab.soak.procs import OWN, SHARED, cmdline, host_processes, process_age_s
from workers.lab.soak.run import Soak
from workers.lab.soak.truth import Truth, compare
from workers.lab.soak.watch import monotonic_checks
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore
from workers.system import host_argv, parse_host_argv


def spec(sid: int = 990_010) -> SentinelSpec:
    return SentinelSpec(
        id=sid,
        name="soak-part",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",
        topic="soak-part",
    )


def test_it_trims_the_streams_no_further_than_an_auditor_has_read(redis_url):
    store = SentinelStore(connect(redis_url), 990_011)
    store.reset()
    try:
        store.ensure_epoch()  # as every writer does first: joining later would clear the streams
        ids = [store.r.xadd(store.key("acks"), {"d": str(i)}).decode() for i in range(350)]
        store.audit_read(ids[50], "0-0", ttl_ms=60_000)
        store.save_checkpoint({}, ids[340], "0-0")  # the checker is further than the auditor
        left = [i.decode() for i, _f in store.r.xrange(store.key("acks"))]
        assert left == ids[51:]  # trimmed exactly up to what the auditor has read
        store.r.delete(store.key("audit"))  # no auditor: the checkpoint decides again
        store.save_checkpoint({}, ids[340], "0-0")
        assert len(store.r.xrange(store.key("acks"))) <= 110
        assert store.stream_added("acks") == 350 and store.stream_added("ledger") == 0
    finally:
        store.reset()


def test_it_reads_worker_specs_from_the_file_named_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "specs.json"
    monkeypatch.setenv(SPECS_FILE_ENV, str(path))
    assert specs_from_file() == {}  # no file yet: no sentinel
    path.write_text(json.dumps({"990010": spec().to_dict()}))
    assert specs_from_file() == {990_010: spec()}


def test_it_draws_the_same_plan_from_the_same_seed():
    a, b = plan(42, KINDS, (10, 20)), plan(42, KINDS, (10, 20))
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != plan(43, KINDS, (10, 20)).to_dict()
    assert sorted(s.kind for s in a.first) == sorted(KINDS)  # every kind once, first
    assert {s.kind for s in a.second} <= set(KEEP_PROCESSES)
    assert all(10 <= s.quiet_s <= 20 for s in a.first + a.second)


def test_it_recounts_the_checkers_counters_from_the_raw_streams():
    truth = Truth(spec())
    # Run 7, partition 0: seqs 0-4 acked, 5 failed; 5 never reported by the producer.
    truth.add_acks(AckReport(7, {0: PartitionReport(7, acked=[[0, 4]], failed=[[5, 5]])}))
    truth.add_acks(AckReport(7, {0: PartitionReport(acked=[[5, 5]])}))  # too late
    # Processed: 0, 1, 1 (a duplicate), 3, 5 (a phantom: failed, then processed); 2 and 4 not.
    items = [(7, 0, s, 1, 2) for s in (0, 1, 1, 3, 5)]
    truth.add_ledger(LedgerEntry(items))
    counts = truth.counts({7})
    assert counts == {
        "produced": 7,
        "acked": 5,
        "failed": 1,
        "processed": 5,
        "duplicated": 1,
        "unprocessed": 2,
        "phantom": 1,
        "aborted_read": 0,
    }
    assert truth.counts(set())["processed"] == 0  # an unregistered run's records are foreign
    totals = {
        "produced": 7,
        "acked": 5,
        "failed": 1,
        "processed": 5,
        "duplicated": 1,
        "lost": 1,
        "pending": 1,
        "phantom": 1,
    }
    assert compare(counts, totals)["differ"] == []
    assert compare(counts, {**totals, "duplicated": 0})["differ"] == ["duplicated"]


def test_it_finds_a_counter_that_fell_but_lets_lost_move_to_late():
    def sample(t, **totals):
        return {"t": t, "totals": totals}

    fine = [sample(1, processed=5, lost=2, late=0), sample(2, processed=6, lost=1, late=1)]
    assert monotonic_checks("s", fine)[0].ok
    fell = [sample(1, processed=5), sample(2, processed=4)]
    (check,) = monotonic_checks("s", fell)
    assert not check.ok and check.seen[0]["counter"] == "processed"


def test_it_tells_a_process_that_just_started_from_one_running_for_long():
    """The sentinel kill picks a process older than a quick exit by its age."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        young = process_age_s(proc.pid)
        assert young is not None and 0 <= young < 30
        assert process_age_s(os.getppid()) >= young  # our parent started before us
    finally:
        proc.kill()
        proc.wait()
    assert process_age_s(proc.pid) is None  # gone


def test_each_hosting_has_its_own_process_kill_and_refuses_the_other():
    assert HOST_KILL in kinds_for(SHARED) and SENTINEL_KILL not in kinds_for(SHARED)
    assert SENTINEL_KILL in kinds_for(OWN) and HOST_KILL not in kinds_for(OWN)
    assert set(kinds_for(SHARED)) | set(kinds_for(OWN)) == set(KINDS)
    with pytest.raises(ValueError, match="do not apply to shared hosting"):
        Soak(
            minutes=2,
            seed=1,
            report_dir=Path("unused"),
            bootstrap_servers="127.0.0.1:1",
            local=None,  # refused before anything starts
            redis_port=1,
            kinds=(SENTINEL_KILL,),
        )


def test_it_finds_a_workers_shared_host_by_its_command_line_and_parent(tmp_path):
    """``host_processes`` maps a worker's pid to its shared host (a child started with
    ``workers.system.host_argv``), and ignores another process's children."""
    argv = host_argv(tmp_path / "shared")
    # The host's command line, but a process that only sleeps (``-c`` takes the code; what
    # follows is its sys.argv, as /proc shows it).
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv[1:]])
    try:
        assert parse_host_argv(argv) == str(tmp_path / "shared")
        # Until the child has exec'ed, /proc shows this process's command line for it.
        wait_until(lambda: parse_host_argv(cmdline(child.pid)) is not None, 30, "the child's exec")
        assert host_processes({os.getpid()}) == {os.getpid(): child.pid}
        assert host_processes({child.pid}) == {}
    finally:
        child.kill()
        child.wait(10)
