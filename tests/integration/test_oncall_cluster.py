"""On-call against the real cluster, with sentinels hosted by a real Celery worker:

- a forged duplicate under at-most-once opens exactly one incident and sends exactly one
  notification per channel to real HTTP receivers; more duplicates send nothing new; after
  the hold-down it resolves and sends exactly one resolve;
- no false page: a fresh start, a restart of the worker and every sentinel process, and a rolling restart of
  the three brokers open no VIOLATED incident for at-least-once or exactly-once. The rolling
  restart is the scenario lab's (the suite's only one: three broker restarts are its slowest
  fault), so the same restart also proves that the lab's sentinels lose nothing through it,
  with exact counts (``test_scenarios.assert_lost_nothing_through_a_rolling_restart``).

Alert evaluation runs here as Celery beat runs it (``evaluation.evaluate``), every half second,
with each notification delivered as its own task would deliver it."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from dashboard.models import Channel, Incident
from dashboard.models.oncall import RESOLVED, AlertRule, ensure_rules
from dashboard.oncall import evaluation, notification
from tests.integration.test_hosting import Workers, make_sentinel
from tests.integration.test_scenarios import assert_lost_nothing_through_a_rolling_restart, run
from tests.support.waiting import wait_until
from workers.engine import alerts
from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from workers.lab.lab import Lab
from workers.localkafka.cluster import LocalCluster
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.ONCALL_ALLOW_PRIVATE_URLS = True


@pytest.fixture
def workers(tmp_path):
    from dashboard.models import Sentinel

    group = Workers(tmp_path)
    yield group
    Sentinel.objects.update(enabled=False)
    group.stop_all()


class Evaluator(threading.Thread):
    """Evaluates alert rules every ``interval`` seconds until stopped, as Celery beat does."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.runs = 0

    def run(self) -> None:
        from django.db import connections

        try:
            while not self.stopped.is_set():
                evaluation.evaluate(dispatch=notification.deliver)
                self.runs += 1
                self.stopped.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)
        if self.error is not None:
            raise self.error


def processed(sentinel) -> int:
    doc = SentinelStore(connect(os.environ["REDIS_URL"]), sentinel.pk).status() or {}
    return (doc.get("totals") or {}).get("processed", 0)


def forge_duplicate(sentinel, bootstrap: str) -> None:
    """Write an already processed sentinel record to its topic again."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"forger-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(sentinel.topic, 0, 0)])
        msg = wait_until(
            lambda: (m := consumer.poll(1.0)) is not None and not m.error() and [m],
            30,
            f"a record of {sentinel.topic} to copy",
            interval=0,
        )[0]  # a list: a Message with an empty value is falsy
        value = msg.value()
    finally:
        consumer.close()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(sentinel.topic, value, partition=0)
    assert producer.flush(30) == 0


def test_a_forged_duplicate_pages_once_grows_quietly_and_resolves_once(workers, httpserver):
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    httpserver.expect_request("/pd", method="POST").respond_with_data("{}", status=202)
    hook = Channel.objects.create(
        name="hook", kind="webhook", config={"url": httpserver.url_for("/hook")}
    )
    pd = Channel.objects.create(
        name="pd",
        kind="pagerduty",
        config={"routing_key": "R" * 32, "url": httpserver.url_for("/pd")},
    )
    amo = make_sentinel(AT_MOST_ONCE)
    for rule in ensure_rules(amo):
        # Only the violation pages here: at-most-once may really lose records right after
        # its topic is created, which its loss-rate rule would rightly report too.
        rule.channels.set([hook, pd] if rule.kind == alerts.VIOLATED else [])
    # This rule lets its incident resolve once clear (a violation's does not by default).
    AlertRule.objects.filter(sentinel=amo, kind=alerts.VIOLATED).update(
        resolve_after_s=8, resolves_itself=True
    )
    workers.start("w1")
    wait_until(lambda: processed(amo) >= 60, 120, "the sentinel processing records")
    evaluator = Evaluator()
    evaluator.start()
    try:
        forge_duplicate(amo, bootstrap)
        incident = wait_until(
            lambda: Incident.objects.filter(sentinel=amo, kind=alerts.VIOLATED).first(),
            60,
            "an incident for the duplicate",
        )
        wait_until(lambda: len(httpserver.log) >= 2, 30, "the trigger sent to both channels")
        forge_duplicate(amo, bootstrap)
        forge_duplicate(amo, bootstrap)
        wait_until(
            lambda: Incident.objects.get(pk=incident.pk).counts.get("duplicated", 0) >= 3,
            60,
            "the incident's count grown to 3",
        )
        wait_until(
            lambda: Incident.objects.get(pk=incident.pk).state == RESOLVED,
            90,
            "the incident resolved after the hold-down",
        )
        wait_until(lambda: len(httpserver.log) >= 4, 30, "the resolve sent to both channels")
    finally:
        evaluator.stop()
    assert Incident.objects.filter(sentinel=amo, kind=alerts.VIOLATED).count() == 1
    incident.refresh_from_db()
    assert incident.counts == {"duplicated": 3}
    assert "3 duplicate processings" not in incident.reason  # the reason that opened it
    assert "duplicate processings on partition 0" in incident.reason
    sent = [(req.path, json.loads(req.data)) for req, _ in httpserver.log]
    assert [path for path, _ in sent].count("/hook") == 2
    assert [path for path, _ in sent].count("/pd") == 2
    hook_bodies = [body["status"] for path, body in sent if path == "/hook"]
    pd_bodies = [body["event_action"] for path, body in sent if path == "/pd"]
    assert hook_bodies == ["firing", "resolved"]
    assert pd_bodies == ["trigger", "resolve"]
    assert {c.enabled for c in (hook, pd)} == {True}


@pytest.mark.timeout(1200)
def test_starts_restarts_and_a_rolling_broker_restart_raise_no_false_alarm_and_lose_nothing(
    workers, httpserver, tmp_path
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    Channel.objects.create(name="hook", kind="webhook", config={"url": httpserver.url_for("/hook")})
    alo, eos = make_sentinel(AT_LEAST_ONCE), make_sentinel(EXACTLY_ONCE)
    for sentinel in (alo, eos):
        ensure_rules(sentinel)
    evaluator = Evaluator(interval=1.0)
    evaluator.start()
    try:
        workers.start("w1")  # a fresh start
        for s in (alo, eos):
            wait_until(lambda s=s: processed(s) >= 100, 180, f"{s.name} processing")
        workers.stop_all()  # a restart of every project process
        workers.start("w2")
        for s in (alo, eos):
            before = processed(s)
            wait_until(lambda s=s, b=before: processed(s) > b + 50, 180, f"{s.name} back")
        cluster = LocalCluster(
            os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
        )
        # A rolling restart of the three brokers (each stopped cleanly and started again once
        # every replica is back in sync), by the scenario lab with sentinels of its own.
        lab = Lab(
            bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            redis_url=os.environ["REDIS_URL"],
            local=cluster,
            workdir=tmp_path / "lab",
        )
        _outcome, results = run("rolling-restart", lab)
        assert lab.touched_nodes == set(cluster.nodes), lab.touched_nodes
        for s in (alo, eos):
            before = processed(s)
            wait_until(lambda s=s, b=before: processed(s) > b + 50, 180, f"{s.name} after")
    finally:
        evaluator.stop()
    assert evaluator.runs >= 30  # rules were evaluated throughout
    # Nothing that did not happen: no violation (nothing was lost or duplicated), and no
    # degradation page for start-up latency. A real stall is not a false page: a copier can
    # wait more than a minute for its transaction coordinator while the brokers restart, and
    # the stalled rule says so.
    false = Incident.objects.exclude(kind=alerts.STALLED)
    assert list(false.values_list("kind", "sentinel__name", "reason")) == []
    for stall in Incident.objects.filter(kind=alerts.STALLED):
        assert "no progress for" in stall.reason or "not running" in stall.reason, stall.reason
    bodies = [json.loads(req.data) for req, _ in httpserver.log]
    assert [b for b in bodies if b["commonLabels"]["rule"] != alerts.STALLED] == []
    # The lab's own sentinels lost nothing through the same rolling restart, and every broker
    # is back.
    assert_lost_nothing_through_a_rolling_restart(results)
    status = cluster.status()
    assert [n["state"] for n in status["nodes"]] == ["running"] * 3, status
    assert status["brokers"] == [1, 2, 3], status
