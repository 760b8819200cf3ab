"""What a card says, and that its numbers reconcile (issue #28, items 3 and 4): since when a
sentinel is in its verdict (kept across a checker restart), every count with its window, no
gauge negative in any window or status document whatever happens to the runs (a new run, a
checker restart, the sentinel's state lost in Redis), totals that show what is in flight, the
meaning of acked under acks=0, lint chips with their time, incident tables with the counters
their kind is about."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from dashboard import formatting
from dashboard.models import ApiToken, MetricWindow
from dashboard.oncall.views import incident_columns
from tests.support.dashboard_data import status_doc
from tests.web.test_oncall_pages import make_incident
from workers.engine import alerts
from workers.engine.documents import GAUGES
from workers.runtime.checkrunner import CheckRunner
from workers.store.connection import connect
from workers.store.lint import LintStore
from workers.store.sentinel import SentinelStore

pytestmark = pytest.mark.django_db

RUN_A, RUN_B, RUN_C = 7001, 7002, 7003


@pytest.fixture
def logged_in(client, alice):
    client.force_login(alice)
    return client


def runner_for(sentinel, redis_url) -> CheckRunner:
    runner = CheckRunner(sentinel.to_spec(), SentinelStore(connect(redis_url), sentinel.pk))
    runner.load()
    return runner


def cut(runner: CheckRunner, now: float) -> dict:
    """One check runner cut at ``now``, as ``step`` does after reading: status and window."""
    runner.checker.tick(now)
    runner.checkpoint()
    status = runner.status(now)
    runner.store.set_status(status)
    runner.emit_window(now, status)
    return status


def test_it_keeps_the_time_a_verdict_was_entered_until_it_changes_and_across_a_restart(
    sentinels, redis_url
):
    alo = sentinels["at-least-once"]
    runner = runner_for(alo, redis_url)
    t0 = time.time()
    assert cut(runner, t0)["verdict"] == "HOLDING"
    assert cut(runner, t0 + 2)["verdict_since"] == t0  # still HOLDING: entered at t0
    runner.checker.register_run(RUN_A)
    runner.checker.produced(RUN_A, 0, 1)
    runner.checker.acked(RUN_A, 0, 0, 0, t0 + 3)
    runner.checker.processed(RUN_A, 0, [0, 0], t0 + 3)  # a duplicate: DEGRADED for at-least-once
    degraded = cut(runner, t0 + 4)
    assert (degraded["verdict"], degraded["verdict_since"]) == ("DEGRADED", t0 + 4)

    restarted = runner_for(alo, redis_url)  # a new checker process, from the checkpoint
    again = restarted.status(t0 + 6)
    assert (again["verdict"], again["verdict_since"]) == ("DEGRADED", t0 + 4)


def test_no_gauge_is_negative_in_any_window_across_runs_restarts_and_lost_state(
    client, sentinels, redis_url, alice
):
    """``pending`` is a level: a naive difference goes negative when records pending at the
    start of a window are processed in it (the status document's five-minute window once said
    ``"pending": -992``), after a restart, or when the state is lost and counts start again."""
    alo = sentinels["at-least-once"]
    token = ApiToken.issue(alice, "reader", "read")[1]
    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.time() - 900  # the windows API serves the last hour: room for 700 s of cuts
    statuses = []

    def status_now() -> dict:
        return client.get(f"/api/v1/sentinels/{alo.name}", headers=headers).json()

    runner = runner_for(alo, redis_url)
    runner.checker.register_run(RUN_A)
    runner.checker.produced(RUN_A, 0, 1000)
    runner.checker.acked(RUN_A, 0, 0, 999, t0)  # 1,000 pending
    cut(runner, t0)
    statuses.append(status_now())
    runner.checker.processed(RUN_A, 0, range(1000), t0 + 301)  # all of them processed
    cut(runner, t0 + 301)
    statuses.append(status_now())
    assert statuses[-1]["window"]["seconds"] == 300  # a full verdict window: a difference

    runner.checker.register_run(RUN_B)  # a new producer run, 500 pending
    runner.checker.produced(RUN_B, 0, 500)
    runner.checker.acked(RUN_B, 0, 0, 499, t0 + 302)
    cut(runner, t0 + 302)
    restarted = runner_for(alo, redis_url)  # the checker restarts from its checkpoint
    restarted.checker.processed(RUN_B, 0, range(500), t0 + 610)
    cut(restarted, t0 + 609)
    cut(restarted, t0 + 610)
    statuses.append(status_now())

    restarted.store.reset()  # the sentinel's state is lost in Redis (flushed)
    restarted.on_state_lost("flushed")
    restarted.checker.register_run(RUN_C)
    restarted.checker.produced(RUN_C, 0, 10)
    restarted.checker.acked(RUN_C, 0, 0, 9, t0 + 611)
    cut(restarted, t0 + 611)
    restarted.checker.processed(RUN_C, 0, range(10), t0 + 612)
    cut(restarted, t0 + 612)
    statuses.append(status_now())

    windows = client.get(
        f"/api/v1/sentinels/{alo.name}/windows?since={t0 - 5}&resolution=1s", headers=headers
    ).json()["windows"]
    assert len(windows) >= 2  # those written since the state was lost
    for doc in windows:
        for gauge in GAUGES:
            assert doc["counts"].get(gauge, 0) >= 0, doc
    for doc in statuses:
        for gauge in GAUGES:
            assert doc["window"]["counts"][gauge] >= 0, doc["window"]
            assert doc["window"]["counts"][gauge] == doc["totals"][gauge]  # the level now


def test_the_card_says_since_when_it_is_in_its_verdict_and_each_counts_window(
    logged_in, sentinels, redis_url
):
    eos = sentinels["exactly-once"]
    now = time.time()
    entered = now - 420
    SentinelStore(connect(redis_url), eos.pk).set_status(
        status_doc(eos, "VIOLATED", verdict_since=entered, reasons=["7 duplicated"])
    )
    html = logged_in.get(reverse("home")).content.decode()
    cell = html[html.index(f'data-sentinel="{eos.pk}"') :]
    cell = cell[: cell.index("</article>")]
    clock = datetime.fromtimestamp(entered, UTC).strftime("%H:%M:%S")
    assert re.search(rf'data-field="since"[^>]*>since {clock} UTC, 7 min<', cell), cell
    assert 'duplicated <span class="win">last 5 min</span>' in cell
    assert "42.5 ms" in cell  # p99 with its unit


def test_large_latencies_are_written_in_seconds(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    slow = {"p50": 80000.0, "p99": 93578.9, "max": 99000.0}
    SentinelStore(connect(redis_url), alo.pk).set_status(
        status_doc(alo, "DEGRADED", recent_latency_ms=slow)
    )
    overview = logged_in.get(reverse("home")).content.decode()
    detail = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    for html in (overview, detail):
        assert "93.6 s" in html
        assert "93578.9" not in html


def test_totals_show_what_is_in_flight_and_what_acked_means_under_acks_0(
    logged_in, sentinels, redis_url
):
    amo = sentinels["at-most-once"]
    assert amo.to_spec().producer_conf()["acks"] in (0, "0")
    totals = status_doc(amo)["totals"] | {"produced": 12_522, "acked": 12_500, "processed": 12_540}
    SentinelStore(connect(redis_url), amo.pk).set_status(status_doc(amo, totals=totals))
    html = logged_in.get(reverse("sentinel-detail", args=[amo.pk])).content.decode()
    assert re.search(r"in flight / not yet reported <span[^>]*>total</span></dt>", html)
    assert 'data-total="in_flight">22<' in html
    assert "acked (left the client: acks=0)" in html
    assert "processed can run ahead of acked" in html
    assert re.search(
        r'<dt title="processings applied to the processing ledger[^"]+">processed', html
    )


def test_lint_chips_say_when_the_lint_ran(logged_in, sentinels, redis_url):
    ran = time.time() - 120
    report = {
        "cluster": "local",
        "generated_at": ran,
        "error": None,
        "brokers": [1, 2, 3],
        "cluster_findings": [],
        "topics": [
            {
                "name": "orders",
                "internal": False,
                "error": None,
                "partitions": 3,
                "replication_factor": 3,
                "findings": [],
                "verdicts": {
                    s: {"verdict": "can-hold", "label": "can hold", "first": None}
                    for s in ("at-most-once", "at-least-once", "exactly-once")
                },
            }
        ],
        "counts": {"error": 0, "warning": 0},
        "profiles": [],
    }
    store = LintStore(connect(redis_url))
    store.save("local", report)
    try:
        html = logged_in.get(reverse("home")).content.decode()
    finally:
        store.r.delete(*store.r.keys("ds:lint:*"))
    row = html[html.index('data-topic="orders"') :]
    row = row[: row.index("</tr>")]
    stamp = f"lint at {formatting.clock(ran, time.time())}"
    assert stamp.endswith(" UTC")
    assert row.count(f'<span class="small muted lint-ran">{stamp}</span>') == 3  # one per semantic


def test_an_incident_table_shows_the_counters_its_kind_is_about(logged_in, sentinels):
    amo = sentinels["at-most-once"]  # loses records by design: lost is not forbidden
    opened = datetime(2026, 1, 5, 14, 2, tzinfo=UTC)
    incident = make_incident(
        amo,
        kind=alerts.LOSS_RATE,
        counts={"lost": 21, "acked": 400},
        opened_at=opened,
        last_firing_at=opened,
    )
    # The counter it is about (lost), the semantic's forbidden ones, then the rest it carries.
    assert incident_columns(incident) == ["lost", "duplicated", "aborted_read", "rewound", "acked"]
    MetricWindow.objects.create(
        sentinel=amo,
        start=opened,
        counts={"processed": 379, "lost": 21, "acked": 400},
        latency={"e2e": {"p99": 355.84000000000003}},
        verdict="DEGRADED",
    )
    MetricWindow.objects.create(
        sentinel=amo,
        start=opened - timedelta(minutes=1),
        counts={"processed": 400},
        latency={"e2e": {"p99": 93578.9}},
        verdict="HOLDING",
    )
    page = logged_in.get(f"/incidents/{incident.pk}/").content.decode()
    table = page[page.index('class="partitions windows"') :]
    assert '<th scope="col">lost</th>' in table
    assert "<td>21</td>" in table
    assert "355.8 ms" in table and "93.6 s" in table
    assert "355.84000000000003" not in page


def test_the_overview_says_the_clusters_state_and_the_cards_name_it(
    logged_in, sentinels, redis_url
):
    """All three brokers unreachable: one strip for the cluster in words, and each card that
    reports a client error names the cluster's state, its raw client line one click away."""
    from workers.engine.brokerhealth import track

    seen = {"1": "127.0.0.1:9092", "2": "127.0.0.1:9093", "3": "127.0.0.1:9094"}
    went = time.time() - 120
    brokers = track(track({}, seen, dict.fromkeys(seen), went - 60), seen, {}, went)
    brokers = track(brokers, seen, dict.fromkeys(seen, "Connection refused"), went)
    raw = (
        "producer: _TRANSPORT: 127.0.0.1:9094/bootstrap: Connect to ipv4#127.0.0.1:9094 "
        "failed: Connection refused"
    )
    client = connect(redis_url)
    for s in sentinels.values():
        errors = [raw] if s.name != "exactly-once" else []
        doc = status_doc(
            s,
            "STALLED" if errors else "HOLDING",
            errors=errors,
            reasons=errors,
            metadata={"error": "Failed to get metadata", "partitions": {}, "brokers": brokers},
        )
        SentinelStore(client, s.pk).set_status(doc)
    html = logged_in.get(reverse("home")).content.decode()
    clock = datetime.fromtimestamp(went, UTC).strftime("%H:%M:%S")
    strip = html[html.index("data-cluster-strip=") :]
    strip = strip[: strip.index("</p>")]
    assert f"all 3 brokers unreachable since {clock} UTC" in strip
    assert html.count("data-cluster-strip=") == 1
    for s in sentinels.values():
        cell = html[html.index(f'data-sentinel="{s.pk}"') :]
        cell = cell[: cell.index("</article>")]
        if s.name == "exactly-once":  # holding, no client error: its card is not about it
            assert "cluster-note" not in cell
            continue
        note = re.search(r'data-field="cluster-note">([^<]*)<', cell)
        assert (
            note and note.group(1) == f"cluster local: all 3 brokers unreachable since {clock} UTC"
        )
        raw_at = cell.index("127.0.0.1:9094/bootstrap")
        assert cell.rindex("<details", 0, raw_at) > cell.index("cluster-note")  # one click away


def test_a_healthy_cluster_has_no_strip(logged_in, sentinels, redis_url):
    from workers.engine.brokerhealth import track

    seen = {"1": "127.0.0.1:9092", "2": "127.0.0.1:9093", "3": "127.0.0.1:9094"}
    brokers = track({}, seen, dict.fromkeys(seen), time.time())
    alo = sentinels["at-least-once"]
    SentinelStore(connect(redis_url), alo.pk).set_status(
        status_doc(alo, metadata={"error": None, "partitions": {}, "brokers": brokers})
    )
    html = logged_in.get(reverse("home")).content.decode()
    assert "data-cluster-strip=" not in html and "cluster-note" not in html
