"""Placement of sentinels across workers: fair shares, caps, hand-over, and never twice.

Real supervisors, real leases in a real Redis, real child processes; the child is a plain
process standing in for a sentinel (what runs inside is tested in
tests/integration/test_hosting.py), so that many sentinels and several workers cost nothing.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.support.waiting import wait_until
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.runtime.supervisor import SentinelSupervisor
from workers.store.connection import connect
from workers.store.coordination import Lease, WorkerRegistry, lease_holders
from workers.system import RESPAWN_BACKOFF_MAX_S, RESPAWN_FIRST_BACKOFF_S, respawn_backoff

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
def fleet(placement_redis, tmp_path, monkeypatch):
    url, client = placement_redis
    # Placing sentinels only: no cluster watcher (tests/web/test_cluster_watch.py has those).
    monkeypatch.setenv("DS_WATCH_SAMPLERS", "none")
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


def balance(workers: list[Worker], client: redis.Redis, want: list[int]) -> None:
    """Tick rounds until the workers hold ``want`` (sorted counts), then a few more rounds,
    which must change nothing. A hand-over completes only once the stopped process has
    exited, which takes more rounds on a busy machine: wait for it, never count on it."""
    wait_until(
        lambda: rounds(workers, client, 1) or sorted(held(workers)) == want,
        30,
        f"the workers to hold {want}",
        interval=0.05,
    )
    rounds(workers, client, 4)
    assert sorted(held(workers)) == want


def test_it_hands_a_share_to_a_worker_that_joins_without_running_anything_twice(fleet):
    enable, worker, client = fleet
    enable(7)
    a = worker("a")
    rounds([a], client, 1)
    assert held([a]) == [7]  # alone, it runs them all: nothing is left unrun
    b = worker("b")
    balance([a, b], client, [3, 4])
    c = worker("c")
    balance([a, b, c], client, [2, 2, 3])
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
    balance([a, b], client, [2, 3])
    a.stop(timeout=5)
    assert "host:a:0" not in WorkerRegistry(client).alive(60_000)  # it said goodbye
    rounds([b], client, 1)
    assert held([b]) == [5]


def test_it_takes_a_dead_workers_sentinels_once_it_misses_three_beats(fleet):
    """A worker that died (SIGKILL: no goodbye in the registry) still looks like it holds its
    share until its entry ages out; its sentinel processes released their leases as they
    stopped. The others take all of them as soon as it has missed three of its beats, not
    one more each until the lease time has passed."""
    enable, worker, client = fleet
    enable(6)
    a, b = worker("a"), worker("b")
    a.tick_s = 0.1  # its beats say so
    balance([a, b], client, [3, 3])
    for child in a.children.values():  # what its orphaned sentinels do (run.LeaseGuard)
        child.proc.kill()
        child.proc.wait()
        child.lease.release()
    a.children.clear()
    a.leases.clear()
    assert "host:a:0" in WorkerRegistry(client).alive(60_000)  # no goodbye
    wait_until(
        lambda: "host:a:0" not in WorkerRegistry(client).alive(60_000, ticks=3),
        10,
        "a gone for placing after three missed beats",
    )
    rounds([b], client, 1)
    assert held([b]) == [6]


def test_it_restarts_a_crashed_sentinel_after_its_back_off_without_waiting_for_a_tick(fleet):
    """A sentinel process that exits makes the supervisor tick at once (``due``); it keeps the
    lease and starts the sentinel again when the back-off is over, not a tick later."""
    enable, worker, client = fleet
    enable(1)
    (sid,) = range(FIRST_ID, FIRST_ID + 1)
    a = worker("a")
    rounds([a], client, 1)
    assert not a.due()  # running: nothing to do before the next tick
    token = a.leases[sid].token
    first = a.children[sid].proc
    first.kill()
    wait_until(a.due, 10, "the exit noticed between ticks")
    a.tick()  # notes the exit: the back-off starts, the lease is kept
    assert sid not in a.children and a.leases[sid].token == token
    count, retry_at = a.failures[sid]
    assert count == 1
    a.failures[sid] = (count, time.monotonic() + 60)
    assert not a.due()  # the back-off is not over
    a.failures[sid] = (count, time.monotonic() - 0.1)
    wait_until(a.due, 10, "due once the back-off is over and the old process has gone")
    a.tick()
    assert a.running() == {sid} and a.children[sid].proc.pid != first.pid
    assert lease_holders(client, [sid])[sid] == a.worker_id


def test_it_doubles_the_back_off_of_a_sentinel_that_keeps_crashing():
    assert [respawn_backoff(n) for n in (1, 2, 3, 4)] == [
        RESPAWN_FIRST_BACKOFF_S * k for k in (1, 2, 4, 8)
    ]
    assert respawn_backoff(50) == RESPAWN_BACKOFF_MAX_S


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
