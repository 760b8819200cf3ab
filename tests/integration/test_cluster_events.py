"""Cluster events on the real local cluster (workers/roles/eventsampler.py): records deleted
with DeleteRecords show as a log-start jump with the exact count; a broker stopped while it
leads a partition shows as a leader change (with the leader epoch) and an ISR shrink, and
started again as an ISR expand. The sampler is stepped here directly; the watch process that
steps it in a worker is tested in tests/web/test_cluster_watch.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.waiting import wait_until
from workers.clients import clusterwatch
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.localkafka.cluster import LocalCluster
from workers.roles.eventsampler import EventSampler
from workers.runtime.watch import ClusterWatch
from workers.store.cluster import ClusterStore
from workers.store.connection import connect

pytestmark = [pytest.mark.kafka]

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def topic():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    name = f"events-{uuid.uuid4().hex[:8]}"
    new = NewTopic(name, 1, 3, config={"min.insync.replicas": "2"})
    for future in admin.create_topics([new]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all"})
    for i in range(20):
        producer.produce(name, str(i).encode(), partition=0)
    assert producer.flush(30) == 0
    yield name
    for future in admin.delete_topics([name]).values():
        future.result(30)


@pytest.fixture
def sampler(topic, redis_url):
    watch = ClusterWatch(f"events-test-{uuid.uuid4().hex[:6]}", BOOTSTRAP, {}, (topic,))
    events = EventSampler(watch, connect(redis_url))
    wait_until(
        lambda: _partition(events.store.last_sample() if events.sample() is not None else None),
        60,
        "a first sample with the partition's leader, ISR and offsets",
    )
    yield events
    events.store.forget()
    events.close()


def _partition_any(sample):
    topics = (sample or {}).get("topics", {})
    return next(iter(topics.values()), {}).get("partitions", {}).get("0")


def _partition(sample):
    """Partition 0 of the sample's one topic, once its leader and offsets are known."""
    topics = (sample or {}).get("topics", {})
    part = next(iter(topics.values()), {}).get("partitions", {}).get("0")
    if part and part["leader"] >= 0 and part["end"] is not None and len(part["isr"]) == 3:
        return part
    return None


def test_delete_records_is_a_log_start_jump_of_exactly_the_records_deleted(topic, sampler):
    before = _partition(sampler.store.last_sample())
    assert before["start"] == 0 and before["end"] == 20
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.delete_records([TopicPartition(topic, 0, 7)]).values():
        future.result(30)
    seen = []
    wait_until(lambda: seen.extend(sampler.sample()) or seen, 60, "an event after DeleteRecords")
    (event,) = seen
    assert event["kind"] == "log-start-jump" and (event["topic"], event["partition"]) == (topic, 0)
    assert (event["before"], event["after"], event["count"]) == ({"start": 0}, {"start": 7}, 7)
    (stored,) = sampler.store.events(topic=topic)
    assert stored["cluster"] == sampler.store.cluster and stored["count"] == 7


@pytest.mark.slow  # a broker's restart
def test_a_stopped_leader_is_a_leader_change_and_isr_shrink_and_back_an_isr_expand(topic, sampler):
    cluster = LocalCluster(
        os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
    )
    before = _partition(sampler.store.last_sample())
    leader = before["leader"]
    seen: list[dict] = []

    def kinds_seen(*wanted: str) -> bool:
        seen.extend(e for e in sampler.sample() if e.get("topic") in (topic, None))
        return set(wanted) <= {e["kind"] for e in seen if e["topic"] == topic}

    def details() -> str:  # what the sampler last saw beside what a fresh client sees
        fresh = AdminClient({"bootstrap.servers": BOOTSTRAP})
        try:
            (desc,) = [
                f.result(10) for f in fresh.describe_topics(TopicCollection([topic])).values()
            ]
            now = {
                p.id: (p.leader.id if p.leader else None, [n.id for n in p.isr])
                for p in desc.partitions
            }
        except Exception as exc:  # the diagnosis must not hide the failure
            now = repr(exc)
        last = _partition_any(sampler.store.last_sample())
        return (
            f"sampler's last: {last}; fresh client: {now}; events seen: {seen}; "
            f"reader errors: {list(sampler.reader.errors)}; renewals: {sampler.reader.renewals}"
        )  # fmt: skip

    cluster.stop_node(leader)  # a clean stop: leadership moves at once
    try:
        wait_until(
            lambda: kinds_seen("leader-change", "isr-shrink"), 90, "leader change, ISR shrink",
            details=details,
        )  # fmt: skip
    finally:
        cluster.start_node(leader)
        cluster.wait_for_brokers({leader}, timeout=180)
    (change,) = [e for e in seen if e["kind"] == "leader-change"]
    assert change["before"] == {"leader": leader, "epoch": before["epoch"]}
    assert change["after"]["leader"] != leader and change["after"]["leader"] in before["replicas"]
    assert change["after"]["epoch"] > before["epoch"]
    (shrink,) = [e for e in seen if e["kind"] == "isr-shrink"]
    assert shrink["before"]["isr"] == before["isr"] and shrink["after"]["left"] == [leader]
    assert "unclean-election" not in {e["kind"] for e in seen}

    wait_until(lambda: kinds_seen("isr-expand"), 180, "the broker back in the ISR")
    (expand,) = [e for e in seen if e["kind"] == "isr-expand"]
    assert expand["after"]["joined"] == [leader]
    assert sorted(expand["after"]["isr"]) == sorted(before["isr"])
    stored = sampler.store.events(topic=topic, limit=1000)
    assert [e["kind"] for e in reversed(stored)] == [e["kind"] for e in seen]


def test_a_workers_watch_process_records_the_events(topic, redis_url, tmp_path):
    """The whole way: a worker's cluster watchers start the watch process, whose events
    sampler (the default) records a DeleteRecords on the sentinel topic."""
    cluster_name = f"events-e2e-{uuid.uuid4().hex[:6]}"
    spec = SentinelSpec(
        id=990_001, name="events-e2e", profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers=BOOTSTRAP, topic=topic, cluster=cluster_name,
    )  # fmt: skip
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps({str(spec.id): spec.to_dict()}))
    store = ClusterStore(connect(redis_url), cluster_name)
    env = {**os.environ, "REDIS_URL": redis_url, "DS_CLUSTER_EVENTS_INTERVAL_S": "1"}
    env.pop("DS_WATCH_SAMPLERS", None)
    log = (tmp_path / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.support.watching", "--specs", str(specs), "--name", "w1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        logs = lambda: (tmp_path / "worker.log").read_text(errors="replace")[-3000:]  # noqa: E731
        wait_until(
            lambda: _partition(store.last_sample()), 90, "the watcher's first sample", details=logs
        )
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        for future in admin.delete_records([TopicPartition(topic, 0, 5)]).values():
            future.result(30)
        (event,) = wait_until(lambda: store.events(topic=topic), 60, "the event", details=logs)
        assert (event["kind"], event["count"], event["partition"]) == ("log-start-jump", 5, 0)
        assert store.watcher() == "w1" and store.samplers()["events"]["error"] is None
    finally:
        worker.terminate()
        worker.wait(30)
        store.forget()


def test_a_reader_whose_requests_get_no_answer_asks_with_a_fresh_client_next_time(monkeypatch):
    """A broker that accepts connections and never answers (frozen, or a connection stuck on a
    stopped broker): the sample leaves the topic out, never guesses, and the next sample is
    asked by a new admin client, not by the one stuck on that connection."""
    monkeypatch.setattr(clusterwatch, "REQUEST_TIMEOUT_S", 1.0)
    monkeypatch.setattr(clusterwatch, "STEP_BUDGET_S", 3.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        reader = clusterwatch.ClusterReader(
            {"bootstrap.servers": f"127.0.0.1:{silent.getsockname()[1]}"}, ["t"]
        )
        first = reader.admin
        sample = reader.sample({})
        assert sample["topics"] == {} and reader.renewals == 1
        assert reader.admin is not first
        reader.close()
