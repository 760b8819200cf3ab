"""``/api/v1/incidents`` and ``/api/v1/silences``: a chat bot acknowledges and resolves, a
deploy pipeline silences a cluster for its rollout; every answer against the OpenAPI schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from dashboard.models import ApiToken, Channel, Incident, IncidentEvent, Silence
from dashboard.models.oncall import ACKNOWLEDGED, OPEN, RESOLVED, AlertRule, active_silence
from tests.web.api_schema import check
from workers.engine import alerts

# On SQLite too (both_databases): incident lists ordered and filtered in SQL, acknowledge / resolve
# under row locks, and input the database cannot store (a NUL character).
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture
def tokens(alice):
    _, read = ApiToken.issue(alice, "bot-read", "read")
    _, write = ApiToken.issue(alice, "bot", "write")
    return {
        "read": {"Authorization": f"Bearer {read}"},
        "write": {"Authorization": f"Bearer {write}"},
    }


@pytest.fixture
def sent(monkeypatch):
    """Notifications recorded as dispatched (the Celery broker boundary is replaced)."""
    events: list[tuple[str, str]] = []

    def record(event_id: int) -> None:
        event = IncidentEvent.objects.get(pk=event_id)
        events.append((event.channel.name, event.action))

    monkeypatch.setattr("dashboard.api_v1.oncall.dispatch_notification", record)
    return events


def make_incident(sentinel, kind=alerts.VIOLATED, **fields) -> Incident:
    channel, _ = Channel.objects.get_or_create(
        name="hook", kind="webhook", defaults={"config": {"url": "http://127.0.0.1:9/"}}
    )
    rule, _ = AlertRule.objects.get_or_create(
        sentinel=sentinel, kind=kind, defaults={"severity": "critical"}
    )
    rule.channels.set([channel])
    defaults = {
        "cluster": sentinel.cluster.name,
        "topic": sentinel.topic,
        "semantic": sentinel.semantic,
        "severity": "critical",
        "reason": f"{sentinel.semantic}: 40 acknowledged records lost on partition 0",
        "counts": {"lost": 40},
    }
    return Incident.objects.create(
        rule=rule, sentinel=sentinel, kind=kind, **{**defaults, **fields}
    )


def test_it_lists_incidents_open_first_with_filters(client, sentinels, tokens):
    alo, eos = sentinels["at-least-once"], sentinels["exactly-once"]
    old = make_incident(alo, state=RESOLVED, opened_at=timezone.now() - timedelta(hours=2))
    stalled = make_incident(eos, kind=alerts.STALLED, counts={})
    violated = make_incident(alo)
    url = "/api/v1/incidents"
    response = client.get(url, headers=tokens["read"])
    check(client, "get", url, response)
    assert [i["id"] for i in response.json()] == [violated.pk, stalled.pk, old.pk]
    first = response.json()[0]
    assert (first["sentinel"], first["state"], first["counts"]) == (
        "at-least-once",
        OPEN,
        {"lost": 40},
    )
    assert first["url"].endswith(f"/incidents/{violated.pk}/")

    def ids(query: str) -> list[int]:
        found = client.get(f"{url}?{query}", headers=tokens["read"])
        check(client, "get", f"{url}?{query}", found)
        return [i["id"] for i in found.json()]

    assert ids("state=unresolved") == [violated.pk, stalled.pk]
    assert ids("state=resolved") == [old.pk]
    assert ids("sentinel=exactly-once") == [stalled.pk]
    assert ids("kind=violated&state=open") == [violated.pk]
    assert ids("limit=1") == [violated.pk]
    bad = client.get(f"{url}?state=closed", headers=tokens["read"])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "state"]


def test_a_bot_acknowledges_and_resolves_as_the_buttons_do(client, sentinels, tokens, sent, alice):
    incident = make_incident(sentinels["at-least-once"])
    ack = f"/api/v1/incidents/{incident.pk}/acknowledge"
    refused = client.post(ack, headers=tokens["read"])
    assert refused.status_code == 403 and sent == []
    response = client.post(ack, headers=tokens["write"])
    check(client, "post", ack, response)
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["acknowledged_by"]) == (ACKNOWLEDGED, "alice")
    assert sent == [("hook", alerts.ACKNOWLEDGE)]
    again = client.post(ack, headers=tokens["write"])
    assert again.status_code == 409 and "acknowledged, not open" in again.json()["detail"]
    check(client, "post", ack, again)

    resolve = f"/api/v1/incidents/{incident.pk}/resolve"
    response = client.post(
        resolve,
        {"note": "replaced the disk"},
        content_type="application/json",
        headers=tokens["write"],
    )
    check(client, "post", resolve, response)
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["resolve_note"]) == (
        RESOLVED,
        "replaced the disk",
    )
    assert sent[-1] == ("hook", alerts.RESOLVE)
    assert (
        client.post(
            resolve, {}, content_type="application/json", headers=tokens["write"]
        ).status_code
        == 409
    )

    detail = f"/api/v1/incidents/{incident.pk}"
    response = client.get(detail, headers=tokens["read"])
    check(client, "get", detail, response)
    kinds = [e["kind"] for e in response.json()["timeline"]]
    assert {"acknowledged", "resolved"} <= set(kinds)
    assert any(e["user"] == "alice" for e in response.json()["timeline"])
    missing = client.get("/api/v1/incidents/999999", headers=tokens["read"])
    assert missing.status_code == 404 and "incident_id" in missing.json()["detail"]


def test_a_pipeline_silences_a_cluster_for_its_rollout_then_ends_it(client, sentinels, tokens):
    sentinel = sentinels["at-least-once"]
    ends = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0)
    url = "/api/v1/silences"
    body = {"cluster": sentinel.cluster.name, "ends_at": ends.isoformat(), "comment": "rollout 42"}
    refused = client.post(url, body, content_type="application/json", headers=tokens["read"])
    assert refused.status_code == 403 and not Silence.objects.exists()
    response = client.post(url, body, content_type="application/json", headers=tokens["write"])
    check(client, "post", url, response)
    assert response.status_code == 201, response.content
    made = response.json()
    assert (made["cluster"], made["sentinel"], made["active"]) == (
        sentinel.cluster.name,
        None,
        True,
    )
    assert datetime.fromisoformat(made["ends_at"]) == ends
    assert active_silence(sentinel, timezone.now()) is not None  # nobody is paged meanwhile

    listed = client.get(url, headers=tokens["read"])
    check(client, "get", url, listed)
    assert [s["id"] for s in listed.json()] == [made["id"]]

    end = f"{url}/{made['id']}"
    response = client.delete(end, headers=tokens["write"])
    check(client, "delete", end, response)
    assert response.status_code == 200 and response.json()["active"] is False
    assert active_silence(sentinel, timezone.now()) is None
    assert client.delete(end, headers=tokens["write"]).status_code == 409
    assert client.get(url, headers=tokens["read"]).json() == []
    assert [s["id"] for s in client.get(f"{url}?ended=true", headers=tokens["read"]).json()] == [
        made["id"]
    ]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"ends_at": "2099-01-01T00:00:00"}, "cluster or sentinel"),
        (
            {"cluster": "local", "sentinel": "at-least-once", "ends_at": "2099-01-01T00:00:00"},
            "cluster or sentinel",
        ),
        ({"cluster": "nope", "ends_at": "2099-01-01T00:00:00"}, "cluster"),
        ({"sentinel": "nope", "ends_at": "2099-01-01T00:00:00"}, "sentinel"),
        ({"cluster": "local", "ends_at": "2001-01-01T00:00:00"}, "ends_at"),
        ({"cluster": "local", "ends_at": "next tuesday"}, "ends_at"),
    ],
)
def test_it_names_what_is_wrong_with_a_silence(client, sentinels, tokens, body, field):
    response = client.post(
        "/api/v1/silences", body, content_type="application/json", headers=tokens["write"]
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(f"{field}:"), response.json()
    check(client, "post", "/api/v1/silences", response)
    assert not Silence.objects.exists()


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("get", "/api/v1/sentinels/a%00b", None),
        ("get", "/api/v1/sentinels/a%00b/windows", None),
        ("get", "/api/v1/incidents?sentinel=a%00b", None),
        ("post", "/api/v1/silences", {"cluster": "lo\x00cal", "ends_at": "2099-01-01T00:00:00"}),
        ("post", "/api/v1/scenarios/runs", {"scenario": "x\x00"}),
    ],
)
def test_a_nul_character_is_bad_input_never_a_database_error(
    client, sentinels, tokens, method, url, body
):
    """PostgreSQL's text holds no NUL character: one is a 422 naming the field, not a 500."""
    if method == "post":
        response = client.post(url, body, content_type="application/json", headers=tokens["write"])
    else:
        response = client.get(url, headers=tokens["read"])
    assert response.status_code == 422, response.content
    assert "NUL" in response.json()["detail"][0]["msg"]
    check(client, method, url, response)
