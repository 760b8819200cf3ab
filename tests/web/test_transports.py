"""Notification integrations against real HTTP receivers on loopback (pytest-httpserver):
the exact bodies sent, retries, channels disabled by permanent errors, timeouts that delay
no other channel, and refused internal addresses."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from django.db import connections
from werkzeug import Response

from dashboard.models import Channel, Incident
from dashboard.models.oncall import AlertRule
from dashboard.oncall import evaluation, notification
from dashboard.oncall.transports import TransportError, check_url
from tests.support.concurrency import at_once, meet
from tests.support.dashboard_data import fresh_defaults, wipe
from workers.engine import alerts

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.ONCALL_ALLOW_PRIVATE_URLS = True
    settings.ONCALL_READ_TIMEOUT_S = 1
    settings.DS_BASE_URL = "https://sentinel.example"


def make_incident(sentinel, channels) -> Incident:
    rule = AlertRule.objects.create(sentinel=sentinel, kind=alerts.VIOLATED, severity="critical")
    rule.channels.set(channels)
    return Incident.objects.create(
        rule=rule,
        sentinel=sentinel,
        cluster="local",
        topic=sentinel.topic,
        semantic=sentinel.semantic,
        kind=alerts.VIOLATED,
        severity="critical",
        reason="at-most-once on cluster local, topic t: 1 duplicate processings on partition 0 "
        "since 14:02:11 UTC",
        counts={"duplicated": 1},
        dedup_key="delivery-sentinel-abc",
    )


def deliver_now(event_id: int) -> None:
    notification.deliver(event_id)


def bodies(httpserver, path: str) -> list[dict]:
    return [json.loads(req.data) for req, _resp in httpserver.log if req.path == path]


@pytest.mark.django_db
def test_it_sends_the_exact_bodies_for_trigger_acknowledge_and_resolve(
    httpserver, sentinels, admin_user
):
    for path in ("/hook", "/slack", "/pd"):
        httpserver.expect_request(path, method="POST").respond_with_data("ok", status=202)
    hook = Channel.objects.create(
        name="am", kind="webhook", config={"url": httpserver.url_for("/hook")}
    )
    slack = Channel.objects.create(
        name="slack", kind="slack", config={"url": httpserver.url_for("/slack")}
    )
    pd = Channel.objects.create(
        name="pd",
        kind="pagerduty",
        config={"routing_key": ROUTING_KEY, "url": httpserver.url_for("/pd")},
    )
    sentinel = sentinels["at-most-once"]
    incident = make_incident(sentinel, [hook, slack, pd])
    notification.notify(incident, alerts.TRIGGER, deliver_now)
    evaluation.acknowledge(incident, admin_user, dispatch=deliver_now)
    evaluation.resolve(incident, admin_user, "fixed", dispatch=deliver_now)

    url = f"https://sentinel.example/incidents/{incident.pk}/"
    labels = {
        "alertname": "DeliverySentinelViolated",
        "rule": "violated",
        "severity": "critical",
        "cluster": "local",
        "topic": "sentinel.at-most-once",
        "semantic": "at-most-once",
        "sentinel": "at-most-once",
    }
    trigger, ack, resolved = bodies(httpserver, "/hook")
    assert trigger["version"] == "4" and trigger["status"] == "firing"
    assert trigger["receiver"] == "am"
    assert (
        trigger["groupKey"] == '{}:{alertname="DeliverySentinelViolated",sentinel="at-most-once"}'
    )
    assert trigger["commonLabels"] == labels
    (alert,) = trigger["alerts"]
    assert alert["labels"] == labels and alert["status"] == "firing"
    assert alert["annotations"]["summary"] == incident.reason
    assert alert["annotations"]["counts"] == "duplicated=1"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"] == url
    assert len(alert["fingerprint"]) == 16
    assert (
        ack["status"] == "firing" and ack["alerts"][0]["annotations"]["acknowledged_by"] == "admin"
    )
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"

    assert bodies(httpserver, "/slack") == [
        {"text": f"[FIRING] critical: {incident.reason}\n<{url}|Open the incident>"},
        {
            "text": f"[ACKNOWLEDGED] critical: {incident.reason} (acknowledged by admin)\n"
            f"<{url}|Open the incident>"
        },
        {
            "text": f"[RESOLVED] critical: {incident.reason} (resolved by admin)\n"
            f"<{url}|Open the incident>"
        },
    ]

    pd_trigger, pd_ack, pd_resolve = bodies(httpserver, "/pd")
    assert pd_ack == {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": "delivery-sentinel-abc",
    }
    assert pd_resolve == {**pd_ack, "event_action": "resolve"}
    assert (
        pd_trigger["event_action"] == "trigger"
        and pd_trigger["dedup_key"] == "delivery-sentinel-abc"
    )
    assert pd_trigger["payload"]["summary"] == incident.reason
    assert pd_trigger["payload"]["severity"] == "critical"
    assert pd_trigger["payload"]["source"] == "delivery-sentinel/local"
    assert pd_trigger["payload"]["custom_details"]["counts"] == {"duplicated": 1}
    results = set(incident.events.filter(kind="notify").values_list("result", flat=True))
    assert results == {"ok"}


@pytest.mark.django_db
def test_a_5xx_is_retried_and_then_succeeds(httpserver, sentinels):
    httpserver.expect_ordered_request("/flaky").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/flaky").respond_with_data("ok", status=200)
    channel = Channel.objects.create(
        name="flaky", kind="webhook", config={"url": httpserver.url_for("/flaky")}
    )
    incident = make_incident(sentinels["at-least-once"], [channel])
    notification.notify(incident, alerts.TRIGGER, deliver_now)
    event = incident.events.get(kind="notify")
    assert (event.result, event.status_code) == ("ok", 200)
    assert len(httpserver.log) == 2
    channel.refresh_from_db()
    assert channel.enabled


@pytest.mark.django_db
def test_a_404_disables_the_channel_and_says_why(httpserver, sentinels):
    httpserver.expect_request("/gone").respond_with_data("no such hook", status=404)
    channel = Channel.objects.create(
        name="gone", kind="slack", config={"url": httpserver.url_for("/gone")}
    )
    incident = make_incident(sentinels["at-least-once"], [channel])
    notification.notify(incident, alerts.TRIGGER, deliver_now)
    event = incident.events.get(kind="notify")
    assert (event.result, event.status_code) == ("error", 404)
    channel.refresh_from_db()
    assert not channel.enabled
    assert "answered 404: no such hook" in channel.disabled_reason
    assert httpserver.url_for("/gone") not in channel.disabled_reason  # the URL is a secret
    assert len(httpserver.log) == 1  # not retried


@pytest.fixture
def hanging_url():
    """A receiver that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hang"
    server.close()


@pytest.mark.both_databases  # two deliveries writing at once while one waits on the network
@pytest.mark.django_db(transaction=True)
def test_a_hanging_receiver_times_out_without_delaying_another_channel(
    httpserver, hanging_url, redis_url
):
    sentinels = fresh_defaults(redis_url)
    httpserver.expect_request("/fast").respond_with_handler(lambda request: Response("ok"))
    hanging = Channel.objects.create(name="hanging", kind="webhook", config={"url": hanging_url})
    fast = Channel.objects.create(
        name="fast", kind="webhook", config={"url": httpserver.url_for("/fast")}
    )
    incident = make_incident(sentinels["at-least-once"], [hanging, fast])
    threads = []

    def in_a_task_of_its_own(event_id: int) -> None:
        def run() -> None:
            try:
                notification.deliver(event_id)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)

    notification.notify(incident, alerts.TRIGGER, in_a_task_of_its_own)
    for thread in threads:
        thread.join(10)
    fast_event = incident.events.get(channel=fast)
    hanging_event = incident.events.get(channel=hanging)
    assert fast_event.result == "ok" and fast_event.duration_ms is not None
    assert hanging_event.result == "error"
    assert hanging_event.error == "127.0.0.1 did not answer within 1 s"
    assert fast_event.at < hanging_event.at  # done while the other still waited
    hanging.refresh_from_db()
    assert hanging.enabled  # a timeout is not permanent
    wipe(redis_url, sentinels)


def test_it_refuses_internal_addresses_unless_allowed(settings):
    settings.ONCALL_ALLOW_PRIVATE_URLS = False
    for url in ("http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://169.254.169.254/x"):
        with pytest.raises(TransportError, match="an internal address") as caught:
            check_url(url)
        assert caught.value.permanent
    with pytest.raises(TransportError, match="must be http"):
        check_url("file:///etc/passwd")
    settings.ONCALL_ALLOW_PRIVATE_URLS = True
    check_url("http://127.0.0.1:8080/x")


@pytest.mark.django_db
def test_the_test_button_sends_now_and_records_the_attempt(httpserver):
    httpserver.expect_request("/t").respond_with_data("ok")
    channel = Channel.objects.create(
        name="t", kind="webhook", config={"url": httpserver.url_for("/t")}
    )
    event = notification.send_test(channel)
    assert event.pk and event.result == "ok" and event.duration_ms is not None
    (body,) = bodies(httpserver, "/t")
    assert body["alerts"][0]["labels"]["rule"] == "test"


@pytest.mark.both_databases  # the claim that one of two concurrent deliveries wins
@pytest.mark.django_db(transaction=True)
def test_a_notification_delivered_twice_at_once_is_sent_once(httpserver, sentinels, monkeypatch):
    """A redelivered task and the original, in two workers at the same moment."""
    httpserver.expect_request("/once", method="POST").respond_with_data("ok")
    channel = Channel.objects.create(
        name="once", kind="webhook", config={"url": httpserver.url_for("/once")}
    )
    pending: list[int] = []
    incident = make_incident(sentinels["at-most-once"], [channel])
    notification.notify(incident, alerts.TRIGGER, pending.append)
    # Both deliveries meet once past their check that the notification is still pending:
    # without a claim each would send it.
    together = threading.Barrier(2)
    real_notice_for = notification.notice_for

    def notice_together(*args, **kwargs):
        meet(together)  # the other delivery may have found it claimed and stopped
        return real_notice_for(*args, **kwargs)

    monkeypatch.setattr(notification, "notice_for", notice_together)
    results = at_once(lambda: notification.deliver(pending[0]))
    assert sorted(results) == ["ok", "skipped"]
    assert len(httpserver.log) == 1
