"""Light sentinels sharing one host process per worker (workers/runtime/host.py): one that
fails restarts alone; one stuck in a client call restarts the host, every lease handed over,
and the others stay exact."""

from __future__ import annotations

import pytest

from tests.integration.test_hosting import (
    Workers,
    _sentinel_processes,
    make_sentinel,
    store_of,
    wait_status,
    workers,  # noqa: F401 - the fixture
)
from tests.support.waiting import wait_until
from workers.engine.profiles import AT_LEAST_ONCE, EXACTLY_ONCE

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def host_pids(group: Workers) -> set[int]:
    return {
        int(line.split()[0]) for line in _sentinel_processes(group.tmp) if "runtime.host" in line
    }


def exact(doc: dict) -> bool:
    totals = doc["totals"]
    return totals["lost"] == 0 and totals["duplicated"] == 0 and doc["verdict"] == "HOLDING"


def test_it_keeps_the_others_in_a_shared_host_exact_when_one_fails_or_hangs(workers):  # noqa: F811
    alo = make_sentinel(AT_LEAST_ONCE, hosting="shared")
    eos = make_sentinel(EXACTLY_ONCE, hosting="shared")
    workers.start("w1", DS_STEP_DEADLINE_S="8")
    for s in (alo, eos):
        wait_status(s, lambda d: d["totals"]["processed"] > 50, 120, f"{s.name} running", workers)
    # Both in one process: one shared host, no process of their own.
    (host,) = host_pids(workers)
    assert [line for line in _sentinel_processes(workers.tmp) if "runtime.run" in line] == []

    # 1. A role of one sentinel fails: that sentinel alone starts again.
    alo_runs, eos_runs = set(store_of(alo).runs()), set(store_of(eos).runs())
    store_of(alo).arm_fault("after-commit", action="raise")
    wait_status(
        alo,
        lambda d: set(store_of(alo).runs()) - alo_runs and d["totals"]["processed"] > 0,
        60,
        "the failed sentinel restarted with a new run",
        workers,
    )
    assert set(store_of(eos).runs()) == eos_runs, "the other sentinel was restarted too"
    assert host_pids(workers) == {host}
    before = store_of(eos).status()["totals"]["processed"]
    doc = wait_status(
        eos, lambda d: d["totals"]["processed"] > before + 50, 60, "eos goes on", workers
    )
    assert exact(doc), (doc["verdict"], doc["totals"], doc.get("reasons"))

    # 2. A client call of one hangs: the host exits, leases handed over, and starts again.
    alo_runs, eos_runs = set(store_of(alo).runs()), set(store_of(eos).runs())
    store_of(eos).arm_fault("mid-transaction", action="hang")
    wait_until(
        lambda: any(e["kind"] == "stuck" for e in store_of(eos).events()), 90, "stuck recorded"
    )
    wait_until(lambda: host_pids(workers) - {host}, 60, "a new shared host")
    for s, runs in ((alo, alo_runs), (eos, eos_runs)):
        doc = wait_status(
            s,
            lambda d, s=s, runs=runs: (
                set(store_of(s).runs()) - runs and d["totals"]["processed"] > 0
            ),
            90,
            f"{s.name} restarted in the new host",
            workers,
        )
        before = doc["totals"]["processed"]
        doc = wait_status(
            s,
            lambda d, b=before: d["totals"]["processed"] > b + 100 and d["totals"]["pending"] < 200,
            90,
            f"{s.name} progress after the restart",
            workers,
        )
        assert doc["totals"]["lost"] == 0, doc["totals"]
    # The hung one's records waited for the stuck step (DEGRADED latency is the truth), but
    # none is lost or doubled; the other holds.
    doc = store_of(eos).status()
    assert doc["totals"]["duplicated"] == 0 and doc["verdict"] != "VIOLATED", doc["totals"]
    doc = store_of(alo).status()
    assert exact(doc), (doc["verdict"], doc["totals"], doc.get("reasons"))
