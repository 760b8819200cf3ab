"""Alert rules into incidents: one incident and one page per condition, counts that grow, a
hold-down before resolving, silences that record without paging, no page for start-up noise.

Status documents are written to the test Redis as the checker writes them; evaluation runs
as the Celery task does, with notifications delivered to a list instead of a task queue."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from dashboard.models import Channel, Incident, IncidentEvent, Silence
from dashboard.models.oncall import ACKNOWLEDGED, OPEN, RESOLVED, AlertRule
from dashboard.oncall import evaluation as incidents
from tests.support.concurrency import at_once, meet
from tests.support.dashboard_data import (
    counts,
    fresh_defaults,
    seed_windows,
    status_doc,
    window,
    wipe,
)
from workers.engine import alerts
from workers.engine.lint.topics import (
    ClusterFacts,
    PartitionFacts,
    Setting,
    TopicFacts,
    lint_report,
)
from workers.store.connection import connect
from workers.store.lint import LintStore
from workers.store.sentinel import SentinelStore

# On SQLite too (both_databases): row locks (select_for_update), the constraint of one unresolved
# incident per rule and the evaluation's transactions; the concurrent evaluations' test runs on
# PostgreSQL only (SQLite has one writer at a time).
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture
def sentinels(redis_url):
    found = fresh_defaults(redis_url)
    # A lint report another test stored would be read by the "lint error appeared" rule.
    lint_store = LintStore(connect(redis_url))
    lint_store.forget("local")
    yield found
    wipe(redis_url, found)
    lint_store.forget("local")


@pytest.fixture
def channels():
    return [
        Channel.objects.create(name="hook", kind="webhook", config={"url": "http://127.0.0.1:9/"}),
        Channel.objects.create(name="pd", kind="pagerduty", config={"routing_key": "k" * 32}),
    ]


class Sent(list):
    """Dispatch that records which notification events were sent, in order."""

    def __call__(self, event_id: int) -> None:
        event = IncidentEvent.objects.get(pk=event_id)
        self.append((event.channel.name, event.action))


def only(sentinels, name):
    """The sentinel under test; the others are disabled (a sentinel without reports is
    STALLED, and would rightly open incidents of its own)."""
    from dashboard.models import Sentinel

    chosen = sentinels[name]
    Sentinel.objects.exclude(pk=chosen.pk).update(enabled=False)
    return chosen


def publish(redis_url, sentinel, **overrides):
    SentinelStore(connect(redis_url), sentinel.pk).set_status(status_doc(sentinel, **overrides))


def evaluate(now: float, sent: Sent) -> list[Incident]:
    return incidents.evaluate(now, dispatch=sent)


def test_it_gives_every_sentinel_the_default_rules_notifying_every_channel(
    sentinels, channels, redis_url
):
    evaluate(time.time(), Sent())
    amo = sentinels["at-most-once"]
    kinds = set(AlertRule.objects.filter(sentinel=amo).values_list("kind", flat=True))
    assert kinds == {
        alerts.VIOLATED,
        alerts.STALLED,
        alerts.DEGRADED,
        alerts.P99_SLO,
        "loss_rate",
        alerts.LINT_ERROR,
    }
    alo_kinds = set(
        AlertRule.objects.filter(sentinel=sentinels["at-least-once"]).values_list("kind", flat=True)
    )
    assert "loss_rate" not in alo_kinds
    rule = AlertRule.objects.get(sentinel=amo, kind=alerts.VIOLATED)
    assert set(rule.channels.values_list("name", flat=True)) == {"hook", "pd"}
    assert rule.severity == alerts.CRITICAL


def test_a_violation_opens_one_incident_pages_once_grows_and_stays_until_a_person_resolves_it(
    sentinels, channels, redis_url, admin_user
):
    alo = only(sentinels, "at-least-once")
    sent = Sent()
    now = time.time()
    publish(redis_url, alo)
    evaluate(now, sent)  # first sight: healthy
    assert sent == [] and not Incident.objects.exists()

    store = SentinelStore(connect(redis_url), alo.pk)
    seed_windows(store, [window(alo.pk, now - 0.5, lost=37, partitions={"2": {"lost": 37}})])
    publish(redis_url, alo, verdict="VIOLATED", totals=counts(acked=900, processed=863, lost=37))
    opened = evaluate(now + 1, sent)
    assert len(opened) == 1
    incident = opened[0]
    assert (incident.kind, incident.state, incident.counts) == (alerts.VIOLATED, OPEN, {"lost": 37})
    assert incident.reason.startswith(
        "at-least-once on cluster local, topic sentinel.at-least-once: 37 acknowledged records "
        "lost on partition 2 since "
    )
    assert sorted(sent) == [("hook", "trigger"), ("pd", "trigger")]

    # More losses while it is open: counts grow, nobody is paged again.
    publish(redis_url, alo, verdict="VIOLATED", totals=counts(acked=950, processed=903, lost=47))
    assert evaluate(now + 2, sent) == []
    incident.refresh_from_db()
    assert incident.counts == {"lost": 47}
    assert len(sent) == 2
    # Clear, but within the hold-down (it flaps back): still the same incident, no page.
    publish(redis_url, alo, verdict="VIOLATED", totals=counts(acked=990, processed=943, lost=47))
    evaluate(now + 2 + 200, sent)
    publish(redis_url, alo, verdict="VIOLATED", totals=counts(acked=999, processed=951, lost=48))
    evaluate(now + 2 + 250, sent)
    assert Incident.objects.count() == 1 and len(sent) == 2
    # Clear for the whole hold-down and long after: the records stay lost, so the incident
    # stays open (nobody is told it resolved) until a person resolves it.
    publish(redis_url, alo, totals=counts(acked=1999, processed=1951, lost=48))
    evaluate(now + 2 + 250 + 301, sent)
    evaluate(now + 2 + 250 + 3600, sent)
    incident.refresh_from_db()
    assert incident.state == OPEN and incident.counts == {"lost": 48} and len(sent) == 2
    assert incidents.resolve(incident, admin_user, "disk replaced", dispatch=sent)
    incident.refresh_from_db()
    assert incident.state == RESOLVED and incident.resolved_by == admin_user
    assert sorted(sent[2:]) == [("hook", "resolve"), ("pd", "resolve")]
    kinds = list(incident.events.order_by("pk").values_list("kind", flat=True))
    assert kinds[0] == "opened" and kinds.count("grew") == 2 and kinds[-1] == "notify"


def test_a_violation_rule_may_let_its_incident_resolve_after_the_hold_down(
    sentinels, channels, redis_url
):
    alo = only(sentinels, "at-least-once")
    sent, now = Sent(), time.time()
    publish(redis_url, alo)
    evaluate(now, sent)
    rule = AlertRule.objects.get(sentinel=alo, kind=alerts.VIOLATED)
    assert rule.resolves_itself is False  # the default: a person resolves a violation
    AlertRule.objects.filter(pk=rule.pk).update(resolves_itself=True)
    publish(redis_url, alo, verdict="VIOLATED", totals=counts(acked=900, processed=863, lost=37))
    (incident,) = evaluate(now + 1, sent)
    publish(redis_url, alo, totals=counts(acked=1999, processed=1962, lost=37))
    evaluate(now + 1 + 299, sent)
    assert Incident.objects.get().state == OPEN
    evaluate(now + 1 + 301, sent)
    incident.refresh_from_db()
    assert incident.state == RESOLVED and incident.resolved_by is None
    assert sorted(sent[2:]) == [("hook", "resolve"), ("pd", "resolve")]


def test_a_silence_records_the_incident_and_pages_nobody(
    sentinels, channels, redis_url, admin_user
):
    from django.utils import timezone

    amo = only(sentinels, "at-most-once")
    Silence.objects.create(
        cluster=amo.cluster, ends_at=timezone.now() + timezone.timedelta(hours=1)
    )
    sent = Sent()
    now = time.time()
    publish(redis_url, amo)
    evaluate(now, sent)
    publish(
        redis_url, amo, verdict="VIOLATED", totals=counts(acked=900, processed=901, duplicated=1)
    )
    (incident,) = evaluate(now + 1, sent)
    assert incident.silenced and sent == []
    assert "silenced" in incident.events.values_list("kind", flat=True)
    assert incidents.acknowledge(incident, admin_user, dispatch=sent)
    assert sent == []


def test_acknowledging_and_resolving_by_hand_are_recorded_and_notified(
    sentinels, channels, redis_url, admin_user
):
    eos = only(sentinels, "exactly-once")
    sent = Sent()
    now = time.time()
    publish(redis_url, eos)
    evaluate(now, sent)
    publish(
        redis_url, eos, verdict="VIOLATED", totals=counts(acked=900, processed=901, duplicated=1)
    )
    (incident,) = evaluate(now + 1, sent)
    assert incidents.acknowledge(incident, admin_user, dispatch=sent)
    assert not incidents.acknowledge(incident, admin_user, dispatch=sent)  # only once
    incident.refresh_from_db()
    assert (incident.state, incident.acknowledged_by) == (ACKNOWLEDGED, admin_user)
    assert incidents.resolve(incident, admin_user, "broker replaced", dispatch=sent)
    incident.refresh_from_db()
    assert (incident.state, incident.resolved_by, incident.resolve_note) == (
        RESOLVED,
        admin_user,
        "broker replaced",
    )
    assert sorted(sent) == sorted(
        [(c, a) for c in ("hook", "pd") for a in ("trigger", "acknowledge", "resolve")]
    )


def test_start_up_noise_never_pages_and_a_real_stall_does(sentinels, channels, redis_url):
    alo = only(sentinels, "at-least-once")
    sent = Sent()
    now = time.time()
    # DEGRADED for four minutes (start-up latency) then HOLDING: nothing opens.
    for t in range(0, 240, 30):
        publish(redis_url, alo, verdict="DEGRADED", reasons=["latency p99 1500 ms over SLO"])
        evaluate(now + t, sent)
    publish(redis_url, alo)
    evaluate(now + 241, sent)
    assert not Incident.objects.exists() and sent == []
    # STALLED for 60 s pages once.
    publish(redis_url, alo, verdict="STALLED", reasons=["no progress for 45 s"])
    evaluate(now + 300, sent)
    evaluate(now + 359, sent)
    assert not Incident.objects.exists()
    (incident,) = evaluate(now + 361, sent)
    assert incident.kind == alerts.STALLED
    assert "stalled for 61 s: no progress for 45 s" in incident.reason
    assert len(sent) == 2


def store_lint(redis_url, topic: str, *, unclean: bool, error: str | None = None) -> None:
    """A lint report of cluster ``local`` as ``dashboard.lint.services.run`` stores it: ``topic`` with
    unclean leader election on as a topic override (an error for durable semantics) or not;
    ``error``: the cluster could not be read."""
    replicas = (1, 2, 3)
    parts = tuple(PartitionFacts(p, p + 1, replicas, replicas) for p in range(3))
    config = {"unclean.leader.election.enable": Setting("true", "topic override")}
    facts = ClusterFacts(
        "local",
        replicas,
        {"min.insync.replicas": Setting("2", "static broker")},
        {topic: TopicFacts(topic, parts, config if unclean else {})},
    )
    report = {**lint_report(facts, generated_at=time.time()), "error": error}
    if error:
        report["topics"] = []
    LintStore(connect(redis_url)).save("local", report)


def test_a_lint_error_opens_one_incident_pages_once_and_resolves_after_the_hold_down(
    sentinels, channels, redis_url
):
    alo = only(sentinels, "at-least-once")
    sent = Sent()
    now = time.time()
    publish(redis_url, alo)
    # Present at the first evaluation: nobody has seen it yet, so it pages.
    store_lint(redis_url, alo.topic, unclean=True)
    opened = evaluate(now, sent)
    assert [i.kind for i in opened] == [alerts.LINT_ERROR]
    incident = opened[0]
    assert incident.reason.startswith(
        f"at-least-once on cluster local, topic {alo.topic}: lint error topic.unclean-election: "
        "unclean.leader.election.enable=true (topic override) — "
    )
    assert incident.counts == {"lint_errors": 1}
    assert sorted(sent) == [("hook", "trigger"), ("pd", "trigger")]
    # Later lint runs still find it: the same incident, nobody paged again.
    for t in (60, 120, 180):
        publish(redis_url, alo)
        store_lint(redis_url, alo.topic, unclean=True)
        assert evaluate(now + t, sent) == []
    # The cluster cannot be read: not knowing is not clear, so it does not resolve.
    store_lint(redis_url, alo.topic, unclean=False, error="no broker answered")
    publish(redis_url, alo)
    evaluate(now + 180 + 400, sent)
    assert Incident.objects.get().state == OPEN and len(sent) == 2
    # Fixed: resolved once clear for the whole hold-down, one resolve per channel.
    store_lint(redis_url, alo.topic, unclean=False)
    publish(redis_url, alo)
    evaluate(now + 600, sent)
    assert Incident.objects.get().state == OPEN
    publish(redis_url, alo)
    evaluate(now + 580 + 301, sent)
    incident.refresh_from_db()
    assert incident.state == RESOLVED
    assert Incident.objects.count() == 1
    assert sorted(sent[2:]) == [("hook", "resolve"), ("pd", "resolve")]


def test_it_adds_new_default_rules_to_sentinels_that_have_rules_already(
    sentinels, channels, redis_url
):
    evaluate(time.time(), Sent())
    amo = sentinels["at-most-once"]
    AlertRule.objects.filter(sentinel=amo, kind=alerts.LINT_ERROR).delete()
    evaluate(time.time(), Sent())
    rule = AlertRule.objects.get(sentinel=amo, kind=alerts.LINT_ERROR)
    assert rule.severity == alerts.WARNING
    assert set(rule.channels.values_list("name", flat=True)) == {"hook", "pd"}


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_at_once_open_one_incident_and_page_each_channel_once(
    sentinels, channels, redis_url, monkeypatch
):
    """Two workers, or a slow evaluation overlapping the next beat tick, on one violation."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: a second evaluation fails, not doubles")
    alo = only(sentinels, "at-least-once")
    now = time.time()
    publish(redis_url, alo)
    evaluate(now, Sent())  # first sight: healthy
    store = SentinelStore(connect(redis_url), alo.pk)
    seed_windows(store, [window(alo.pk, now - 0.5, lost=37, partitions={"2": {"lost": 37}})])
    publish(redis_url, alo, verdict="VIOLATED", totals=counts(acked=900, processed=863, lost=37))
    # Both evaluations look for the rule's incident at the same moment: unguarded, each
    # finds none and opens one.
    together = threading.Barrier(2)
    real_current = incidents.current

    def current_together(rule):
        found = real_current(rule)
        if rule.kind == alerts.VIOLATED:
            meet(together)  # the other evaluation may be waiting for the rule's row lock
        return found

    monkeypatch.setattr(incidents, "current", current_together)
    sent = Sent()
    opened = at_once(lambda: evaluate(now + 1, sent))
    assert sorted(len(o) for o in opened) == [0, 1]
    assert Incident.objects.filter(kind=alerts.VIOLATED).count() == 1
    assert sorted(sent) == [("hook", "trigger"), ("pd", "trigger")]


def test_migration_0011_leaves_existing_violations_for_a_person_to_resolve(sentinels):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("dashboard.migrations.0011_rule_resolves_itself")
    alo = sentinels["at-least-once"]
    for kind in (alerts.VIOLATED, alerts.STALLED):
        AlertRule.objects.update_or_create(
            sentinel=alo, kind=kind, defaults={"severity": "critical", "resolves_itself": True}
        )
    migration.violations_stay(apps, None)
    rules = dict(AlertRule.objects.filter(sentinel=alo).values_list("kind", "resolves_itself"))
    assert rules[alerts.VIOLATED] is False and rules[alerts.STALLED] is True
