"""One-second windows: what the checker runner stores per second, and what that costs."""

from __future__ import annotations

import time

import pytest

from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.runtime.checkrunner import CheckRunner
from workers.store import SentinelStore, connect

PARTITIONS = 1000
RUN = 4242


@pytest.fixture
def runner(redis_url):
    spec = SentinelSpec(
        id=990_001,
        name="windows",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",
        topic="windows",
    )
    store = SentinelStore(connect(redis_url), spec.id)
    store.reset()
    runner = CheckRunner(spec, store)
    runner.load()
    runner.checker.register_run(RUN)
    yield runner
    store.reset()


def one_second(runner: CheckRunner, second: int, now: float) -> None:
    """Every partition produces, acks and processes 10 records (seqs of that second)."""
    first, last = 10 * second, 10 * second + 9
    for p in range(PARTITIONS):
        runner.checker.produced(RUN, p, 10)
        runner.checker.acked(RUN, p, first, last, now)
        runner.checker.processed(RUN, p, range(first, last + 1), now)


def test_a_healthy_window_carries_no_per_partition_data_and_a_problem_is_kept(runner):
    now = time.time()
    one_second(runner, 0, now)
    runner.emit_window(now, runner.status(now))
    one_second(runner, 1, now + 1)
    runner.emit_window(now + 1, runner.status(now + 1))
    one_second(runner, 2, now + 2)
    runner.checker.processed(RUN, 3, [25], now + 2)  # partition 3 processes seq 25 again
    runner.emit_window(now + 2, runner.status(now + 2))

    first, healthy, with_duplicate = runner.store.windows(now - 1)
    assert first["partitions"] == {}  # the first window after a start holds no increases
    assert healthy["counts"]["processed"] == 10 * PARTITIONS
    assert healthy["partitions"] == {}
    assert with_duplicate["counts"]["duplicated"] == 1
    assert with_duplicate["partitions"] == {"3": {"duplicated": 1}}
    # The stored size does not depend on the partition count (it did: ~70 KB per window).
    sizes = [len(fields[b"d"]) for _id, fields in runner.store.r.xrange(runner.store.key("w1"))]
    assert max(sizes) < 4096, sizes
