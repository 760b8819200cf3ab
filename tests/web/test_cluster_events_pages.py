"""A cluster's events where people read them: the cluster page, each sentinel's timeline (only
its topics' events) and ``/api/v1/clusters/{id}/events`` (newest first, filtered, bounded,
against the served OpenAPI schema). Events are recorded as the watcher records them
(``ClusterStore.record``); what the watcher finds on a real cluster is
tests/integration/test_cluster_events.py."""

from __future__ import annotations

import time

import pytest

from dashboard.models import ApiToken
from tests.support.waiting import wait_until
from tests.web.api_schema import check
from workers.store.cluster import ClusterStore
from workers.store.connection import connect

pytestmark = pytest.mark.django_db


def event(kind, at, topic=None, partition=None, text=None, **extra):
    return {
        "at": at, "since": at - 3, "kind": kind, "topic": topic, "partition": partition,
        "broker": extra.pop("broker", None), "before": extra.pop("before", None),
        "after": extra.pop("after", None), "count": extra.pop("count", None),
        "text": text or f"{kind} on {topic} p{partition}",
    }  # fmt: skip


@pytest.fixture
def recorded(sentinels, redis_url):
    """Events on the default sentinels' cluster: one on each of two sentinel topics, one on a
    topic no sentinel uses, one of a broker."""
    alo = sentinels["at-least-once"]
    amo = sentinels["at-most-once"]
    store = ClusterStore(connect(redis_url), alo.cluster.name)
    store.forget()
    now = time.time()
    events = [
        event("leader-change", now - 30, alo.topic, 0, text="ALO leader 1 → 2 (epoch 4 → 5)"),
        event("log-start-jump", now - 20, amo.topic, 1, text="AMO log start 0 → 7", count=7),
        event("isr-shrink", now - 10, "someone-elses", 0, text="OTHER ISR [1, 2] → [1]"),
        event("broker-unreachable", now - 5, broker="2", text="broker 2 (h:2) unreachable"),
    ]
    for e in events:  # one sample each, as the watcher records them
        store.record({"at": e["at"], "brokers": {}, "topics": {}}, [e], 7 * 86400 * 1000)
    yield {"store": store, "alo": alo, "amo": amo, "now": now}
    store.forget()


@pytest.fixture
def token(alice):
    return ApiToken.issue(alice, "events", "read")[1]


def get(client, url, token):
    response = client.get(url, headers={"Authorization": f"Bearer {token}"})
    check(client, "get", url, response)
    return response


def test_the_api_lists_a_clusters_events_newest_first(client, recorded, token):
    cid = recorded["alo"].cluster_id
    body = get(client, f"/api/v1/clusters/{cid}/events", token).json()
    assert body["cluster"] == recorded["alo"].cluster.name
    assert [e["kind"] for e in body["events"]] == [
        "broker-unreachable", "isr-shrink", "log-start-jump", "leader-change",
    ]  # fmt: skip
    jump = body["events"][2]
    assert (jump["topic"], jump["partition"], jump["count"]) == (recorded["amo"].topic, 1, 7)
    assert jump["severity"] == "warn" and body["events"][0]["severity"] == "bad"


def test_the_api_filters_by_topic_partition_time_and_limit(client, recorded, token):
    cid, alo, now = recorded["alo"].cluster_id, recorded["alo"], recorded["now"]
    url = f"/api/v1/clusters/{cid}/events"
    by_topic = get(client, f"{url}?topic={alo.topic}", token).json()["events"]
    assert [e["kind"] for e in by_topic] == ["broker-unreachable", "leader-change"]
    assert (
        get(client, f"{url}?topic={alo.topic}&partition=1", token).json()["events"][-1]["kind"]
        == "broker-unreachable"
    )  # the brokers' events stay; the topic's partition 0 does not
    window = get(client, f"{url}?since={now - 25}&until={now - 8}", token).json()["events"]
    assert [e["kind"] for e in window] == ["isr-shrink", "log-start-jump"]
    assert len(get(client, f"{url}?limit=1", token).json()["events"]) == 1


@pytest.mark.parametrize(
    "query, status, field",
    [
        ("?partition=1", 400, "partition"),
        ("?since=20&until=10", 400, "since"),
        ("?limit=0", 422, "limit"),
        ("?limit=1001", 422, "limit"),
        ("?since=nan", 422, "since"),
    ],
)
def test_the_api_says_what_is_wrong_with_a_query(client, recorded, token, query, status, field):
    cid = recorded["alo"].cluster_id
    response = get(client, f"/api/v1/clusters/{cid}/events{query}", token)
    assert response.status_code == status
    assert field in str(response.json()["detail"])


def test_the_api_answers_an_unknown_cluster_with_404(client, sentinels, token):
    for cid in (999999, 0, 2**70):
        response = get(client, f"/api/v1/clusters/{cid}/events", token)
        assert response.status_code == 404


def test_the_api_needs_a_token(client, recorded):
    response = client.get(f"/api/v1/clusters/{recorded['alo'].cluster_id}/events")
    assert response.status_code == 401


def test_events_are_kept_for_the_retention_time_only(recorded):
    store = recorded["store"]
    assert len(store.events(limit=100)) == 4
    start = store.r.time()

    def redis_ms_since_start() -> float:
        now = store.r.time()
        return (now[0] - start[0]) * 1000 + (now[1] - start[1]) / 1000

    wait_until(lambda: redis_ms_since_start() > 100, 10, "Redis's clock 100 ms on")
    store.record({"at": 1.0, "brokers": {}, "topics": {}}, [event("offline", time.time())], 50)
    assert [e["kind"] for e in store.events(limit=100)] == ["offline"]


def test_the_cluster_page_lists_its_events_and_who_watches_it(client, alice, recorded):
    client.force_login(alice)
    recorded["store"].watch_lease("worker-7:abc", 30000).acquire_or_renew()
    recorded["store"].sampled("events", "worker-7:abc", 12)
    try:
        cid = recorded["alo"].cluster_id
        html = client.get(f"/clusters/{cid}/state/").content.decode()
        page = client.get(f"/clusters/{cid}/").content.decode()
    finally:
        recorded["store"].watch_lease("worker-7:abc", 30000).release()
    for text in (
        "ALO leader 1 → 2 (epoch 4 → 5)",
        "AMO log start 0 → 7",
        "broker 2 (h:2) unreachable",
    ):
        assert text in html and text in page
    assert html.index("broker 2 (h:2)") < html.index("ALO leader")  # newest first
    assert 'data-field="watcher">worker-7<' in html
    assert f"/api/v1/clusters/{cid}/events" in html
    assert "watcher-ended" not in html  # no watch process ended by itself yet


def test_the_cluster_page_says_how_its_last_watch_process_ended_by_itself(client, alice, recorded):
    """A watch process that died (an abort in librdkafka, a stuck step) is started again by its
    worker a few seconds later: the page says it happened, else the gap in the events is
    silent."""
    from workers.runtime.watch import exit_in_words

    client.force_login(alice)
    recorded["store"].watcher_ended("worker-7", -6, exit_in_words(-6))
    html = client.get(f"/clusters/{recorded['alo'].cluster_id}/state/").content.decode()
    assert 'data-field="watcher-ended">was killed by SIGABRT (an abort in a client library' in html
    assert "worker-7" in html


def test_a_sentinels_timeline_has_the_events_of_its_topics_only(client, alice, recorded):
    client.force_login(alice)
    alo = recorded["alo"]
    html = client.get(f"/sentinels/{alo.pk}/").content.decode()
    assert "ALO leader 1 → 2 (epoch 4 → 5)" in html
    assert 'data-kind="cluster"' in html and 'data-label="leader change"' in html
    assert "AMO log start" not in html and "OTHER ISR" not in html
