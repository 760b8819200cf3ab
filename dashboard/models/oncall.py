"""On-call: alert rules, notification channels, incidents and their timelines, silences.

What decides is elsewhere: conditions are pure (``workers.engine.alerts``), the incident
lifecycle is ``dashboard/oncall/evaluation.py``, the notification fan-out
``dashboard/oncall/notification.py``, and the integrations are ``dashboard/oncall/transports.py``;
these are the rows they keep.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from dashboard.models.core import Cluster, Sentinel
from dashboard.models.fields import SealedChannelConfigField
from workers.clientsecrets import SecretError, unseal
from workers.engine.alerts import RULE_KINDS, SEVERITIES, default_rules
from workers.engine.group_alerts import (
    GROUP_RULE_DEFAULTS,
    GROUP_RULE_KINDS,
    group_subject,
    matches,
    patterns,
)
from workers.engine.redact import MASK

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
INCIDENT_STATES = (OPEN, ACKNOWLEDGED, RESOLVED)


class Channel(models.Model):
    """Where notifications go: one integration (``dashboard.oncall.transports.TRANSPORTS``) and its
    settings. A permanent error (a 4xx other than 429, an invalid key) disables it."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20)
    # The integration's settings (URLs, routing keys, addresses). Secret ones are sealed at
    # rest (``fernet:`` tokens, or env: / file: references), opened only to send
    # (``transport_for``), masked wherever they are shown (``masked_config``), never logged.
    config = SealedChannelConfigField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def transport(self):
        from dashboard.oncall.transports import transport_for

        return transport_for(self)

    def masked_config(self) -> dict[str, Any]:
        """The settings as pages show them: each secret in its masked form
        (``masked_setting``), ``******`` when this process cannot open it."""
        from dashboard.oncall.transports import SECRET_SETTINGS, masked_setting

        out = {}
        for key, value in self.config.items():
            if key not in SECRET_SETTINGS or not value:
                out[key] = value
                continue
            try:
                out[key] = masked_setting(unseal({key: value}, references=False)[key])
            except SecretError:
                out[key] = MASK
        return out


class AlertRule(models.Model):
    """One rule watching one sentinel (``workers.engine.alerts`` says what each kind means)."""

    sentinel = models.ForeignKey(Sentinel, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=20, choices=[(k, v) for k, v in RULE_KINDS.items()])
    severity = models.CharField(max_length=10, choices=[(s, s) for s in SEVERITIES])
    enabled = models.BooleanField(default=True)
    for_s = models.PositiveIntegerField(default=0, help_text="stalled / degraded: seconds")
    windows = models.PositiveIntegerField(default=0, help_text="p99: consecutive minutes")
    threshold = models.FloatField(default=0.0, help_text="loss rate: percent")
    # Clear for this long before an incident resolves by itself, where it may.
    resolve_after_s = models.PositiveIntegerField(default=300)
    # Off (a violation's default): the incident stays until a person resolves it.
    resolves_itself = models.BooleanField(default=True)
    channels = models.ManyToManyField(Channel, blank=True, related_name="rules")

    class Meta:
        ordering = ["sentinel", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["sentinel", "kind"], name="one_rule_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.sentinel}: {RULE_KINDS.get(self.kind, self.kind)}"


def ensure_rules(sentinel: Sentinel) -> list[AlertRule]:
    """The default rules of ``sentinel`` (idempotent: edited rules stay as they are); a new
    rule notifies every enabled channel."""
    rules = []
    channels = list(Channel.objects.filter(enabled=True))
    for default in default_rules(sentinel.semantic):
        rule, created = AlertRule.objects.get_or_create(
            sentinel=sentinel,
            kind=default.kind,
            defaults={
                "severity": default.severity,
                "for_s": default.for_s,
                "windows": default.windows,
                "threshold": default.threshold,
                "resolves_itself": default.resolves_itself,
            },
        )
        if created:
            rule.channels.set(channels)
        rules.append(rule)
    return rules


class GroupRule(models.Model):
    """One rule watching the consumer groups of one cluster whose names match ``include`` and
    none of ``exclude`` (``workers.engine.group_alerts`` says what each kind means)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="group_rules")
    kind = models.CharField(max_length=20, choices=[(k, v) for k, v in GROUP_RULE_KINDS.items()])
    severity = models.CharField(max_length=10, choices=[(s, s) for s in SEVERITIES])
    enabled = models.BooleanField(default=True)
    include = models.CharField(
        max_length=1000, default="*", help_text="group name patterns (globs), space-separated"
    )
    exclude = models.CharField(
        max_length=1000, blank=True, help_text="group name patterns (globs) never watched"
    )
    for_s = models.PositiveIntegerField(default=0, help_text="stopped / stalled: seconds")
    resolve_after_s = models.PositiveIntegerField(default=300)
    # Off for records lost, skipped or rewound (a person resolves it); on for stopped.
    resolves_itself = models.BooleanField(default=False)
    channels = models.ManyToManyField(Channel, blank=True, related_name="group_rules")
    # Events before the rule existed are not its business.
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["cluster", "kind", "pk"]

    def __str__(self) -> str:
        return f"{self.cluster}: {GROUP_RULE_KINDS.get(self.kind, self.kind)} ({self.include})"

    def watches(self, group: str) -> bool:
        return matches(group, patterns(self.include), patterns(self.exclude))

    def apply_defaults(self) -> None:
        """The kind's severity, ``for_s`` and ``resolves_itself`` (a new rule's)."""
        default = GROUP_RULE_DEFAULTS[self.kind]
        self.severity = default.severity
        self.for_s = default.for_s
        self.resolves_itself = default.resolves_itself


class Incident(models.Model):
    """An incident per (sentinel, rule), or per (group rule, consumer group), while its
    condition holds: open -> acknowledged -> resolved. A flapping condition keeps one incident
    open; a violation's counts grow, and so do a group's records lost, skipped or rewound.
    Exactly one of ``rule`` and ``group_rule`` is set."""

    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="incidents"
    )
    sentinel = models.ForeignKey(
        Sentinel, null=True, blank=True, on_delete=models.CASCADE, related_name="incidents"
    )
    group_rule = models.ForeignKey(
        GroupRule, null=True, blank=True, on_delete=models.CASCADE, related_name="incidents"
    )
    group = models.CharField(max_length=255, blank=True, help_text="a group rule's group")
    # A group incident's partitions ("topic:partition" -> count and offsets, or status and lag).
    partitions = models.JSONField(default=dict, blank=True)
    # Copies of what the incident was about, so the page stays true if the sentinel changes.
    cluster = models.CharField(max_length=100)
    topic = models.CharField(max_length=249)
    semantic = models.CharField(max_length=20)
    kind = models.CharField(max_length=20)
    severity = models.CharField(max_length=10)
    state = models.CharField(max_length=15, default=OPEN)
    reason = models.TextField()
    counts = models.JSONField(default=dict, blank=True)
    # Why it happened (``workers.engine.explain.Explanation.to_dict``: cause, text, evidence,
    # candidates): a violation's, empty for a state's.
    explanation = models.JSONField(default=dict, blank=True)
    # Forbidden counters' totals before the violation: counts = totals - baseline. A group
    # incident's: {"counted_to": t}, the time of the last watcher sample whose events it counted.
    baseline = models.JSONField(default=dict, blank=True)
    dedup_key = models.CharField(max_length=64, unique=True, default="")
    silenced = models.BooleanField(default=False, help_text="opened during a silence")
    opened_at = models.DateTimeField(default=timezone.now)
    last_firing_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolve_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["state", "sentinel"])]
        # Two evaluations at once (two workers, a slow one overlapping the next beat tick)
        # never open a rule's incident twice: the database refuses the second.
        constraints = [
            models.UniqueConstraint(
                fields=["rule"],
                condition=~models.Q(state=RESOLVED),
                name="one_unresolved_incident_per_rule",
            ),
            models.UniqueConstraint(
                fields=["group_rule", "group"],
                condition=~models.Q(state=RESOLVED),
                name="one_unresolved_incident_per_group_rule_and_group",
            ),
            models.CheckConstraint(
                condition=models.Q(rule__isnull=False, group_rule__isnull=True)
                | models.Q(rule__isnull=True, group_rule__isnull=False),
                name="incident_of_a_rule_or_a_group_rule",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.state}: {self.reason}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.dedup_key:
            self.dedup_key = f"delivery-sentinel-{uuid.uuid4().hex}"
        super().save(*args, **kwargs)

    @property
    def is_open(self) -> bool:
        return self.state != RESOLVED

    @property
    def source_rule(self) -> AlertRule | GroupRule:
        """The rule that opened it: a sentinel's or a group rule."""
        return self.rule if self.rule_id is not None else self.group_rule

    @property
    def about(self) -> str:
        """``sentinel s1`` or ``group billing on cluster c1``."""
        if self.group_rule_id is not None:
            return group_subject(self.cluster, self.group)
        return f"sentinel {self.sentinel.name if self.sentinel else '(deleted)'}"


class IncidentEvent(models.Model):
    """The incident's timeline: opened, counts grew, each notification attempt and its
    result, acknowledged (by whom), resolved."""

    # None for a channel's test notification.
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=20)  # opened, grew, notify, acknowledged, resolved...
    message = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Notification attempts: the channel, what was sent (trigger / acknowledge / resolve),
    # the outcome ("pending", "sending" while one delivery has claimed it, "ok", "error",
    # "skipped") and how long the attempt took.
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends"
    )
    action = models.CharField(max_length=15, blank=True)
    result = models.CharField(max_length=10, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]


class Silence(models.Model):
    """A maintenance window: conditions are still recorded, nobody is paged."""

    cluster = models.ForeignKey(
        Cluster, null=True, blank=True, on_delete=models.CASCADE, related_name="silences"
    )
    sentinel = models.ForeignKey(
        Sentinel, null=True, blank=True, on_delete=models.CASCADE, related_name="silences"
    )
    ends_at = models.DateTimeField()
    comment = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ends_at"]

    def __str__(self) -> str:
        target = self.sentinel or self.cluster or "everything"
        return f"silence of {target} until {self.ends_at:%Y-%m-%d %H:%M}"


def active_silence(sentinel: Sentinel, now=None) -> Silence | None:
    now = now or timezone.now()
    return (
        Silence.objects.filter(ends_at__gt=now)
        .filter(models.Q(sentinel=sentinel) | models.Q(cluster_id=sentinel.cluster_id))
        .first()
    )


def active_cluster_silence(cluster_id: int, now=None) -> Silence | None:
    """A silence of the cluster: it covers its consumer groups' incidents."""
    now = now or timezone.now()
    return Silence.objects.filter(ends_at__gt=now, cluster_id=cluster_id).first()
