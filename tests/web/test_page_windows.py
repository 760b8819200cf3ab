"""Pages an on-call engineer trusts: every number says its window, a violation stays on the
detail page until acknowledged, and the tab carries the worst current state (issue 16)."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from dashboard.models.oncall import ACKNOWLEDGED
from tests.support.dashboard_data import counts
from tests.web.test_oncall_pages import make_incident
from tests.web.test_views import publish_status
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = pytest.mark.django_db


publish = publish_status


@pytest.fixture
def logged_in(client, alice):
    client.force_login(alice)
    return client


def test_it_labels_every_detail_number_with_its_window(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    publish(
        redis_url,
        alo,
        "HOLDING",
        window={"seconds": 300, "counts": counts(processed=300, reordered=2)},
        totals=counts(processed=900, lost=40, late=1),
    )
    html = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    assert "judged on the last 5 min (latency: the last 1 min)" in html
    assert re.search(
        r'reordered <span class="win">5 min</span></dt><dd data-recent="reordered">2<', html
    )
    assert 'p99 <span class="win">1 min</span></dt><dd data-recent="p99">42.5 ms<' in html
    # Totals since start, one click from the overview: its cell links to them.
    assert re.search(
        r'<dt title="acked, and still not processed[^"]*">lost <span class="win">total</span></dt>'
        r'<dd data-total="lost">40<',
        html,
    )
    assert 'id="totals">Since start<' in html
    overview = logged_in.get(reverse("home")).content.decode()
    assert f'href="/sentinels/{alo.pk}/#totals">totals since start<' in overview


def test_it_labels_the_compare_verdict_and_counters_with_their_windows(
    logged_in, sentinels, redis_url
):
    alo, amo = sentinels["at-least-once"], sentinels["at-most-once"]
    html = logged_in.get(f"/compare/?s={alo.pk}&s={amo.pk}&range=15m").content.decode()
    assert 'verdict now <span class="small muted">(judged on the last 5 min)' in html
    assert '<th scope="col">Measure, last 15 min</th>' in html


def test_it_keeps_an_unacknowledged_violation_on_the_detail_page_and_in_the_tab(
    logged_in, sentinels, redis_url
):
    alo, amo = sentinels["at-least-once"], sentinels["at-most-once"]
    publish(redis_url, alo, "HOLDING")  # the violation is over: the verdict holds again
    publish(redis_url, amo, "DEGRADED")
    publish(redis_url, sentinels["exactly-once"], "HOLDING")
    incident = make_incident(alo, counts={"lost": 40})
    html = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    latched = html[html.index(f'data-latched="{incident.pk}"') :]
    assert re.match(
        r'data-latched="\d+" data-latched-state="open"><a class="latched-text" '
        r'href="/incidents/\d+/">violated at \d\d:\d\d UTC, 40 lost; incident #\d+ open, '
        r"not acknowledged<",
        latched,
    )
    assert (
        '<title data-base="at-least-once · Delivery Sentinel" data-note="1 not acknowledged">'
        "HOLDING · 1 not acknowledged · at-least-once · Delivery Sentinel</title>" in html
    )
    # The overview's tab: the worst verdict of all its cells.
    overview = logged_in.get(reverse("home")).content.decode()
    title = re.search(r"<title[^>]*>([^<]*)</title>", overview).group(1)
    assert title == "DEGRADED · 1 not acknowledged · Overview · Delivery Sentinel"
    assert (
        'id="favicon" href="data:," data-verdict="DEGRADED" data-alarm="critical" '
        'data-unacknowledged="1"' in overview
    )
    assert '<script id="ds-severity" type="application/json">' in overview

    incident.state = ACKNOWLEDGED
    incident.save()
    html = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    assert f'class="latched latched-acknowledged acked" data-latched="{incident.pk}"' in html
    assert '<title data-base="at-least-once · Delivery Sentinel" data-note="">HOLDING · at-' in html


def test_it_opens_the_charts_on_the_range_of_the_last_problem(logged_in, sentinels, redis_url):
    alo, amo = sentinels["at-least-once"], sentinels["at-most-once"]
    store = SentinelStore(connect(redis_url), alo.pk)
    store.event("verdict", "verdict none -> STALLED", verdict="STALLED", previous=None)
    html = logged_in.get(reverse("sentinel-detail", args=[amo.pk])).content.decode()
    assert 'data-default-range="live" data-default-reason=""' in html
    html = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    assert 'data-default-range="live"' in html  # a stall at start is no problem to open on
    store.event("verdict", "verdict HOLDING -> VIOLATED", verdict="VIOLATED", previous="HOLDING")
    html = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    assert re.search(
        r'data-default-range="15m" data-default-reason="it holds the last problem, '
        r'VIOLATED at \d\d:\d\d:\d\d"',
        html,
    )
    # Every timeline entry links the charts to its moment, and is drawn on them.
    links = re.findall(r'href="\?range=(\w+)&amp;at=([\d.]+)#charts">show on the charts<', html)
    assert len(links) == 2 and {r for r, _ in links} == {"15m"}
    assert 'data-kind="verdict" data-label="verdict change" data-verdict="VIOLATED"' in html


def test_it_flags_an_end_to_end_p99_over_the_slo_on_compare(logged_in, sentinels, redis_url):
    from tests.support.dashboard_data import seed_windows, window

    alo, amo = sentinels["at-least-once"], sentinels["at-most-once"]
    alo.slo_p99_ms = 100
    alo.save()
    now = time.time()
    for s in (alo, amo):
        seed_windows(
            SentinelStore(connect(redis_url), s.pk),
            [window(s.pk, now - 60 + i, processed=10, e2e=(20.0, 250.0)) for i in range(60)],
        )
    html = logged_in.get(f"/compare/?s={alo.pk}&s={amo.pk}&range=15m").content.decode()
    flags = re.findall(r"✕ p99 [\d.]+ ms over the SLO of (\d+) ms", html)
    assert flags == ["100"]  # at-most-once's 250 ms is within its SLO of 1000 ms
    row = html[html.index("end-to-end latency p99 (ms)") :]
    row = row[: row.index("</tr>")]
    assert row.count("✕ over the SLO") == 1
    # The same three charts for each sentinel, side by side.
    assert html.count("data-compare-chart=") == 6
    assert "Charts, last 15 min" in html


def test_it_asks_before_disabling_a_sentinel_or_starting_a_scenario(logged_in, sentinels):
    manage = logged_in.get(reverse("manage")).content.decode()
    assert manage.count('data-confirm="Disable sentinel ') == len(sentinels)
    scenarios = logged_in.get("/scenarios/").content.decode()
    starts = scenarios.count(">Start</button>")
    assert starts and scenarios.count('data-confirm="Start “') == starts
    assert "/static/dashboard/forms.js" in manage  # what asks, on every page


def test_it_shows_a_clusters_brokers_leaders_and_errors_in_words(logged_in, sentinels, redis_url):
    from workers.engine.brokerhealth import track

    seen = {"1": "127.0.0.1:9092", "2": "127.0.0.1:9093", "3": "127.0.0.1:9094"}
    brokers = track({}, seen, {"1": None, "2": "Connection refused", "3": None}, now=3600.0)
    metadata = {
        "error": None,
        "controller": 1,
        "brokers": brokers,
        "updated_at": time.time(),
        "partitions": {
            "0": {
                "leader": 2,
                "leader_host": "127.0.0.1:9093",
                "replicas": [2, 3, 1],
                "isr": [2, 3, 1],
            },
            "1": {
                "leader": 3,
                "leader_host": "127.0.0.1:9094",
                "replicas": [3, 1, 2],
                "isr": [3, 1],
            },
        },
    }
    alo = sentinels["at-least-once"]
    publish(
        redis_url,
        alo,
        "STALLED",
        metadata=metadata,
        errors=["consumer: _TRANSPORT: 127.0.0.1:9093/2: Connect failed: Connection refused"],
    )
    html = logged_in.get(reverse("cluster", args=[alo.cluster_id])).content.decode()
    down = html[html.index('data-broker="2"') :]
    down = down[: down.index("</li>\n")]
    assert 'data-reachable="false"' in down
    assert "broker 2 (127.0.0.1:9093) unreachable since 01:00:00 UTC: Connection refused" in down
    assert "leads 1 sentinel partition" in down
    assert "consumer: connection failed: 127.0.0.1:9093/2: Connect failed" in down
    assert "_TRANSPORT" not in html
    three = html[html.index('data-broker="3"') :]
    assert "1 under-replicated" in three[: three.index("</li>")]
    assert re.search(
        r'data-broker="1"[^>]*>\s*<strong data-field="state">broker 1 \(127.0.0.1:9092\) '
        r'up</strong> <span class="badge">controller</span>',
        html,
    )
    assert "leader unreachable" in html
    # The detail page's partition table says so too, before the metadata moves the leader.
    part = logged_in.get(reverse("sentinel-partitions", args=[alo.pk])).content.decode()
    assert "leader broker 2 (127.0.0.1:9093) unreachable since 01:00:00 UTC" in part
    # The overview's cluster heading leads to the cluster page.
    assert f'href="/clusters/{alo.cluster_id}/"' in logged_in.get(reverse("home")).content.decode()
