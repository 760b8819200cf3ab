"""The lint page, its "check a client config" form and the JSON endpoints, against a real
Redis (stored reports) and, for "Lint now", the real local cluster."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from dashboard.lint import services as lint
from workers.engine.documents import AT_LEAST_ONCE
from workers.engine.lint.topics import (
    ClusterFacts,
    PartitionFacts,
    Setting,
    TopicFacts,
    lint_report,
)


@pytest.fixture
def stored(db: None, redis_url: str, settings: Any) -> dict[str, Any]:
    """A stored report of the default cluster: one RF-1 topic, one good, one internal."""
    settings.REDIS_URL = redis_url
    parts = lambda rf: (PartitionFacts(0, 1, tuple(range(1, rf + 1)), tuple(range(1, rf + 1))),)  # noqa: E731
    facts = ClusterFacts(
        "local",
        (1, 2, 3),
        {"min.insync.replicas": Setting("2", "static broker")},
        {
            "orders-rf1": TopicFacts("orders-rf1", parts(1)),
            "payments": TopicFacts("payments", parts(3)),
            "__consumer_offsets": TopicFacts("__consumer_offsets", parts(3), internal=True),
        },
    )
    report = {
        **lint_report(facts, generated_at=1.0),
        "error": None,
        "profiles": [],
        "duration_s": 0.1,
    }
    target = lint.targets()[0]
    lint.store().save(target.name, report)
    return report


def test_it_shows_every_topics_verdicts_and_hides_internal_topics(
    client: Client, user: Any, stored: Any
) -> None:
    client.force_login(user)
    page = client.get(reverse("lint"), follow=True).content.decode()
    assert "orders-rf1" in page and "payments" in page
    assert "topic.rf-1" in page
    assert 'data-name="__consumer_offsets"' in page
    row = page[page.index('data-name="__consumer_offsets"') :].split(">", 1)[0]
    assert "hidden" in row


def test_it_answers_the_stored_report_as_json(client: Client, user: Any, stored: Any) -> None:
    client.force_login(user)
    doc = client.get(reverse("api-lint"), {"cluster": "local"}).json()
    topics = {t["name"]: t for t in doc["topics"]}
    assert topics["orders-rf1"]["verdicts"][AT_LEAST_ONCE]["verdict"] == "cannot-hold"
    assert client.get(reverse("api-lint"), {"cluster": "nope"}).status_code == 404


def test_it_refuses_anonymous_api_calls(client: Client, db: None) -> None:
    assert client.get(reverse("api-lint")).status_code == 401
    assert client.post(reverse("api-lint-check"), {"config": "acks=1"}).status_code == 401


def test_it_checks_a_pasted_config_through_the_api(client: Client, user: Any) -> None:
    client.force_login(user)
    body = {"config": "acks=1\n", "semantic": AT_LEAST_ONCE, "role": "producer"}
    answer = client.post(
        reverse("api-lint-check"), json.dumps(body), content_type="application/json"
    ).json()
    assert answer["verdict"] == "cannot-hold"
    assert answer["first"]["rule"] == "producer.acks-weak"
    bad = client.post(reverse("api-lint-check"), {"config": "acks all", "semantic": AT_LEAST_ONCE})
    assert bad.status_code == 400
    assert "line 1" in bad.json()["error"]
    assert (
        client.post(reverse("api-lint-check"), "[1", content_type="application/json").status_code
        == 400
    )


def test_it_checks_a_pasted_config_on_the_page(client: Client, user: Any, stored: Any) -> None:
    client.force_login(user)
    url = reverse("lint-cluster", args=["local"])
    page = client.post(
        url,
        {
            "config": "enable.auto.commit=true",
            "semantic": AT_LEAST_ONCE,
            "role": "consumer",
            "dialect": "librdkafka",
        },
    ).content.decode()
    assert "consumer.auto-commit" in page and "cannot hold" in page
    secret = "sasl.username=u\nsasl.password=hunter2-secret"
    page = client.post(url, {"config": secret, "semantic": AT_LEAST_ONCE}).content.decode()
    assert "hunter2-secret" not in page and "sasl.password=******" in page
    page = client.post(url, {"config": "nonsense", "semantic": AT_LEAST_ONCE}).content.decode()
    assert "line 1: expected key=value" in page


def test_it_answers_404_for_an_unknown_cluster_page(client: Client, user: Any) -> None:
    client.force_login(user)
    assert client.get(reverse("lint-cluster", args=["nope"])).status_code == 404


@pytest.mark.kafka
def test_it_lints_on_demand_from_the_page(
    client: Client, user: Any, redis_url: str, settings: Any
) -> None:
    settings.REDIS_URL = redis_url
    client.force_login(user)
    target = lint.targets()[0]
    started = time.time()
    response = client.post(reverse("lint-run", args=[target.name]), follow=True)
    assert response.status_code == 200
    report = lint.latest(target.name)
    assert report is not None and report["error"] is None
    assert report["generated_at"] >= started
    assert report["brokers"] == [1, 2, 3]


def test_it_gives_every_linted_topic_a_row_on_the_overview(
    client: Client, user: Any, stored: Any
) -> None:
    client.force_login(user)
    page = client.get(reverse("home")).content.decode()
    row = page[page.index('data-topic="orders-rf1"') :].split("</tr>", 1)[0]
    assert 'data-lint="cannot-hold"' in row and "replication factor 1" in row
    internal = page[page.index('data-topic="__consumer_offsets"') :].split(">", 1)[0]
    assert "hidden" in internal


def test_it_keeps_a_sentinel_cell_and_adds_its_topics_lint_verdict() -> None:
    from dashboard.metrics.overview import with_lint

    sentinel_cell = {"id": 7, "name": "s", "verdict": "HOLDING"}
    grid = [
        {"cluster": "local", "rows": [{"topic": "payments", "cells": [[], [sentinel_cell], []]}]}
    ]
    report = {
        "topics": [
            {
                "name": "payments",
                "internal": False,
                "verdicts": {
                    s: {"verdict": "one-failure-away", "label": "x", "first": None}
                    for s in ("at-most-once", "at-least-once", "exactly-once")
                },
            },
            {
                "name": "audit",
                "internal": False,
                "verdicts": {
                    s: {"verdict": "can-hold", "label": "y", "first": None}
                    for s in ("at-most-once", "at-least-once", "exactly-once")
                },
            },
        ]
    }
    rows = with_lint(grid, {"local": report, "other": {"topics": []}})
    local = {r["topic"]: r for r in rows[0]["rows"]}
    assert [r["cluster"] for r in rows] == ["local", "other"]
    assert local["payments"]["cells"][1] == [sentinel_cell]
    assert local["payments"]["lint"][1]["css"] == "degraded"
    assert local["audit"]["cells"] == [[], [], []] and local["audit"]["lint"][0]["css"] == "holding"


@pytest.mark.kafka
def test_it_stores_each_clusters_report_from_the_scheduled_task(
    db: None, redis_url: str, settings: Any
) -> None:
    from dashboard.lint.tasks import lint_clusters

    settings.REDIS_URL = redis_url
    started = time.time()
    assert lint_clusters() == [t.name for t in lint.targets()]
    report = lint.latest(lint.targets()[0].name)
    assert report is not None and report["generated_at"] >= started
    assert {p["profile"] for p in report["profiles"]} == {
        "at-most-once",
        "at-least-once",
        "exactly-once",
    }
    assert all(p["verdict"] == "can-hold" for p in report["profiles"])
    # A run in progress (the claim is held) makes the next one skip the cluster.
    assert lint.store().claim_run(report["cluster"], 5000)
    try:
        assert lint_clusters() == []
    finally:
        lint.store().release_run(report["cluster"])


def test_it_reports_an_unreachable_cluster_instead_of_failing(
    db: None, redis_url: str, settings: Any
) -> None:
    settings.REDIS_URL = redis_url
    report = lint.run(lint.Target("nowhere", "127.0.0.1:1"), timeout=1.0)
    assert "transport failure" in report["error"].lower()
    assert report["topics"] == [] and lint.latest("nowhere")["error"] == report["error"]
    assert all(p["verdict"] == "can-hold" for p in report["profiles"])
