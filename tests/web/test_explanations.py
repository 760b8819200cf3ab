"""A violation's incident says why it happened: the cluster's events (as its watcher records
them) and the sentinel's own around the first affected record, through the on-call evaluation,
on the incident, in the webhook body a real HTTP receiver gets, in the API and in /metrics.

Status documents, windows and cluster events are written to the test Redis as the checker and
the cluster's watcher write them; the real-cluster cases are in
tests/integration/test_explained_cluster.py."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command

from dashboard.models import Channel, Incident
from dashboard.oncall import evaluation, notification
from tests.support.dashboard_data import counts, fresh_defaults, seed_windows, window, wipe
from tests.support.oncall import webhook_channel
from tests.web.test_incidents import Sent, evaluate, only, publish
from workers.engine import explain
from workers.store.cluster import ClusterStore
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

# On SQLite too (both_databases): an incident's explanation, a JSONField read back and grouped by a
# key inside it in /metrics.
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

WEEK_MS = 7 * 24 * 3600 * 1000


def cluster_event(kind, at, topic, partition, text, **extra):
    """An event as ``workers.engine.clusterevents.diff`` makes it."""
    return {
        "at": at,
        "since": at - 3,
        "kind": kind,
        "topic": topic,
        "partition": partition,
        "broker": None,
        "before": None,
        "after": None,
        "count": None,
        "text": text,
        **extra,
    }


@pytest.fixture
def sentinels(redis_url):
    found = fresh_defaults(redis_url)
    yield found
    wipe(redis_url, found)


@pytest.fixture
def events(redis_url, sentinels):
    store = ClusterStore(connect(redis_url), "local")
    store.forget()
    yield store
    store.forget()


def lose(redis_url, sentinel, now, lost=40, partition="0"):
    """The checker counted ``lost`` records lost on ``partition`` in the window ending now."""
    store = SentinelStore(connect(redis_url), sentinel.pk)
    seed_windows(
        store, [window(sentinel.pk, now - 0.5, lost=lost, partitions={partition: {"lost": lost}})]
    )
    publish(
        redis_url, sentinel, verdict="VIOLATED", totals=counts(acked=900, processed=860, lost=lost)
    )


def test_a_loss_after_records_were_deleted_is_explained_everywhere(
    sentinels,
    events,
    redis_url,
    httpserver,
    client,
    admin_user,
    settings,
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    Channel.objects.create(name="hook", kind="webhook", config={"url": httpserver.url_for("/hook")})
    alo = only(sentinels, "at-least-once")
    now = time.time()
    publish(redis_url, alo)
    evaluate(now, Sent())  # first sight: healthy
    text = f"{alo.topic} p0 log start 900 → 940: 40 records deleted"
    events.record(
        {}, [cluster_event("log-start-jump", now - 15, alo.topic, 0, text, count=40)], WEEK_MS
    )
    lose(redis_url, alo, now + 1)

    (incident,) = incidents_opened(now + 1)
    found = incident.explanation
    assert (found["cause"], found["counter"], found["partition"]) == (explain.RETENTION, "lost", 0)
    assert text in found["text"] and found["text"].endswith("(40 lost on p0)")
    assert incident.events.filter(kind="explained", message=found["text"]).exists()

    # The webhook body a real receiver got carries it.
    ((request, _response),) = httpserver.log
    annotations = json.loads(request.data)["alerts"][0]["annotations"]
    assert annotations["explanation"] == found["text"] and annotations["cause"] == "retention"
    # The incident's page, the API and /metrics say it too.
    client.force_login(admin_user)
    page = client.get(f"/incidents/{incident.pk}/").content.decode()
    assert "log start 900 → 940" in page
    # The overview's card: its latched line's tooltip says why.
    overview = client.get("/").content.decode()
    assert f'title="Why: {found["text"]}"' in overview
    doc = client.get(f"/api/v1/incidents/{incident.pk}").json()
    assert doc["explanation"]["cause"] == "retention" and doc["explanation"]["partition"] == 0
    # The sentinel's status document says why too (the API and the command line serve it).
    status = client.get(f"/api/v1/sentinels/{alo.name}").json()
    (why,) = status["explanations"]
    assert why == {
        "incident": incident.pk,
        "kind": "violated",
        "state": "open",
        "cause": "retention",
        "text": found["text"],
        "counter": "lost",
        "partition": 0,
        "at": found["at"],
    }
    listed = client.get("/api/v1/sentinels").json()["sentinels"]
    assert {d["name"]: d["explanations"] for d in listed}[alo.name] == [why]
    out = io.StringIO()
    call_command("sentinels", "status", "--json", stdout=out)
    docs = {d["name"]: d for d in json.loads(out.getvalue())["sentinels"]}
    assert docs[alo.name]["explanations"] == [why]
    assert all(d["explanations"] == [] for name, d in docs.items() if name != alo.name)
    settings.METRICS_ALLOWED_IPS = ["127.0.0.0/8"]
    metrics = client.get("/metrics").content.decode()
    assert 'delivery_sentinel_violations_total{cause="retention"} 1.0' in metrics


def incidents_opened(now):
    """Evaluate, delivering each notification at once (to the test's HTTP receiver)."""
    return evaluation.evaluate(now, dispatch=notification.deliver)


def test_an_event_elsewhere_explains_nothing_and_a_late_one_explains_it_then(
    sentinels,
    events,
    redis_url,
):
    alo = only(sentinels, "at-least-once")
    now = time.time()
    publish(redis_url, alo)
    evaluate(now, Sent())
    other = cluster_event(
        "unclean-election", now - 12, alo.topic, 1, "p1: broker 3 from outside the ISR"
    )
    events.record({}, [other], WEEK_MS)
    lose(redis_url, alo, now + 1, partition="2")
    (incident,) = evaluate(now + 1, Sent())
    assert incident.explanation["cause"] == explain.NOTHING_SEEN
    assert incident.explanation["text"] == explain.NOTHING_TEXT
    assert incident.explanation["partition"] == 2

    # The watcher records the partition's truncation a sample later: the next evaluation
    # explains the incident by it, once.
    late = cluster_event(
        "end-offset-back", now - 10, alo.topic, 2, "p2 high watermark went back 1234 → 1194"
    )
    events.record({}, [late], WEEK_MS)
    lose(redis_url, alo, now + 3, partition="2", lost=41)
    evaluate(now + 3, Sent())
    evaluate(now + 5, Sent())
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.explanation["cause"] == explain.TRUNCATION
    assert incident.events.filter(kind="explained").count() == 2  # nothing, then the truncation


def test_duplicates_from_a_producer_retrying_without_idempotence_name_the_configuration(
    sentinels,
    events,
    redis_url,
):
    amo = only(sentinels, "at-most-once")
    profile = amo.profile
    profile.producer_properties = {**profile.producer_properties, "acks": "1", "retries": "3"}
    profile.save()
    now = time.time()
    publish(redis_url, amo)
    evaluate(now, Sent())
    store = SentinelStore(connect(redis_url), amo.pk)
    seed_windows(
        store, [window(amo.pk, now + 0.5, duplicated=3, partitions={"1": {"duplicated": 3}})]
    )
    publish(
        redis_url, amo, verdict="VIOLATED", totals=counts(acked=900, processed=903, duplicated=3)
    )
    (incident,) = evaluate(now + 1, Sent())
    found = incident.explanation
    assert (found["cause"], found["counter"], found["partition"]) == (
        explain.RETRIES_WITHOUT_IDEMPOTENCE,
        "duplicated",
        1,
    )
    assert found["text"].startswith("producer retries without idempotence")
    # The same duplicates from the default profile (no retries): nothing is invented.
    profile.producer_properties = {**profile.producer_properties, "retries": "0"}
    profile.save()
    assert incidents_explained(amo, {"duplicated": 3}, now + 1)["cause"] == explain.NOTHING_SEEN


def incidents_explained(sentinel, grown, now):
    sentinel.refresh_from_db()
    return evaluation.explain_violation(sentinel, grown, now)


@pytest.fixture
def hook(httpserver):
    """A webhook channel to a real local HTTP receiver (asked for before ``seen_healthy``: the
    default rules notify the channels there are when they are made)."""
    webhook_channel(httpserver)
    return httpserver


@pytest.fixture
def seen_healthy(sentinels, redis_url):
    """The at-least-once sentinel alone, seen healthy by one evaluation; and when."""
    alo = only(sentinels, "at-least-once")
    now = time.time()
    publish(redis_url, alo)
    evaluate(now, Sent())
    return alo, now


def stalled(redis_url, sentinel, since, leaders):
    """STALLED since ``since`` (its last progress), its metadata showing ``leaders``
    (partition -> leader, -1: none)."""
    parts = {
        str(p): {"leader": leader, "replicas": [1, 2], "isr": []} for p, leader in leaders.items()
    }
    publish(
        redis_url,
        sentinel,
        verdict="STALLED",
        reasons=["no progress for 45 s"],
        last_progress_at=since,
        metadata={"error": None, "partitions": parts},
    )


def test_a_stall_is_explained_by_its_partition_going_offline_even_when_seen_after_it_began(
    hook, seen_healthy, events, redis_url
):
    alo, now = seen_healthy
    # A broker unreachable (the whole cluster) before the stall; nothing on the partition yet.
    unreachable = cluster_event("broker-unreachable", now + 2, None, None, "broker 1 unreachable")
    events.record({}, [unreachable], WEEK_MS)
    stalled(redis_url, alo, now + 1, {0: -1, 1: 2})
    evaluate(now + 5, Sent())  # STALLED seen: the rule's 60 s begin
    (incident,) = incidents_opened(now + 66)
    assert incident.kind == "stalled"
    found = incident.explanation
    assert (found["cause"], found["counter"], found["partition"]) == (
        explain.BROKER_UNREACHABLE,
        "stalled",
        0,
    )
    assert found["text"].endswith("(stalled on p0)"), found["text"]
    # The watcher's sample that saw p0 without a leader, 50 s into the stall (long after the
    # window around its start): the partition's own event explains it better, once.
    offline = cluster_event("offline", now + 51, alo.topic, 0, f"{alo.topic} p0 offline: no leader")
    events.record({}, [offline], WEEK_MS)
    evaluate(now + 68, Sent())
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.explanation["cause"] == explain.BROKER_UNREACHABLE  # a cause stays
    ((request, _response),) = hook.log
    annotations = json.loads(request.data)["alerts"][0]["annotations"]
    assert annotations["cause"] == explain.BROKER_UNREACHABLE


def test_a_stall_of_several_leaderless_partitions_is_explained_by_the_topics_events(
    seen_healthy, events, redis_url
):
    alo, now = seen_healthy
    elsewhere = cluster_event("offline", now + 2, alo.topic, 1, f"{alo.topic} p1 offline")
    events.record({}, [elsewhere], WEEK_MS)
    stalled(redis_url, alo, now + 1, {0: -1, 1: -1, 2: 3})
    evaluate(now + 5, Sent())
    (incident,) = evaluate(now + 66, Sent())
    assert incident.explanation["partition"] is None
    assert incident.explanation["cause"] == explain.OFFLINE
    assert incident.explanation["text"].endswith("(stalled)")


def test_a_stall_nothing_explained_yet_is_explained_by_an_offline_partition_seen_later(
    seen_healthy, events, redis_url
):
    alo, now = seen_healthy
    stalled(redis_url, alo, now + 1, {0: -1})
    evaluate(now + 2, Sent())
    (incident,) = evaluate(now + 63, Sent())
    assert incident.explanation["cause"] == explain.NOTHING_SEEN
    assert incident.explanation["text"] == explain.NOTHING_TEXT
    offline = cluster_event("offline", now + 60, alo.topic, 0, f"{alo.topic} p0 offline")
    events.record({}, [offline], WEEK_MS)
    evaluate(now + 65, Sent())
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.explanation["cause"] == explain.OFFLINE
    assert incident.explanation["text"].startswith("the partition had no leader: ")
    assert incident.explanation["text"].endswith("(stalled on p0)")
    assert incident.events.filter(kind="explained").count() == 2  # nothing, then offline


def test_allowed_duplicates_that_degrade_a_sentinel_are_explained_as_information(
    hook, seen_healthy, events, redis_url
):
    """At-least-once allows duplicates: they degrade the sentinel, and the DEGRADED incident
    says why, from the producer's own statistics (retries of a producer without idempotence),
    on the incident and in the webhook; the violations counter by cause does not count it."""
    alo, now = seen_healthy
    store = SentinelStore(connect(redis_url), alo.pk)
    store.event(
        "producer-retries",
        "producer retried 12 produce requests without idempotence (broker 2: 12)",
        since=now - 4,
        count=12,
    )
    began = now + 0.5
    seed_windows(
        store,
        [
            window(alo.pk, began, duplicated=3, partitions={"1": {"duplicated": 3}}),
            window(alo.pk, now + 301, duplicated=2, partitions={"1": {"duplicated": 2}}),
        ],
    )
    degraded = {
        "verdict": "DEGRADED",
        "verdict_since": began,
        "reasons": ["5 duplicated (threshold 0)"],
        "totals": counts(acked=900, processed=905, duplicated=5),
        "window": {"seconds": 300, "counts": counts(acked=300, processed=305, duplicated=5)},
    }
    publish(redis_url, alo, **degraded)
    evaluate(now + 1, Sent())  # DEGRADED seen: the rule's 300 s begin
    publish(redis_url, alo, **degraded)
    (incident,) = incidents_opened(now + 302)
    assert incident.kind == "degraded"
    found = incident.explanation
    assert (found["cause"], found["counter"], found["partition"]) == (
        explain.RETRIES_WITHOUT_IDEMPOTENCE,
        "duplicated",
        1,
    )
    assert found["at"] == began
    assert found["text"].startswith("producer retries without idempotence: producer retried 12")
    ((request, _response),) = hook.log
    annotations = json.loads(request.data)["alerts"][0]["annotations"]
    assert annotations["cause"] == explain.RETRIES_WITHOUT_IDEMPOTENCE
    assert annotations["explanation"] == found["text"]
    assert not Incident.objects.filter(kind="violated").exists()
