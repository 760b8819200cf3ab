"""The soak from the Scenarios page: the form, the queued task, the run's report (no Kafka:
the soak itself runs in tests/integration/test_soak.py)."""

from __future__ import annotations

import shutil
from unittest import mock

import pytest
from django.urls import reverse

from dashboard.lab import tasks
from dashboard.models import ScenarioRun
from workers.lab.outcome import PASSED, QUEUED
from workers.lab.soak.report import as_results, write_report
from workers.lab.soak.run import report_dir_for

pytestmark = [pytest.mark.django_db]


def test_it_offers_the_soak_on_the_scenarios_page(client, user):
    client.force_login(user)
    html = client.get(reverse("scenarios:list")).content.decode()
    form = html.split('action="/scenarios/soak/"')[1].split("</form>")[0]
    assert 'name="minutes"' in form and 'name="seed"' in form and "csrfmiddlewaretoken" in form


def test_it_queues_a_soak_with_a_time_limit_from_its_length(client, user):
    client.force_login(user)
    with mock.patch.object(tasks.run_soak, "apply_async", autospec=True) as queue:
        response = client.post(reverse("scenarios:soak-start"), {"minutes": "30", "seed": "14"})
    run = ScenarioRun.objects.get()
    assert (run.scenario, run.state) == ("soak", QUEUED)
    assert response.status_code == 302 and response["Location"] == f"/scenarios/runs/{run.pk}/"
    queue.assert_called_once_with(
        (run.pk, 30.0, 14),
        time_limit=1800 + tasks.SOAK_SLACK_S,
        soft_time_limit=1800 + tasks.SOAK_SLACK_S - 120,
    )


@pytest.mark.parametrize(
    ("minutes", "seed", "message"),
    [
        ("", "", "Minutes must be a number from 2 to 120."),
        ("1", "", "Minutes must be a number from 2 to 120."),
        ("500", "", "Minutes must be a number from 2 to 120."),
        ("nan", "", "Minutes must be a number from 2 to 120."),
        ("30", "-4", "The seed must be a whole number (or blank for a random one)."),
        ("30", "x", "The seed must be a whole number (or blank for a random one)."),
    ],
)
def test_it_refuses_a_bad_soak_form_with_a_message(client, user, minutes, seed, message):
    client.force_login(user)
    with mock.patch.object(tasks.run_soak, "apply_async", autospec=True) as queue:
        response = client.post(reverse("scenarios:soak-start"), {"minutes": minutes, "seed": seed})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ScenarioRun.objects.exists()
    queue.assert_not_called()


def test_it_serves_a_finished_soaks_report_and_links_it(client, user):
    client.force_login(user)
    run = ScenarioRun.objects.create(scenario="soak")
    assert client.get(reverse("scenarios:soak-report", args=[run.pk])).status_code == 404
    report = {
        "seed": 14,
        "minutes": 3,
        "kinds": ["sentinel-kill"],
        "started_at": 1000.0,
        "finished_at": 1180.0,
        "passed": True,
        "faults": [
            {
                "kind": "sentinel-kill",
                "started": 30.0,
                "ended": 40.0,
                "detail": {},
                "takeovers": [{"sentinel": "alo", "seconds": 4.2, "bound_s": 13.0, "ok": True}],
            }
        ],
        "sentinels": {
            "alo": {
                "semantic": "at-least-once",
                "profile": "at-least-once",
                "partitions": 3,
                "judged": True,
                "totals": {"acked": 10, "processed": 10},
                "comparison": {"differ": [], "pairs": {}},
                "windows": [[1000.0 + t, "HOLDING", 5, 0, 12.0, 0, 0, 0] for t in range(0, 180)],
            }
        },
        "checks": [{"name": "lost = 0", "sentinel": "alo", "ok": True, "seen": 0, "expected": "0"}],
    }
    directory = report_dir_for(f"run-{run.pk}")
    try:
        write_report(report, directory)
        run.finish(PASSED, "", as_results(report))
        page = client.get(reverse("scenarios:run", args=[run.pk])).content.decode()
        assert f'href="/scenarios/runs/{run.pk}/soak.html"' in page
        assert "alo: at-least-once" in page  # the per-sentinel result row
        response = client.get(reverse("scenarios:soak-report", args=[run.pk]))
        assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
        body = response.content.decode()
        assert body.count("<svg") == 4 and "all judged checks pass" in body
        assert "<script" not in body
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_it_serves_no_report_of_a_run_that_is_not_a_soak(client, user):
    client.force_login(user)
    run = ScenarioRun.objects.create(scenario="leader-kill")
    assert client.get(reverse("scenarios:soak-report", args=[run.pk])).status_code == 404
