"""The JSON API: status documents and chart windows, behind the session login."""

from __future__ import annotations

import time

import pytest

from dashboard.models import MetricWindow
from tests.support.dashboard_data import minute, seed_windows, status_doc, window
from workers.engine.documents import STATUS_VERSION
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

# On SQLite too (both_databases): the 24-hour range, read from the rollups by the same plain cursor.
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture
def logged_in(client, alice):
    client.force_login(alice)
    return client


@pytest.mark.parametrize(
    "url", ["/api/sentinels/", "/api/sentinels/1/", "/api/sentinels/1/windows/?range=1h"]
)
def test_it_answers_anonymous_requests_with_401_json(client, url):
    response = client.get(url)
    assert response.status_code == 401
    assert response.json() == {"error": "authentication required"}


def test_it_lists_every_sentinels_status_document(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    SentinelStore(connect(redis_url), alo.pk).set_status(status_doc(alo, "DEGRADED"))
    response = logged_in.get("/api/sentinels/")
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert body["version"] == STATUS_VERSION
    docs = {doc["name"]: doc for doc in body["sentinels"]}
    assert list(docs) == ["at-least-once", "at-most-once", "exactly-once"]
    assert docs["at-least-once"]["verdict"] == "DEGRADED"
    assert docs["at-least-once"]["totals"]["processed"] == 900
    # No report yet: STALLED with the reason, never a loss.
    assert docs["exactly-once"]["verdict"] == "STALLED"
    assert docs["exactly-once"]["totals"]["lost"] == 0


def test_it_serves_one_status_document(logged_in, sentinels, redis_url):
    amo = sentinels["at-most-once"]
    SentinelStore(connect(redis_url), amo.pk).set_status(status_doc(amo, "VIOLATED"))
    body = logged_in.get(f"/api/sentinels/{amo.pk}/").json()
    assert body["id"] == amo.pk
    assert body["verdict"] == "VIOLATED"
    assert body["topic"] == "sentinel.at-most-once"
    assert body["enabled"] is True


def test_it_answers_404_json_for_an_unknown_sentinel(logged_in, sentinels):
    for url in ("/api/sentinels/999999/", "/api/sentinels/999999/windows/"):
        response = logged_in.get(url)
        assert response.status_code == 404
        assert response.json() == {"error": "no sentinel with id 999999"}


def test_it_serves_the_live_range_from_redis(logged_in, sentinels, redis_url):
    alo = sentinels["at-least-once"]
    now = time.time()
    seed_windows(
        SentinelStore(connect(redis_url), alo.pk),
        [window(alo.pk, now - 10 + i, produced=30, processed=30, e2e=(8.0,)) for i in range(10)],
    )
    body = logged_in.get(f"/api/sentinels/{alo.pk}/windows/?range=live").json()
    assert body["range"] == "live"
    assert body["step"] == 1
    assert body["source"] == "redis"
    assert body["windows"] == 10
    series = body["series"]
    assert len(series["t"]) == body["points"]
    assert {len(values) for values in series.values()} == {body["points"]}
    assert [v for v in series["processed_per_s"] if v is not None] == [30.0] * 10


def test_it_serves_24_hours_at_most_a_thousand_points_from_the_rollups(logged_in, sentinels):
    alo = sentinels["at-least-once"]
    now = time.time()
    MetricWindow.objects.bulk_create(
        MetricWindow(
            sentinel=alo,
            start=minute(now - 60 * (i + 1)),
            counts={"produced": 1800, "processed": 1800, "duplicated": i % 2},
            latency={"e2e": {"p50": 5.0, "p99": 9.0, "count": 1800}},
            verdict="HOLDING",
        )
        for i in range(24 * 60 - 1)
    )
    body = logged_in.get(f"/api/sentinels/{alo.pk}/windows/?range=24h").json()
    assert body["step"] == 120
    assert body["points"] <= 1000
    assert body["windows"] == 24 * 60 - 1
    assert sum(v or 0 for v in body["series"]["duplicated"]) == (24 * 60 - 1) // 2
    assert {v for v in body["series"]["processed_per_s"] if v is not None} == {30.0}


def test_it_refuses_an_unknown_range_with_400(logged_in, sentinels):
    alo = sentinels["at-least-once"]
    response = logged_in.get(f"/api/sentinels/{alo.pk}/windows/?range=30d")
    assert response.status_code == 400
    assert "unknown range '30d'" in response.json()["error"]


def test_it_accepts_get_only(logged_in, sentinels):
    assert logged_in.post("/api/sentinels/").status_code == 405
