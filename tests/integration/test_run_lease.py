"""A crashed sentinel process and its lease (no Kafka: the roles keep retrying their start).

Under ``--layout processes`` the producer runs in a child process that watches its parent. When
the sentinel's first process is SIGKILLed, that child stops, but the lease is its worker's,
which restarts the sentinel at once keeping it (found by the soak: the child released the
lease, so another worker took the sentinel over after its next tick)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.support.waiting import wait_until
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore
from workers.system import sentinel_argv

ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purpose
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_a_role_process_orphaned_by_a_sentinel_crash_leaves_the_workers_lease(redis_url, tmp_path):
    spec = SentinelSpec(
        id=990_020,
        name="lease-kept",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers="127.0.0.1:1",  # nothing answers: the roles retry their start
        topic="lease-kept",
    )
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec.to_dict()))
    client = connect(redis_url)
    store = SentinelStore(client, spec.id)
    store.reset()
    lease_key = SentinelStore.key_for(spec.id, "lease")
    client.set(lease_key, "the-worker:1:abc:def", px=60_000)
    argv = sentinel_argv(
        path,
        roles="producer,checker",
        layout="processes",
        redis_url=redis_url,
        lease_token="the-worker:1:abc:def",
        lease_ms=60000,
    )
    main = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (child,) = wait_until(lambda: children_of(main.pid), 30, "the producer's process")
        wait_until(lambda: "producer" in store.health(), 30, "the producer's first heartbeat")
        main.send_signal(signal.SIGKILL)
        main.wait(10)
        wait_until(lambda: not alive(child), 30, "the orphaned producer process to stop")
        assert client.get(lease_key) == b"the-worker:1:abc:def"
    finally:
        for pid in [main.pid, *children_of(main.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        main.wait(10)
        client.delete(lease_key)
        store.reset()
