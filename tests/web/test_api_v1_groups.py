"""``/api/v1/clusters/{cluster}/groups``: the consumer groups the group watcher stored, every
response checked against the served OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from dashboard.models import ApiToken, Cluster
from tests.web.api_schema import check
from workers.engine.groups import GroupObservation, PartitionObservation, advance
from workers.store.connection import connect
from workers.store.groups import GroupStore

CLUSTER = "api-groups"
BASE = f"/api/v1/clusters/{CLUSTER}"


@pytest.fixture
def auth(alice: Any) -> dict[str, str]:
    _, raw = ApiToken.issue(alice, "groups", "read")
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def stored(db: None, redis_url: str, settings: Any) -> Iterator[GroupStore]:
    """``billing`` lost 40 records and is STOPPED; ``search`` was rewound 25 and is OK."""
    settings.REDIS_URL = redis_url
    Cluster.objects.create(name=CLUSTER, bootstrap_servers="127.0.0.1:1")
    store = GroupStore(connect(redis_url), CLUSTER)
    store.forget()
    member = ("search-1@/10.0.0.9",)
    states: dict[str, Any] = {}
    plan = {
        "billing": [(10, 0, ()), (10, 50, ())],
        "search": [(100, 0, member), (75, 0, member)],
    }
    for i, t in enumerate((1000.0, 1030.0)):
        events = []
        for name, steps in plan.items():
            committed, start, members = steps[i]
            part = PartitionObservation("orders", 0, committed, start, 100, assigned=bool(members))
            obs = GroupObservation(name, t, "Stable" if members else "Empty", members, (part,))
            states[name], found = advance(states.get(name), obs)
            events.extend(found)
        store.save_sample(states.values(), events, [], {"t": t})
    yield store
    store.forget()


def test_it_lists_a_clusters_groups_worst_first_and_filters_them(
    client: Client, auth: dict[str, str], stored: GroupStore
) -> None:
    response = client.get(f"{BASE}/groups", headers=auth)
    check(client, "get", f"{BASE}/groups", response)
    body = response.json()
    assert [(g["group"], g["status"], g["lost"], g["rewound"]) for g in body] == [
        ("billing", "STOPPED", 40, 0),
        ("search", "OK", 0, 25),
    ]
    only = client.get(f"{BASE}/groups?status=OK&q=sea", headers=auth).json()
    assert [g["group"] for g in only] == ["search"]


def test_it_shows_one_group_with_partitions_events_and_lag_history(
    client: Client, auth: dict[str, str], stored: GroupStore
) -> None:
    url = f"{BASE}/groups/billing"
    response = client.get(url, headers=auth)
    check(client, "get", url, response)
    body = response.json()
    assert [(p["topic"], p["partition"], p["lost"], p["lag"]) for p in body["partitions"]] == [
        ("orders", 0, 40, 50)
    ]
    assert [(e["kind"], e["count"], e["first"], e["last"]) for e in body["events"]] == [
        ("lost", 40, 10, 50)
    ]
    assert [(p["t"], p["lag"]) for p in body["lag_history"]] == [(1000.0, 90), (1030.0, 50)]


def test_it_lists_events_by_kind(client: Client, auth: dict[str, str], stored: GroupStore) -> None:
    url = f"{BASE}/group-events?kind=rewound"
    response = client.get(url, headers=auth)
    check(client, "get", url, response)
    assert [(e["group"], e["count"]) for e in response.json()] == [("search", 25)]
    assert len(client.get(f"{BASE}/group-events", headers=auth).json()) == 2


def test_it_answers_404_and_401_as_documented(
    client: Client, auth: dict[str, str], stored: GroupStore
) -> None:
    for url in (
        "/api/v1/clusters/nope/groups",
        f"{BASE}/groups/nope",
        "/api/v1/clusters/%00/groups",
    ):
        response = client.get(url, headers=auth)
        check(client, "get", url, response)
        assert response.status_code == 404
    assert client.get(f"{BASE}/groups").status_code == 401
    bad = client.get(f"{BASE}/groups?status=BROKEN", headers=auth)
    assert bad.status_code == 422
