"""Redis losing the sentinels' state (issue 14, item 5): a non-persistent Redis SIGKILLed under
load and restarted empty, then FLUSHALL on the running one. Hosted sentinels of each semantic
(a ``SentinelSupervisor``, as a Celery worker runs it, on a Redis of the test's own) notice,
record a "sentinel state lost" event, start a new run and count nothing Kafka did not cause."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.sentinels import make_spec
from tests.support.waiting import wait_until
from workers.engine.documents import SEMANTICS, STATE_LOST
from workers.runtime.supervisor import SentinelSupervisor
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# A port of this worktree's range (never the suite's shared Redis: this one gets killed).
PORT = 27151
ZERO = ("lost", "duplicated", "reordered", "phantom", "aborted_read", "foreign")


class OwnRedis:
    """A non-persistent ``redis-server`` of the test's own, to kill and restart empty."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.port, self.tmp = port, tmp
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(lambda: _pings(client), 10, f"redis-server on {self.port}", interval=0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(PORT, tmp_path)
    server.start()
    yield server
    server.stop()


def test_it_starts_a_new_run_without_false_counts_when_redis_loses_the_state(own_redis, tmp_path):
    specs = {spec.id: spec for spec in (make_spec(s, stall_after_s=60.0) for s in SEMANTICS)}
    client = connect(own_redis.url)
    stores = {sid: SentinelStore(client, sid) for sid in specs}
    supervisor = SentinelSupervisor(
        client, lambda: specs, redis_url=own_redis.url, spec_dir=tmp_path / "specs", live=False
    )
    supervisor.start()
    try:
        progress_everywhere(stores, since=time.time(), what="records flow")
        own_redis.kill()
        lost_at = time.time()
        own_redis.start()  # empty: it never saved anything
        recovered(stores, specs, lost_at, "after a SIGKILLed Redis restarted empty")
        client.flushall()
        lost_at = time.time()
        recovered(stores, specs, lost_at, "after FLUSHALL")
    finally:
        supervisor.stop()


def progress_everywhere(stores: dict[int, SentinelStore], since: float, what: str) -> None:
    for sid, store in stores.items():

        def moving(store: SentinelStore = store) -> dict | None:
            doc = _status(store)
            fresh = doc and doc["updated_at"] > since
            return doc if fresh and doc["totals"]["processed"] > 60 else None

        wait_until(moving, 120, f"sentinel {sid}: {what}")


def recovered(stores: dict[int, SentinelStore], specs: dict, lost_at: float, what: str) -> None:
    """Each sentinel recorded the loss, runs again, and counts nothing false for longer than
    its grace period."""
    for sid, store in stores.items():
        events = wait_until(
            lambda store=store: [e for e in _events(store) if e["kind"] == STATE_LOST],
            60,
            f"sentinel {sid}: a state-lost event {what}",
        )
        assert events[-1]["ts"] >= lost_at - 1, events
    progress_everywhere(stores, lost_at, f"progress {what}")
    for sid, store in stores.items():
        grace = specs[sid].grace_seconds
        past_grace = lost_at + 3 * grace + 2
        doc = wait_until(
            lambda store=store, t=past_grace: (d := _status(store)) and d["updated_at"] > t and d,
            60,
            f"sentinel {sid}: a status after the grace period",
        )
        totals = doc["totals"]
        assert {k: totals[k] for k in ZERO} == dict.fromkeys(ZERO, 0), (specs[sid].name, doc)
        assert doc["run_id"] in _runs(store), doc


def _status(store: SentinelStore) -> dict | None:
    try:
        return store.status()
    except redis.RedisError:
        return None


def _events(store: SentinelStore) -> list[dict]:
    try:
        return store.events()
    except redis.RedisError:
        return []


def _runs(store: SentinelStore) -> dict:
    try:
        return store.runs()
    except redis.RedisError:
        return {}
