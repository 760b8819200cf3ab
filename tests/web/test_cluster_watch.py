"""Watching a cluster: exactly one worker runs its samplers, and another takes over when that
worker dies (workers/runtime/watch.py).

Real watch processes under real leases in a real Redis; the workers are stand-ins that run
only their cluster watchers (tests/support/watching.py), and the sampler counts its steps in
Redis (no Kafka: what the event sampler finds is tested in tests/integration)."""

from __future__ import annotations

import signal
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.waiting import wait_until
from tests.support.watching import ABORT, ACTIVE, OVERLAPS, STEPS, WatchFleet, alive
from workers.engine.profiles import AT_LEAST_ONCE, AT_MOST_ONCE, DEFAULT_PROFILES, EXACTLY_ONCE
from workers.engine.spec import SentinelSpec
from workers.runtime.watch import (
    EXIT_LEASE,
    EXIT_STUCK,
    ClusterWatch,
    exit_in_words,
    watches_from_specs,
)
from workers.store.cluster import ClusterStore
from workers.store.connection import connect

CLUSTER = "watch-test"


def spec(sid: int, cluster: str = CLUSTER, **fields) -> SentinelSpec:
    fields = {"topic": f"sentinel.{sid}", "bootstrap_servers": "127.0.0.1:1", **fields}
    profile = DEFAULT_PROFILES[fields.pop("semantic", AT_LEAST_ONCE)]
    return SentinelSpec(id=sid, name=f"s{sid}", profile=profile, cluster=cluster, **fields)


def test_clusters_to_watch_are_those_of_the_sentinels_with_their_topics():
    specs = {
        3: spec(3, topic="t3", semantic=EXACTLY_ONCE),
        1: spec(1, topic="t1", semantic=AT_MOST_ONCE),
        2: spec(2, cluster="other", bootstrap_servers="other:9092", client={"a": "b"}),
    }
    assert watches_from_specs(specs) == {
        CLUSTER: ClusterWatch(CLUSTER, "127.0.0.1:1", {}, ("t1", "t3", "t3.out")),
        "other": ClusterWatch("other", "other:9092", {"a": "b"}, ("sentinel.2",)),
    }
    assert watches_from_specs({}) == {}


@pytest.fixture
def watch_redis(redis_url):
    """A database of its own: the test's keys and the cluster's watch lease."""
    url = urlunsplit(urlsplit(redis_url)._replace(path="/12"))
    client = connect(url)
    client.flushdb()
    yield url, client
    client.flushdb()


@pytest.fixture
def fleet(watch_redis, tmp_path):
    group = WatchFleet(
        tmp_path,
        watch_redis[0],
        env={"DS_WATCH_SAMPLERS": "tests.support.watching:counting"},
        lease_ms=4000,
    )
    yield group
    group.stop()


def steps(client) -> list[int]:
    return [int(pid) for pid in client.lrange(STEPS, 0, -1)]


@pytest.mark.slow  # processes: the same on any database
def test_one_worker_watches_a_cluster_and_another_takes_over_when_it_dies(watch_redis, fleet):
    _, client = watch_redis
    store = ClusterStore(client, CLUSTER)
    fleet.enable(spec(1), spec(2))  # two sentinels on one cluster: one watcher
    fleet.start("a")
    fleet.start("b")
    first = wait_until(store.watcher, 60, "a worker watching the cluster", details=fleet.logs)
    wait_until(lambda: len(steps(client)) >= 10, 60, "ten steps", details=fleet.logs)
    assert len(set(steps(client))) == 1, "one watch process samples the cluster"
    sampled = store.samplers()["counting"]
    assert sampled["by"].rpartition(":")[0] == first and sampled["error"] is None

    fleet.procs[first].send_signal(signal.SIGKILL)  # the worker dies; its watch process stays
    fleet.procs[first].wait(10)
    old = steps(client)[-1]
    second = wait_until(
        lambda: (w := store.watcher()) not in (None, first) and w,
        60,
        "the other worker watching the cluster",
        details=fleet.logs,
    )
    # The dead worker's watch process may take a step or two until it sees its worker gone.
    wait_until(
        lambda: sum(pid != old for pid in steps(client)) >= 10,
        60,
        "ten steps by another watch process",
        details=fleet.logs,
    )
    wait_until(lambda: not alive(old), 30, "the dead worker's watch process gone")
    seen = steps(client)
    new = seen[-1]
    assert second != first and new != old
    # Never both: every step of the first process came before every step of the second.
    assert seen == [old] * seen.index(new) + [new] * (len(seen) - seen.index(new))
    assert client.get(OVERLAPS) is None  # no step ever began while another ran


@pytest.mark.slow
def test_a_step_longer_than_the_lease_never_overlaps_the_next_watchers(watch_redis, fleet):
    """Steps of 10 s under a 6 s lease: when the worker dies mid-step, its watch process cannot
    see it until the step ends, but it proves the lease during the step and exits before the
    lease can expire and move."""
    _, client = watch_redis
    store = ClusterStore(client, CLUSTER)
    fleet.enable(spec(1))
    fleet.start("a", lease_ms=6000, TEST_WATCH_STEP_S="10")
    old = int(wait_until(lambda: client.get(ACTIVE), 60, "a step running", details=fleet.logs))
    fleet.start("b", lease_ms=6000, TEST_WATCH_STEP_S="0.05")  # ready to take over
    fleet.procs["a"].send_signal(signal.SIGKILL)
    fleet.procs["a"].wait(10)
    wait_until(lambda: store.watcher() == "b", 60, "the other worker watching", details=fleet.logs)
    wait_until(lambda: sum(pid != old for pid in steps(client)) >= 3, 60, "its steps")
    wait_until(lambda: not alive(old), 30, "the first watch process gone")
    assert client.get(OVERLAPS) is None


@pytest.mark.slow
def test_a_cluster_without_sentinels_is_no_longer_watched(watch_redis, fleet):
    _, client = watch_redis
    store = ClusterStore(client, CLUSTER)
    fleet.enable(spec(1))
    fleet.start("a", TEST_WATCH_FAIL="1")
    wait_until(lambda: len(steps(client)) >= 2, 60, "steps", details=fleet.logs)
    # A step that raises is recorded with its error, and the next one comes.
    doc = wait_until(lambda: store.samplers().get("counting"), 30, "a recorded step")
    assert doc["error"] == "RuntimeError: this sampler fails on purpose"
    pid = steps(client)[-1]
    fleet.enable(spec(2, cluster="another"))
    wait_until(lambda: store.watcher() is None, 30, "the watch lease released", details=fleet.logs)
    wait_until(lambda: not alive(pid), 30, "its watch process gone")
    wait_until(lambda: ClusterStore(client, "another").watcher() == "a", 30, "the new cluster")


@pytest.mark.slow
def test_a_watch_process_that_aborts_is_started_again_and_its_end_is_kept(watch_redis, fleet):
    """As librdkafka aborts a process on some client errors (confluentinc/librdkafka#4605):
    the worker starts the watch process again, and says how the last one ended."""
    _, client = watch_redis
    store = ClusterStore(client, CLUSTER)
    fleet.enable(spec(1))
    fleet.start("a")
    wait_until(lambda: len(steps(client)) >= 3, 60, "three steps", details=fleet.logs)
    assert store.last_ended() is None
    first = steps(client)[-1]
    client.set(ABORT, "1")
    ended = wait_until(store.last_ended, 60, "the abort recorded", details=fleet.logs)
    assert ended["code"] == -signal.SIGABRT and ended["by"] == "a", ended
    assert ended["why"].startswith("was killed by SIGABRT"), ended
    wait_until(
        lambda: steps(client)[-1] != first, 60, "steps of a new watch process", details=fleet.logs
    )
    assert store.watcher() == "a"


def test_each_way_a_watch_process_ends_has_its_words():
    assert exit_in_words(-signal.SIGKILL) == "was killed by SIGKILL"
    assert exit_in_words(-signal.SIGABRT).startswith("was killed by SIGABRT (an abort in a client")
    assert "stuck in a client call" in exit_in_words(EXIT_STUCK)
    assert "lease" in exit_in_words(EXIT_LEASE)
    assert exit_in_words(3) == "exited with status 3"
    assert exit_in_words(-200) == "was killed by signal 200"
