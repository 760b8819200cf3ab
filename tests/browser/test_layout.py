"""Charts that fit their data, and every page at desktop and phone width (issue 16, items 7, 10).

No Kafka: the quiet app (conftest.py: no sentinel running), with ten minutes of one-second
windows, status documents and an incident seeded the way the checker and the on-call
evaluation write them (``tests/support/dashboard_data.py``). Every page is screenshotted at
1400 and 390 px wide into ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, LiveApp
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DATA_SECONDS = 600
LOST_AGO = 200

SEED = f"""
import json, time
from dashboard.models import Incident, ScenarioRun, Sentinel
from dashboard.models.oncall import AlertRule
from tests.support.dashboard_data import counts, seed_windows, status_doc, window
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore
from django.conf import settings

client = connect(settings.REDIS_URL)
now = time.time()
out = {{"now": now, "ids": {{}}}}
for s in Sentinel.objects.all():
    store = SentinelStore(client, s.pk)
    lost = s.name == "at-least-once"
    verdict = "VIOLATED" if lost else "HOLDING"
    store.set_status(status_doc(
        s, verdict, reasons=["40 acknowledged records lost on partition 2"] if lost else [],
        window={{"seconds": 300, "counts": counts(processed=9000, lost=40 if lost else 0)}},
        totals=counts(produced=18000, acked=18000, processed=18000, lost=40 if lost else 0),
    ))
    seed_windows(store, [
        window(s.pk, now - {DATA_SECONDS} + i, processed=30, produced=30, acked=30,
               e2e=(8.0, 12.0, 30.0 + (i % 7)), ack=(2.0, 4.0),
               lost=40 if lost and i == {DATA_SECONDS - LOST_AGO} else 0)
        for i in range({DATA_SECONDS})
    ])
    if lost:  # the cluster page's view of it: broker 2 killed, its clients' errors
        from workers.engine.brokerhealth import track
        seen = {{str(n): f"127.0.0.1:{{9091 + n}}" for n in (1, 2, 3)}}
        doc = store.status()
        doc["metadata"] = {{
            "error": None, "controller": 1, "updated_at": now,
            "brokers": track({{}}, seen, {{"1": None, "2": "Connection refused", "3": None}}, now - 30),
            "partitions": {{str(p): {{"leader": p + 1, "leader_host": seen[str(p + 1)],
                                     "replicas": [1, 2, 3], "isr": [1, 3] if p else [1, 2, 3]}}
                           for p in range(3)}},
        }}
        doc["errors"] = ["consumer: _TRANSPORT: 127.0.0.1:9093/2: Connect to ipv4#127.0.0.1:9093"
                         " failed: Connection refused (after 0ms in state CONNECT)"]
        store.set_status(doc)
        out["cluster"] = s.cluster_id
        store.event("verdict", "verdict HOLDING -> VIOLATED", verdict="VIOLATED",
                    previous="HOLDING", reasons=["40 acknowledged records lost on partition 2"])
        rule, _ = AlertRule.objects.get_or_create(sentinel=s, kind="violated",
                                                  defaults={{"severity": "critical"}})
        # One unresolved incident per rule: one an earlier module left open is resolved first.
        Incident.objects.filter(rule=rule).exclude(state="resolved").update(state="resolved")
        i = Incident.objects.create(rule=rule, sentinel=s, cluster=s.cluster.name, topic=s.topic,
            semantic=s.semantic, kind="violated", severity="critical", counts={{"lost": 40}},
            reason="at-least-once on cluster local: 40 acknowledged records lost on partition 2")
        out["incident"] = i.pk
    if s.name == "at-most-once":  # its p99 (~36 ms) is over this SLO: compare flags it
        s.slo_p99_ms = 20
        s.save()
    out["ids"][s.name] = s.pk
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def live_app(quiet_app: LiveApp) -> LiveApp:
    """The app without sentinel processes (conftest.py, ``quiet_app``)."""
    return quiet_app


@pytest.fixture(scope="module")
def seeded_once(live_app: LiveApp) -> dict[str, Any]:
    return json.loads(live_app.manage("shell", "-c", SEED).splitlines()[-1])


@pytest.fixture
def seeded(live_app: LiveApp, seeded_once: dict[str, Any]) -> dict[str, Any]:
    """The seeded data, its status documents stamped fresh for this test: nothing runs their
    checkers, and a document older than ``STALE_AFTER_S`` reads as STALLED (the sentinel
    stopped reporting), whatever it said. Only the report times move: what the documents say
    of the past (since when) stays as seeded."""
    client = connect(live_app.redis_url)
    try:
        for sid in seeded_once["ids"].values():
            store = SentinelStore(client, sid)
            doc = store.status()
            shift = time.time() - doc["updated_at"]
            for field in ("updated_at", "last_progress_at"):
                if doc.get(field):
                    doc[field] += shift
            store.set_status(doc)
    finally:
        client.close()
    return seeded_once


def drawn_x_range(page, chart: str) -> tuple[float, float]:
    el = page.locator(f'[data-chart="{chart}"]')
    expect(el).to_have_attribute("data-x-min", re.compile(r"\d"))
    return float(el.get_attribute("data-x-min")), float(el.get_attribute("data-x-max"))


@pytest.mark.parametrize("range_name", ["24h", "7d"])
def test_it_starts_the_chart_axis_where_the_data_starts(page, live_app, seeded, range_name):
    sid = seeded["ids"]["at-least-once"]
    page.goto(f"{live_app.base_url}/sentinels/{sid}/?range={range_name}")
    expect(page.locator("#chart-note")).to_contain_text("when data starts")
    x_min, x_max = drawn_x_range(page, "rates")
    data_start = seeded["now"] - DATA_SECONDS
    # Within one bucket (at most a minute) of the first window, not a day or a week before it.
    assert data_start - 61 <= x_min <= data_start + 61, (x_min, data_start)
    assert x_max >= seeded["now"] - 61
    # The range draws: its latest values are in the chart's text alternative.
    expect(page.locator("#rates-latest")).to_contain_text(re.compile(r"processed/s 30\b"))
    expect(page.locator("#e2e-latest")).to_contain_text("p99 ms")


def test_it_opens_the_detail_page_on_the_range_of_the_last_problem(page, live_app, seeded):
    sid = seeded["ids"]["at-least-once"]
    page.goto(f"{live_app.base_url}/sentinels/{sid}/")
    expect(page.get_by_role("button", name="15 min")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#chart-note")).to_contain_text("it holds the last problem")
    # The tab carries the verdict the page shows (VIOLATED as seeded; STALLED once the
    # seeded report is older than 30 s) and the incident nobody acknowledged.
    page.wait_for_function(
        "() => { const v = document.getElementById('status-panel').dataset.verdict;"
        " return ['VIOLATED', 'STALLED'].includes(v) && new RegExp("
        " '^' + v + ' · \\\\d+ not acknowledged · at-least-once').test(document.title); }"
    )
    expect(page.locator("#favicon")).to_have_attribute("href", re.compile("^data:image/svg"))
    # The lost records show on the events chart: its caption names the latest point.
    expect(page.locator("#events-latest")).to_contain_text("lost")
    # A timeline entry links the charts to its moment.
    entry = page.locator('#timeline li[data-kind="verdict"]').first
    entry.get_by_role("link", name="show on the charts").click()
    expect(page).to_have_url(re.compile(r"range=15m&at=\d+"))
    expect(page.locator('[data-chart="rates"]')).to_have_attribute("data-marks", re.compile(r"\d"))


def test_it_compares_the_charts_side_by_side_on_shared_axes(page, live_app, seeded):
    ids = seeded["ids"]
    query = "&".join(f"s={ids[n]}" for n in ("at-least-once", "at-most-once", "exactly-once"))
    page.goto(f"{live_app.base_url}/compare/?{query}&range=1h")
    expect(page.locator("#compare-charts")).to_have_attribute("data-drawn", "true")
    charts = page.locator("[data-compare-chart] .chart")
    expect(charts).to_have_count(9)
    x_mins = {c.get_attribute("data-x-min") for c in charts.all()}
    assert len(x_mins) == 1 and float(x_mins.pop()) >= seeded["now"] - DATA_SECONDS - 61
    flag = page.locator(f'[data-compare-chart="e2e"][data-sentinel="{ids["at-most-once"]}"]')
    expect(flag.locator(".over-slo")).to_contain_text("over the SLO of 20 ms")
    expect(page.locator(".over-slo")).to_have_count(1)
    # Three columns side by side at 1400 px: the charts of one row share a top edge.
    tops = {round(c.bounding_box()["y"]) for c in charts.all()[:3]}
    assert len(tops) == 1, tops


PAGES = [
    ("overview", "/"),
    ("detail", "/sentinels/{alo}/?range=1h"),
    ("compare", "/compare/?s={alo}&s={amo}&s={eos}&range=15m"),
    ("cluster", "/clusters/{cluster}/"),
    ("manage", "/manage/"),
    ("profile-form", "/manage/profiles/new/"),
    ("scenarios", "/scenarios/"),
    ("lint", "/lint/"),
    ("incidents", "/incidents/"),
    ("incident", "/incidents/{incident}/"),
    ("channels", "/channels/"),
    ("silences", "/silences/"),
    ("tokens", "/tokens/"),
]

# Elements wider than the viewport, outside a scroll container that fits it (a wide table may
# scroll inside its own box; nothing may widen the page).
TOO_WIDE = """
() => {
  const limit = document.documentElement.clientWidth + 1;
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (!box.width || box.right <= limit) continue;  // left of 0: a skip link, on purpose
    let parent = el.parentElement, clipped = false;
    while (parent && parent !== document.body) {
      if (scrolls(parent)) { clipped = true; break; }
      parent = parent.parentElement;
    }
    if (!clipped) out.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(box.left)}..${Math.round(box.right)}`);
  }
  if (document.documentElement.scrollWidth > limit) out.push("page scrolls sideways");
  return out.slice(0, 10);
}
"""


@pytest.mark.parametrize("width,height", [(1400, 1000), (390, 844)])
def test_it_fits_every_page_in_the_viewport(page, live_app, seeded, width, height):
    ids = seeded["ids"]
    fill = {
        "alo": ids["at-least-once"],
        "amo": ids["at-most-once"],
        "eos": ids["exactly-once"],
        "incident": seeded["incident"],
        "cluster": seeded["cluster"],
    }
    page.set_viewport_size({"width": width, "height": height})
    ARTIFACTS.mkdir(exist_ok=True)
    problems = {}
    for name, path in PAGES:
        page.goto(live_app.base_url + path.format(**fill))
        page.wait_for_load_state("load")
        if name == "detail":
            expect(page.locator("#rates-latest")).to_contain_text("Latest")
        if name == "cluster":
            expect(page.locator('[data-broker="2"]')).to_contain_text(
                "broker 2 (127.0.0.1:9093) unreachable since"
            )
        if name == "compare":
            expect(page.locator("#compare-charts")).to_have_attribute("data-drawn", "true")
        page.screenshot(path=str(ARTIFACTS / f"page-{name}-{width}.png"), full_page=True)
        too_wide = page.evaluate(TOO_WIDE)
        if too_wide:
            problems[name] = too_wide
    assert not problems, f"wider than {width} px: {problems}"


CONTRAST = """
(pairs) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  return pairs.map(([fg, bg]) => {
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
  });
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_it_keeps_badges_and_chart_lines_at_4_5_to_1(page, live_app, seeded, scheme):
    page.emulate_media(color_scheme=scheme)
    page.goto(f"{live_app.base_url}/sentinels/{seeded['ids']['at-least-once']}/?range=1h")
    expect(page.locator("#rates-latest")).to_contain_text("Latest")
    badge = page.evaluate(
        "() => { const el = document.createElement('span');"
        " el.className = 'verdict verdict-holding'; document.body.append(el);"
        " const s = getComputedStyle(el); const out = [s.color, s.backgroundColor];"
        " el.remove(); return out; }"
    )
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    # uPlot draws each series' legend marker in the series' own stroke colour.
    lines = page.locator("#charts .u-series:not(:first-child) .u-marker").evaluate_all(
        "els => els.map(el => getComputedStyle(el).borderColor)"
    )
    assert len(lines) == 11
    ratios = page.evaluate(CONTRAST, [badge, *[[line, background] for line in lines]])
    assert min(ratios) >= 4.5, dict(zip(["HOLDING badge", *lines], ratios, strict=True))


def test_it_focuses_the_error_summary_and_confirms_before_disabling(page, live_app, seeded):
    page.goto(live_app.base_url + "/manage/profiles/new/")
    page.get_by_role("button", name="Save profile").click()
    summary = page.locator("#form-errors")
    expect(summary).to_contain_text("Nothing was saved")
    expect(summary).to_be_focused()

    page.goto(live_app.base_url + "/manage/")
    row = page.locator(f"#sentinel-row-{seeded['ids']['exactly-once']}")
    questions = []
    page.once("dialog", lambda d: (questions.append(d.message), d.dismiss()))
    row.get_by_role("button", name=re.compile("^Disable")).click()
    expect(row.get_by_role("button", name=re.compile("^Disable"))).to_be_visible()
    assert questions and "Disable sentinel exactly-once?" in questions[0]
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=re.compile("^Disable")).click()
    expect(row).to_contain_text("disabled")
    row.get_by_role("button", name=re.compile("^Enable")).click()  # no question to turn it on
    expect(row).to_contain_text("enabled")


# -- issue #28, item 6: what an on-call engineer needs at 390 px, asserted by geometry --------

PHONE = {"width": 390, "height": 844}

# Where the lines of an element's text break: the character before each break.
BREAKS_AFTER = """
(el) => {
  const text = el.firstChild && el.textContent;
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const chars = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (rect) chars.push([node.data[i], Math.round(rect.top)]);
    }
  }
  const out = [];
  for (let i = 1; i < chars.length; i++) if (chars[i][1] > chars[i - 1][1]) out.push(chars[i - 1][0]);
  return out;
}
"""


def inside_viewport(locator, width: int = PHONE["width"]) -> bool:
    box = locator.bounding_box()
    return (
        box is not None and box["width"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= width
    )


def test_phone_incidents_are_stacked_cards_with_reason_and_opened_time(page, live_app, seeded):
    page.set_viewport_size(PHONE)
    page.goto(live_app.base_url + "/incidents/")
    # The list refetches its table once its socket connects (oncall_live.js): measure the
    # table it settled on, not the one being replaced.
    page.wait_for_selector("body[data-oncall-updated]", state="attached")
    row = page.locator(f'[data-incident="{seeded["incident"]}"]')
    for label in ("Reason", "Opened", "State", "Sentinel"):
        cell = row.locator(f'td[data-label="{label}"]')
        expect(cell).to_be_visible()
        assert inside_viewport(cell), (label, cell.bounding_box())
    expect(row.locator('td[data-label="Reason"]')).to_contain_text("40 acknowledged records lost")
    expect(row.locator('td[data-label="Opened"]')).to_contain_text("UTC")
    # Stacked: the reason sits below the state, not beside it.
    state = row.locator('td[data-label="State"]').bounding_box()
    reason = row.locator('td[data-label="Reason"]').bounding_box()
    assert reason["y"] >= state["y"] + state["height"] - 1
    page.screenshot(path=str(ARTIFACTS / "phone-incidents.png"), full_page=True)


def test_phone_partitions_show_status_first(page, live_app, seeded):
    page.set_viewport_size(PHONE)
    page.goto(live_app.base_url + f"/sentinels/{seeded['ids']['at-least-once']}/")
    table = page.locator("table.partitions")
    expect(table.locator("tbody tr[data-partition]").first).to_be_visible()
    headers = table.locator("thead th")
    expect(headers.nth(0)).to_have_text("Partition")
    expect(headers.nth(1)).to_have_text("Status")
    for row in table.locator("tbody tr[data-partition]").all():
        assert inside_viewport(row.locator("th")), row.locator("th").bounding_box()
        status = row.locator("td.col-status")
        assert inside_viewport(status), status.bounding_box()
    # Partition 2's leader (broker 2) is unreachable in the seeded metadata: said first.
    expect(table.locator('tr[data-partition="1"] td.col-status')).to_contain_text("Problem")
    expect(page.locator(".scroll-cue")).to_be_visible()  # the rest scrolls, and says so
    table.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "phone-partitions.png"), full_page=True)


def test_phone_overview_says_the_clusters_state_and_topic_names_wrap_at_dots(
    page, live_app, seeded
):
    page.set_viewport_size(PHONE)
    page.goto(live_app.base_url + "/")
    strip = page.locator("[data-cluster-strip]")
    expect(strip).to_contain_text(re.compile(r"broker 2 unreachable since \d\d:\d\d:\d\d UTC"))
    assert inside_viewport(strip)
    # The violated card keeps its own reason (a loss), not the cluster's state.
    card = page.locator(f'[data-sentinel="{seeded["ids"]["at-least-once"]}"]')
    expect(card.locator('[data-field="reasons"]')).to_contain_text("40 acknowledged records")
    expect(card.locator('[data-field="cluster-note"]')).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "phone-overview.png"), full_page=True)
    # A topic name squeezed into a narrow box breaks after its dots (or hyphens), never mid-word.
    topic = page.locator("th.topic-name").first
    topic.evaluate("(el) => { el.style.width = '5.5rem'; el.style.display = 'block'; }")
    breaks = topic.evaluate(BREAKS_AFTER)
    assert "." in breaks and set(breaks) <= {".", "-"}, breaks  # at dots (or hyphens)


def test_chart_markers_are_numbered_symbols_with_their_labels_in_a_list(page, live_app, seeded):
    page.goto(live_app.base_url + f"/sentinels/{seeded['ids']['at-least-once']}/?range=15m")
    chart = page.locator('[data-chart="events"]')
    expect(chart).to_have_attribute("data-marks", re.compile(r"[1-9]"))
    marks = int(chart.get_attribute("data-marks"))
    items = page.locator("#chart-marks li")
    expect(items).to_have_count(marks)
    expect(items.first.locator(".mark-symbol")).to_have_text("1")
    expect(page.locator("#chart-marks")).to_contain_text("UTC VIOLATED")
    page.screenshot(path=str(ARTIFACTS / "chart-markers.png"), full_page=True)
