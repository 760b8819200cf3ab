"""Live on-call state and the one latch (issue 28, items 1 and 2).

- Each transition of an incident (opened, grew, cleared, firing again, acknowledged,
  resolved) sends exactly one on-call event, and only once its transaction commits; a rolled
  back change sends none.
- The event reaches the live sockets: the overview (batched), the sentinel's detail page
  (its own sentinel's only) and the incidents list.
- Every combination (violation open / acknowledged / resolved; a state firing / cleared
  within its hold-down / resolved) reads the same on the card, in the incidents list, in the
  live fragments the open pages fetch, and in the API.

Status documents are written to the test Redis as the checker writes them; the evaluation
runs as the Celery task does."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from dashboard.models import ApiToken, Incident, Sentinel
from dashboard.models.oncall import ACKNOWLEDGED, OPEN, RESOLVED, AlertRule
from dashboard.oncall import evaluation, events
from tests.support.dashboard_data import counts, status_doc
from workers.engine import alerts
from workers.store.connection import connect
from workers.store.lint import LintStore
from workers.store.sentinel import SentinelStore

TIMEOUT = 5


def nobody(event_id: int) -> None:
    """Notifications are not under test here."""


@pytest.fixture
def announced(monkeypatch):
    """The on-call events as sent (the channel layer is the boundary): (transition, incident)."""
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(
        events, "send", lambda payload: sent.append((payload["transition"], payload["incident"]))
    )
    return sent


def only(sentinels, name, redis_url):
    """The sentinel under test; the others are disabled (without reports they would stall),
    and no lint report another test stored is read."""
    chosen = sentinels[name]
    Sentinel.objects.exclude(pk=chosen.pk).update(enabled=False)
    LintStore(connect(redis_url)).forget("local")
    return chosen


def publish(redis_url, sentinel, verdict="HOLDING", **overrides):
    doc = status_doc(sentinel, verdict, **overrides)
    SentinelStore(connect(redis_url), sentinel.pk).set_status(doc)


def committed(now: float) -> None:
    """One evaluation in a transaction of its own, as the Celery task runs it."""
    with transaction.atomic():
        evaluation.evaluate(now, dispatch=nobody)


@pytest.mark.both_databases  # events sent on commit, none after a rollback: each engine's transactions
@pytest.mark.django_db(transaction=True)
def test_each_transition_sends_one_oncall_event_after_commit(
    sentinels, redis_url, alice, announced
):
    alo = only(sentinels, "at-least-once", redis_url)
    now = time.time()
    publish(redis_url, alo)
    committed(now)
    assert announced == []

    # A violation opens: nothing is sent before the evaluation's transaction commits.
    publish(redis_url, alo, "VIOLATED", totals=counts(acked=900, processed=863, lost=37))
    with transaction.atomic():
        evaluation.evaluate(now + 1, dispatch=nobody)
        assert announced == []
    violation = Incident.objects.get(kind=alerts.VIOLATED)
    assert announced == [("opened", violation.pk)]

    # It grows once per change of its counts, not per evaluation.
    publish(redis_url, alo, "VIOLATED", totals=counts(acked=950, processed=903, lost=47))
    committed(now + 2)
    committed(now + 3)
    assert announced[1:] == [("grew", violation.pk)]
    # Clear for hours: a violation neither clears nor resolves by itself; nothing is sent.
    publish(redis_url, alo, totals=counts(acked=1999, processed=1952, lost=47))
    committed(now + 400)
    committed(now + 4000)
    assert len(announced) == 2

    # A rolled back acknowledgement sends nothing; a committed one sends one event.
    with pytest.raises(RuntimeError), transaction.atomic():
        assert evaluation.acknowledge(violation, alice, dispatch=nobody)
        raise RuntimeError("rolled back")
    assert len(announced) == 2 and Incident.objects.get(pk=violation.pk).state == OPEN
    assert evaluation.acknowledge(violation, alice, dispatch=nobody)
    assert not evaluation.acknowledge(violation, alice, dispatch=nobody)  # not open: no event
    assert evaluation.resolve(violation, alice, "partition reassigned", dispatch=nobody)
    assert not evaluation.resolve(violation, alice, "again", dispatch=nobody)
    assert announced[2:] == [("acknowledged", violation.pk), ("resolved", violation.pk)]

    # A state: stalled for its 60 s opens; clear, it says so once; holding again, once; clear
    # for the whole hold-down, it resolves by itself.
    del announced[:]
    publish(redis_url, alo, "STALLED", reasons=["no progress for 45 s"])
    committed(now + 5000)
    committed(now + 5061)
    stalled = Incident.objects.get(kind=alerts.STALLED)
    publish(redis_url, alo)
    committed(now + 5070)
    committed(now + 5080)
    publish(redis_url, alo, "STALLED", reasons=["no progress for 45 s"])
    committed(now + 5090)
    committed(now + 5151)  # stalled for its 60 s again, within the hold-down: the same one
    committed(now + 5152)
    publish(redis_url, alo)
    committed(now + 5160)
    committed(now + 5160 + 299)
    committed(now + 5160 + 301)
    assert announced == [
        ("opened", stalled.pk),
        ("cleared", stalled.pk),
        ("firing", stalled.pk),
        ("cleared", stalled.pk),
        ("resolved", stalled.pk),
    ]
    kinds = list(stalled.events.order_by("at", "pk").values_list("kind", flat=True))
    assert [k for k in kinds if k in ("opened", "cleared", "firing", "resolved")] == [
        "opened",
        "cleared",
        "firing",
        "cleared",
        "resolved",
    ]


@pytest.mark.django_db(transaction=True)
async def test_the_event_reaches_the_overview_the_sentinels_page_and_the_incidents_list(
    asgi, alice, sentinels
):
    alo, amo = sentinels["at-least-once"], sentinels["at-most-once"]
    overview = await asgi.websocket("/ws/overview/", user=alice)
    mine = await asgi.websocket(f"/ws/sentinel/{alo.pk}/", user=alice)
    other = await asgi.websocket(f"/ws/sentinel/{amo.pk}/", user=alice)
    incidents = await asgi.websocket("/ws/oncall/", user=alice)
    for ws in (overview, mine, other, incidents):
        assert (await ws.connect(timeout=TIMEOUT))[0]
        state = await ws.receive_json_from(timeout=TIMEOUT)
        assert state["type"] == "state" and state["stale_after"] >= state["expect_every"] > 0
    assert state["heartbeat_is_data"] is True  # the incidents list: nothing else comes

    rule = await sync_to_async(AlertRule.objects.create)(
        sentinel=alo, kind=alerts.STALLED, severity="warning"
    )
    incident = await sync_to_async(Incident.objects.create)(
        rule=rule, sentinel=alo, kind=alerts.STALLED, severity="warning", reason="stalled"
    )
    await sync_to_async(events.announce)(incident, "opened")  # no transaction: sent at once
    change = {"incident": incident.pk, "sentinel": alo.pk, "transition": "opened", "state": OPEN}
    for ws in (overview, mine, incidents):
        assert await ws.receive_json_from(timeout=TIMEOUT) == {
            "type": "oncall",
            "changes": [change],
        }
    # The other sentinel's page: its next message is a later change of its own sentinel.
    other_rule = await sync_to_async(AlertRule.objects.create)(
        sentinel=amo, kind=alerts.STALLED, severity="warning"
    )
    theirs = await sync_to_async(Incident.objects.create)(
        rule=other_rule, sentinel=amo, kind=alerts.STALLED, severity="warning", reason="stalled"
    )
    await sync_to_async(events.announce)(theirs, "opened")
    message = await other.receive_json_from(timeout=TIMEOUT)
    assert [c["incident"] for c in message["changes"]] == [theirs.pk]


# -- one latch: every combination, through the pages and the API ------------------------------


@pytest.fixture
def logged_in(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def api(alice):
    _, token = ApiToken.issue(alice, "bot", "write")
    return {"Authorization": f"Bearer {token}"}


def hhmm(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M") + " UTC"


def card_lines(page: str, sentinel_id: int) -> list[str]:
    """The text of a card's latched lines on the overview, tags stripped."""
    block = re.search(
        rf'data-latched-for="{sentinel_id}">(.*?)</div>', page, flags=re.DOTALL
    ).group(1)
    return [
        re.sub(r"<[^>]+>", "", text).strip()
        for text in re.findall(r'<a class="latched-text"[^>]*>(.*?)</a>', block)
    ]


def agree(client, api, incident: Incident, card: list[str], state: str, cleared: bool) -> None:
    """The card (overview and detail page, and the live fragments both fetch), the incidents
    list and the API say the same of ``incident``."""
    sid = incident.sentinel_id
    overview = client.get("/").content.decode()
    assert card_lines(overview, sid) == card
    detail = client.get(f"/sentinels/{sid}/").content.decode()
    assert card_lines(detail, sid) == card
    for query in ("", f"?sentinel={sid}"):  # what the open overview / detail page fetch
        live = client.get(f"/incidents/live/{query}").json()
        fragment = live["latched"].get(str(sid), "")
        assert card_lines(f'data-latched-for="{sid}">{fragment}</div>', sid) == card
        assert live["unacknowledged"] == (1 if state == OPEN else 0)
    live = client.get("/incidents/live/").json()
    listing = client.get("/incidents/").content.decode()
    row = re.search(
        rf'<tr class="incident-row state-(\w+)" data-incident="{incident.pk}">', listing
    )
    assert row.group(1) == state
    doc = client.get(f"/api/v1/incidents/{incident.pk}", headers=api).json()
    assert doc["state"] == state
    assert (doc["cleared_at"] is not None) == cleared
    unresolved = client.get("/api/v1/incidents?state=unresolved", headers=api).json()
    assert (incident.pk in [i["id"] for i in unresolved]) == (state != RESOLVED)
    in_box = f'<li data-incident="{incident.pk}">' in live["block"]
    assert in_box == (state != RESOLVED)
    assert ("open, not acknowledged" in " ".join(card)) == (state == OPEN)


@pytest.mark.both_databases  # one incident through every page's and the API's queries
@pytest.mark.django_db
def test_a_violation_is_one_latch_open_acknowledged_from_the_card_resolved_by_the_api(
    logged_in, api, sentinels, redis_url, alice
):
    alo = only(sentinels, "at-least-once", redis_url)
    now = time.time()
    publish(redis_url, alo)
    evaluation.evaluate(now, dispatch=nobody)
    publish(redis_url, alo, "VIOLATED", totals=counts(acked=900, processed=863, lost=37))
    (incident,) = evaluation.evaluate(now + 1, dispatch=nobody)
    n, opened = incident.pk, hhmm(incident.opened_at)
    violated = f"violated at {opened}, 37 lost; incident #{n}"
    agree(logged_in, api, incident, [f"{violated} open, not acknowledged"], OPEN, False)
    assert logged_in.get("/").content.decode().count(f'action="/incidents/{n}/acknowledge/"') == 1

    # Clear long past any hold-down: the records stay lost, the latch stays.
    publish(redis_url, alo, totals=counts(acked=1999, processed=1962, lost=37))
    evaluation.evaluate(now + 3600, dispatch=nobody)
    agree(logged_in, api, incident, [f"{violated} open, not acknowledged"], OPEN, False)

    # Acknowledged from the card: back to the overview, acknowledged everywhere.
    response = logged_in.post(f"/incidents/{n}/acknowledge/", {"next": "/"})
    assert (response.status_code, response["Location"]) == (302, "/")
    acked = [f"{violated} acknowledged by alice"]
    agree(logged_in, api, incident, acked, ACKNOWLEDGED, False)
    assert f'action="/incidents/{n}/acknowledge/"' not in logged_in.get("/").content.decode()

    # Resolved with a note through the API: over everywhere; the card, whose verdict may
    # stay VIOLATED for the verdict window, names the incident and who resolved it.
    response = logged_in.post(
        f"/api/v1/incidents/{n}/resolve",
        json.dumps({"note": "partition reassigned"}),
        content_type="application/json",
        headers=api,
    )
    assert response.status_code == 200 and response.json()["resolve_note"] == "partition reassigned"
    incident.refresh_from_db()
    resolved = [f"{violated} resolved by alice at {hhmm(incident.resolved_at)}"]
    agree(logged_in, api, incident, resolved, RESOLVED, False)


@pytest.mark.both_databases  # its events' times compared in SQL (Max with a filter, >=)
@pytest.mark.django_db
def test_a_state_says_firing_then_cleared_in_its_hold_down_then_resolves(
    logged_in, api, sentinels, redis_url
):
    alo = only(sentinels, "at-least-once", redis_url)
    now = time.time() - 600  # its hold-down ends before the test does
    publish(redis_url, alo, "STALLED", reasons=["no progress for 45 s"])
    evaluation.evaluate(now, dispatch=nobody)
    (incident,) = evaluation.evaluate(now + 61, dispatch=nobody)
    n, opened = incident.pk, hhmm(incident.opened_at)
    agree(
        logged_in,
        api,
        incident,
        [f"stalled since {opened}; incident #{n} open, not acknowledged"],
        OPEN,
        False,
    )

    publish(redis_url, alo)
    evaluation.evaluate(now + 120, dispatch=nobody)
    incident.refresh_from_db()
    since = incident.opened_at.astimezone(UTC).strftime("%H:%M")
    cleared = f"stalled {since}–{hhmm(incident.last_firing_at)}, cleared; incident #{n}"
    agree(logged_in, api, incident, [f"{cleared} open, not acknowledged"], OPEN, True)

    evaluation.evaluate(now + 61 + 301, dispatch=nobody)
    incident.refresh_from_db()
    assert incident.state == RESOLVED and incident.resolved_by is None
    agree(logged_in, api, incident, [], RESOLVED, True)  # it resolved clear
