"""Sentinels hosted by real Celery workers: leases, failover, enable/disable, live windows,
an unreachable cluster. Workers are real processes sharing the test database file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.conf import settings

from dashboard.models import Cluster, Profile, Sentinel
from tests.integration.test_engine import read_topic
from tests.support.database import database_url
from tests.support.waiting import wait_until
from workers.engine.profiles import AT_LEAST_ONCE, AT_MOST_ONCE, DEFAULT_PROFILES, EXACTLY_ONCE
from workers.lab.soak.truth import StreamTap
from workers.runtime.manifest import STATE_FILE, read_state
from workers.store.connection import connect
from workers.store.coordination import WorkerRegistry
from workers.store.sentinel import DRAIN_DONE, SentinelStore
from workers.system import hosting_worker_argv

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
LEASE_MS = 10000


# A worker per "machine": its own host name (a UTS namespace, where this runs as root) and its
# own local directory, sharing only the database, Redis and Kafka with the others.
OWN_HOST_NAMES = os.geteuid() == 0 and shutil.which("unshare") is not None


class Workers:
    """Celery worker processes with sentinel hosting on, each on a queue of its own and as if
    on a machine of its own (``machine-<name>``: host name and local directory)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def local_dir(self, name: str) -> Path:
        return self.tmp / f"machine-{name}"

    def start(self, name: str, lease_ms: int = LEASE_MS, **extra_env: str) -> subprocess.Popen:
        argv = hosting_worker_argv(name, f"hosting-{uuid.uuid4().hex[:8]}")
        if OWN_HOST_NAMES:  # unshare and sh exec the worker: its pid is the Popen's
            script = 'hostname "$0" && exec "$@"'
            argv = ["unshare", "--uts", "sh", "-c", script, f"machine-{name}", *argv]
        env = {
            **os.environ,
            "DS_LOCAL_DIR": str(self.local_dir(name)),
            "DATABASE_URL": database_url(),
            "DS_LEASE_MS": str(lease_ms),
            "DS_SUPERVISOR_TICK_S": "1",
            "SENTINELS_ENABLED": "true",
            **extra_env,
        }
        env.pop("DJANGO_TEST_DB_FILE", None)
        log = self.tmp / f"worker-{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def name_of(self, pid: int | None) -> str | None:
        return next((name for name, p in self.procs.items() if p.pid == pid), None)

    def machines_with_files_of(self, sentinel_id: int) -> set[str]:
        """The workers whose local directory holds the sentinel's spec file or manifest
        entry (a killed worker's stay behind: nobody removed them)."""
        return {
            name
            for name in self.procs
            if any((self.local_dir(name) / "sentinels").rglob(f"{sentinel_id}.json"))
        }

    def pid_holding(self, sentinel_id: int) -> int | None:
        holder = connect(settings.REDIS_URL).get(SentinelStore.key_for(sentinel_id, "lease"))
        if holder is None:
            return None
        return int(holder.decode().split(":")[1])  # host:pid:nonce:lease-nonce

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        # Sentinel processes of a killed worker stop by themselves; wait for them too.
        wait_until(lambda: not _sentinel_processes(self.tmp), 60, "sentinel processes gone")

    def logs(self, tail: int | None = 4000) -> str:
        """The workers' logs, the last ``tail`` characters of each (None: all of them)."""
        return "\n".join(
            p.read_text(errors="replace")[-tail if tail else 0 :]
            for p in self.tmp.glob("worker-*.log")
        )


def _sentinel_processes(tmp: Path) -> list[str]:
    """Sentinel processes of the test workers (their spec files and manifests are in the
    workers' local directories under ``tmp``): own ones and shared hosts."""
    out = subprocess.run(
        ["pgrep", "-af", "workers.runtime.(run --spec|host --manifest)"],
        capture_output=True,
        text=True,
    )
    return [line for line in out.stdout.splitlines() if str(tmp) in line]


@pytest.fixture
def workers(tmp_path):
    group = Workers(tmp_path)
    yield group
    Sentinel.objects.update(enabled=False)
    group.stop_all()


def make_sentinel(semantic: str, *, cluster: Cluster | None = None, **fields) -> Sentinel:
    if cluster is None:
        cluster, _ = Cluster.objects.get_or_create(
            name="test-local", defaults={"bootstrap_servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"]}
        )
    data = DEFAULT_PROFILES[semantic]
    profile, _ = Profile.objects.get_or_create(
        name=data.name,
        defaults={
            "semantic": semantic,
            "producer_properties": data.producer,
            "consumer_properties": data.consumer,
            "commit_strategy": data.commit_strategy,
        },
    )
    suffix = uuid.uuid4().hex[:8]
    sentinel = Sentinel.objects.create(
        name=f"{semantic}-{suffix}",
        cluster=cluster,
        profile=profile,
        topic=f"hosted-{semantic}-{suffix}",
        rate_per_partition=20,
        grace_seconds=3,
        # Counts are judged here; a loaded 2-core machine may be slow without being DEGRADED.
        slo_p99_ms=10000,
        **fields,
    )
    return sentinel


def store_of(sentinel: Sentinel) -> SentinelStore:
    return SentinelStore(connect(settings.REDIS_URL), sentinel.pk)


def wait_status(sentinel: Sentinel, predicate, timeout: float, message: str, workers=None) -> dict:
    def check():
        doc = store_of(sentinel).status()
        # Only this sentinel's reports: its id may have named a sentinel of an earlier test.
        mine = doc and doc.get("incarnation") == sentinel.incarnation.hex
        return doc if mine and predicate(doc) else None

    try:
        return wait_until(check, timeout, message)
    except AssertionError as exc:
        extra = workers.logs() if workers else ""
        raise AssertionError(f"{exc}\n{store_of(sentinel).status()}\n{extra}") from None


def start_two_then_enable(workers: Workers, sentinels: list[Sentinel]) -> None:
    """Two workers beating before the sentinels are enabled, so that each takes its share
    at once (a worker alone would take them all and hand some over: a second run by design)."""
    workers.start("w1")
    workers.start("w2")
    registry = WorkerRegistry(connect(settings.REDIS_URL))
    pids = {p.pid for p in workers.procs.values()}

    def beating() -> bool:  # worker ids are host:pid:nonce
        return pids <= {int(w.split(":")[1]) for w in registry.alive(LEASE_MS)}

    wait_until(beating, 60, "both workers beating")
    Sentinel.objects.filter(pk__in=[s.pk for s in sentinels]).update(enabled=True)


def test_it_runs_each_sentinel_exactly_once_across_two_workers(workers):
    sentinels = [
        make_sentinel(s, enabled=False) for s in (AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE)
    ]
    start_two_then_enable(workers, sentinels)
    for s in sentinels:
        wait_status(s, lambda d: d["totals"]["processed"] > 100, 120, f"{s.name} running", workers)
    holders = {s.pk: workers.pid_holding(s.pk) for s in sentinels}
    # Fair: the two workers run two and one, never one worker all three.
    assert sorted(Counter(holders.values()).values()) == [1, 2], holders
    assert set(holders.values()) <= {p.pid for p in workers.procs.values()}, holders
    # Stop them, then read every topic to its end: the records say who produced them.
    Sentinel.objects.update(enabled=False)
    for s in sentinels:
        wait_until(lambda s=s: workers.pid_holding(s.pk) is None, 30, f"{s.name} stopped")
    for s in sentinels:
        store = store_of(s)
        # One producer run per sentinel, and its records are the only ones in the topic.
        assert len(store.runs()) == 1, store.runs()
        truth = read_topic(os.environ["KAFKA_BOOTSTRAP_SERVERS"], s.topic)
        assert {run for run, _p, _s in truth} == set(store.runs()), "a second producer wrote"
        assert max(truth.values()) == 1, "some record was written twice"


def test_it_fails_over_when_the_worker_holding_a_sentinel_is_killed(workers):
    """Two workers as on two machines (own host names and local directories, sharing only
    the database, Redis and Kafka): the survivor takes the killed one's sentinels over from
    files of its own, and nothing is lost or duplicated."""
    sentinels = [make_sentinel(s, enabled=False) for s in (AT_LEAST_ONCE, EXACTLY_ONCE)]
    start_two_then_enable(workers, sentinels)
    for s in sentinels:
        wait_status(s, lambda d: d["totals"]["processed"] > 50, 120, f"{s.name} running", workers)
    if OWN_HOST_NAMES:  # as if on two machines: each worker's id names its own host
        hosts = {
            w.split(":")[0] for w in WorkerRegistry(connect(settings.REDIS_URL)).alive(LEASE_MS)
        }
        assert {"machine-w1", "machine-w2"} <= hosts, hosts
    for s in sentinels:  # each worker wrote its sentinels' files in its own local directory
        holder = workers.name_of(workers.pid_holding(s.pk))
        assert workers.machines_with_files_of(s.pk) == {holder}, (s.name, holder)
    victim_pid = workers.pid_holding(sentinels[0].pk)
    victim = workers.name_of(victim_pid)
    survivor = next(name for name in workers.procs if name != victim)
    moved = [s for s in sentinels if workers.pid_holding(s.pk) == victim_pid]
    runs_before = {s.pk: set(store_of(s).runs()) for s in moved}
    os.kill(victim_pid, signal.SIGKILL)
    workers.procs[victim].wait(10)
    for s in moved:
        wait_until(
            lambda s=s: workers.pid_holding(s.pk) not in (None, victim_pid),
            LEASE_MS / 1000 + 5,
            f"{s.name} taken over within the lease time",
        )
        wait_status(
            s,
            lambda d, s=s: (
                set(store_of(s).runs()) - runs_before[s.pk] and d["totals"]["processed"] > 0
            ),
            60,
            "a new producer run on the surviving worker",
            workers,
        )
    for s in moved:  # the survivor runs them from files of its own
        assert survivor in workers.machines_with_files_of(s.pk), s.name
    for s in sentinels:
        before = store_of(s).status()["totals"]["processed"]
        doc = wait_status(
            s,
            lambda d, b=before: d["totals"]["processed"] > b + 100 and d["totals"]["pending"] < 200,
            90,
            "progress after the failover",
            workers,
        )
        totals = doc["totals"]
        assert totals["lost"] == 0 and totals["duplicated"] == 0 and totals["reordered"] == 0, (
            totals
        )
        assert doc["verdict"] in ("HOLDING", "DEGRADED"), doc


def test_it_restarts_a_crashed_sentinel_at_once_keeping_its_lease(workers):
    """A SIGKILLed sentinel process is started again by the worker that holds its lease, after
    its back-off, not after the lease expired (a minute here). Its consumer died with it, maybe
    between processing a batch and committing it: at-least-once then really processes those
    records twice, so the duplicates are compared with the ledger (an auditor tailing the raw
    streams from the start, ``workers.lab.soak.truth``), not assumed to be 0."""
    sentinel = make_sentinel(AT_LEAST_ONCE, hosting="own")
    store = store_of(sentinel)
    tap = StreamTap(connect(settings.REDIS_URL), [SimpleNamespace(id=sentinel.pk)])
    tap.start()
    try:
        workers.start("w1", lease_ms=60_000)
        wait_status(sentinel, lambda d: d["totals"]["processed"] > 50, 120, "running", workers)
        lease_key = SentinelStore.key_for(sentinel.pk, "lease")
        holder = connect(settings.REDIS_URL).get(lease_key)
        (main,) = [
            line
            for line in _sentinel_processes(workers.tmp)
            if f"/{sentinel.pk}.json" in line and "--roles" not in line
        ]
        runs_before = set(store.runs())
        os.kill(int(main.split()[0]), signal.SIGKILL)
        doc = wait_status(
            sentinel,
            lambda d: set(store.runs()) - runs_before and d["totals"]["processed"] > 0,
            30,
            "a new run started by the same worker well within the lease time",
            workers,
        )
        assert connect(settings.REDIS_URL).get(lease_key) == holder  # the worker kept its lease
        before = doc["totals"]["processed"]
        wait_status(
            sentinel, lambda d: d["totals"]["processed"] > before + 100, 60, "progress", workers
        )
        # Stop producing; once the checker has folded everything the ledger holds, its counts
        # are the ledger's.
        store.request_drain()
        wait_until(lambda: store.drain_state() == DRAIN_DONE, 60, "the producer drained")
        truth = tap.truths[sentinel.pk]

        def settled() -> tuple[dict, dict] | None:
            tap.drain()
            recount = truth.counts(set(store.runs()))
            totals = store.status()["totals"]
            same = all(totals[c] == recount[c] for c in ("acked", "processed"))
            return (totals, recount) if same and totals["pending"] == 0 else None

        totals, recount = wait_until(settled, 90, "the checker caught up with the ledger")
    finally:
        tap.finish()
    assert totals["lost"] == 0 and recount["unprocessed"] == 0, (totals, recount)
    assert totals["duplicated"] == recount["duplicated"], (totals, recount)
    assert totals["phantom"] == recount["phantom"] and totals["reordered"] == 0, (totals, recount)


def test_it_stops_and_resumes_a_sentinel_when_disabled_and_enabled(workers):
    sentinel = make_sentinel(AT_LEAST_ONCE)
    workers.start("w1")
    wait_status(sentinel, lambda d: d["totals"]["produced"] > 50, 120, "running", workers)
    Sentinel.objects.filter(pk=sentinel.pk).update(enabled=False)
    wait_until(lambda: workers.pid_holding(sentinel.pk) is None, 15, "lease released")
    store = store_of(sentinel)
    stopped = wait_until(
        lambda: (h := store.health().get("producer")) and h.get("error") == "stopped" and h,
        15,
        "producer stopped",
    )
    produced = topic_size(sentinel.topic)
    # Its producer's loop has ended (it flushed before it said "stopped"); once nothing runs
    # the sentinel any more (no process of its own, no shared host running it), nothing can
    # have written to its topic since.
    wait_until(lambda: runs_nowhere(workers, sentinel.pk), 30, "the sentinel run nowhere")
    assert topic_size(sentinel.topic) == produced
    assert stopped["ts"] > 0
    Sentinel.objects.filter(pk=sentinel.pk).update(enabled=True)
    wait_until(
        lambda: topic_size(sentinel.topic) > produced + 20, 30, "records again after re-enabling"
    )


def runs_nowhere(workers: Workers, sentinel_id: int) -> bool:
    """No process of its own runs the sentinel, and every shared host of the test workers has
    written a state since without it among its running sentinels."""
    if any(f"/{sentinel_id}.json" in line for line in _sentinel_processes(workers.tmp)):
        return False
    states = [read_state(p.parent) for p in workers.tmp.rglob(STATE_FILE)]
    return all(state is not None and str(sentinel_id) not in state["running"] for state in states)


def topic_size(topic: str) -> int:
    """Records in ``topic`` (the sum of its partitions' high watermarks; no transactions)."""
    consumer = Consumer(
        {"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"], "group.id": "watermarks"}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        consumer.close()


def test_it_reports_an_unreachable_cluster_as_stalled_and_recovers(workers):
    broken = Cluster.objects.create(
        name=f"closed-port-{uuid.uuid4().hex[:6]}", bootstrap_servers="127.0.0.1:1"
    )
    sentinel = make_sentinel(AT_LEAST_ONCE, cluster=broken)
    workers.start("w1")

    def says_why(doc: dict) -> bool:
        # The roles report librdkafka's own words as they meet the closed port (connect,
        # transport failure); a first error may be a start-up timeout, so wait for those.
        return doc["verdict"] == "STALLED" and any(
            "127.0.0.1:1" in e or "transport" in e.lower() or "connect" in e.lower()
            for e in doc["errors"]
        )

    doc = wait_status(sentinel, says_why, 90, "STALLED with the connection error", workers)
    assert doc["totals"]["lost"] == 0
    broken.bootstrap_servers = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    broken.save()
    doc = wait_status(
        sentinel,
        lambda d: d["verdict"] == "HOLDING" and d["totals"]["processed"] > 50,
        120,
        "recovered",
        workers,
    )
    assert doc["totals"]["lost"] == 0 and doc["totals"]["duplicated"] == 0


async def test_it_delivers_published_windows_to_a_subscribed_websocket(workers, asgi, alice):
    from asgiref.sync import sync_to_async

    sentinel = await sync_to_async(make_sentinel)(AT_MOST_ONCE)
    await sync_to_async(workers.start)("w1")
    ws = await asgi.websocket(f"/ws/sentinel/{sentinel.pk}/", user=alice)
    assert (await ws.connect(timeout=10))[0]
    state = await ws.receive_json_from(timeout=10)
    assert state["type"] == "state"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        msg = await ws.receive_json_from(timeout=120)
        if msg["type"] == "window" and msg["window"]["counts"]["processed"] > 0:
            assert msg["sentinel"] == sentinel.pk
            assert msg["status"]["name"] == sentinel.name
            return
    pytest.fail("no window with processed records reached the websocket")
