"""HTML pages: overview, sentinel detail, compare, manage."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from dashboard.models import Cluster, Profile, Sentinel
from tests.support.dashboard_data import status_doc
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

# On SQLite too (both_databases): the pages with the heaviest queries (manage's counts per cluster
# and profile, a sentinel's page with its timeline, compare).
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def logged_in(client, alice):
    client.force_login(alice)
    return client


def publish_status(redis_url: str, sentinel, verdict: str, **overrides) -> None:
    SentinelStore(connect(redis_url), sentinel.pk).set_status(
        status_doc(sentinel, verdict, **overrides)
    )


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/sentinels/1/",
        "/sentinels/1/partitions/",
        "/compare/",
        "/manage/",
        "/manage/profiles/new/",
        "/manage/clusters/1/",
    ],
)
def test_it_sends_anonymous_visitors_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_it_shows_one_cell_per_sentinel_under_its_semantic(logged_in, sentinels, redis_url):
    publish_status(
        redis_url,
        sentinels["at-most-once"],
        "VIOLATED",
        reasons=["1 duplicated under at-most-once"],
        window={"seconds": 300, "counts": {"duplicated": 1, "processed": 600, "lost": 0}},
    )
    html = logged_in.get("/").content.decode()
    assert "<h1>Delivery Sentinel</h1>" in html
    assert re.findall(r'<th scope="col">([\w-]+)</th>', html) == [
        "Topic",
        "at-most-once",
        "at-least-once",
        "exactly-once",
    ]
    cell = html[html.index(f'data-sentinel="{sentinels["at-most-once"].pk}"') :]
    cell = cell[: cell.index("</article>")]
    # The verdict as text, with the colour class as well, never colour alone.
    assert 'class="verdict verdict-violated"' in cell
    assert '<span class="verdict-text">VIOLATED</span>' in cell
    assert '<dd data-field="duplicated">1</dd>' in cell
    assert '<dd data-field="throughput">2.0</dd>' in cell
    assert "1 duplicated under at-most-once" in cell
    # The others have not reported: STALLED, not lost.
    assert html.count('<span class="verdict-text">STALLED</span>') == 2 + 1  # + the legend
    assert "/static/dashboard/overview.js" in html and "/static/dashboard/live.js" in html


def test_it_links_every_page_in_the_navigation_including_the_scenario_lab(logged_in, sentinels):
    html = logged_in.get("/").content.decode()
    nav = html[html.index('<nav aria-label="Main"') : html.index("</nav>")]
    for href in ('href="/"', 'href="/compare/"', 'href="/manage/"', 'href="/scenarios/"'):
        assert href in nav
    assert 'aria-current="page">Overview' in nav


def test_it_invites_to_create_a_sentinel_when_there_is_none(logged_in):
    assert "No sentinels yet." in logged_in.get("/").content.decode()


def test_it_shows_the_effective_configuration_with_secrets_masked(logged_in, sentinels):
    cluster = Cluster.objects.get()
    cluster.client_properties = {"sasl.password": "hunter2", "client.id": "ds"}
    cluster.save()
    eos = sentinels["exactly-once"]
    html = logged_in.get(reverse("sentinel-detail", args=[eos.pk])).content.decode()
    assert "hunter2" not in html
    assert re.search(r"sasl\.password</th><td class=\"mono\">\*\*\*\*\*\*</td>", html)
    assert f"delivery-sentinel.{eos.pk}.copier" in html  # transactional.id of the copier
    assert f'data-windows-url="/api/sentinels/{eos.pk}/windows/"' in html
    for label in ("Live", "15 min", "1 h", "24 h", "7 d"):
        assert f">{label}</button>" in html


def test_it_shows_the_timeline_of_verdict_changes(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    store = SentinelStore(connect(redis_url), alo.pk)
    store.event("verdict", "verdict HOLDING -> VIOLATED", verdict="VIOLATED", previous="HOLDING")
    html = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    timeline = html[html.index('id="timeline"') :]
    assert "verdict change" in timeline
    assert "verdict HOLDING -&gt; VIOLATED" in timeline


def test_it_404s_for_an_unknown_sentinel(logged_in):
    assert logged_in.get("/sentinels/424242/").status_code == 404


def test_it_renders_the_partition_table_and_highlights_trouble(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    metadata = {
        "error": None,
        "partitions": {
            "0": {"leader": 2, "leader_host": "127.0.0.1:9093", "replicas": [2, 3], "isr": [2]},
        },
        "updated_at": time.time(),
    }
    publish_status(redis_url, alo, "HOLDING", metadata=metadata)
    html = logged_in.get(reverse("sentinel-partitions", args=[alo.pk])).content.decode()
    row = html[html.index('data-partition="0"') :]
    row = row[: row.index("</tr>")]
    assert 'class="problem"' in html
    assert "broker 2" in row and "127.0.0.1:9093" in row
    assert "<strong>Problem:</strong> under-replicated: 1/2 in sync" in row


def test_it_says_when_the_partition_metadata_is_unavailable(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    error = "Failed to get metadata: Local: Broker transport failure"
    metadata = {"error": error, "partitions": {}, "updated_at": time.time()}
    publish_status(redis_url, alo, "HOLDING", metadata=metadata)
    html = logged_in.get(reverse("sentinel-partitions", args=[alo.pk])).content.decode()
    assert "Kafka metadata for" in html and "unavailable" in html
    assert error in html


def test_it_says_when_the_checker_has_put_no_metadata_in_the_status_yet(logged_in, sentinels):
    alo = sentinels["at-least-once"]  # no report at all: a placeholder status
    html = logged_in.get(reverse("sentinel-partitions", args=[alo.pk])).content.decode()
    assert "Kafka metadata for" in html and "unavailable" in html
    assert "no cluster metadata from the sentinel&#x27;s checker yet" in html


def test_it_compares_two_sentinels_side_by_side(logged_in, sentinels, redis_url):
    amo, alo = sentinels["at-most-once"], sentinels["at-least-once"]
    publish_status(redis_url, amo, "VIOLATED")
    response = logged_in.get(f"/compare/?s={alo.pk}&s={amo.pk}&range=15m")
    html = response.content.decode()
    acks = html[html.index('data-key="producer.acks"') :]
    acks = acks[: acks.index("</tr>")]
    assert 'class="differs"' in html[html.index('data-key="producer.acks"') - 40 :][:60]
    assert ">all</td>" in acks and ">0</td>" in acks and "≠ differs" in acks
    same = html[html.index('data-key="consumer.auto.offset.reset"') - 40 :]
    assert 'class=""' in same[:60]
    # Columns in the order of the link, verdicts, and the counters of the same window.
    head = html[html.index('id="config-diff"') :]
    assert head.index(">at-least-once<") < head.index(">at-most-once<")
    assert '<span class="verdict-text">VIOLATED</span>' in html
    assert "Counters and latency, last 15 min" in html
    # The selection survives in the form: the address is the shareable link.
    assert html.count(" checked>") == 2


def test_it_shows_secrets_in_a_comparison_only_as_changed_or_unchanged(logged_in, sentinels):
    amo, alo = sentinels["at-most-once"], sentinels["at-least-once"]
    for profile, password in ((amo.profile, "hunter2"), (alo.profile, "swordfish")):
        profile.producer_properties = {**profile.producer_properties, "sasl.password": password}
        profile.save()
    html = logged_in.get(f"/compare/?s={amo.pk}&s={alo.pk}").content.decode()
    assert "hunter2" not in html and "swordfish" not in html
    row = html[html.index('data-key="producer.sasl.password"') :]
    row = row[: row.index("</tr>")]
    assert "******" in row and ">changed</td>" in row


@pytest.mark.parametrize("count", [1, 5])
def test_it_asks_for_two_to_four_sentinels(logged_in, sentinels, count):
    ids = [s.pk for s in sentinels.values()]
    ids += [
        Sentinel.objects.create(
            name=f"extra-{i}",
            cluster=Cluster.objects.get(),
            profile=Profile.objects.first(),
            topic=f"t{i}",
        ).pk
        for i in range(2)
    ]
    query = "&".join(f"s={i}" for i in ids[:count])
    html = logged_in.get(f"/compare/?{query}").content.decode()
    assert f"Pick 2 to 4 sentinels to compare ({count} selected)." in html
    assert 'id="config-diff"' not in html


def test_it_lists_clusters_profiles_and_sentinels_to_manage(logged_in, sentinels):
    html = logged_in.get("/manage/").content.decode()
    for name in ("at-most-once", "at-least-once", "exactly-once"):
        assert f">{name}</a></th>" in html
    assert "acks=0" in html
    assert f'hx-post="/manage/sentinels/{sentinels["at-most-once"].pk}/toggle/"' in html


def test_it_shows_form_errors_in_place_with_htmx_and_saves_nothing(logged_in, sentinels):
    before = Profile.objects.count()
    response = logged_in.post(
        "/manage/profiles/new/",
        {
            "name": "typo",
            "semantic": "at-least-once",
            "commit_strategy": "process-before-commit",
            "producer_properties": "acks=all\nlinger.mss=5",
            "consumer_properties": "",
        },
        **HX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith("<form")  # the fragment only, swapped into the page
    assert "No such configuration property: &quot;linger.mss&quot;" in html
    assert 'aria-invalid="true"' in html
    assert Profile.objects.count() == before


def test_it_redirects_after_saving_with_or_without_htmx(logged_in, sentinels):
    data = {
        "name": "alo-acks1",
        "semantic": "at-least-once",
        "commit_strategy": "process-before-commit",
        "producer_properties": "acks=1\nenable.idempotence=false",
        "consumer_properties": "enable.auto.commit=false",
    }
    response = logged_in.post("/manage/profiles/new/", data, **HX)
    assert response["HX-Redirect"] == "/manage/"
    data["name"] = "alo-acks1-again"
    response = logged_in.post("/manage/profiles/new/", data)
    assert response.status_code == 302 and response["Location"] == "/manage/"
    assert Profile.objects.filter(name__startswith="alo-acks1").count() == 2


def test_it_edits_a_sentinel(logged_in, sentinels):
    alo = sentinels["at-least-once"]
    response = logged_in.get(f"/manage/sentinels/{alo.pk}/")
    assert 'value="sentinel.at-least-once"' in response.content.decode()
    data = {
        "name": alo.name,
        "cluster": alo.cluster_id,
        "profile": alo.profile_id,
        "topic": alo.topic,
        "partitions": 6,
        "replication_factor": 3,
        "rate_per_partition": 5,
        "record_size": 128,
        "grace_seconds": 10,
        "slo_p99_ms": 500,
        "enabled": "on",
    }
    assert logged_in.post(f"/manage/sentinels/{alo.pk}/", data).status_code == 302
    alo.refresh_from_db()
    assert (alo.partitions, alo.record_size, alo.slo_p99_ms) == (6, 128, 500)


def test_it_enables_and_disables_a_sentinel(logged_in, sentinels):
    amo = sentinels["at-most-once"]
    url = reverse("sentinel-toggle", args=[amo.pk])
    assert logged_in.get(url).status_code == 405
    response = logged_in.post(url, **HX)
    assert '<span class="state state-off">disabled</span>' in response.content.decode()
    assert ">Enable<" in response.content.decode()
    amo.refresh_from_db()
    assert not amo.enabled
    assert logged_in.post(url).status_code == 302
    amo.refresh_from_db()
    assert amo.enabled


def test_it_keeps_a_verdict_changes_reasons_after_a_reload(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    store = SentinelStore(connect(redis_url), alo.pk)
    store.event(
        "verdict",
        "verdict HOLDING -> VIOLATED",
        verdict="VIOLATED",
        previous="HOLDING",
        reasons=["40 lost under at-least-once"],
    )
    html = logged_in.get(reverse("sentinel-detail", args=[alo.pk])).content.decode()
    timeline = html[html.index('id="timeline"') :]
    # The same words the live page writes (detail.js, addTimelineEntry).
    assert "verdict HOLDING -&gt; VIOLATED: 40 lost under at-least-once" in timeline


def test_every_overview_number_says_its_window_and_throughput_is_the_last_ten_seconds(
    logged_in, sentinels, redis_url
):
    from tests.support.dashboard_data import seed_windows, window

    alo = sentinels["at-least-once"]
    publish_status(redis_url, alo, "HOLDING")  # its verdict window: 300 processed in 300 s
    now = time.time()
    seed_windows(
        SentinelStore(connect(redis_url), alo.pk),
        [window(alo.pk, now - 20 + i, processed=30 if i >= 10 else 0) for i in range(20)],
    )
    html = logged_in.get(reverse("home")).content.decode()
    cell = html[html.index(f'data-sentinel="{alo.pk}"') :]
    assert 'data-field="throughput">30.0<' in cell  # the live page's 10 s mean, not 1.0
    for label in (
        'lost <span class="win">last 5 min',
        'rec/s <span class="win">last 10 s',
        'p99 <span class="win">last 1 min',
        'processed <span class="win">since start',
    ):
        assert label in cell
