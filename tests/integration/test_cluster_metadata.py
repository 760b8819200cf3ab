"""The topic's cluster metadata: fetched by the check runner's own thread into the status
document, where the detail page's partition table reads it (no Kafka call in a request)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from dashboard.metrics.cluster import affected, cluster_problems
from tests.support.waiting import wait_until
from workers.clients.kafka import topic_metadata
from workers.engine.brokerhealth import cluster_summary
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.localkafka.cluster import LocalCluster
from workers.runtime import checkrunner
from workers.runtime.checkrunner import CheckRunner
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

UNREACHABLE = "127.0.0.1:1"


def make_spec(bootstrap: str = UNREACHABLE, topic: str = "metadata") -> SentinelSpec:
    return SentinelSpec(
        id=990_002,
        name="metadata",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers=bootstrap,
        topic=topic,
    )


def make_runner(redis_url: str, bootstrap: str = UNREACHABLE, topic: str = "metadata") -> Any:
    spec = make_spec(bootstrap, topic)
    store = SentinelStore(connect(redis_url), spec.id)
    store.reset()
    runner = CheckRunner(spec, store)
    return runner


def test_it_reports_an_unreachable_cluster_instead_of_leaders():
    admin = AdminClient({"bootstrap.servers": UNREACHABLE, "log_level": 0})
    meta = topic_metadata(admin, "sentinel.at-most-once", 0.5)
    assert "Failed to get metadata" in meta["error"]
    assert meta["partitions"] == {}


def test_the_checker_puts_the_fetch_and_its_time_into_the_status_document(redis_url):
    runner = make_runner(redis_url)
    runner.metadata.timeout = 0.5
    runner.load()
    try:
        assert runner.status(time.time())["metadata"] is None  # before the first fetch
        before = time.time()
        fetched = runner.metadata.fetch()
        assert "Failed to get metadata" in fetched["error"]
        assert fetched["partitions"] == {}
        assert before <= fetched["updated_at"] <= time.time()
        assert runner.status(time.time())["metadata"] == fetched
    finally:
        runner.store.reset()


def test_a_fetch_that_gets_no_answer_takes_nobody_out_of_the_metadata(monkeypatch):
    """A metadata fetch that times out (the cluster, or a client stuck on a killed broker's
    connection, did not answer) says nothing of who is in the cluster: brokers that still
    accept connections stay reachable, the one that refuses is unreachable, and the next fetch
    asks with a fresh client."""
    listening = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    hosts = {str(i + 1): f"127.0.0.1:{s.getsockname()[1]}" for i, s in enumerate(listening)}
    with socket.socket() as closed:  # a port nobody listens on: "broker 3", killed
        closed.bind(("127.0.0.1", 0))
        hosts["3"] = f"127.0.0.1:{closed.getsockname()[1]}"
    answers = [
        {"error": None, "partitions": {}, "brokers": dict(hosts), "controller": 1},
        {"error": "Failed to get metadata: Local: Timed out", "partitions": {}},
    ]
    admins: list[object] = []
    monkeypatch.setattr(checkrunner, "admin_for", lambda spec, quiet: admins.append(1) or object())
    monkeypatch.setattr(checkrunner, "topic_metadata", lambda admin, topic, timeout: answers.pop(0))
    refresher = checkrunner.MetadataRefresher(make_spec())
    try:
        first = refresher.fetch()
        assert not first["brokers"]["3"]["reachable"]  # refused: unreachable at once
        second = refresher.fetch()
        brokers = second["brokers"]
        assert [brokers[b]["reachable"] for b in ("1", "2", "3")] == [True, True, False], brokers
        assert all(brokers[b]["in_metadata"] for b in ("1", "2", "3")), brokers
        assert cluster_summary(brokers).startswith("broker 3 unreachable since"), brokers
        assert len(admins) == 1  # the failed fetch dropped its client ...
        answers.append({"error": None, "partitions": {}, "brokers": dict(hosts)})
        refresher.fetch()
        assert len(admins) == 2  # ... and the next one made a fresh one
    finally:
        for server in listening:
            server.close()


def test_a_hanging_cluster_never_delays_the_checkers_status_document(redis_url, monkeypatch):
    release = threading.Event()
    result = {"error": None, "partitions": {"0": {"leader": 1}}}

    def hanging(admin, topic, timeout):
        release.wait(30)
        return result

    monkeypatch.setattr(checkrunner, "topic_metadata", hanging)
    runner = make_runner(redis_url)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        first = wait_until(runner.store.status, 5, "a status document", interval=0.05)
        # Reports keep coming, about once a second, while the fetch hangs.
        later = wait_until(
            lambda: (d := runner.store.status())["updated_at"] >= first["updated_at"] + 1.5 and d,
            5,
            "a status document 1.5 s newer while the fetch hangs",
            interval=0.05,
        )
        assert first["metadata"] is None and later["metadata"] is None
        release.set()
        doc = wait_until(
            lambda: (d := runner.store.status())["metadata"] and d,
            5,
            "the released fetch's metadata in the status document",
            interval=0.05,
        )
        assert doc["metadata"]["partitions"] == result["partitions"]
        assert doc["metadata"]["updated_at"] <= doc["updated_at"]
    finally:
        release.set()
        runner.shutdown.set()
        thread.join(5)
        runner.metadata.join(5)
        runner.store.reset()
    assert not thread.is_alive()
    assert not runner.metadata.alive()  # stopped with the runner


@pytest.mark.kafka
def test_it_reads_leaders_from_the_real_cluster_into_the_status_document(redis_url, settings):
    bootstrap = settings.KAFKA_BOOTSTRAP_SERVERS
    topic = f"dashboard-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 3)]).values():
        future.result(30)
    wait_until(
        lambda: (
            (meta := topic_metadata(admin, topic, 2.0))["error"] is None
            and all(p["leader"] >= 0 for p in meta["partitions"].values())
        ),
        30,
        f"a leader for every partition of {topic}",
        interval=0.5,
    )
    runner = make_runner(redis_url, bootstrap, topic)
    runner.load()
    try:
        first = runner.metadata.fetch()
        assert first["error"] is None
        assert sorted(first["partitions"]) == ["0", "1"]
        # The brokers, each tried: all up, addresses as the metadata names them; a controller.
        hosts = {b.strip() for b in bootstrap.split(",")}
        assert {b["host"] for b in first["brokers"].values()} == hosts
        assert all(b["reachable"] and b["in_metadata"] for b in first["brokers"].values())
        assert str(first["controller"]) in first["brokers"]
        assert first["partitions"]["0"]["leader_host"].startswith("127.0.0.1:")
        assert runner.status(time.time())["metadata"] == first  # what the pages read
    finally:
        runner.store.reset()


def test_a_stopped_broker_reads_as_the_clusters_state_in_words(redis_url, settings):
    """The overview's cluster strip and card note (issue #28, item 5) from a real stopped
    broker: the check runner's metadata thread finds it unreachable, and the cluster's state
    reads "broker 3 unreachable since HH:MM:SS UTC", nothing for a healthy cluster."""
    bootstrap = settings.KAFKA_BOOTSTRAP_SERVERS
    topic = f"dashboard-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 3)]).values():
        future.result(30)
    runner = make_runner(redis_url, bootstrap, topic)
    runner.load()
    cluster = LocalCluster(
        os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
    )
    try:
        runner.metadata.fetch()
        healthy = runner.status(time.time())
        assert cluster_problems([healthy]) == {}
        cluster.kill(3)
        try:
            wait_until(
                lambda: not runner.metadata.fetch()["brokers"]["3"]["reachable"],
                30,
                "broker 3 unreachable in the checker's metadata",
                interval=0.5,
            )
            doc = runner.status(time.time())
            problems = cluster_problems([doc])
            assert re.fullmatch(
                r"broker 3 unreachable since \d\d:\d\d:\d\d UTC", problems[doc["cluster"]]
            ), problems
            assert not affected(doc)  # not stalled: its card keeps its own reasons
            assert affected({**doc, "verdict": "STALLED"})
        finally:
            cluster.start_node(3)
            cluster.wait_for_brokers({3}, timeout=120)
        wait_until(
            lambda: runner.metadata.fetch()["brokers"]["3"]["reachable"],
            60,
            "broker 3 reachable again",
            interval=0.5,
        )
        assert cluster_problems([runner.status(time.time())]) == {}
    finally:
        runner.store.reset()
