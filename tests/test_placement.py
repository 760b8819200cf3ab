"""Placement of sentinels across workers: fair shares, caps, hand-over, and never twice.

Real supervisors, real leases in a real Redis, real child processes; the child is a plain
process standing in for a sentinel (what runs inside is tested in
tests/integration/test_hosting.py), so that many sentinels and several workers cost nothing.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.sentinels import wait_until
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.runtime.supervisor import SentinelSupervisor
from workers.store import Lease, WorkerRegistry, connect, lease_holders

FIRST_ID = 880_000


class Worker(SentinelSupervisor):
    """A supervisor whose sentinel processes sleep until SIGTERM."""

    def child_argv(self, spec_path: Path, lease: Lease) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(600)"]

    def running(self) -> set[int]:
        return {sid for sid, child in self.children.items() if child.proc.poll() is None}


@pytest.fixture
def placement_redis(redis_url):
    """A database of its own: the worker registry is global to a Redis database."""
    url = urlunsplit(urlsplit(redis_url)._replace(path="/13"))
    client = connect(url)
    client.flushdb()
    yield url, client
    client.flushdb()


@pytest.fixture
def fleet(placement_redis, tmp_path):
    url, client = placement_redis
    specs = {}
    started: list[Worker] = []

    def enable(count: int) -> None:
        specs.clear()
        for sid in range(FIRST_ID, FIRST_ID + count):
            specs[sid] = SentinelSpec(
                id=sid,
                name=f"placed-{sid}",
                profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
                bootstrap_servers="127.0.0.1:1",
                topic=f"placed-{sid}",
                hosting="own",  # a process each: here, one that sleeps
            )

    def worker(name: str, cap: int = 0) -> Worker:
        w = Worker(
            client,
            lambda: dict(specs),
            redis_url=url,
            worker_id=f"host:{name}:0",
            spec_dir=tmp_path / name,
            cap=cap,
        )
        started.append(w)
        return w

    yield enable, worker, client
    for w in started:
        w.stop(timeout=1)


def rounds(workers: list[Worker], client: redis.Redis, count: int) -> None:
    """Tick every worker ``count`` times in turn, checking after each tick that no sentinel
    runs in two places and that every process runs under a lease its worker holds."""
    for _ in range(count):
        for w in workers:
            w.tick()
            running = Counter(sid for x in workers for sid in x.running())
            assert all(n == 1 for n in running.values()), f"run twice: {running}"
            holders = lease_holders(client, running)
            for x in workers:
                for sid in x.running():
                    assert holders[sid] == x.worker_id, (sid, holders[sid], x.worker_id)


def held(workers: list[Worker]) -> list[int]:
    return [len(w.leases) for w in workers]


def test_it_hands_a_share_to_a_worker_that_joins_without_running_anything_twice(fleet):
    enable, worker, client = fleet
    enable(7)
    a = worker("a")
    rounds([a], client, 1)
    assert held([a]) == [7]  # alone, it runs them all: nothing is left unrun
    b = worker("b")
    rounds([a, b], client, 12)
    assert sorted(held([a, b])) == [3, 4]
    c = worker("c")
    rounds([a, b, c], client, 12)
    assert sorted(held([a, b, c])) == [2, 2, 3]
    assert set().union(*(w.running() for w in (a, b, c))) == set(range(FIRST_ID, FIRST_ID + 7))


def test_it_respects_each_workers_cap_and_runs_the_rest_elsewhere(fleet):
    enable, worker, client = fleet
    enable(6)
    a = worker("a", cap=2)
    rounds([a], client, 2)
    assert held([a]) == [2]  # four wait for a worker with room
    b = worker("b")
    rounds([a, b], client, 6)
    assert held([a, b]) == [2, 4]


def test_it_gives_a_stopped_workers_sentinels_to_the_others(fleet):
    enable, worker, client = fleet
    enable(5)
    a, b = worker("a"), worker("b")
    rounds([a, b], client, 8)
    assert sorted(held([a, b])) == [2, 3]
    a.stop(timeout=5)
    assert "host:a:0" not in WorkerRegistry(client).alive(60_000)  # it said goodbye
    rounds([b], client, 1)
    assert held([b]) == [5]


def test_it_hands_twenty_sentinels_of_a_dead_worker_over_within_the_lease_period(
    fleet, monkeypatch
):
    """Two workers share 20 sentinels; one dies (its sentinel processes with it, its leases
    left to expire): the other runs all 20 once the leases are out, not before, and none
    ever runs in two places."""
    lease_ms = 3000
    monkeypatch.setattr("workers.runtime.supervisor.LEASE_MS", lease_ms)
    enable, worker, client = fleet
    enable(0)
    a, b = worker("a"), worker("b")
    rounds([a, b], client, 1)  # both beating first: each takes its share, no hand-overs
    enable(20)
    rounds([a, b], client, 10)
    assert held([a, b]) == [10, 10]
    orphaned = set(a.leases)
    for child in a.children.values():
        child.proc.kill()
        child.proc.wait()
    rounds([b], client, 1)
    assert not orphaned & b.running()  # a's leases still hold: nothing taken early

    def b_runs_all() -> bool:
        rounds([b], client, 1)
        return held([b]) == [20]

    # Within the lease period and a few ticks (slack for a loaded machine spawning processes).
    wait_until(b_runs_all, lease_ms / 1000 + 10, "b runs all 20", interval=0.1)
    assert b.running() == set(range(FIRST_ID, FIRST_ID + 20))


@pytest.mark.django_db
def test_it_says_which_worker_runs_each_sentinel(redis_url, tmp_path, client, alice):
    import io
    import json

    from django.core.management import call_command

    from dashboard.models import Sentinel, ensure_defaults

    rows = sorted(ensure_defaults(), key=lambda s: s.name)
    rows[-1].enabled = False
    rows[-1].save()
    enabled = rows[:-1]
    Sentinel.objects.filter(pk__in=[s.pk for s in enabled]).update(hosting="own")
    enabled = list(Sentinel.objects.filter(pk__in=[s.pk for s in enabled]).order_by("name"))
    w = Worker(
        connect(redis_url),
        lambda: {s.pk: s.to_spec() for s in enabled},
        redis_url=redis_url,
        worker_id="host:placement-test:0",
        spec_dir=tmp_path,
    )
    try:
        w.tick()
        out = io.StringIO()
        call_command("sentinels", "placement", "--json", stdout=out)
        doc = json.loads(out.getvalue())
        assert doc["sentinels"] == {s.name: "host:placement-test:0" for s in enabled}
        assert doc["workers"]["host:placement-test:0"]["held"] == sorted(s.pk for s in enabled)
        out = io.StringIO()
        call_command("sentinels", "placement", stdout=out)
        names = ", ".join(s.name for s in enabled)
        assert f"host:placement-test:0 (2 sentinels, no cap): {names}" in out.getvalue()
        client.force_login(alice)
        page = client.get("/manage/").content.decode()
        assert page.count("on host:placement-test:0") == 2
    finally:
        w.stop(timeout=5)
    out = io.StringIO()
    call_command("sentinels", "placement", stdout=out)
    assert out.getvalue() == f"not running: {names}\n"
