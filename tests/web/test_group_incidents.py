"""Consumer group rules into incidents: the group watcher's states and events are written to
the test Redis as the watcher writes them (``GroupStore.save_sample`` of ``advance``'s
results), and evaluation runs as the Celery task does, with notifications delivered to a list.

One incident per (rule, group), its counts exactly the events' sums, growing with later events
and never counting one twice; patterns, silences, a stopped group's ``for_s`` and hold-down;
the pages, the API and the notification bodies of a group incident; a cluster's rules page."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.models import ApiToken, Channel, Cluster, GroupRule, Incident, IncidentEvent, Silence
from dashboard.models.oncall import OPEN, RESOLVED
from dashboard.oncall import evaluation
from dashboard.oncall.notification import notice_for
from tests.support.concurrency import at_once, meet
from tests.web.api_schema import check
from workers.engine import alerts, group_alerts
from workers.engine.groups import GroupObservation, PartitionObservation, advance
from workers.store.connection import connect
from workers.store.groups import GroupStore

# On SQLite too: the check and unique constraints, the rule's row lock and the evaluation's
# transactions; the concurrent evaluations' test runs on PostgreSQL only.
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

CLUSTER = "group-oncall"
T0 = float(int(time.time()) - 3600)  # the samples' clock: whole seconds, an hour ago


class Sent(list):
    """Dispatch that records which notification events were sent, in order."""

    def __call__(self, event_id: int) -> None:
        event = IncidentEvent.objects.get(pk=event_id)
        self.append((event.channel.name, event.action))


class Watcher:
    """The group watcher's writes, sample by sample, for hand-made observations."""

    def __init__(self, store: GroupStore) -> None:
        self.store = store
        self.states: dict[str, Any] = {}

    def sample(self, t: float, *observations: GroupObservation) -> list[Any]:
        events = []
        for obs in observations:
            self.states[obs.group], found = advance(self.states.get(obs.group), obs)
            events.extend(found)
        meta = {"t": t, "groups": len(self.states), "partitions": 0, "probes": 0, "errors": 0,
                "seconds": 0.1}  # fmt: skip
        self.store.save_sample([self.states[o.group] for o in observations], events, [], meta)
        return events


def obs(group: str, t: float, committed: int, start: int, *, end: int = 200, members=(),
        more: tuple[tuple[int, int, int], ...] = ()) -> GroupObservation:  # fmt: skip
    """``group`` committed at ``committed`` on orders:0 (log ``start`` - ``end``), and on each
    ``(partition, committed, start)`` of ``more``."""
    parts = tuple(
        PartitionObservation("orders", p, c, s, end, assigned=bool(members))
        for p, c, s in ((0, committed, start), *more)
    )
    return GroupObservation(group, t, "Stable" if members else "Empty", tuple(members), parts)


@pytest.fixture
def cluster(redis_url: str, settings: Any):
    settings.REDIS_URL = redis_url
    found = Cluster.objects.create(name=CLUSTER, bootstrap_servers="127.0.0.1:1")
    store = GroupStore(connect(redis_url), CLUSTER)
    store.forget()
    yield found
    store.forget()


@pytest.fixture
def watcher(cluster, redis_url: str) -> Watcher:
    return Watcher(GroupStore(connect(redis_url), CLUSTER))


@pytest.fixture
def channels() -> list[Channel]:
    return [
        Channel.objects.create(name="hook", kind="webhook", config={"url": "http://127.0.0.1:9/"}),
        Channel.objects.create(name="pd", kind="pagerduty", config={"routing_key": "k" * 32}),
    ]


def make_rule(cluster, kind: str, *, created: float = T0 - 60, **fields: Any) -> GroupRule:
    rule = GroupRule(cluster=cluster, kind=kind, created=datetime.fromtimestamp(created, UTC))
    rule.apply_defaults()
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.save()
    rule.channels.set(Channel.objects.all())
    return rule


def evaluate(now: float, sent: Sent) -> list[Incident]:
    return evaluation.evaluate(now, dispatch=sent)


def group_incidents(**filters: Any) -> list[Incident]:
    return list(Incident.objects.filter(group_rule__isnull=False, **filters).order_by("pk"))


def test_records_lost_open_one_incident_counted_exactly_that_grows_and_pages_once(
    cluster, watcher, channels, admin_user
):
    make_rule(cluster, group_alerts.GROUP_LOST)
    sent = Sent()
    watcher.sample(T0, obs("billing", T0, 10, 0))
    assert evaluate(T0 + 1, sent) == [] and sent == []
    lost = watcher.sample(T0 + 30, obs("billing", T0 + 30, 10, 50))
    assert [(e.kind, e.count) for e in lost] == [("lost", 40)]
    for i in range(3):  # evaluation after evaluation: one incident, 40 lost, one page
        evaluate(T0 + 31 + i, sent)
    (incident,) = group_incidents()
    assert (incident.group, incident.cluster, incident.kind) == ("billing", CLUSTER, "group_lost")
    assert incident.severity == alerts.CRITICAL and incident.state == OPEN
    assert incident.counts == {"lost": 40}
    assert incident.partitions == {"orders:0": {"count": 40, "first": 10, "last": 50}}
    assert incident.rule is None and incident.sentinel is None and incident.topic == "orders"
    assert "group billing on cluster group-oncall: 40 records lost to retention" in incident.reason
    assert sorted(sent) == [("hook", "trigger"), ("pd", "trigger")]

    watcher.sample(T0 + 60, obs("billing", T0 + 60, 10, 65))  # 15 more
    watcher.sample(T0 + 90, obs("billing", T0 + 90, 10, 65))  # nothing new
    for i in range(3):
        evaluate(T0 + 91 + i, sent)
    incident.refresh_from_db()
    assert incident.counts == {"lost": 55}
    assert incident.partitions == {"orders:0": {"count": 55, "first": 10, "last": 65}}
    assert incident.events.filter(kind="grew").count() == 1
    assert len(sent) == 2  # grew: no new page

    # A person resolves it; the 55 stay counted there, later losses open a new incident.
    evaluation.resolve(incident, admin_user, "retention raised", dispatch=sent)
    evaluate(T0 + 100, sent)
    assert len(group_incidents()) == 1
    watcher.sample(T0 + 120, obs("billing", T0 + 120, 10, 70))
    evaluate(T0 + 121, sent)
    evaluate(T0 + 122, sent)
    first, second = group_incidents()
    assert first.counts == {"lost": 55} and second.counts == {"lost": 5}
    assert second.partitions == {"orders:0": {"count": 5, "first": 65, "last": 70}}
    assert second.state == OPEN
    assert sent.count(("pd", "trigger")) == 2 and sent.count(("pd", "resolve")) == 1


def test_an_evaluation_with_nothing_new_touches_no_incident(
    cluster, watcher, channels, admin_user, monkeypatch
):
    """Every 2 s an evaluation runs: events already counted (by an open or a resolved
    incident) are not looked at again under a lock."""
    make_rule(cluster, group_alerts.GROUP_LOST)
    watcher.sample(T0, obs("billing", T0, 10, 0), obs("search", T0, 10, 0))
    watcher.sample(T0 + 30, obs("billing", T0 + 30, 10, 50), obs("search", T0 + 30, 10, 20))
    evaluate(T0 + 31, Sent())
    billing, search = sorted(group_incidents(), key=lambda i: i.group)
    evaluation.resolve(search, admin_user, "", dispatch=Sent())
    calls: list[str] = []
    real = evaluation.apply_group

    def counted(rule, group, *args, **kwargs):
        calls.append(group)
        return real(rule, group, *args, **kwargs)

    monkeypatch.setattr(evaluation, "apply_group", counted)
    evaluate(T0 + 32, Sent())
    assert calls == ["billing"]  # the open incident (it may grow); not the resolved one
    watcher.sample(T0 + 60, obs("billing", T0 + 60, 10, 50), obs("search", T0 + 60, 10, 21))
    evaluate(T0 + 61, Sent())
    assert calls == ["billing", "billing", "search"]


def test_events_before_the_rule_existed_are_not_counted(cluster, watcher, channels):
    watcher.sample(T0, obs("billing", T0, 10, 0))
    watcher.sample(T0 + 30, obs("billing", T0 + 30, 10, 50))  # 40 lost before the rule
    make_rule(cluster, group_alerts.GROUP_LOST, created=T0 + 45)
    sent = Sent()
    evaluate(T0 + 50, sent)
    assert group_incidents() == [] and sent == []
    watcher.sample(T0 + 60, obs("billing", T0 + 60, 10, 52))
    evaluate(T0 + 61, sent)
    (incident,) = group_incidents()
    assert incident.counts == {"lost": 2}


def test_skipped_and_rewound_rules_count_their_own_events(cluster, watcher, channels):
    make_rule(cluster, group_alerts.GROUP_SKIPPED)
    make_rule(cluster, group_alerts.GROUP_REWOUND)
    watcher.sample(T0, obs("orders-indexer", T0, 100, 0))
    watcher.sample(T0 + 30, obs("orders-indexer", T0 + 30, 130, 0))  # reset forward: skipped 30
    watcher.sample(T0 + 60, obs("orders-indexer", T0 + 60, 20, 0))  # reset back: rewound 110
    sent = Sent()
    evaluate(T0 + 61, sent)
    evaluate(T0 + 62, sent)
    by_kind = {i.kind: i for i in group_incidents()}
    assert by_kind["group_skipped"].counts == {"skipped": 30}
    assert by_kind["group_skipped"].severity == alerts.CRITICAL
    assert by_kind["group_rewound"].counts == {"rewound": 110}
    assert by_kind["group_rewound"].severity == alerts.WARNING
    assert by_kind["group_rewound"].partitions == {
        "orders:0": {"count": 110, "first": 20, "last": 130}
    }
    assert len(sent) == 4  # two rules, two channels, once each


def test_a_counting_rule_may_let_its_incident_resolve_after_quiet_for_the_hold_down(
    cluster, watcher, channels
):
    make_rule(cluster, group_alerts.GROUP_REWOUND, resolves_itself=True, resolve_after_s=60)
    watcher.sample(T0, obs("g", T0, 100, 0, members=("c@h",)))
    watcher.sample(T0 + 30, obs("g", T0 + 30, 90, 0, members=("c@h",)))
    sent = Sent()
    evaluate(T0 + 31, sent)
    evaluate(T0 + 90, sent)
    (incident,) = group_incidents()
    assert incident.state == OPEN and incident.counts == {"rewound": 10}
    assert not incident.events.filter(kind="cleared").exists()  # records stay rewound
    evaluate(T0 + 91, sent)
    incident.refresh_from_db()
    assert incident.state == RESOLVED
    assert sorted(sent) == [("hook", "resolve"), ("hook", "trigger"), ("pd", "resolve"),
                            ("pd", "trigger")]  # fmt: skip


def test_include_and_exclude_patterns_choose_the_groups(cluster, watcher, channels):
    make_rule(cluster, group_alerts.GROUP_LOST, include="billing-*", exclude="*-test")
    names = ("billing-eu", "billing-test", "search")
    watcher.sample(T0, *(obs(n, T0, 10, 0) for n in names))
    watcher.sample(T0 + 30, *(obs(n, T0 + 30, 10, 50) for n in names))
    evaluate(T0 + 31, Sent())
    assert [i.group for i in group_incidents()] == ["billing-eu"]


def test_a_silence_of_the_cluster_records_the_incident_and_pages_nobody(cluster, watcher, channels):
    make_rule(cluster, group_alerts.GROUP_LOST)
    Silence.objects.create(cluster=cluster, ends_at=timezone.now() + timedelta(hours=2))
    watcher.sample(T0, obs("billing", T0, 10, 0))
    watcher.sample(T0 + 30, obs("billing", T0 + 30, 10, 50))
    sent = Sent()
    evaluate(time.time(), sent)
    (incident,) = group_incidents()
    assert incident.silenced and incident.counts == {"lost": 40}
    assert incident.events.filter(kind="silenced").exists()
    assert sent == []


def test_a_stopped_group_opens_after_for_s_and_resolves_after_the_hold_down(
    cluster, watcher, channels
):
    make_rule(cluster, group_alerts.GROUP_STOPPED, for_s=300, resolve_after_s=120)
    sent = Sent()
    watcher.sample(T0, obs("fraud-scorer", T0, 10, 0))  # no member, lag 190: STOPPED
    assert watcher.states["fraud-scorer"].status == "STOPPED"
    evaluate(T0 + 1, sent)  # the spell starts here, as the evaluation sees it
    evaluate(T0 + 300, sent)
    assert group_incidents() == [] and sent == []
    evaluate(T0 + 301, sent)
    evaluate(T0 + 330, sent)
    (incident,) = group_incidents()
    assert incident.kind == "group_stopped" and incident.severity == alerts.WARNING
    assert incident.counts == {"lag": 190}
    assert incident.partitions == {"orders:0": {"status": "STOPPED", "lag": 190}}
    assert "stopped for 300 s (0 members, lag 190 records" in incident.reason
    assert sorted(sent) == [("hook", "trigger"), ("pd", "trigger")]

    # It reads again: cleared, then resolved by itself after the hold-down.
    watcher.sample(T0 + 340, obs("fraud-scorer", T0 + 340, 200, 0, members=("c-1@/10.0.0.1",)))
    evaluate(T0 + 341, sent)
    incident.refresh_from_db()
    assert incident.state == OPEN and incident.events.filter(kind="cleared").count() == 1
    evaluate(T0 + 330 + 119, sent)
    incident.refresh_from_db()
    assert incident.state == OPEN
    evaluate(T0 + 330 + 120, sent)
    incident.refresh_from_db()
    assert incident.state == RESOLVED and incident.resolved_by is None
    assert sorted(sent[2:]) == [("hook", "resolve"), ("pd", "resolve")]


def test_a_stop_shorter_than_for_s_never_opens(cluster, watcher, channels):
    make_rule(cluster, group_alerts.GROUP_STOPPED, for_s=300)
    watcher.sample(T0, obs("fraud-scorer", T0, 10, 0))
    evaluate(T0, Sent())
    watcher.sample(T0 + 200, obs("fraud-scorer", T0 + 200, 200, 0, members=("c@h",)))
    evaluate(T0 + 200, Sent())
    watcher.sample(T0 + 250, obs("fraud-scorer", T0 + 250, 200, 0, end=260))  # stopped again
    evaluate(T0 + 250, Sent())
    evaluate(T0 + 500, Sent())  # 300 s after the first stop, 250 after the second
    assert group_incidents() == []
    evaluate(T0 + 550, Sent())
    assert len(group_incidents()) == 1


def test_a_disabled_rule_opens_nothing(cluster, watcher, channels):
    make_rule(cluster, group_alerts.GROUP_LOST, enabled=False)
    watcher.sample(T0, obs("billing", T0, 10, 0))
    watcher.sample(T0 + 30, obs("billing", T0 + 30, 10, 50))
    evaluate(T0 + 31, Sent())
    assert group_incidents() == []


def test_an_incident_of_neither_or_both_kinds_of_rule_is_refused(cluster):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(cluster=CLUSTER, kind="group_lost", severity="critical",
                                reason="nobody's")  # fmt: skip


def lost_incident(cluster, watcher) -> Incident:
    make_rule(cluster, group_alerts.GROUP_LOST)
    watcher.sample(T0, obs("billing", T0, 10, 0, more=((3, 5, 0),)))
    watcher.sample(T0 + 30, obs("billing", T0 + 30, 10, 50, more=((3, 5, 7),)))
    evaluate(T0 + 31, Sent())
    (incident,) = group_incidents()
    return incident


def test_notification_bodies_carry_the_group_counts_and_partitions(cluster, watcher, channels):
    incident = lost_incident(cluster, watcher)
    assert incident.partitions == {
        "orders:0": {"count": 40, "first": 10, "last": 50},
        "orders:3": {"count": 2, "first": 5, "last": 7},
    }
    notice = notice_for(incident, alerts.TRIGGER)
    slack = alerts.slack_body(notice)["text"]
    assert "group billing on cluster group-oncall: 42 records lost to retention" in slack
    assert "Partitions: orders:0 (40, offsets 10-50), orders:3 (2, offsets 5-7)" in slack
    details = alerts.pagerduty_body(notice, "k" * 32)["payload"]
    assert details["group"] == CLUSTER and details["class"] == "group_lost"
    assert details["custom_details"] == {
        "group": "billing",
        "partitions": incident.partitions,
        "counts": {"lost": 42},
    }
    manager = alerts.alertmanager_body(notice, "ds")
    labels = manager["alerts"][0]["labels"]
    assert labels["group"] == "billing" and labels["cluster"] == CLUSTER
    assert labels["alertname"] == "DeliverySentinelGroupLost"
    assert "sentinel" not in labels
    annotations = manager["alerts"][0]["annotations"]
    assert annotations["counts"] == "lost=42"
    assert annotations["partitions"] == "orders:0 (40, offsets 10-50), orders:3 (2, offsets 5-7)"
    assert manager["groupLabels"] == {
        "alertname": "DeliverySentinelGroupLost",
        "cluster": CLUSTER,
        "group": "billing",
    }


def test_group_incident_pages_and_the_overview_show_the_group(
    cluster, watcher, channels, client: Client, user: Any
):
    incident = lost_incident(cluster, watcher)
    client.force_login(user)
    group_url = reverse("groups:group", args=[CLUSTER, "billing"])
    listing = client.get(reverse("oncall:incidents")).content.decode()
    row = listing[listing.index(f'data-incident="{incident.pk}"') :].split("</tr>", 1)[0]
    assert f'href="{group_url}"' in row and "cluster group-oncall" in row
    page = client.get(reverse("oncall:incident", args=[incident.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="{group_url}"' in html
    table = html[html.index('id="incident-partitions"') :].split("</table>", 1)[0]
    assert (
        'data-partition="orders:0"' in table
        and '<td class="num" data-field="count">40</td>' in table
    )
    assert "One-minute windows" not in html
    home = client.get(reverse("home")).content.decode()
    assert f"#{incident.pk} group billing on group-oncall: group_lost" in home
    ack = client.post(reverse("oncall:acknowledge", args=[incident.pk]))
    assert ack.status_code == 302
    incident.refresh_from_db()
    assert incident.state == "acknowledged"


def test_the_api_lists_group_incidents_with_their_partitions(cluster, watcher, channels, alice):
    incident = lost_incident(cluster, watcher)
    _, token = ApiToken.issue(alice, "bot", "read")
    client = Client(headers={"Authorization": f"Bearer {token}"})
    url = "/api/v1/incidents?group=billing"
    response = client.get(url)
    assert response.status_code == 200
    check(client, "get", url, response)
    (doc,) = response.json()
    assert doc["id"] == incident.pk and doc["group"] == "billing" and doc["sentinel"] is None
    assert doc["counts"] == {"lost": 42} and doc["partitions"]["orders:0"]["count"] == 40
    one = client.get(f"/api/v1/incidents/{incident.pk}")
    check(client, "get", f"/api/v1/incidents/{incident.pk}", one)
    assert one.json()["partitions"] == incident.partitions


def test_a_clusters_group_rules_page_adds_edits_and_deletes_rules(
    cluster, channels, client: Client, user: Any
):
    client.force_login(user)
    url = reverse("oncall:group-rules", args=[CLUSTER])
    groups_page = client.get(reverse("groups:cluster", args=[CLUSTER])).content.decode()
    assert f'href="{url}"' in groups_page
    broken = client.post(url, {"kind": "group_lost", "include": " , ", "channels": []})
    assert broken.status_code == 200
    text = broken.content.decode()
    assert "The rule was not added" in text and "at least one pattern" in text
    assert not GroupRule.objects.exists()
    added = client.post(url, {"kind": "group_stopped", "include": "billing-* orders",
                              "exclude": "*-test", "for_s": "600",
                              "channels": [channels[0].pk]})  # fmt: skip
    assert added.status_code == 302
    rule = GroupRule.objects.get()
    assert (rule.kind, rule.severity, rule.for_s, rule.resolves_itself) == (
        "group_stopped", "warning", 600, True,
    )  # fmt: skip
    assert (rule.include, rule.exclude) == ("billing-* orders", "*-test")
    assert list(rule.channels.values_list("name", flat=True)) == ["hook"]
    lost = client.post(url, {"kind": "group_lost", "include": "*"})
    assert lost.status_code == 302
    assert GroupRule.objects.get(kind="group_lost").resolves_itself is False
    edit = reverse("oncall:group-rule", args=[CLUSTER, rule.pk])
    bad = client.post(edit, {"enabled": "on", "severity": "critical", "include": "*",
                             "for_s": "0", "resolve_after_s": "300"})  # fmt: skip
    assert bad.status_code == 200 and "must be at least 1" in bad.content.decode()
    good = client.post(edit, {"enabled": "on", "severity": "critical", "include": "*",
                              "for_s": "120", "resolve_after_s": "60",
                              "channels": [c.pk for c in channels]})  # fmt: skip
    assert good.status_code == 302
    rule.refresh_from_db()
    assert (rule.severity, rule.for_s, rule.resolve_after_s) == ("critical", 120, 60)
    assert rule.channels.count() == 2
    listing = client.get(url).content.decode()
    assert f'data-rule="{rule.pk}"' in listing
    gone = client.post(reverse("oncall:group-rule-delete", args=[CLUSTER, rule.pk]))
    assert gone.status_code == 302
    assert not GroupRule.objects.filter(pk=rule.pk).exists()
    assert client.get(reverse("oncall:group-rules", args=["no-such"])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_at_once_open_one_group_incident_counted_once(
    cluster, watcher, channels, monkeypatch
):
    """Two workers, or a slow evaluation overlapping the next beat tick, on one loss."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: a second evaluation fails, not doubles")
    make_rule(cluster, group_alerts.GROUP_LOST)
    watcher.sample(T0, obs("billing", T0, 10, 0))
    watcher.sample(T0 + 30, obs("billing", T0 + 30, 10, 50))
    together = threading.Barrier(2)
    real = evaluation.apply_group

    def apply_together(*args, **kwargs):
        meet(together)  # both have read the events; one waits for the rule's row lock
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "apply_group", apply_together)
    sent = Sent()
    opened = at_once(lambda: evaluate(T0 + 31, sent))
    assert sorted(len(o) for o in opened) == [0, 1]
    (incident,) = group_incidents()
    assert incident.counts == {"lost": 40}
    assert incident.events.filter(kind="grew").count() == 0
    assert sorted(sent) == [("hook", "trigger"), ("pd", "trigger")]
    # And the later loss counted once by two more evaluations at once.
    watcher.sample(T0 + 60, obs("billing", T0 + 60, 10, 65))
    at_once(lambda: evaluate(T0 + 61, sent))
    incident.refresh_from_db()
    assert incident.counts == {"lost": 55}
    grew = list(incident.events.filter(kind="grew").values_list("message", flat=True))
    assert grew == ["lost 40 -> 55"]  # one evaluation grew it; the other found it grown
