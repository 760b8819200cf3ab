"""The dashboard in Chromium against the live app: Daphne, real Redis, the real local cluster
and the three default sentinels running (see conftest.py).

Every test's page screenshot lands in test-artifacts/; a browser console error fails the test.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, PASSWORD, USERNAME, LiveApp
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.kafka, pytest.mark.slow]

DEFAULTS = ("at-most-once", "at-least-once", "exactly-once")
LIVE_TIMEOUT_MS = 20000


def snap(page, name: str) -> None:
    """An extra screenshot, of a state the test moves on from."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def cell(page, name: str):
    return page.locator("article.cell", has=page.get_by_role("link", name=name, exact=True))


def test_it_logs_in_through_the_login_form(anonymous_page, live_app: LiveApp):
    page = anonymous_page
    page.goto(live_app.base_url + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(live_app.base_url + "/")
    expect(page.get_by_text(f"Signed in as {USERNAME}")).to_be_visible()


def test_it_shows_the_three_default_sentinels_live(page, live_app: LiveApp):
    page.goto(live_app.base_url + "/")
    for name in DEFAULTS:
        box = cell(page, name)
        expect(box).to_have_count(1)
        expect(box.locator('[data-field="verdict"]')).to_have_text(
            re.compile("HOLDING|DEGRADED|VIOLATED|STALLED")
        )
    # One column per semantic: each default sentinel sits under its own semantic's heading.
    headings = page.locator("table.overview thead th").all_inner_texts()
    assert headings == ["Topic", *DEFAULTS]
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


def test_it_updates_a_counter_without_reloading(page, live_app: LiveApp):
    page.goto(live_app.base_url + "/")
    page.evaluate("window.__notReloaded = true")
    processed = cell(page, "at-least-once").locator('[data-field="processed"]')
    expect(processed).not_to_have_text("")
    before = processed.inner_text()
    expect(processed).not_to_have_text(before, timeout=LIVE_TIMEOUT_MS)
    assert int(processed.inner_text()) > int(before)
    assert page.evaluate("window.__notReloaded") is True
    # The sparkline is drawn from the live windows too.
    points = cell(page, "at-least-once").locator(".sparkline polyline")
    expect(points).to_have_attribute("points", re.compile(r"\d"))


def test_it_shows_a_dropped_live_connection_and_reconnects_by_itself(
    page, live_app: LiveApp, console_errors
):
    page.goto(live_app.base_url + "/")
    status = page.locator("#live-status")
    expect(status).to_have_attribute("data-state", "live")
    # The state message also has the on-call box fetched (oncall_live.js): offline before that
    # fetch lands, it would fail with a console error of its own.
    expect(page.locator("body")).to_have_attribute("data-oncall-updated", re.compile(r"^\d+$"))
    # Offline, the open socket just goes silent (no close event): the missing heartbeats
    # (every 4 s here, DS_LIVE_HEARTBEAT_S; dead after 2.5 of them) are what tell the page.
    page.context.set_offline(True)
    expect(status).to_have_attribute("data-state", "reconnecting", timeout=45000)
    expect(status).to_contain_text("reconnecting in")
    snap(page, "overview-reconnecting")
    page.context.set_offline(False)
    expect(status).to_have_attribute("data-state", "live", timeout=40000)
    processed = cell(page, "at-least-once").locator('[data-field="processed"]')
    before = processed.inner_text()
    expect(processed).not_to_have_text(before, timeout=LIVE_TIMEOUT_MS)
    # Chromium reports the refused reconnection attempts while offline; nothing else.
    console_errors[:] = [e for e in console_errors if "WebSocket connection to" not in e]


def forge_duplicate(bootstrap: str, topic: str, partition: int = 0) -> None:
    """Read the newest record of ``topic``/``partition`` and write the same bytes back."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"browser-test-forger-{uuid.uuid4().hex}",
            "enable.auto.commit": "false",
        }
    )
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        assert high > 0, f"{topic}[{partition}] is empty"
        consumer.assign([TopicPartition(topic, partition, high - 1)])
        msg = wait_until(
            lambda: (m := consumer.poll(0.5)) is not None and not m.error() and [m],
            20,
            f"the last record of {topic}[{partition}]",
            interval=0,
        )[0]  # a list: a Message with an empty value is falsy
    finally:
        consumer.close()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, value=msg.value(), key=msg.key(), partition=msg.partition())
    assert producer.flush(15) == 0


def test_it_turns_the_at_most_once_cell_violated_live_on_a_forged_duplicate(
    page, live_app: LiveApp
):
    doc = live_app.sentinels["at-most-once"]
    page.goto(live_app.base_url + "/")
    page.evaluate("window.__notReloaded = true")
    verdict = cell(page, "at-most-once").locator('[data-field="verdict"]')
    expect(verdict).not_to_have_text("VIOLATED")

    forge_duplicate(live_app.bootstrap, doc["topic"])
    forged_at = time.monotonic()

    expect(verdict).to_have_text("VIOLATED", timeout=LIVE_TIMEOUT_MS)
    elapsed = time.monotonic() - forged_at
    box = cell(page, "at-most-once")
    expect(box).to_have_attribute("data-verdict", "VIOLATED")
    expect(box).to_have_class(re.compile("verdict-bg-violated"))
    expect(box.locator('[data-field="duplicated"]')).not_to_have_text("0")
    expect(box.locator('[data-field="reasons"]')).to_contain_text("duplicated under at-most-once")
    assert page.evaluate("window.__notReloaded") is True
    # The verdict colours the whole cell, not only its badge.
    background = "el => getComputedStyle(el).backgroundColor"
    violated_bg = box.evaluate(background)
    holding_bg = page.evaluate(
        "() => { const el = document.createElement('article');"
        " el.className = 'cell verdict-bg-holding'; document.body.append(el);"
        " const bg = getComputedStyle(el).backgroundColor; el.remove(); return bg; }"
    )
    assert violated_bg != holding_bg, (violated_bg, holding_bg)
    print(f"at-most-once cell turned VIOLATED {elapsed:.1f}s after the forged duplicate")


def test_it_shows_the_sentinel_detail_page_with_charts_and_partitions(page, live_app: LiveApp):
    doc = live_app.sentinels["at-least-once"]
    page.goto(f"{live_app.base_url}/sentinels/{doc['id']}/")
    expect(page.get_by_role("heading", name="at-least-once", level=1)).to_be_visible()
    expect(page.locator("#charts canvas")).to_have_count(4)
    rows = page.locator("table.partitions tbody tr[data-partition]")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("broker")
    expect(page.locator('table[data-config="producer"]')).to_contain_text("acks")
    totals = page.locator('[data-total="processed"]')
    before = totals.inner_text()
    expect(totals).not_to_have_text(before, timeout=LIVE_TIMEOUT_MS)
    page.get_by_role("button", name="24 h").click()
    expect(page).to_have_url(re.compile(r"range=24h"))
    # A young stack's day starts where its data starts, in points of a minute, not 120 s.
    expect(page.locator("#chart-note")).to_contain_text(
        re.compile(r"points of 60 s, from .* when data starts")
    )


def test_it_compares_two_profiles_and_highlights_the_differing_property(page, live_app: LiveApp):
    page.goto(live_app.base_url + "/compare/")
    page.get_by_role("checkbox", name=re.compile(r"^at-most-once")).check()
    page.get_by_role("checkbox", name=re.compile(r"^at-least-once")).check()
    page.get_by_role("button", name="Compare").click()
    expect(page).to_have_url(re.compile(r"/compare/\?s=\d+&s=\d+&range=1h"))
    acks = page.locator('#config-diff tr[data-key="producer.acks"]')
    expect(acks).to_have_class(re.compile("differs"))
    expect(acks).to_contain_text("differs")
    assert sorted(acks.locator("td").all_inner_texts()[:2]) == ["0", "all"]
    same = page.locator('#config-diff tr[data-key="consumer.enable.auto.commit"]')
    expect(same).not_to_have_class(re.compile("differs"))
    # The address is the shareable link: opening it again shows the same comparison.
    shared = page.url
    page.goto(live_app.base_url + "/")
    page.goto(shared)
    expect(page.locator('#config-diff tr[data-key="producer.acks"]')).to_have_class(
        re.compile("differs")
    )


def test_it_shows_an_invalid_profile_property_inline(page, live_app: LiveApp):
    page.goto(live_app.base_url + "/manage/profiles/new/")
    page.get_by_label("Name").fill("typo-profile")
    page.get_by_label("Semantic").select_option("at-least-once")
    page.get_by_label("Commit strategy").select_option("process-before-commit")
    page.get_by_label("Producer properties").fill("acks=all\nlinger.mss=5")
    page.get_by_role("button", name="Save profile").click()
    error = page.locator('[data-field="producer_properties"] .field-error')
    expect(error).to_contain_text('No such configuration property: "linger.mss"')
    expect(page.get_by_label("Producer properties")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(live_app.base_url + "/manage/profiles/new/")
    snap(page, "profile-form-inline-error")
    page.goto(live_app.base_url + "/manage/")
    expect(page.get_by_text("typo-profile")).to_have_count(0)


# -- on-call, live: incidents reach pages that are already open (issue 28) ------------------
# The live app runs no Celery beat: the tests run the evaluation as its task does, in a
# ``manage.py shell`` of the app (its transaction commits, then the on-call event goes to
# Daphne's sockets through the same Redis channel layer).

ONCALL_WAIT_MS = 5000  # an open page shows an incident change within this, without reload

EVALUATE = """
import json, time
from django.utils import timezone
from dashboard.models import Incident
from dashboard.oncall import evaluation
evaluation.evaluate(time.time(), dispatch=lambda event_id: None)
if {resolve_all}:  # a clean slate, quietly (as if resolved an hour ago)
    Incident.objects.exclude(state="resolved").update(
        state="resolved", resolved_at=timezone.now() - timezone.timedelta(hours=1),
        resolve_note="browser test set-up")
amo = Incident.objects.filter(sentinel__name="at-most-once", kind="violated").exclude(
    state="resolved").first()
print(json.dumps({{"amo": amo.pk if amo else None}}))
"""
SHELL_TIMEOUT_S = 300  # a Django shell on a loaded two-core machine

# The violation's rule with its hold-down cut to a second (as the on-call cluster test cuts
# hold-downs), then an evaluation: how long the condition has been clear, and the state.
PAST_HOLD_DOWN = """
import json, time
from dashboard.models import Incident
from dashboard.oncall import evaluation
i = Incident.objects.select_related("rule").get(pk={pk})
i.rule.resolve_after_s = 1
i.rule.save()
now = max(time.time(), i.last_firing_at.timestamp() + 2)  # clear for twice the hold-down
evaluation.evaluate(now, dispatch=lambda event_id: None)
i.refresh_from_db()
print(json.dumps({{"state": i.state, "kind": i.kind, "clear_for": now - i.last_firing_at.timestamp(),
    "resolve_after_s": i.rule.resolve_after_s, "resolves_itself": i.rule.resolves_itself}}))
"""


def evaluate(live_app: LiveApp, resolve_all: bool = False) -> int | None:
    """One evaluation of every rule (then, with ``resolve_all``, every incident resolved);
    the at-most-once violation left unresolved."""
    script = EVALUATE.format(resolve_all=resolve_all)
    out = live_app.manage("shell", "-c", script, timeout=SHELL_TIMEOUT_S)
    return json.loads(out.splitlines()[-1])["amo"]


def past_hold_down(live_app: LiveApp, pk: int) -> dict:
    out = live_app.manage("shell", "-c", PAST_HOLD_DOWN.format(pk=pk), timeout=SHELL_TIMEOUT_S)
    return json.loads(out.splitlines()[-1])


def duplicated(live_app: LiveApp, name: str) -> int:
    return (
        (live_app.status(live_app.sentinels[name]["id"]) or {})
        .get("totals", {})
        .get("duplicated", 0)
    )


def unacknowledged_in_title(page) -> int:
    found = re.search(r"(\d+) not acknowledged", page.title())
    return int(found.group(1)) if found else 0


def violate_at_most_once(live_app: LiveApp) -> int:
    """A forged duplicate on the at-most-once topic, seen by its checker, then the
    evaluation that opens its incident (or grows the one open): the incident's id."""
    before = duplicated(live_app, "at-most-once")
    forge_duplicate(live_app.bootstrap, live_app.sentinels["at-most-once"]["topic"])
    live_app.wait(
        lambda: duplicated(live_app, "at-most-once") > before,
        LIVE_TIMEOUT_MS / 1000,
        "the at-most-once checker to count the forged duplicate",
    )
    pk = evaluate(live_app)
    assert pk is not None, "the forged duplicate opened no at-most-once incident"
    return pk


@pytest.fixture(scope="module")
def amo_violation(live_app: LiveApp) -> dict:
    """The at-most-once violation the on-call tests share: opened by the first that needs
    it (``id`` None until then)."""
    return {"id": None}


def test_an_open_overview_shows_a_new_incident_and_its_title_changes_without_reload(
    page, live_app: LiveApp, amo_violation
):
    # The evaluator's memory (what earlier tests forged is not new), and no incident open.
    assert evaluate(live_app, resolve_all=True) is None
    page.goto(live_app.base_url + "/")
    page.evaluate("window.__notReloaded = true")
    amo = cell(page, "at-most-once")
    expect(page.locator("#oncall-block li")).to_have_count(0)
    expect(amo.locator(".latched")).to_have_count(0)
    expect(page).not_to_have_title(re.compile("not acknowledged"))
    expect(page.locator("#live-status")).to_contain_text(re.compile(r"updated \d+ s ago"))
    snap(page, "oncall-live-overview-before")

    pk = violate_at_most_once(live_app)
    amo_violation["id"] = pk
    committed_at = time.monotonic()
    entry = page.locator(f'#oncall-block li[data-incident="{pk}"]')
    expect(entry).to_contain_text("not acknowledged", timeout=ONCALL_WAIT_MS)
    # (The same evaluation may open others: at-most-once really loses records on a loaded
    # machine, a loss rate incident.) The title counts what the on-call box lists.
    expect(page).to_have_title(
        re.compile(r"· \d+ not acknowledged · Overview"), timeout=ONCALL_WAIT_MS
    )
    elapsed = time.monotonic() - committed_at
    waiting = page.locator("#oncall-block .not-acked").count()
    assert unacknowledged_in_title(page) == waiting >= 1
    line = amo.locator(f'[data-latched="{pk}"]')
    expect(line.locator(".latched-text")).to_have_text(
        re.compile(
            rf"violated at \d\d:\d\d UTC, \d+ duplicated; incident #{pk} open, not acknowledged"
        )
    )
    expect(line.get_by_role("button", name=f"Acknowledge incident #{pk}")).to_be_visible()
    expect(page.locator("#favicon")).to_have_attribute("data-alarm", "critical")
    expect(page.locator("#favicon")).to_have_attribute("href", re.compile("^data:image/svg"))
    assert page.evaluate("window.__notReloaded") is True
    snap(page, "oncall-live-overview-after")
    print(f"the open overview showed incident #{pk} {elapsed:.1f} s after it was committed")


def test_acknowledging_on_the_incident_page_clears_the_latch_on_an_open_overview(
    page, live_app: LiveApp, amo_violation
):
    pk = amo_violation["id"] or violate_at_most_once(live_app)
    amo_violation["id"] = pk
    page.goto(live_app.base_url + "/")
    page.evaluate("window.__notReloaded = true")
    line = cell(page, "at-most-once").locator(f'[data-latched="{pk}"]')
    expect(line).to_contain_text("open, not acknowledged")
    waiting = unacknowledged_in_title(page)
    assert waiting >= 1
    snap(page, "oncall-live-latch-before-ack")

    other = page.context.new_page()
    other.goto(f"{live_app.base_url}/incidents/{pk}/")
    other.get_by_role("button", name="Acknowledge", exact=True).click()
    expect(other.locator("#acknowledged")).to_contain_text(f"by {USERNAME}")
    other.close()
    page.bring_to_front()  # a wall screen is in front (a background tab's timers are slowed)

    expect(line.locator(".latched-text")).to_have_text(
        re.compile(rf"; incident #{pk} acknowledged by {USERNAME}$"), timeout=ONCALL_WAIT_MS
    )
    expect(line).not_to_contain_text("not acknowledged")
    expect(line.get_by_role("button")).to_have_count(0)
    entry = page.locator(f'#oncall-block li[data-incident="{pk}"]')
    expect(entry).to_contain_text(f"acknowledged by {USERNAME}")
    if waiting == 1:
        expect(page).not_to_have_title(re.compile("not acknowledged"))
    else:
        expect(page).to_have_title(re.compile(rf"· {waiting - 1} not acknowledged ·"))
    assert page.evaluate("window.__notReloaded") is True
    snap(page, "oncall-live-latch-after-ack")


def test_a_violated_incident_stays_open_after_its_hold_down_until_a_person_resolves_it(
    page, live_app: LiveApp, amo_violation
):
    pk = amo_violation["id"] or violate_at_most_once(live_app)
    after = past_hold_down(live_app, pk)
    assert after["kind"] == "violated" and after["resolves_itself"] is False
    assert after["clear_for"] > after["resolve_after_s"]
    assert after["state"] in ("open", "acknowledged")

    page.goto(f"{live_app.base_url}/sentinels/{live_app.sentinels['at-most-once']['id']}/")
    detail_line = page.locator(f'[data-latched="{pk}"]')
    expect(detail_line).to_contain_text(f"incident #{pk}")
    expect(detail_line).not_to_contain_text("resolved")
    overview = page.context.new_page()
    overview.goto(live_app.base_url + "/")
    card_line = cell(overview, "at-most-once").locator(f'[data-latched="{pk}"]')
    expect(card_line).not_to_contain_text("resolved")
    snap(overview, "oncall-violation-after-hold-down")

    # Resolved with a note by a person: over on both open pages, without reload.
    incident_page = page.context.new_page()
    incident_page.goto(f"{live_app.base_url}/incidents/{pk}/")
    incident_page.get_by_label("Resolution note").fill("forged by the browser test")
    incident_page.get_by_role("button", name="Resolve").click()
    expect(incident_page.locator("#resolved")).to_contain_text("forged by the browser test")
    incident_page.close()
    overview.bring_to_front()  # a wall screen is in front (a background tab's timers are slowed)
    expect(overview.locator(f'#oncall-block li[data-incident="{pk}"]')).to_have_count(
        0, timeout=ONCALL_WAIT_MS
    )
    expect(card_line).to_contain_text(f"incident #{pk} resolved by {USERNAME}")
    expect(detail_line).to_contain_text(f"incident #{pk} resolved by {USERNAME}")
    snap(overview, "oncall-violation-resolved")
    overview.close()
    amo_violation["id"] = None
