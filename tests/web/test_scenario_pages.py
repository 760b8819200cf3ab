"""The scenario lab's pages, JSON, model, Celery task and management command (no Kafka).

Real scenarios need the cluster (tests/integration/test_scenarios.py); here a fake scenario
is registered where a run must complete, and real ones only where they are refused.
"""

from __future__ import annotations

import json
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import include, path, reverse

from dashboard import urls as project_urls
from dashboard.lab import tasks as scenario_tasks
from dashboard.models import Cluster, ScenarioRun
from workers.lab.catalogue import SCENARIOS, Scenario
from workers.lab.lab import Lab
from workers.lab.outcome import (
    ABORTED,
    PASSED,
    QUEUED,
    RUNNING,
    Expect,
    ScenarioAborted,
    SemanticResult,
)
from workers.store.keys import LAB_LOCK_KEY

# The integrator includes dashboard.lab.urls from dashboard/urls.py; until then (and
# after) this urlconf serves both.
urlpatterns = list(project_urls.urlpatterns)
if not any(getattr(p, "namespace", None) == "scenarios" for p in urlpatterns):
    urlpatterns.append(path("scenarios/", include("dashboard.lab.urls")))

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


class FakeScenario(Scenario):
    """Reports progress and returns fixed results; checks that progress reached the row."""

    name = "fake"
    title = "Fake scenario"
    description = "for tests"
    seen_phases: list[tuple[str, int]] = []

    def preflight(self, lab: Lab) -> None:
        pass

    def run(self, lab: Lab) -> list[SemanticResult]:
        lab.progress("injecting the fault", 40)
        row = ScenarioRun.objects.get(state=RUNNING)
        FakeScenario.seen_phases.append((row.phase, row.percent))
        counters = {"lost": 3, "duplicated": 0}
        expect = [Expect("lost", value=3), Expect("duplicated")]
        return [
            SemanticResult(
                semantic="at-most-once",
                profile="at-most-once",
                fault="consumer SIGKILLed",
                fault_at=1.5,
                counters=counters,
                expected=[e.text(counters) for e in expect],
                matched=all(e.holds(counters) for e in expect),
            )
        ]


class BrokenScenario(FakeScenario):
    name = "broken"

    def run(self, lab: Lab) -> list[SemanticResult]:
        raise ScenarioAborted("cluster not ready: nodes {1: 'stopped'}")


@pytest.fixture
def fake_scenarios(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setitem(SCENARIOS, "fake", FakeScenario)
    monkeypatch.setitem(SCENARIOS, "broken", BrokenScenario)
    FakeScenario.seen_phases = []


@pytest.fixture
def remote(db: None) -> Cluster:
    return Cluster.objects.create(name="remote", bootstrap_servers="127.0.0.1:1")


@pytest.fixture
def local(db: None, settings) -> Cluster:
    return Cluster.objects.create(
        name="local", bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, is_local=True
    )


def finished_run(**fields) -> ScenarioRun:
    result = {
        "semantic": "at-least-once",
        "profile": "at-least-once",
        "fault": "consumer SIGKILLed by its fault hook at 'after-process'",
        "fault_at": 7.2,
        "counters": {"acked": 100, "processed": 104, "lost": 0, "duplicated": 4},
        "expected": ["lost = 0", "duplicated = 4"],
        "matched": True,
        "notes": [],
        "detail": {"batch": 4},
    }
    values = {
        "scenario": "consumer-crash-before-commit",
        "state": PASSED,
        "percent": 100,
        "phase": "done",
        "results": [result],
    }
    values.update(fields)
    return ScenarioRun.objects.create(**values)


# -- pages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/scenarios/", "/scenarios/runs/1/", "/scenarios/runs/1.json", "/scenarios/matrix/"],
)
def test_it_sends_anonymous_visitors_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_lists_every_scenario_with_a_csrf_protected_start_form(client, user, local):
    client.force_login(user)
    html = client.get(reverse("scenarios:list")).content.decode()
    for name in SCENARIOS:
        assert f'name="scenario" value="{name}"' in html
    assert html.count("csrfmiddlewaretoken") >= len(SCENARIOS)
    assert 'action="/scenarios/start/"' in html and 'method="post"' in html
    assert "dashboard/scenarios.js" in html


def test_it_offers_only_local_clusters_for_broker_scenarios(client, user, local, remote):
    client.force_login(user)
    html = client.get(reverse("scenarios:list")).content.decode()
    leader_form = html.split('value="leader-kill"')[1].split("</form>")[0]
    crash_form = html.split('value="consumer-crash-after-commit"')[1].split("</form>")[0]
    assert ">remote<" not in leader_form and ">local<" in leader_form
    assert ">remote<" in crash_form


def test_it_queues_a_run_on_post(client, user, local):
    client.force_login(user)
    with mock.patch.object(scenario_tasks.run_scenario, "delay", autospec=True) as delay:
        response = client.post(
            reverse("scenarios:start"), {"scenario": "leader-kill", "cluster": local.pk}
        )
    run = ScenarioRun.objects.get()
    assert (run.scenario, run.cluster, run.state) == ("leader-kill", local, QUEUED)
    delay.assert_called_once_with(run.pk)
    assert response.status_code == 302
    assert response["Location"] == f"/scenarios/runs/{run.pk}/"


def test_it_refuses_a_broker_scenario_on_another_cluster(client, user, remote):
    client.force_login(user)
    with mock.patch.object(scenario_tasks.run_scenario, "delay", autospec=True) as delay:
        response = client.post(
            reverse("scenarios:start"), {"scenario": "rolling-restart", "cluster": remote.pk}
        )
    assert response.status_code == 400
    assert (
        "only does to the project&#x27;s local cluster, not to remote" in response.content.decode()
    )
    assert not ScenarioRun.objects.exists()
    delay.assert_not_called()


def test_it_rejects_unknown_scenarios_and_clusters(client, user):
    client.force_login(user)
    bad_name = client.post(reverse("scenarios:start"), {"scenario": "nope"})
    bad_cluster = client.post(
        reverse("scenarios:start"), {"scenario": "leader-kill", "cluster": "999"}
    )
    assert bad_name.status_code == bad_cluster.status_code == 400
    assert not ScenarioRun.objects.exists()


def test_it_starts_runs_by_post_with_csrf_only(user):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    assert csrf_client.get(reverse("scenarios:start")).status_code == 405
    assert csrf_client.post(reverse("scenarios:start"), {"scenario": "fake"}).status_code == 403


def test_it_marks_a_run_aborted_when_it_cannot_be_queued(client, user, local):
    client.force_login(user)
    with mock.patch.object(
        scenario_tasks.run_scenario, "delay", autospec=True, side_effect=OSError("broker down")
    ):
        client.post(reverse("scenarios:start"), {"scenario": "leader-kill"})
    run = ScenarioRun.objects.get()
    assert run.state == ABORTED
    assert run.reason == "could not queue the run: broker down"


def test_it_serves_a_runs_progress_as_json_and_html(client, user, local):
    client.force_login(user)
    run = ScenarioRun.objects.create(
        scenario="leader-kill",
        cluster=local,
        state=RUNNING,
        phase="recovering",
        percent=45,
    )
    doc = client.get(reverse("scenarios:run-json", args=[run.pk])).json()
    assert doc["state"] == "running" and doc["phase"] == "recovering" and doc["percent"] == 45
    assert doc["cluster"] == "local" and doc["title"] == "Leader killed"
    html = client.get(reverse("scenarios:run", args=[run.pk])).content.decode()
    assert '<progress max="100" value="45"' in html
    assert "recovering" in html and "data-reload-on-finish" in html
    listing = client.get(reverse("scenarios:list")).content.decode()
    assert f'data-run-url="/scenarios/runs/{run.pk}.json"' in listing


def test_it_exports_a_run_as_a_json_attachment(client, user):
    client.force_login(user)
    run = finished_run()
    response = client.get(reverse("scenarios:run-json", args=[run.pk]) + "?download=1")
    assert response["Content-Disposition"] == f'attachment; filename="scenario-run-{run.pk}.json"'
    doc = json.loads(response.content)
    assert doc["results"][0]["counters"]["duplicated"] == 4
    html = client.get(reverse("scenarios:run", args=[run.pk])).content.decode()
    assert "duplicated = 4" in html and "at t+7.2 s" in html


def test_it_builds_the_result_matrix_from_the_latest_completed_runs(client, user):
    client.force_login(user)
    older = finished_run()
    latest = finished_run()
    ScenarioRun.objects.create(scenario="consumer-crash-before-commit", state=ABORTED)
    doc = client.get(reverse("scenarios:matrix-json")).json()
    assert doc["semantics"] == ["at-most-once", "at-least-once", "exactly-once"]
    rows = {row["scenario"]: row for row in doc["scenarios"]}
    assert set(rows) == set(SCENARIOS)
    row = rows["consumer-crash-before-commit"]
    assert row["run"]["id"] == latest.pk != older.pk
    assert row["cells"]["at-least-once"][0]["expected"] == ["lost = 0", "duplicated = 4"]
    assert rows["leader-kill"]["run"] is None
    assert rows["transaction-fencing"]["semantics"] == ["exactly-once"]
    html = client.get(reverse("scenarios:matrix")).content.decode()
    assert f"run #{latest.pk}" in html and "n/a" in html and "not run yet" in html


# -- model and Celery task ---------------------------------------------------------------


def test_it_runs_a_queued_run_through_the_celery_task(fake_scenarios):
    run = ScenarioRun.objects.create(scenario="fake")
    assert scenario_tasks.run_scenario.apply(args=[run.pk]).get() == PASSED
    run.refresh_from_db()
    assert FakeScenario.seen_phases == [("injecting the fault", 40)], "progress reached the row"
    assert (run.state, run.percent, run.phase, run.reason) == ("passed", 100, "done", "")
    assert run.results[0]["expected"] == ["lost = 3", "duplicated = 0"]
    assert run.started is not None and run.finished >= run.started


def test_it_claims_a_run_only_once(fake_scenarios):
    run = ScenarioRun.objects.create(scenario="fake")
    assert ScenarioRun.claim(run.pk) is not None
    assert ScenarioRun.claim(run.pk) is None
    assert scenario_tasks.run_scenario.apply(args=[run.pk]).get() == "skipped"


def test_it_ends_a_run_that_cannot_complete_as_aborted_with_the_reason(fake_scenarios):
    run = ScenarioRun.objects.create(scenario="broken")
    assert scenario_tasks.run_scenario.apply(args=[run.pk]).get() == ABORTED
    run.refresh_from_db()
    assert run.reason == "cluster not ready: nodes {1: 'stopped'}"
    assert run.results == [] and run.finished is not None


def test_it_refuses_broker_faults_on_a_cluster_that_is_not_local(remote, redis_url):
    run = ScenarioRun.objects.create(scenario="leader-kill", cluster=remote)
    assert scenario_tasks.run_scenario.apply(args=[run.pk]).get() == ABORTED
    run.refresh_from_db()
    assert run.reason.startswith("refused: scenario 'leader-kill' injects broker faults")
    assert "cluster 'remote' is not it" in run.reason


def test_it_refuses_broker_faults_when_the_local_cluster_serves_other_servers(
    local, redis_url, settings
):
    local.bootstrap_servers = "127.0.0.1:1"
    local.save()
    run = ScenarioRun.objects.create(scenario="lost-acks-and-retries", cluster=local)
    scenario_tasks.run_scenario.apply(args=[run.pk])
    run.refresh_from_db()
    assert run.state == ABORTED
    assert "not the target cluster 'local' (127.0.0.1:1)" in run.reason


def test_it_runs_one_scenario_at_a_time(fake_scenarios, redis_url):
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url)
    client.set(LAB_LOCK_KEY, json.dumps({"token": "x", "scenario": "leader-kill"}))
    try:
        run = ScenarioRun.objects.create(scenario="fake")
        scenario_tasks.run_scenario.apply(args=[run.pk])
        run.refresh_from_db()
        assert run.state == ABORTED
        assert run.reason == "another scenario (leader-kill) is running; one at a time"
    finally:
        client.delete(LAB_LOCK_KEY)


# -- management command ------------------------------------------------------------------


def test_it_lists_the_scenarios_on_the_command_line():
    out = StringIO()
    call_command("scenario", "list", stdout=out)
    text = out.getvalue()
    for name in SCENARIOS:
        assert name in text
    assert "local cluster only" in text and "any cluster" in text
    out = StringIO()
    call_command("scenario", "list", "--json", stdout=out)
    names = [s["name"] for s in json.loads(out.getvalue())["scenarios"]]
    assert names == list(SCENARIOS)


def test_it_runs_a_scenario_from_the_command_line_and_records_it(fake_scenarios):
    out, err = StringIO(), StringIO()
    call_command("scenario", "run", "fake", "--json", stdout=out, stderr=err)
    doc = json.loads(out.getvalue())
    assert doc["state"] == "passed" and doc["results"][0]["counters"]["lost"] == 3
    assert "[ 40%] injecting the fault" in err.getvalue()
    assert ScenarioRun.objects.get().state == PASSED


def test_it_exits_non_zero_when_a_scenario_does_not_pass(fake_scenarios):
    with pytest.raises(CommandError, match="scenario broken aborted: cluster not ready"):
        call_command("scenario", "run", "broken", stdout=StringIO(), stderr=StringIO())


def test_it_ends_a_run_whose_lab_cannot_be_built_as_aborted(local, settings, redis_url):
    settings.LOCAL_KAFKA_PORT = "not-a-port"
    run = ScenarioRun.objects.create(scenario="leader-kill", cluster=local)
    assert scenario_tasks.run_scenario.apply(args=[run.pk]).get() == ABORTED
    run.refresh_from_db()
    assert "not-a-port" in run.reason and run.finished is not None
