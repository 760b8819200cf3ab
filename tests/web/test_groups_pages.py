"""The consumer groups' pages against a real Redis holding states the engine made: the groups
page (search, sort by worst, partitions, events), a group's page with its lag series, and the
overview's topic rows with their groups' worst status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from dashboard.lint import services as lint
from dashboard.models import Cluster
from workers.engine.groups import GroupObservation, PartitionObservation, advance
from workers.engine.lint.topics import (
    ClusterFacts,
    PartitionFacts,
    Setting,
    TopicFacts,
    lint_report,
)
from workers.store.connection import connect
from workers.store.groups import GroupStore

CLUSTER = "groups-pages"


def sample(group: str, t: float, committed: int, start: int, members: tuple[str, ...]) -> Any:
    part = PartitionObservation("orders", 0, committed, start, 100, assigned=bool(members))
    return GroupObservation(group, t, "Stable" if members else "Empty", members, (part,))


@pytest.fixture
def stored(db: None, redis_url: str, settings: Any) -> Iterator[GroupStore]:
    """Two groups on topic ``orders``: ``billing`` lost 40 records and is STOPPED, ``search``
    is caught up with a member; one lag point each per sample."""
    settings.REDIS_URL = redis_url
    Cluster.objects.create(name=CLUSTER, bootstrap_servers="127.0.0.1:1")
    store = GroupStore(connect(redis_url), CLUSTER)
    store.forget()
    states: dict[str, Any] = {}
    for t, billing_start in ((1000.0, 0), (1030.0, 50)):
        events = []
        for obs in (
            sample("billing", t, 10, billing_start, ()),
            sample("search", t, 100, 0, ("search-1@/10.0.0.9",)),
        ):
            states[obs.group], found = advance(states.get(obs.group), obs)
            events.extend(found)
        store.save_sample(states.values(), events, [], {"t": t, "groups": 2, "partitions": 1,
                                                          "probes": 0, "errors": 0, "seconds": 0.1})  # fmt: skip
    yield store
    store.forget()


def test_it_lists_groups_worst_first_with_their_counts_and_events(
    client: Client, user: Any, stored: GroupStore
) -> None:
    client.force_login(user)
    page = client.get(reverse("groups:cluster", args=[CLUSTER])).content.decode()
    assert page.index('data-group="billing"') < page.index('data-group="search"')
    billing = page[page.index('data-group="billing"') :].split("</tr>", 1)[0]
    assert 'data-status="STOPPED"' in billing
    assert '<td class="num" data-field="lost">40</td>' in billing
    events = page[page.index('id="events-heading"') :]
    assert 'data-event="lost"' in events and '<td class="num" data-field="count">40</td>' in events
    by_name = client.get(reverse("groups:cluster", args=[CLUSTER]), {"sort": "name"})
    assert by_name.status_code == 200


def test_it_searches_groups_by_name_or_topic(client: Client, user: Any, stored: GroupStore) -> None:
    client.force_login(user)
    url = reverse("groups:cluster", args=[CLUSTER])
    page = client.get(url, {"q": "sea"}).content.decode()
    assert 'data-group="search"' in page and 'data-group="billing"' not in page
    by_topic = client.get(url, {"q": "orders"}).content.decode()
    assert 'data-group="search"' in by_topic and 'data-group="billing"' in by_topic
    none = client.get(url, {"q": "nothing-like-it"}).content.decode()
    assert "No consumer group matches" in none


def test_it_shows_a_groups_lag_series_partitions_and_events(
    client: Client, user: Any, stored: GroupStore
) -> None:
    client.force_login(user)
    page = client.get(reverse("groups:group", args=[CLUSTER, "billing"])).content.decode()
    raw = page.split('<script id="group-series" type="application/json">', 1)[1].split("</script>")[
        0
    ]
    assert json.loads(raw) == {"t": [1000.0, 1030.0], "lag": [90, 50], "lag_s": [None, None]}
    assert 'data-partition="orders:0" data-status="STOPPED"' in page
    assert 'data-event="lost"' in page


def test_it_answers_404_for_an_unknown_cluster_or_group(
    client: Client, user: Any, stored: GroupStore
) -> None:
    client.force_login(user)
    assert client.get(reverse("groups:cluster", args=["nope"])).status_code == 404
    assert client.get("/groups/%00/").status_code == 404  # no cluster's name, on PostgreSQL too
    assert client.get(reverse("groups:group", args=[CLUSTER, "nope"])).status_code == 404


def test_it_shows_each_topic_rows_groups_worst_status_on_the_overview(
    client: Client, user: Any, stored: GroupStore
) -> None:
    parts = (PartitionFacts(0, 1, (1, 2, 3), (1, 2, 3)),)
    facts = ClusterFacts(
        CLUSTER,
        (1, 2, 3),
        {"min.insync.replicas": Setting("2", "static broker")},
        {"orders": TopicFacts("orders", parts), "quiet": TopicFacts("quiet", parts)},
    )
    report = {
        **lint_report(facts, generated_at=1.0),
        "error": None,
        "profiles": [],
        "duration_s": 0.1,
    }
    lint.store().save(CLUSTER, report)
    try:
        client.force_login(user)
        page = client.get(reverse("home")).content.decode()
    finally:
        lint.store().forget(CLUSTER)
    orders = page[page.index('data-topic="orders"') :].split("</th>", 1)[0]
    assert 'data-groups="STOPPED"' in orders and "groups: STOPPED (2)" in orders
    quiet = page[page.index('data-topic="quiet"') :].split("</th>", 1)[0]
    assert "data-groups" not in quiet
