"""The on-call pages: incident list and page (acknowledge / resolve recorded with the user),
channels (settings from the integration, secrets never in a page, test notification against
a real HTTP receiver, re-enable), silences, a sentinel's alert rules, and the overview's
on-call block and latched problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.models import Channel, Incident, IncidentEvent, Silence
from dashboard.models.oncall import ACKNOWLEDGED, OPEN, RESOLVED, AlertRule, ensure_rules
from dashboard.oncall.transports import transport_for
from workers.clientsecrets import is_sealed
from workers.engine import alerts
from workers.engine.redact import MASK

# On SQLite too (both_databases): the incident list's ordering and filters in SQL (Case, Max with a
# filter, distinct), a channel's counts, the windows around an incident.
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

HOOK_SECRET = "https://hooks.example/T0K3N-5ecret-path-abc123"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


@pytest.fixture
def logged_in(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture(autouse=True)
def oncall_settings(settings):
    settings.ONCALL_ALLOW_PRIVATE_URLS = True
    settings.ONCALL_READ_TIMEOUT_S = 1


def make_incident(sentinel, state=OPEN, kind=alerts.VIOLATED, **fields) -> Incident:
    rule, _ = AlertRule.objects.get_or_create(
        sentinel=sentinel, kind=kind, defaults={"severity": "critical"}
    )
    return Incident.objects.create(
        rule=rule,
        sentinel=sentinel,
        cluster=sentinel.cluster.name,
        topic=sentinel.topic,
        semantic=sentinel.semantic,
        kind=kind,
        severity=rule.severity,
        state=state,
        reason=fields.pop("reason", f"{sentinel.semantic}: 40 acknowledged records lost"),
        counts=fields.pop("counts", {"lost": 40}),
        **fields,
    )


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# -- incidents --------------------------------------------------------------------------------


def test_it_requires_a_login_for_every_oncall_page(client):
    for path in ("/incidents/", "/incidents/1/", "/channels/", "/channels/new/", "/silences/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/login/"), path


def test_it_lists_open_incidents_first_and_filters_them(logged_in, sentinels):
    alo, amo = sentinels["at-least-once"], sentinels["at-most-once"]
    old = timezone.now() - timedelta(hours=2)
    resolved = make_incident(alo, state=RESOLVED, opened_at=timezone.now())
    acked = make_incident(amo, state=ACKNOWLEDGED, kind=alerts.STALLED, opened_at=old)
    opened = make_incident(alo, kind=alerts.STALLED, opened_at=old - timedelta(hours=1))

    page = html(logged_in.get("/incidents/"))
    order = [page.index(f'data-incident="{i.pk}"') for i in (opened, acked, resolved)]
    assert order == sorted(order), "open, then acknowledged, then resolved"
    assert "not acknowledged" in page

    page = html(logged_in.get("/incidents/", {"semantic": "at-most-once"}))
    assert f'data-incident="{acked.pk}"' in page
    assert f'data-incident="{opened.pk}"' not in page

    page = html(logged_in.get("/incidents/", {"state": "resolved"}))
    assert f'data-incident="{resolved.pk}"' in page
    assert f'data-incident="{opened.pk}"' not in page

    page = html(logged_in.get("/incidents/", {"cluster": "nowhere"}))
    assert "No incidents match these filters" in page

    page = html(logged_in.get("/incidents/", {"state": "bogus"}))
    assert "unknown state &#x27;bogus&#x27;" in page
    assert f'data-incident="{resolved.pk}"' in page


def test_it_shows_an_incident_with_its_timeline_and_a_link_to_its_charts(logged_in, sentinels):
    sentinel = sentinels["at-least-once"]
    channel = Channel.objects.create(name="pager", kind="pagerduty", config={"routing_key": "k"})
    incident = make_incident(sentinel, opened_at=timezone.now() - timedelta(minutes=30))
    IncidentEvent.objects.create(incident=incident, kind="opened", message="40 lost")
    IncidentEvent.objects.create(
        incident=incident,
        kind="notify",
        channel=channel,
        action="trigger",
        result="error",
        status_code=503,
        duration_ms=1234.4,
        error="events.pagerduty.com answered 503",
    )
    page = html(logged_in.get(f"/incidents/{incident.pk}/"))
    assert "40 acknowledged records lost" in page
    assert "HTTP 503" in page and "1234 ms" in page
    assert "events.pagerduty.com answered 503" in page
    # 30 minutes ago: the detail page's 1-hour range is the shortest that reaches back.
    detail = reverse("sentinel-detail", args=[sentinel.pk])
    assert f'href="{detail}?range=1h"' in page
    assert ">Acknowledge</button>" in page
    assert logged_in.get("/incidents/999999/").status_code == 404


def test_it_shows_the_one_minute_windows_around_the_incident(logged_in, sentinels):
    from dashboard.models.metrics import MetricWindow

    sentinel = sentinels["at-least-once"]
    opened = datetime(2026, 1, 5, 14, 2, tzinfo=UTC)
    incident = make_incident(sentinel, opened_at=opened, last_firing_at=opened)
    for minutes, lost in ((-60, 7), (-3, 0), (0, 40)):
        MetricWindow.objects.create(
            sentinel=sentinel,
            start=opened + timedelta(minutes=minutes),
            counts={"processed": 600, "lost": lost},
            latency={"e2e": {"p99": 41.5}},
            verdict="VIOLATED" if lost else "HOLDING",
        )
    page = html(logged_in.get(f"/incidents/{incident.pk}/"))
    table = page[page.index('class="partitions windows"') :]
    assert "13:59" in table and "14:02" in table
    assert "13:02" not in table  # an hour before: not part of it
    assert table.count('<tr class="problem">') == 1
    assert "<td>40</td>" in table and "41.5" in table


def test_it_acknowledges_and_resolves_with_the_user(logged_in, sentinels, alice):
    incident = make_incident(sentinels["at-least-once"])
    url = f"/incidents/{incident.pk}/"
    assert logged_in.get(url + "acknowledge/").status_code == 405  # POST only

    response = logged_in.post(url + "acknowledge/", follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert f"Incident #{incident.pk} acknowledged by alice" in html(response)
    incident.refresh_from_db()
    assert (incident.state, incident.acknowledged_by) == (ACKNOWLEDGED, alice)
    assert IncidentEvent.objects.filter(incident=incident, kind="acknowledged", user=alice).exists()

    response = logged_in.post(url + "resolve/", {"note": "broker 2 replaced"}, follow=True)
    page = html(response)
    assert "by alice" in page and "broker 2 replaced" in page
    incident.refresh_from_db()
    assert (incident.state, incident.resolved_by, incident.resolve_note) == (
        RESOLVED,
        alice,
        "broker 2 replaced",
    )
    assert ">Acknowledge</button>" not in page and ">Resolve</button>" not in page
    again = logged_in.post(url + "resolve/", {"note": "twice"}, follow=True)
    assert "was already resolved" in html(again)


# -- channels ---------------------------------------------------------------------------------


def test_it_never_sends_a_saved_secret_back_to_the_browser(logged_in, sentinels):
    ensure_rules(sentinels["at-least-once"])
    response = logged_in.post(
        "/channels/new/",
        {
            "name": "team-hook",
            "kind": "webhook",
            "webhook__url": HOOK_SECRET,
            "enabled": "on",
            "notify_all": "on",
        },
    )
    channel = Channel.objects.get(name="team-hook")
    assert response.status_code == 302
    assert is_sealed(channel.config["url"])  # at rest; opened only to send
    assert transport_for(channel).config["url"] == HOOK_SECRET
    # "notify for every existing rule": every rule there is notifies it.
    assert channel.rules.count() == AlertRule.objects.count() > 0

    pages = [
        html(logged_in.get(path))
        for path in (f"/channels/{channel.pk}/", "/channels/", "/incidents/", "/")
    ]
    for page in pages:
        assert "T0K3N-5ecret" not in page
    assert f'value="{MASK}"' in pages[0]
    assert f"url=https://hooks.example/{MASK}" in pages[1]  # enough to tell channels apart

    # Submitted back unchanged (the mask): the stored secret stays.
    response = logged_in.post(
        f"/channels/{channel.pk}/",
        {"name": "team-hook-2", "kind": "webhook", "webhook__url": MASK, "enabled": "on"},
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert (channel.name, transport_for(channel).config["url"]) == ("team-hook-2", HOOK_SECRET)


def test_it_shows_the_integrations_validation_errors_without_echoing_secrets(logged_in):
    response = logged_in.post(
        "/channels/new/",
        {"name": "pd", "kind": "pagerduty", "pagerduty__routing_key": "short-s3cr3t"},
    )
    page = html(response)
    assert "a PagerDuty integration key is 32 letters and digits" in page
    assert "short-s3cr3t" not in page
    assert not Channel.objects.exists()

    page = html(logged_in.post("/channels/new/", {"name": "mail", "kind": "email"}))
    assert "required" in page
    assert not Channel.objects.exists()


def test_it_sends_a_test_notification_and_shows_the_result(logged_in, httpserver, alice):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok", status=200)
    channel = Channel.objects.create(
        name="hook", kind="webhook", config={"url": httpserver.url_for("/hook")}
    )
    response = logged_in.post(f"/channels/{channel.pk}/test/", follow=True)
    page = html(response)
    assert len(httpserver.log) == 1
    assert 'id="test-result"' in page and "Last test: ok, HTTP 200" in page
    send = IncidentEvent.objects.get(channel=channel)
    assert (send.result, send.user, send.status_code) == ("ok", alice, 200)
    assert "Nothing sent yet" not in page
    assert httpserver.url_for("/hook") not in page


def test_it_shows_why_a_channel_was_disabled_and_enables_it_again(logged_in, httpserver):
    httpserver.expect_request("/gone", method="POST").respond_with_data("no such hook", 404)
    channel = Channel.objects.create(
        name="gone", kind="slack", config={"url": httpserver.url_for("/gone")}
    )
    page = html(logged_in.post(f"/channels/{channel.pk}/test/", follow=True))
    channel.refresh_from_db()
    assert not channel.enabled
    assert "answered 404" in channel.disabled_reason
    assert "Disabled:" in page and "answered 404" in page
    assert "answered 404" in html(logged_in.get("/channels/"))

    page = html(logged_in.post(f"/channels/{channel.pk}/enable/", follow=True))
    channel.refresh_from_db()
    assert channel.enabled and channel.disabled_reason == ""
    assert "Disabled:" not in page


# -- silences ---------------------------------------------------------------------------------


def test_it_creates_and_ends_a_silence(logged_in, sentinels, alice):
    sentinel = sentinels["exactly-once"]
    ends = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = logged_in.post(
        "/silences/", {"sentinel": sentinel.pk, "ends_at": ends, "comment": "broker upgrade"}
    )
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert (silence.sentinel, silence.created_by, silence.comment) == (
        sentinel,
        alice,
        "broker upgrade",
    )
    assert "Silenced: sentinel exactly-once" in html(logged_in.get("/"))

    page = html(logged_in.post(f"/silences/{silence.pk}/end/", follow=True))
    silence.refresh_from_db()
    assert silence.ends_at <= timezone.now()
    assert "Ended silence" in page
    assert "Silenced: sentinel" not in html(logged_in.get("/"))


def test_it_refuses_a_silence_without_a_target_or_in_the_past(logged_in, sentinels):
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = html(logged_in.post("/silences/", {"ends_at": past}))
    assert "the end time is in the past" in page
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = html(logged_in.post("/silences/", {"ends_at": future}))
    assert "choose a cluster or a sentinel" in page
    assert not Silence.objects.exists()


# -- rules ------------------------------------------------------------------------------------


def test_it_edits_a_sentinels_rules(logged_in, sentinels):
    sentinel = sentinels["at-most-once"]
    channel = Channel.objects.create(name="pd", kind="pagerduty", config={"routing_key": "k"})
    url = f"/manage/sentinels/{sentinel.pk}/rules/"
    page = html(logged_in.get(url))
    rules = {r.kind: r for r in AlertRule.objects.filter(sentinel=sentinel)}
    assert alerts.LOSS_RATE in rules and alerts.VIOLATED in rules  # created by the page
    assert f'name="rule-{rules[alerts.VIOLATED].pk}-for_s"' not in page  # not its kind's
    assert f'name="rule-{rules[alerts.STALLED].pk}-for_s"' in page

    data = {}
    for rule in rules.values():
        prefix = f"rule-{rule.pk}-"
        data.update(
            {
                prefix + "enabled": "on",
                prefix + "severity": rule.severity,
                prefix + "resolve_after_s": rule.resolve_after_s,
                prefix + "for_s": rule.for_s,
                prefix + "windows": rule.windows,
                prefix + "threshold": rule.threshold,
            }
        )
    stalled = f"rule-{rules[alerts.STALLED].pk}-"
    loss = f"rule-{rules[alerts.LOSS_RATE].pk}-"
    data.update({stalled + "for_s": 120, stalled + "severity": "warning"})
    data[f"rule-{rules[alerts.VIOLATED].pk}-channels"] = [channel.pk]
    del data[loss + "enabled"]

    bad = {**data, loss + "threshold": 250}
    page = html(logged_in.post(url, bad))
    assert "a percentage above 0, at most 100" in page
    assert AlertRule.objects.get(pk=rules[alerts.STALLED].pk).for_s == 60  # nothing saved

    assert logged_in.post(url, data).status_code == 302
    stalled_rule = AlertRule.objects.get(pk=rules[alerts.STALLED].pk)
    assert (stalled_rule.for_s, stalled_rule.severity) == (120, "warning")
    assert not AlertRule.objects.get(pk=rules[alerts.LOSS_RATE].pk).enabled
    assert list(AlertRule.objects.get(pk=rules[alerts.VIOLATED].pk).channels.all()) == [channel]


# -- overview ---------------------------------------------------------------------------------


def test_it_latches_an_unresolved_incident_on_the_overview(logged_in, sentinels, alice):
    sentinel = sentinels["at-least-once"]
    opened_at = datetime(2026, 1, 5, 14, 2, 11, tzinfo=UTC)
    incident = make_incident(sentinel, opened_at=opened_at)
    page = html(logged_in.get("/"))
    n = incident.pk
    assert f"violated at 14:02 UTC, 40 lost; incident #{n} open, not acknowledged" in page
    assert f'data-latched="{n}"' in page
    assert f'href="/incidents/{n}/"' in page

    Incident.objects.filter(pk=n).update(state=ACKNOWLEDGED, acknowledged_by=alice)
    page = html(logged_in.get("/"))
    assert f"violated at 14:02 UTC, 40 lost; incident #{n} acknowledged by alice" in page

    Incident.objects.filter(pk=incident.pk).update(state=RESOLVED)
    page = html(logged_in.get("/"))
    assert "data-latched=" not in page and "violated at 14:02" not in page


def test_the_overview_warns_while_nobody_would_be_notified(logged_in, sentinels):
    assert "No notification channel is configured" in html(logged_in.get("/"))
    hook = Channel.objects.create(name="hook", kind="webhook", config={"url": "http://x.test/"})
    assert 'id="notification-gap"' not in html(logged_in.get("/"))
    Channel.objects.filter(pk=hook.pk).update(enabled=False, disabled_reason="404 Not Found")
    assert "Every notification channel is disabled" in html(logged_in.get("/"))


def test_it_shows_a_channel_of_an_unknown_kind_without_its_settings(logged_in):
    channel = Channel.objects.create(name="old", kind="pager-2000", config={"token": "t0p-s3cr3t"})
    for path in ("/channels/", f"/channels/{channel.pk}/"):
        page = html(logged_in.get(path))
        assert "t0p-s3cr3t" not in page
    assert f"token={MASK}" in html(logged_in.get("/channels/"))


def test_it_edits_the_lint_error_rule_with_no_tuning_of_its_own(logged_in, sentinels):
    sentinel = sentinels["exactly-once"]
    channel = Channel.objects.create(name="pd", kind="pagerduty", config={"routing_key": "k"})
    url = f"/manage/sentinels/{sentinel.pk}/rules/"
    page = html(logged_in.get(url))
    lint_rule = AlertRule.objects.get(sentinel=sentinel, kind=alerts.LINT_ERROR)
    prefix = f"rule-{lint_rule.pk}-"
    assert f'data-rule="{alerts.LINT_ERROR}"' in page and "lint error appeared" in page
    for name in ("for_s", "windows", "threshold"):
        assert f'name="{prefix}{name}"' not in page
    assert f'name="{prefix}resolve_after_s"' in page

    data = {}
    for rule in AlertRule.objects.filter(sentinel=sentinel):
        p = f"rule-{rule.pk}-"
        data.update(
            {
                p + "enabled": "on",
                p + "severity": rule.severity,
                p + "resolve_after_s": rule.resolve_after_s,
                p + "for_s": rule.for_s,
                p + "windows": rule.windows,
                p + "threshold": rule.threshold,
            }
        )
    data.update({prefix + "severity": "critical", prefix + "resolve_after_s": 900})
    data[prefix + "channels"] = [channel.pk]
    assert logged_in.post(url, data).status_code == 302
    lint_rule.refresh_from_db()
    assert (lint_rule.severity, lint_rule.resolve_after_s, lint_rule.enabled) == (
        "critical",
        900,
        True,
    )
    assert list(lint_rule.channels.all()) == [channel]
