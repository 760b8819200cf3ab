"""The dashboard in Chromium against the live app: Daphne, real Redis, the real local cluster
and the three default sentinels running (see conftest.py).

Every test's page screenshot lands in test-artifacts/; a browser console error fails the test.
"""

from __future__ import annotations

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
    # Offline, the open socket just goes silent (no close event): the missing heartbeats
    # (every 10 s, dead after 2.5 of them) are what tell the page.
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
