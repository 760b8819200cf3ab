"""Incidents: turning rule conditions into incidents, and incidents into notifications.

``evaluate()`` runs in Celery (beat, every ``ONCALL_EVALUATE_EVERY_S``), never in a web
request. For each enabled sentinel it reads the status document (one round trip for all),
computes each rule's condition (``workers.engine.alerts``), and:

- opens an incident per (sentinel, rule) when the condition starts to hold, and notifies the
  rule's channels once (nobody when a silence covers the sentinel or its cluster: the
  incident is still recorded);
- while it holds, keeps that one incident (a flapping condition pages once) and, for a
  violation, grows its counts;
- once it has been clear for the rule's ``resolve_after_s`` (the hold-down), resolves the
  incident and notifies resolve to the channels that were sent the trigger.

The ``lint_error`` rule reads the latest guarantee lint report of the sentinel's cluster
(``workers.store.lint.LintStore``, written by ``dashboard.lint``): an error found there opens one
incident while it persists, however many lint runs see it.

Acknowledging or resolving by hand is recorded with the user and notified the same way.
Each notification is one ``IncidentEvent`` and one Celery task (``deliver``), so a slow or
dead endpoint never delays another channel, a sentinel, or the evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dashboard.models import Sentinel
from dashboard.models.metrics import MetricWindow
from dashboard.models.oncall import (
    ACKNOWLEDGED,
    OPEN,
    RESOLVED,
    AlertRule,
    Channel,
    Incident,
    IncidentEvent,
    active_silence,
    ensure_rules,
)
from dashboard.status import all_statuses, shared_client
from dashboard.transports import TransportError, timed_send, transport_for
from workers.engine import alerts
from workers.engine.alerts import Condition, Notice
from workers.engine.documents import FORBIDDEN, VERDICT_WINDOW_S, Window
from workers.store.lint import LintStore
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)

Dispatch = Callable[[int], None]


def dispatch_task(event_id: int) -> None:
    """Deliver notification ``event_id`` in a Celery task of its own, once committed."""
    from dashboard.tasks import deliver_notification

    transaction.on_commit(lambda: deliver_notification.delay(event_id))


# -- evaluation -------------------------------------------------------------------------------


def evaluate(now: float | None = None, dispatch: Dispatch = dispatch_task) -> list[Incident]:
    """One evaluation of every enabled sentinel's rules; the incidents opened."""
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
    client = shared_client()
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
    store: SentinelStore, semantic: str, now: float
) -> tuple[dict[str, dict[str, int]], float]:
    """Forbidden counts per partition over the verdict window, and when the first was seen."""
    out: dict[str, dict[str, int]] = {}
    since = now
    for doc in store.windows(now - VERDICT_WINDOW_S):
        window = Window.from_doc(doc, keep_hist=False)
        for partition, counts in (window.partitions or {}).items():
            for name in FORBIDDEN[semantic]:
                if counts.get(name):
                    acc = out.setdefault(partition, {})
                    acc[name] = acc.get(name, 0) + counts[name]
                    since = min(since, window.start)
    return out, since


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
    """Open, grow or resolve ``rule``'s incident; the incident when one was opened."""
    incident = current(rule)
    at = datetime.fromtimestamp(now, UTC)
    if condition.firing and incident is None:
        silence = active_silence(sentinel, at)
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
            silenced=silence is not None,
            opened_at=at,
            last_firing_at=at,
        )
        IncidentEvent.objects.create(
            incident=incident, at=at, kind="opened", message=condition.reason
        )
        if silence is not None:
            IncidentEvent.objects.create(
                incident=incident, at=at, kind="silenced", message=f"nobody paged: {silence}"
            )
        else:
            notify(incident, alerts.TRIGGER, dispatch)
        return incident
    if condition.firing:
        incident.last_firing_at = at
        if rule.kind == alerts.VIOLATED:
            grow(incident, status, at)
        incident.save()
    elif incident is not None:
        clear_for = now - incident.last_firing_at.timestamp()
        if clear_for >= rule.resolve_after_s:
            resolve(incident, None, f"clear for {clear_for:.0f} s", dispatch, at=at)
    return None


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


def acknowledge(incident: Incident, user, dispatch: Dispatch = dispatch_task) -> bool:
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
        if not incident.silenced:
            notify(incident, alerts.ACKNOWLEDGE, dispatch, by=str(user))
    return True


def resolve(
    incident: Incident,
    user,
    note: str,
    dispatch: Dispatch = dispatch_task,
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
        if not incident.silenced:
            notify(incident, alerts.RESOLVE, dispatch, by=str(user) if user else "")
    return True


# -- notifications ----------------------------------------------------------------------------


def notify(incident: Incident, action: str, dispatch: Dispatch, by: str = "") -> None:
    """One pending notification per enabled channel of the incident's rule."""
    for channel in incident.rule.channels.filter(enabled=True):
        event = IncidentEvent.objects.create(
            incident=incident,
            kind="notify",
            channel=channel,
            action=action,
            result="pending",
            message=by,
        )
        dispatch(event.pk)


def notice_for(incident: Incident, action: str, by: str = "") -> Notice:
    return Notice(
        event=action,
        dedup_key=incident.dedup_key,
        rule=incident.kind,
        severity=incident.severity,
        cluster=incident.cluster,
        topic=incident.topic,
        semantic=incident.semantic,
        sentinel=incident.sentinel.name,
        summary=incident.reason,
        started_at=incident.opened_at.timestamp(),
        counts=incident.counts,
        ended_at=incident.resolved_at.timestamp() if incident.resolved_at else None,
        url=f"{settings.DS_BASE_URL}/incidents/{incident.pk}/",
        by=by,
    )


def deliver(event_id: int) -> str:
    """Send notification ``event_id``; its result ("ok" / "error" / "skipped")."""
    event = IncidentEvent.objects.select_related("incident", "channel").get(pk=event_id)
    channel = event.channel
    if event.result != "pending":
        return "skipped"  # a redelivered task
    if channel is None or not channel.enabled:
        event.result, event.error = "skipped", "channel disabled"
        event.save()
        return event.result
    record(event, channel, notice_for(event.incident, event.action, event.message))
    return event.result


def send_test(channel: Channel, user=None) -> IncidentEvent:
    """A test notification to ``channel``, sent now (the channel page's button)."""
    notice = Notice(
        event=alerts.TEST,
        dedup_key=f"delivery-sentinel-test-{channel.pk}",
        rule="test",
        severity=alerts.WARNING,
        cluster="test",
        topic="test",
        semantic="test",
        sentinel="test",
        summary=f"Test notification from Delivery Sentinel to channel {channel.name}",
        started_at=time.time(),
        url=f"{settings.DS_BASE_URL}/channels/{channel.pk}/",
    )
    event = IncidentEvent(kind="notify", channel=channel, action=alerts.TEST, user=user)
    record(event, channel, notice)
    return event


def record(event: IncidentEvent, channel: Channel, notice: Notice) -> None:
    """Send, and record the attempt (result, status, duration, error) on ``event``; a
    permanent error disables the channel and says why."""
    try:
        event.status_code, event.duration_ms = timed_send(transport_for(channel), notice)
        event.result = "ok"
    except TransportError as exc:
        event.result, event.error = "error", exc.message
        event.status_code = exc.status
        event.duration_ms = getattr(exc, "duration_ms", None)
        if exc.permanent:
            channel.enabled = False
            channel.disabled_reason = exc.message
            channel.save(update_fields=["enabled", "disabled_reason"])
    event.at = timezone.now()
    event.save()
    log.info(
        "notification %s to channel %s: %s%s (%.0f ms)",
        notice.event,
        channel.name,
        event.result,
        f" ({event.error})" if event.error else "",
        event.duration_ms or 0,
    )
