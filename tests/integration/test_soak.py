"""A short soak (90 seconds) on the real local cluster: the same runner and judging as the
30-minute one (``python -m workers.lab.soak``, docs/reliability.md), with fewer faults.

Six sentinels hosted by two real Celery workers as production hosts them (in each worker's
shared host), on a Redis of the soak's own; a fixed seed orders the faults (a worker's shared
host SIGKILLed with every sentinel in it, a whole worker SIGKILLed, Redis restarted);
every judged check must pass: nothing acked lost, nothing duplicated or aborted read under
exactly-once, never VIOLATED, back to progress within each fault's bound, counters that never
fall, and every sentinel's counts equal to the ground truth recounted from the raw streams.
The broker faults are the scenario lab's (tests/integration/test_scenarios.py) and the long
soak's. Each fault runs once (no repeats).
"""

from __future__ import annotations

import os

import pytest

from workers.lab.soak.faults import HOST_KILL, REDIS_RESTART, WORKER_KILL
from workers.lab.soak.procs import free_port, parent_pid
from workers.lab.soak.run import Soak
from workers.localkafka.cluster import LocalCluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.soak]

SEED = 20261129
# The soak's whole wall time, start to report (the least it takes): the suite's budget for it.
MINUTES = 1.5
FAULTS = (HOST_KILL, WORKER_KILL, REDIS_RESTART)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with bin/test", pytrace=False)
    return value


def test_it_keeps_every_promise_through_a_short_soak_of_faults(tmp_path):
    local = LocalCluster(env("LOCAL_KAFKA_NAME"), broker_base_port=int(env("LOCAL_KAFKA_PORT")))
    soak = Soak(
        minutes=MINUTES,
        seed=SEED,
        report_dir=tmp_path / "soak",
        bootstrap_servers=env("KAFKA_BOOTSTRAP_SERVERS"),
        local=local,
        redis_port=free_port(),
        kinds=FAULTS,
        quiet=(5.0, 8.0),
        repeat=False,
    )
    report = soak.run()

    failed = [c for c in report["checks"] if not c["ok"]]
    assert report["passed"] and not failed, failed
    # Every planned fault ran and each affected sentinel was measured back to progress.
    assert sorted(f["kind"] for f in report["faults"]) == sorted(FAULTS), report["faults"]
    assert all(f["takeovers"] for f in report["faults"]), report["faults"]
    # The host kill ended a shared host with sentinels in it, and each came back.
    (host_kill,) = (f for f in report["faults"] if f["kind"] == HOST_KILL)
    assert host_kill["detail"]["sentinels"], host_kill
    assert sorted(t["sentinel"] for t in host_kill["takeovers"]) == sorted(
        host_kill["detail"]["sentinels"]
    )
    # The judged sentinels were judged on every claim, the others on their counts alone.
    judged = {k for k, s in report["sentinels"].items() if s["judged"]}
    assert judged == {"alo", "eos", "eos-6p"}
    for key in judged:
        names = {c["name"] for c in report["checks"] if c["sentinel"] == key}
        assert {"lost = 0", "never VIOLATED", "counts equal the ground truth"} <= names, names
    for key, doc in report["sentinels"].items():
        assert doc["totals"]["processed"] > 1000, (key, doc["totals"])
        assert doc["comparison"]["differ"] == [], (key, doc["comparison"])
    html = (tmp_path / "soak" / "soak.html").read_text()
    assert html.count("<svg") == 4 * len(report["sentinels"])
    # The sentinels ran in the workers' shared hosts (sampled for memory), and nothing is
    # left behind: no host process, the cluster whole.
    hosts = {
        pid
        for name, pts in soak.watcher.samples.rss.items()
        if "host" in name
        for _t, pid, _b in pts
    }
    assert hosts, soak.watcher.samples.rss.keys()
    assert not [pid for pid in hosts if parent_pid(pid) is not None], hosts
    status = local.status()
    assert [n["state"] for n in status["nodes"]] == ["running"] * 3, status
