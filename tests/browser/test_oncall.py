"""On-call pages in Chromium: acknowledge an incident from its page, see it on the overview.

No Kafka here: this module overrides ``live_app`` with the quiet app (conftest.py: the run's
Daphne, the default sentinels' rows, no sentinel running), and the incident is written with
the models, as the evaluation would write it.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, USERNAME, LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAKE_INCIDENT = """
import json
from dashboard.models import Incident, Sentinel
from dashboard.models.oncall import AlertRule
s = Sentinel.objects.get(name="at-least-once")
rule, _ = AlertRule.objects.get_or_create(sentinel=s, kind="violated", defaults={"severity": "critical"})
# One unresolved incident per rule: one the live stack may have opened itself is resolved first.
Incident.objects.filter(rule=rule).exclude(state="resolved").update(state="resolved")
i = Incident.objects.create(rule=rule, sentinel=s, cluster=s.cluster.name, topic=s.topic,
    semantic=s.semantic, kind="violated", severity="critical", counts={"lost": 40},
    reason="at-least-once on cluster local: 40 acknowledged records lost on partition 2")
print(json.dumps({"id": i.pk}))
"""


@pytest.fixture(scope="module")
def live_app(quiet_app: LiveApp) -> LiveApp:
    """The app without sentinel processes (conftest.py, ``quiet_app``)."""
    return quiet_app


def test_it_acknowledges_an_incident_from_its_page_and_the_overview_shows_it(
    page, live_app: LiveApp
):
    incident = json.loads(live_app.manage("shell", "-c", MAKE_INCIDENT).splitlines()[-1])["id"]
    page.goto(live_app.base_url + "/")
    latched = page.locator(f'[data-latched="{incident}"]')
    expect(latched.locator(".latched-text")).to_have_text(
        re.compile(
            rf"violated at \d\d:\d\d UTC, 40 lost; incident #{incident} open, not acknowledged"
        )
    )

    page.goto(f"{live_app.base_url}/incidents/{incident}/")
    expect(page.locator("#acknowledged")).to_have_text("not acknowledged")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Incident #{incident} acknowledged by {USERNAME}"
    )
    expect(page.locator("#acknowledged")).to_contain_text(f"by {USERNAME}")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "oncall-incident-acknowledged.png"), full_page=True)

    page.get_by_role("link", name="Overview").click()
    entry = page.locator(f'#oncall-block li[data-incident="{incident}"]')
    expect(entry).to_contain_text(f"acknowledged by {USERNAME}")
    expect(entry).not_to_contain_text("not acknowledged")
    expect(latched.locator(".latched-text")).to_have_text(
        re.compile(
            rf"violated at \d\d:\d\d UTC, 40 lost; incident #{incident} acknowledged by {USERNAME}"
        )
    )


def test_the_incidents_list_shows_a_new_incident_without_reload(page, live_app: LiveApp):
    page.goto(live_app.base_url + "/incidents/")
    page.evaluate("window.__notReloaded = true")
    # Its socket carries on-call events only; a heartbeat says nothing changed.
    expect(page.locator("#live-status")).to_contain_text(re.compile(r"updated \d+ s ago"))
    incident = json.loads(
        live_app.manage(
            "shell", "-c", MAKE_INCIDENT + ANNOUNCE + "print(json.dumps({'id': i.pk}))"
        ).splitlines()[-1]
    )["id"]
    row = page.locator(f'tr.incident-row[data-incident="{incident}"]')
    expect(row).to_contain_text("not acknowledged", timeout=5000)
    assert page.evaluate("window.__notReloaded") is True


ANNOUNCE = """
from dashboard.oncall.events import announce
announce(i, "opened")
"""


def test_the_live_pill_turns_stale_when_no_sentinel_reports(page, live_app: LiveApp):
    """No sentinel runs here: after five one-second windows' worth of nothing, the overview
    says it is stale (a page that keeps saying "Live" would be trusted)."""
    page.goto(live_app.base_url + "/")
    pill = page.locator("#live-status")
    expect(pill).to_have_attribute("data-state", "stale", timeout=15000)
    expect(pill).to_contain_text(re.compile(r"Stale: nothing new for \d+ s \(expected every 1 s\)"))
