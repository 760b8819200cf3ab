"""Cancelling a scenario run, and finding runs whose runner died (issue 14, item 7).

The dead-runner tests drive time through the injected clock (``now``), never by sleeping;
the cancel test runs a real run on the local cluster with a broker stopped, cancels it from
its page, and checks that the lab restored the cluster and freed its lock."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
import redis
from django.urls import reverse
from django.utils import timezone

from dashboard.lab.runs import DEAD_AFTER_S, REAP_EVERY_S, cancel_run, reap_dead_runs
from dashboard.lab.tasks import execute_run
from dashboard.models import Cluster, ScenarioRun
from tests.support.waiting import wait_until
from workers.lab.catalogue import SCENARIOS, Scenario
from workers.lab.lab import LOCK_TTL_MS, Lab
from workers.lab.outcome import ABORTED, QUEUED, RUNNING, SemanticResult
from workers.localkafka.cluster import LocalCluster
from workers.store.connection import connect
from workers.store.lab import LabLock, ScenarioRuns

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_redis(redis_url: str) -> redis.Redis:
    client = connect(redis_url)
    client.delete("ds:scenario-lock")
    yield client
    client.delete("ds:scenario-lock")


def running_run(started_ago_s: float) -> ScenarioRun:
    return ScenarioRun.objects.create(
        scenario="leader-kill",
        state=RUNNING,
        phase="recovering",
        started=timezone.now() - timedelta(seconds=started_ago_s),
    )


def test_it_marks_a_run_whose_runner_stopped_beating_as_aborted_within_a_minute(client_redis):
    run = running_run(started_ago_s=120)
    beats, lock = ScenarioRuns(client_redis), LabLock(client_redis, LOCK_TTL_MS)
    assert lock.acquire("runner-token", "leader-kill", run_id=str(run.pk)) is None
    last_beat = time.time()
    beats.beat(str(run.pk), now=last_beat)

    assert reap_dead_runs(now=last_beat + DEAD_AFTER_S - 1) == []  # still beating recently
    run.refresh_from_db()
    assert run.state == RUNNING and lock.holder() is not None

    # The runner was SIGKILLed right after its last beat: the next reap after DEAD_AFTER_S
    # (beat runs it every REAP_EVERY_S) marks the run, well within the minute.
    assert reap_dead_runs(now=last_beat + DEAD_AFTER_S + REAP_EVERY_S) == [run.pk]
    run.refresh_from_db()
    assert run.state == ABORTED and run.finished is not None
    assert "stopped (no heartbeat for 55 s" in run.reason, run.reason
    assert lock.holder() is None  # the next run may start
    assert reap_dead_runs(now=last_beat + 600) == []  # marked once


def test_it_counts_the_start_as_a_beat_and_leaves_other_runs_locks_alone(client_redis):
    run = running_run(started_ago_s=5)  # claimed, its lab not built yet: no beat so far
    lock = LabLock(client_redis, LOCK_TTL_MS)
    assert lock.acquire("other", "rolling-restart", run_id="someone-else") is None
    assert reap_dead_runs(now=time.time()) == []
    assert reap_dead_runs(now=time.time() + DEAD_AFTER_S + 1) == [run.pk]
    assert lock.holder()["run"] == "someone-else"


def test_it_shows_a_dead_run_as_aborted_on_its_page(client, user, client_redis):
    run = running_run(started_ago_s=DEAD_AFTER_S + 30)  # never beat since its start
    client.force_login(user)
    doc = client.get(reverse("scenarios:run-json", args=[run.pk])).json()
    assert doc["state"] == ABORTED and "no heartbeat" in doc["reason"]


def test_it_cancels_a_queued_run_before_it_starts(client, user, client_redis):
    run = ScenarioRun.objects.create(scenario="leader-kill")
    client.force_login(user)
    page = client.post(reverse("scenarios:cancel", args=[run.pk]), follow=True)
    assert "Cancelled before it started." in page.content.decode()
    run.refresh_from_db()
    assert (run.state, run.reason) == (ABORTED, "cancelled by alice before it started")
    assert ScenarioRun.claim(run.pk) is None  # its task finds nothing to run
    assert "data-run-cancel" not in page.content.decode()  # no button on a finished run


def test_it_refuses_to_cancel_without_a_login_or_a_write_token(client, client_redis):
    run = ScenarioRun.objects.create(scenario="leader-kill")
    response = client.post(reverse("scenarios:cancel", args=[run.pk]))
    assert response.status_code == 302 and "/login" in response["Location"]
    assert client.post(f"/api/v1/scenarios/runs/{run.pk}/cancel").status_code == 401
    run.refresh_from_db()
    assert run.state == QUEUED


class FreezesABroker(Scenario):
    """Freezes one broker (SIGSTOP), then waits for what never comes: only a cancel ends it."""

    name = "freezes-a-broker"
    title = "Freezes a broker and waits"
    broker_fault = True

    def run(self, lab: Lab) -> list[SemanticResult]:
        lab.progress("freezing node 2", 10)
        lab.pause_node(2)
        lab.progress("waiting with node 2 down", 30)
        lab.wait(lambda: False, 600, "a cancel")
        return []


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the run goes on in a thread, on its own connection
def test_it_cancels_a_running_run_from_its_page_and_restores_the_cluster(
    client, user, client_redis, monkeypatch, settings
):
    monkeypatch.setitem(SCENARIOS, FreezesABroker.name, FreezesABroker)
    local = LocalCluster(
        os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
    )
    cluster = Cluster.objects.create(
        name="local", bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, is_local=True
    )
    run = ScenarioRun.objects.create(scenario=FreezesABroker.name, cluster=cluster)
    claimed = ScenarioRun.claim(run.pk)
    runner = threading.Thread(target=execute_run, args=(claimed,), daemon=True)
    runner.start()
    try:
        wait_until(
            lambda: ScenarioRun.objects.get(pk=run.pk).phase.startswith("waiting with node 2 down"),
            60,
            "node 2 frozen by the run",
        )
        assert [n["state"] for n in local.status()["nodes"]][1] == "paused"
        client.force_login(user)
        page = client.get(reverse("scenarios:run", args=[run.pk])).content.decode()
        assert "data-run-cancel" in page
        client.post(reverse("scenarios:cancel", args=[run.pk]))
        runner.join(120)
        assert not runner.is_alive(), "the run did not stop"
    finally:
        if runner.is_alive():  # never leave a broker down for the next test
            cancel_run(ScenarioRun.objects.get(pk=run.pk), "the test's cleanup")
            runner.join(120)
    run.refresh_from_db()
    assert (run.state, run.reason) == (ABORTED, "cancelled by alice")
    status = local.status()
    assert [n["state"] for n in status["nodes"]] == ["running"] * 3, status
    assert status["brokers"] == [1, 2, 3], status
    assert LabLock(client_redis, LOCK_TTL_MS).holder() is None


def test_it_cancels_through_the_api_with_a_write_token_only(client, alice, client_redis):
    from dashboard.models.tokens import ApiToken

    run = ScenarioRun.objects.create(scenario="leader-kill")
    _row, read = ApiToken.issue(alice, "read", "read")
    _row, write = ApiToken.issue(alice, "write", "write")
    url = f"/api/v1/scenarios/runs/{run.pk}/cancel"
    assert client.post(url, headers={"Authorization": f"Bearer {read}"}).status_code == 403
    response = client.post(url, headers={"Authorization": f"Bearer {write}"})
    assert response.status_code == 202, response.content
    assert response.json()["state"] == ABORTED
    assert response.json()["reason"] == "cancelled by alice before it started"
    missing = client.post(
        "/api/v1/scenarios/runs/999999/cancel", headers={"Authorization": f"Bearer {write}"}
    )
    assert missing.status_code == 404
