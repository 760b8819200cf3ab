"""Incidents: turning rule conditions into incidents, and their lifecycle.

``evaluate()`` runs in Celery (beat, every ``ONCALL_EVALUATE_EVERY_S``), never in a web
request. For each enabled sentinel it reads the status document (one round trip for all),
computes each rule's condition (``workers.engine.alerts``), and:

- opens an incident per (sentinel, rule) when the condition starts to hold, and notifies the
  rule's channels once (nobody when a silence covers the sentinel or its cluster: the
  incident is still recorded);
- while it holds, keeps that one incident (a flapping condition pages once) and, for a
  violation, grows its counts;
- when a state's condition (not a violation's) is first found clear, records "cleared" on the
  incident, and "firing" when it holds again, so pages never show a past state as present;
- once it has been clear for the rule's ``resolve_after_s`` (the hold-down), resolves the
  incident and notifies resolve to the channels that were sent the trigger, if the rule
  ``resolves_itself``: a violation's does not by default (records were lost or duplicated:
  its incident stays until a person resolves it).

The ``lint_error`` rule reads the latest guarantee lint report of the sentinel's cluster
(``workers.store.lint.LintStore``, written by ``dashboard.lint.services``): an error found there opens one
incident while it persists, however many lint runs see it.

Acknowledging or resolving by hand is recorded with the user and notified the same way.
Each transition is also announced to live pages once its transaction commits
(``dashboard.oncall.events``).
Each notification is one ``IncidentEvent`` (``dashboard.oncall.notification``) handed to the
``dispatch`` its caller passes: the Celery task and the views pass
``dashboard.oncall.tasks.dispatch_notification`` (one task per notification, so a slow or dead
endpoint never delays another channel, a sentinel, or the evaluation), tests and the on-call
cluster test deliver at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import FloatField, Max
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from dashboard.models import Sentinel
from dashboard.models.metrics import MetricWindow
from dashboard.models.oncall import (
    ACKNOWLEDGED,
    OPEN,
    RESOLVED,
    AlertRule,
    GroupRule,
    Incident,
    IncidentEvent,
    active_cluster_silence,
    active_silence,
    ensure_rules,
)
from dashboard.oncall.events import announce
from dashboard.oncall.notification import Dispatch, notify
from dashboard.redisclient import redis_client
from dashboard.status import all_statuses
from workers.engine import alerts, explain, group_alerts
from workers.engine.alerts import Condition
from workers.engine.documents import FORBIDDEN, VERDICT_WINDOW_S, Window
from workers.engine.groups import GroupEvent
from workers.store.cluster import ClusterStore
from workers.store.groups import GroupStore
from workers.store.lint import LintStore
from workers.store.sentinel import SentinelStore

# -- evaluation -------------------------------------------------------------------------------


def evaluate(now: float | None = None, *, dispatch: Dispatch) -> list[Incident]:
    """One evaluation of every enabled sentinel's rules; the incidents opened. Notifications
    go to ``dispatch`` (an ``IncidentEvent`` id each)."""
    now = time.time() if now is None else now
    sentinels = {
        s.pk: s for s in Sentinel.objects.filter(enabled=True).select_related("cluster", "profile")
    }
    # Every sentinel gets the default rules, however it was made, and the rules added to the
    # defaults since (``ensure_rules`` only creates the missing kinds).
    have: dict[int, set[str]] = {pk: set() for pk in sentinels}
    for sid, kind in AlertRule.objects.filter(sentinel_id__in=sentinels).values_list(
        "sentinel_id", "kind"
    ):
        have[sid].add(kind)
    for sid, sentinel in sentinels.items():
        if {d.kind for d in alerts.default_rules(sentinel.semantic)} - have[sid]:
            ensure_rules(sentinel)
    rules: dict[int, list[AlertRule]] = {}
    for rule in AlertRule.objects.filter(sentinel_id__in=sentinels, enabled=True).select_related(
        "sentinel"
    ):
        rules.setdefault(rule.sentinel_id, []).append(rule)
    statuses = {doc["id"]: doc for doc in all_statuses()}
    opened = []
    client = redis_client()
    lint_reports: dict[str, dict | None] = {}  # read once per cluster and evaluation
    for sid, sentinel_rules in rules.items():
        status = statuses.get(sid)
        if status is None:
            continue
        store = SentinelStore(client, sid)
        memory = store.alert_state()
        for rule in sentinel_rules:
            condition = condition_for(rule, status, memory, store, now, lint_reports)
            incident = apply(rule, sentinels[sid], status, condition, now, dispatch)
            if incident is not None:
                opened.append(incident)
        if status.get("updated_at") is not None:
            memory["totals"] = status["totals"]
        store.set_alert_state(memory)
    opened += evaluate_groups(now, dispatch=dispatch)
    return opened


def condition_for(
    rule: AlertRule,
    status: dict,
    memory: dict,
    store: SentinelStore,
    now: float,
    lint_reports: dict[str, dict | None] | None = None,
) -> Condition:
    kind = rule.kind
    if kind == alerts.VIOLATED:
        return violation(status, memory, store, now)
    if kind in (alerts.STALLED, alerts.DEGRADED):
        key = f"{kind}_since"
        wanted = "STALLED" if kind == alerts.STALLED else "DEGRADED"
        memory[key] = (memory.get(key) or now) if status.get("verdict") == wanted else None
        return alerts.verdict_condition(kind, status, memory[key], rule.for_s, now)
    if kind == alerts.P99_SLO:
        return alerts.p99_condition(
            status,
            minute_p99s(rule.sentinel_id, rule.windows, now),
            rule.windows,
            rule.sentinel.slo_p99_ms,
        )
    if kind == alerts.LOSS_RATE:
        return alerts.loss_rate_condition(status, rule.threshold)
    if kind == alerts.LINT_ERROR:
        return lint_error(status, memory, store, {} if lint_reports is None else lint_reports)
    return Condition(False)


def lint_error(
    status: dict, memory: dict, store: SentinelStore, reports: dict[str, dict | None]
) -> Condition:
    """An error in the latest lint report of the sentinel's cluster, for its topic and
    semantic (``reports``: those read already, by cluster). While no report can say (none
    yet, or the cluster was unreadable), the last answer stands: an open incident does not
    resolve because the lint could not look."""
    if status["cluster"] not in reports:
        reports[status["cluster"]] = LintStore(store.r).report(status["cluster"])
    report = reports[status["cluster"]]
    condition = alerts.lint_condition(
        report, cluster=status["cluster"], topic=status["topic"], semantic=status["semantic"]
    )
    if condition is None:
        last = memory.get("lint_error")
        return Condition(True, last["reason"], last["counts"]) if last else Condition(False)
    memory["lint_error"] = (
        {"reason": condition.reason, "counts": condition.counts} if condition.firing else None
    )
    return condition


def violation(status: dict, memory: dict, store: SentinelStore, now: float) -> Condition:
    """A forbidden counter grew since the last evaluation (on first sight: within the
    verdict window)."""
    if status.get("updated_at") is None:  # no report from the checker: nothing to judge
        return Condition(False)
    semantic = status["semantic"]
    if "totals" in memory:
        grown = alerts.forbidden_increase(semantic, status["totals"], memory["totals"])
    else:
        window = (status.get("window") or {}).get("counts") or {}
        grown = {k: int(window.get(k, 0)) for k in FORBIDDEN[semantic] if window.get(k)}
    if not grown:
        return Condition(False)
    partitions, since = recent_partitions(store, semantic, now)
    return Condition(True, alerts.violation_reason(status, grown, partitions, since), grown)


def recent_partitions(
    store: SentinelStore, semantic: str, now: float, names: Iterable[str] | None = None
) -> tuple[dict[str, dict[str, int]], float]:
    """Counts of ``names`` (default: the semantic's forbidden counters) per partition over the
    verdict window, and when the first was seen."""
    out: dict[str, dict[str, int]] = {}
    since = now
    wanted = tuple(FORBIDDEN[semantic] if names is None else names)
    for doc in store.windows(now - VERDICT_WINDOW_S):
        window = Window.from_doc(doc, keep_hist=False)
        for partition, counts in (window.partitions or {}).items():
            for name in wanted:
                if counts.get(name):
                    acc = out.setdefault(partition, {})
                    acc[name] = acc.get(name, 0) + counts[name]
                    since = min(since, window.start)
    return out, since


# Counters counted once their grace has passed (a record is lost when it was not read within
# the grace): their first affected record was written that long before they were counted.
COUNTED_AFTER_GRACE = ("lost", "divergent", "skipped")


def explain_violation(
    sentinel: Sentinel, counts: dict[str, int], now: float, at: float | None = None
) -> dict:
    """Why the ``counts`` grew (``workers.engine.explain``; the forbidden counters of a
    violation, or the allowed ones that degraded the sentinel): the largest counter on the
    partition where most of it was seen, explained by the cluster's events (its watcher's)
    and the sentinel's own around its first affected record, and by the client properties."""
    if not counts:
        return {}
    client = redis_client()
    store = SentinelStore(client, sentinel.pk)
    partitions, since = recent_partitions(store, sentinel.semantic, now, counts)
    counter = max(counts, key=lambda name: counts[name])
    partition, on = explain.busiest_partition(partitions, counter)
    if at is None:  # when the first affected record was written (``at``: known already)
        at = since - (sentinel.grace_seconds if counter in COUNTED_AFTER_GRACE else 0.0)
    anomaly = explain.Anomaly(counter, sentinel.topic, partition, at, counts[counter], on)
    found = explain.explain(
        anomaly,
        events_around(client, store, sentinel, at, at + explain.AFTER_S),
        **clients(sentinel),
    )
    return {
        **found.to_dict(),
        "counter": counter,
        "count": counts[counter],
        "partition": partition,
        "at": at,
    }


def degrading_counts(sentinel: Sentinel, status: dict) -> dict[str, int]:
    """The allowed counters that grew over the verdict window (a DEGRADED sentinel's records:
    duplicates under at-least-once, losses under at-most-once...), the ones an explanation
    knows; empty when only latency degraded it."""
    window = (status.get("window") or {}).get("counts") or {}
    forbidden = FORBIDDEN[sentinel.semantic]
    return {
        name: int(window.get(name) or 0)
        for name in explain.CAUSES
        if name not in forbidden and name not in explain.LASTING and int(window.get(name) or 0) > 0
    }


def explain_stall(sentinel: Sentinel, now: float, at: float, partition: int | None = None) -> dict:
    """Why the sentinel stopped making progress at ``at`` (its last progress): the cluster's
    events and the sentinel's own from ``explain.BEFORE_S`` before it up to ``now`` (a stall
    lasts: what happened during it explains it too), on ``partition`` (the one the metadata
    shows without a leader) or the topic."""
    client = redis_client()
    store = SentinelStore(client, sentinel.pk)
    anomaly = explain.Anomaly("stalled", sentinel.topic, partition, at)
    hi = max(now, at) + explain.AFTER_S
    found = explain.explain(
        anomaly,
        events_around(client, store, sentinel, at, hi),
        after_s=hi - at,
        **clients(sentinel),
    )
    return {**found.to_dict(), "counter": "stalled", "partition": partition, "at": at}


def stall_start(status: dict, now: float) -> tuple[float, int | None]:
    """When a STALLED sentinel last made progress (else when it became STALLED), and the one
    partition its metadata shows without a leader (None: none or several)."""
    at = status.get("last_progress_at") or status.get("verdict_since") or now
    parts = ((status.get("metadata") or {}).get("partitions")) or {}
    leaderless = [p for p, info in parts.items() if (info or {}).get("leader", -1) in (None, -1)]
    return float(at), int(leaderless[0]) if len(leaderless) == 1 else None


def events_around(client, store: SentinelStore, sentinel: Sentinel, at: float, hi: float) -> list:
    """The cluster's events on the sentinel's topic (its watcher's) and the sentinel's own, from
    ``explain.BEFORE_S`` before ``at`` up to ``hi``."""
    lo = at - explain.BEFORE_S
    events = ClusterStore(client, sentinel.cluster.name).events(
        since=lo - 10, until=hi + 10, topic=sentinel.topic, limit=500
    )
    events += [
        explain.sentinel_event(doc, sentinel.topic)
        for doc in store.events(200)
        if lo <= float(doc.get("ts", 0)) <= hi
    ]
    return events


def clients(sentinel: Sentinel) -> dict[str, dict]:
    """The client properties an explanation may weigh (``explain.client_properties``)."""
    profile = sentinel.profile
    return explain.client_properties(profile.producer_properties, profile.consumer_properties)


def minute_p99s(sentinel_id: int, count: int, now: float) -> list[float | None]:
    """End-to-end p99 of the last ``count`` complete one-minute windows, oldest first; empty
    when they are not consecutive up to the last minute."""
    rows = list(
        MetricWindow.objects.filter(sentinel_id=sentinel_id, resolution=60).order_by("-start")[
            :count
        ]
    )[::-1]
    if len(rows) < count or not rows:
        return []
    starts = [r.start.timestamp() for r in rows]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    if now - (starts[-1] + 60) > 120 or any(gap != 60 for gap in gaps):
        return []
    return [(r.latency.get("e2e") or {}).get("p99") for r in rows]


# -- the incident lifecycle -------------------------------------------------------------------


def current(rule: AlertRule) -> Incident | None:
    return rule.incidents.exclude(state=RESOLVED).order_by("-opened_at").first()


@transaction.atomic
def apply(
    rule: AlertRule,
    sentinel: Sentinel,
    status: dict,
    condition: Condition,
    now: float,
    dispatch: Dispatch,
) -> Incident | None:
    """Open, grow or resolve ``rule``'s incident; the incident when one was opened.

    Safe under concurrent evaluations: the rule's row is locked for the transaction (a second
    evaluator waits, then finds the incident the first opened), and where the database has no
    row locks (SQLite serializes writers instead) the unique constraint on a rule's unresolved
    incident refuses a second one, which is then left to the evaluation that opened it."""
    AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
    incident = current(rule)
    at = datetime.fromtimestamp(now, UTC)
    if condition.firing and incident is None:
        silence = active_silence(sentinel, at)
        try:
            with transaction.atomic():
                incident = open_incident(rule, sentinel, status, condition, at, silence is not None)
        except IntegrityError:
            return None  # another evaluation opened it and notified
        page_opened(incident, silence, at, dispatch)
        return incident
    if condition.firing:
        if rule.kind != alerts.VIOLATED:
            firing_again(incident, condition, at)
        incident.last_firing_at = at
        if rule.kind == alerts.VIOLATED:
            grow(incident, status, at)
        reexplain(incident, sentinel, now, at)
        incident.save()
    elif incident is not None:
        found_clear(incident, rule, rule.kind != alerts.VIOLATED, now, at, dispatch)
    return None


def firing_again(incident: Incident, condition: Condition, at: datetime) -> None:
    """A state's condition holds again after it was found clear: the pages say "firing"."""
    if is_cleared(incident):
        IncidentEvent.objects.create(
            incident=incident, at=at, kind="firing", message=condition.reason
        )
        announce(incident, "firing")


def found_clear(
    incident: Incident,
    rule: AlertRule | GroupRule,
    state: bool,
    now: float,
    at: datetime,
    dispatch: Dispatch,
) -> None:
    """The condition of an open incident does not hold: a state's (``state``) says "cleared"
    once; an incident whose rule resolves itself resolves after its hold-down."""
    if state and not is_cleared(incident):
        clear(incident, rule, at)
    clear_for = now - incident.last_firing_at.timestamp()
    if rule.resolves_itself and clear_for >= rule.resolve_after_s:
        resolve(incident, None, f"clear for {clear_for:.0f} s", dispatch=dispatch, at=at)


def is_cleared(incident: Incident) -> bool:
    """Whether the condition of ``incident`` (a state: stalled, degraded, p99, loss rate,
    lint) was found clear since it last held: a "cleared" event after its last firing."""
    return incident.events.filter(kind="cleared", at__gte=incident.last_firing_at).exists()


def clear(incident: Incident, rule: AlertRule | GroupRule, at: datetime) -> None:
    """Record that a state's condition no longer holds while its incident stays open (the
    hold-down, or a rule that does not resolve by itself): pages say "cleared", not the past
    as the present. A violation is never "cleared": its records stay lost or duplicated."""
    if rule.resolves_itself:
        message = f"condition clear; resolves after {rule.resolve_after_s} s clear"
    else:
        message = "condition clear; stays open until a person resolves it"
    IncidentEvent.objects.create(incident=incident, at=at, kind="cleared", message=message)
    announce(incident, "cleared")


def open_incident(
    rule: AlertRule,
    sentinel: Sentinel,
    status: dict,
    condition: Condition,
    at: datetime,
    silenced: bool,
) -> Incident:
    explanation = {}
    if rule.kind == alerts.VIOLATED:
        explanation = explain_violation(sentinel, condition.counts, at.timestamp())
    elif rule.kind == alerts.STALLED:
        since, partition = stall_start(status, at.timestamp())
        explanation = explain_stall(sentinel, at.timestamp(), since, partition)
    elif rule.kind == alerts.DEGRADED:  # as information: what the semantic allows, and why
        # Its first records are as old as the degradation (the rule waited ``for_s``).
        began = status.get("verdict_since") or at.timestamp()
        explanation = explain_violation(
            sentinel, degrading_counts(sentinel, status), at.timestamp(), at=float(began)
        )
    incident = Incident.objects.create(
        rule=rule,
        sentinel=sentinel,
        cluster=sentinel.cluster.name,
        topic=sentinel.topic,
        semantic=sentinel.semantic,
        kind=rule.kind,
        severity=rule.severity,
        reason=condition.reason,
        counts=condition.counts,
        baseline=baseline(status, condition),
        explanation=explanation,
        silenced=silenced,
        opened_at=at,
        last_firing_at=at,
    )
    IncidentEvent.objects.create(incident=incident, at=at, kind="opened", message=condition.reason)
    if explanation:
        IncidentEvent.objects.create(
            incident=incident, at=at, kind="explained", message=explanation["text"]
        )
    announce(incident, "opened")
    return incident


def baseline(status: dict, condition: Condition) -> dict[str, int]:
    """The forbidden counters' totals before the violation: what later totals grow from."""
    totals = status.get("totals") or {}
    return {k: int(totals.get(k, 0)) - n for k, n in condition.counts.items()}


def grow(incident: Incident, status: dict, at: datetime) -> None:
    totals = status.get("totals") or {}
    counts = dict(incident.counts)
    for name in FORBIDDEN[incident.semantic]:
        base = incident.baseline.get(name, int(totals.get(name, 0)))
        counts[name] = max(counts.get(name, 0), int(totals.get(name, 0)) - base)
    counts = {k: v for k, v in counts.items() if v > 0}
    if counts != incident.counts:
        message = ", ".join(f"{k} {incident.counts.get(k, 0)} -> {v}" for k, v in counts.items())
        incident.counts = counts
        IncidentEvent.objects.create(incident=incident, at=at, kind="grew", message=message)
        announce(incident, "grew")


# How long after the first affected record an unexplained violation is explained again (the
# cluster's watcher samples every few seconds, so an event of the window may be recorded
# after the incident opened); a stall, whose window runs until now, for as long after its
# incident opened (its rule waits ``for_s`` before it opens).
REEXPLAIN_FOR_S = explain.AFTER_S + 60


def reexplain(incident: Incident, sentinel: Sentinel, now: float, at: datetime) -> None:
    """Explain again a violation, a stall or a degradation nothing explained yet, while the
    events of its window may still arrive; the incident keeps the first explanation that names
    a cause."""
    found = incident.explanation or {}
    start = found.get("at", 0)
    if incident.kind == alerts.STALLED:
        start = incident.opened_at.timestamp()
    if found.get("cause") != explain.NOTHING_SEEN or now > start + REEXPLAIN_FOR_S:
        return
    if incident.kind == alerts.STALLED:
        again = explain_stall(sentinel, now, found["at"], found.get("partition"))
    elif incident.kind == alerts.DEGRADED:
        counts = {found["counter"]: found.get("count") or 0}
        again = explain_violation(sentinel, counts, now, at=found["at"])
    else:
        again = explain_violation(sentinel, incident.counts, now, at=found["at"])
    if again.get("cause") not in (None, explain.NOTHING_SEEN):
        incident.explanation = again
        IncidentEvent.objects.create(
            incident=incident, at=at, kind="explained", message=again["text"]
        )


def acknowledge(incident: Incident, user, *, dispatch: Dispatch) -> bool:
    """False when the incident was not open."""
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        if incident.state != OPEN:
            return False
        incident.state = ACKNOWLEDGED
        incident.acknowledged_at = timezone.now()
        incident.acknowledged_by = user
        incident.save()
        IncidentEvent.objects.create(
            incident=incident, kind="acknowledged", user=user, message=f"by {user}"
        )
        announce(incident, "acknowledged")
        if not incident.silenced:
            notify(incident, alerts.ACKNOWLEDGE, dispatch, by=str(user))
    return True


def resolve(
    incident: Incident,
    user,
    note: str,
    *,
    dispatch: Dispatch,
    at: datetime | None = None,
) -> bool:
    """Resolve by hand (``user``) or by hold-down (``user`` None); False when resolved."""
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        if incident.state == RESOLVED:
            return False
        incident.state = RESOLVED
        incident.resolved_at = at or timezone.now()
        incident.resolved_by = user
        incident.resolve_note = note
        incident.save()
        who = f"by {user}" if user is not None else "automatically"
        IncidentEvent.objects.create(
            incident=incident,
            at=incident.resolved_at,
            kind="resolved",
            user=user,
            message=f"{who}: {note}" if note else who,
        )
        announce(incident, "resolved")
        if not incident.silenced:
            notify(incident, alerts.RESOLVE, dispatch, by=str(user) if user else "")
    return True


# -- consumer group rules ---------------------------------------------------------------------


def evaluate_groups(now: float, *, dispatch: Dispatch) -> list[Incident]:
    """One evaluation of every enabled group rule (``GroupRule``); the incidents opened.

    Per cluster with rules, one Redis round trip reads the groups' states, their events and
    since when each group has been stopped or stalled (``GroupStore.alert_inputs``). A
    counting rule (records lost, skipped, rewound) opens one incident per group when events of
    its kind arrive that no incident counted yet; the incident grows with later ones. A
    watcher's sample writes all its events with the sample's time in one transaction, so
    "events newer than the last sample counted" (the incident's ``baseline.counted_to``)
    counts each event once, however many evaluations run."""
    rules: dict[int, list[GroupRule]] = {}
    for rule in GroupRule.objects.filter(enabled=True).select_related("cluster"):
        rules.setdefault(rule.cluster_id, []).append(rule)
    opened = []
    client = redis_client()
    for cluster_rules in rules.values():
        cluster = cluster_rules[0].cluster
        store = GroupStore(client, cluster.name)
        since = min(r.created.timestamp() for r in cluster_rules)
        states, events, memory = store.alert_inputs(since)
        spells = {}
        for group, state in states.items():
            began = group_alerts.not_reading_since(state, memory.get(group), now)
            if began is not None:
                spells[group] = began
        if spells != memory:
            store.set_alerting(spells)
        unresolved = set(
            Incident.objects.filter(group_rule__in=cluster_rules)
            .exclude(state=RESOLVED)
            .values_list("group_rule_id", "group")
        )
        counted_to = counted_so_far(cluster_rules)
        for rule in cluster_rules:
            created = rule.created.timestamp()
            if rule.kind in group_alerts.COUNTED:
                # Only groups with events no incident counted yet: nothing to lock otherwise.
                kind = group_alerts.COUNTED[rule.kind]
                candidates = {
                    e.group
                    for e in events
                    if e.kind == kind and e.t > max(created, counted_to.get((rule.pk, e.group), 0))
                }
            else:
                candidates = {g for g in spells if now - spells[g] >= rule.for_s}
            candidates |= {g for rid, g in unresolved if rid == rule.pk}
            for group in sorted(g for g in candidates if rule.watches(g)):
                if rule.kind in group_alerts.COUNTED:
                    compute = counting(rule, group, events)
                else:
                    compute = stopping(rule, group, states.get(group), spells.get(group), now)
                incident = apply_group(rule, group, compute, now, dispatch)
                if incident is not None:
                    opened.append(incident)
    return opened


def page_opened(incident: Incident, silence, at: datetime, dispatch: Dispatch) -> None:
    """Page the channels that an incident opened, or record that a silence kept anybody from
    being paged (the incident is recorded all the same)."""
    if silence is not None:
        IncidentEvent.objects.create(
            incident=incident, at=at, kind="silenced", message=f"nobody paged: {silence}"
        )
    else:
        notify(incident, alerts.TRIGGER, dispatch)


def counted_so_far(rules: list[GroupRule]) -> dict[tuple[int, str], float]:
    """(rule id, group) -> the time of the last sample its incidents counted, in one query."""
    rows = (
        Incident.objects.filter(group_rule__in=rules)
        .values("group_rule_id", "group")
        .annotate(t=Max(Cast(KT("baseline__counted_to"), FloatField())))
        .values_list("group_rule_id", "group", "t")
    )
    return {(rid, group): t for rid, group, t in rows if t is not None}


def counting(rule: GroupRule, group: str, events: list[GroupEvent]):
    """A counting rule's condition for ``group``, given the (rule, group)'s latest incident
    (read under the rule's lock): the events newer than what that incident counted (than the
    rule's creation when there is none) on top of the open incident's partitions."""

    def compute(incident: Incident | None, latest: Incident | None):
        start = rule.created.timestamp()
        if latest is not None:
            start = max(start, float((latest.baseline or {}).get("counted_to", start)))
        new = [e for e in events if e.t > start and e.group == group]
        before = incident.partitions if incident is not None else None
        condition, parts = group_alerts.counting_condition(
            rule.kind, rule.cluster.name, group, new, before
        )
        counted_to = max((e.t for e in new), default=start)
        return condition, parts, {"counted_to": counted_to}

    return compute


def stopping(rule: GroupRule, group: str, state, since: float | None, now: float):
    def compute(incident: Incident | None, latest: Incident | None):
        condition, parts = group_alerts.stopped_condition(
            rule.cluster.name, state, since, rule.for_s, now
        )
        return condition, parts, {}

    return compute


@transaction.atomic
def apply_group(rule: GroupRule, group: str, compute, now: float, dispatch: Dispatch):
    """Open, grow or resolve the incident of ``rule`` on ``group``; the incident when one was
    opened. The rule's row is locked for the transaction and the condition computed under it
    from the incident found then, so two evaluations never count an event twice; where the
    database has no row locks, the unique constraint on a (rule, group)'s unresolved incident
    refuses a second one."""
    GroupRule.objects.select_for_update().filter(pk=rule.pk).first()
    latest = rule.incidents.filter(group=group).order_by("-opened_at", "-pk").first()
    incident = latest if latest is not None and latest.state != RESOLVED else None
    condition, parts, baseline = compute(incident, latest)
    at = datetime.fromtimestamp(now, UTC)
    counts_records = rule.kind in group_alerts.COUNTED
    if condition.firing and incident is None:
        silence = active_cluster_silence(rule.cluster_id, at)
        try:
            with transaction.atomic():
                incident = open_group_incident(
                    rule, group, condition, parts, baseline, at, silence is not None
                )
        except IntegrityError:
            return None  # another evaluation opened it and notified
        page_opened(incident, silence, at, dispatch)
        return incident
    if condition.firing:
        if not counts_records:
            firing_again(incident, condition, at)
        incident.last_firing_at = at
        if counts_records:
            message = ", ".join(
                f"{k} {incident.counts.get(k, 0)} -> {v}" for k, v in condition.counts.items()
            )
            incident.baseline = baseline
            IncidentEvent.objects.create(incident=incident, at=at, kind="grew", message=message)
            announce(incident, "grew")
        incident.counts, incident.partitions = condition.counts, parts
        incident.topic = topics_of(parts)
        incident.save()
    elif incident is not None:
        found_clear(incident, rule, not counts_records, now, at, dispatch)
    return None


def topics_of(parts: dict) -> str:
    topics = sorted({key.rsplit(":", 1)[0] for key in parts})
    return ", ".join(topics)[:249]


def open_group_incident(
    rule: GroupRule,
    group: str,
    condition: Condition,
    parts: dict,
    baseline: dict,
    at: datetime,
    silenced: bool,
) -> Incident:
    incident = Incident.objects.create(
        group_rule=rule,
        group=group,
        cluster=rule.cluster.name,
        topic=topics_of(parts),
        kind=rule.kind,
        severity=rule.severity,
        reason=condition.reason,
        counts=condition.counts,
        partitions=parts,
        baseline=baseline,
        silenced=silenced,
        opened_at=at,
        last_firing_at=at,
    )
    IncidentEvent.objects.create(incident=incident, at=at, kind="opened", message=condition.reason)
    announce(incident, "opened")
    return incident
