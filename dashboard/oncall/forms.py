"""Forms of the on-call pages: channels, silences, a sentinel's alert rules and a cluster's
consumer group rules.

A channel's settings are rendered from its integration's ``fields``
(``dashboard.oncall.transports.TRANSPORTS``) and checked by its ``validate()``. Secret settings
(``secret_fields``) never go back to the browser: a saved one is shown as ``******``, a
submitted ``******`` keeps the stored value, and a secret typed into a form that fails
validation is not echoed back either (it has to be typed again). They are stored sealed
(``SealedChannelConfigField``); the form opens the stored ones to check them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.models import Channel, Cluster, Sentinel, Silence
from dashboard.models.oncall import AlertRule, GroupRule
from dashboard.oncall.transports import SECRET_SETTINGS, TRANSPORTS
from workers.clientsecrets import SecretError, seal, unseal
from workers.engine import alerts, group_alerts
from workers.engine.redact import MASK


def setting_field(kind: str, name: str) -> str:
    """The form field of setting ``name`` of integration ``kind``."""
    return f"{kind}__{name}"


class SecretInput(forms.TextInput):
    """Renders only the mask: a stored secret shows ``******``, a typed one nothing."""

    def format_value(self, value: Any) -> str | None:
        return MASK if value == MASK else None


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(
        label="Integration", choices=[(k, t.label) for k, t in TRANSPORTS.items()]
    )
    enabled = forms.BooleanField(required=False, initial=True)
    notify_all = forms.BooleanField(
        label="Notify for every existing rule",
        required=False,
        initial=True,
        help_text="Adds this channel to the alert rules of every sentinel.",
    )

    def __init__(self, *args: Any, instance: Channel | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None:
            initial = {"name": instance.name, "kind": instance.kind, "enabled": instance.enabled}
            if instance.kind in TRANSPORTS:
                initial.update(
                    {
                        setting_field(instance.kind, k): MASK if k in SECRET_SETTINGS and v else v
                        for k, v in instance.config.items()
                    }
                )
            kwargs.setdefault("initial", initial)
        super().__init__(*args, **kwargs)
        if instance is not None:
            del self.fields["notify_all"]  # only when creating
        self.groups: list[dict[str, Any]] = []
        for kind, transport in TRANSPORTS.items():
            names = []
            for name, help_text in transport.fields.items():
                secret = name in transport.secret_fields
                field_name = setting_field(kind, name)
                self.fields[field_name] = forms.CharField(
                    label=name.replace("_", " "),
                    required=False,
                    help_text=help_text,
                    widget=SecretInput(attrs={"autocomplete": "off"})
                    if secret
                    else forms.TextInput(),
                )
                names.append(field_name)
            self.groups.append({"kind": kind, "label": transport.label, "names": names})

    def group_fields(self) -> list[dict[str, Any]]:
        """The settings of each integration, for the template (one fieldset each)."""
        return [{**g, "fields": [self[name] for name in g["names"]]} for g in self.groups]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = Channel.objects.filter(name=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError(f"a channel named {name!r} exists already")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        if kind not in TRANSPORTS:
            return data
        transport = TRANSPORTS[kind]
        same_kind = self.instance is not None and self.instance.kind == kind
        try:  # stored secrets opened: what is checked and saved is the clear value
            stored = unseal(self.instance.config, references=False) if same_kind else {}
        except SecretError as exc:
            self.add_error(None, str(exc))
            return data
        # Settings the form does not show (e.g. a PagerDuty endpoint set in the admin) stay.
        config = {k: v for k, v in stored.items() if k not in transport.fields}
        for name in transport.fields:
            value = (data.get(setting_field(kind, name)) or "").strip()
            if value == MASK and name in transport.secret_fields:
                if not stored.get(name):
                    self.add_error(setting_field(kind, name), "enter the secret")
                    continue
                value = stored[name]
            config[name] = value
        for name, message in transport(config).validate().items():
            field = setting_field(kind, name)
            self.add_error(field if field in self.fields else None, message)
        try:  # saving seals the secrets: say now, not with a 500, that it cannot
            seal(config, keys=SECRET_SETTINGS)
        except SecretError as exc:
            self.add_error(None, str(exc))
        data["config"] = config
        return data

    @transaction.atomic
    def save(self) -> Channel:
        channel = self.instance or Channel()
        kind = self.cleaned_data["kind"]
        if channel.kind != kind or not channel.enabled and self.cleaned_data["enabled"]:
            channel.disabled_reason = ""  # new settings: the old error is no longer the reason
        channel.name = self.cleaned_data["name"]
        channel.kind = kind
        channel.config = self.cleaned_data["config"]
        channel.enabled = self.cleaned_data["enabled"]
        created = channel.pk is None
        channel.save()
        if created and self.cleaned_data.get("notify_all"):
            channel.rules.add(*AlertRule.objects.all())
        return channel


DEFAULT_SILENCE = timedelta(hours=1)


class SilenceForm(forms.ModelForm):
    ends_at = forms.DateTimeField(
        label="Ends at (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        # A text input, not datetime-local: browsers show that in the user's locale (AM/PM),
        # and every time on these pages is 24-hour UTC.
        widget=forms.DateTimeInput(
            attrs={"placeholder": "YYYY-MM-DD HH:MM", "inputmode": "numeric"},
            format="%Y-%m-%d %H:%M",
        ),
        help_text="YYYY-MM-DD HH:MM, 24-hour, UTC.",
    )

    class Meta:
        model = Silence
        fields = ["cluster", "sentinel", "ends_at", "comment"]
        help_texts = {
            "cluster": "Silence every sentinel of a cluster…",
            "sentinel": "…or one sentinel.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"ends_at": timezone.now() + DEFAULT_SILENCE})
        super().__init__(*args, **kwargs)
        self.fields["cluster"].queryset = Cluster.objects.order_by("name")
        self.fields["sentinel"].queryset = Sentinel.objects.order_by("name")

    def clean_ends_at(self):
        ends_at = self.cleaned_data["ends_at"]
        if ends_at <= timezone.now():
            raise ValidationError("the end time is in the past")
        return ends_at

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("cluster")) == bool(data.get("sentinel")):
            raise ValidationError("choose a cluster or a sentinel (exactly one)")
        return data


# The one tuning field that applies to each rule kind.
RULE_TUNING = {
    alerts.STALLED: "for_s",
    alerts.DEGRADED: "for_s",
    alerts.P99_SLO: "windows",
    alerts.LOSS_RATE: "threshold",
}


class RuleForm(forms.ModelForm):
    channels = forms.ModelMultipleChoiceField(
        queryset=Channel.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = AlertRule
        fields = [
            "enabled",
            "severity",
            "for_s",
            "windows",
            "threshold",
            "resolves_itself",
            "resolve_after_s",
        ]
        labels = {
            "for_s": "For (seconds)",
            "windows": "Consecutive one-minute windows",
            "threshold": "Threshold (% lost)",
            "resolve_after_s": "Resolve after clear for (seconds)",
            "resolves_itself": "Resolves by itself once clear",
        }
        help_texts = {
            "for_s": "how long the verdict must last before an incident opens",
            "windows": "how many one-minute windows in a row must be over the SLO",
            "threshold": "lost / acknowledged over the verdict window",
            "resolve_after_s": "the hold-down: an incident resolves once clear this long",
            "resolves_itself": "off: the incident stays open until a person resolves it (a "
            "violation's default: records were lost or duplicated)",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keep = RULE_TUNING.get(self.instance.kind)
        for name in ("for_s", "windows", "threshold"):
            if name != keep:
                del self.fields[name]
        self.fields["channels"].initial = list(self.instance.channels.all())

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("for_s", "windows"):
            if name in self.fields and data.get(name) is not None and data[name] < 1:
                self.add_error(name, "must be at least 1")
        threshold = data.get("threshold")
        if "threshold" in self.fields and threshold is not None and not 0 < threshold <= 100:
            self.add_error("threshold", "a percentage above 0, at most 100")
        return data

    def save(self, commit: bool = True) -> AlertRule:
        rule = super().save(commit=commit)
        rule.channels.set(self.cleaned_data["channels"])
        return rule


# The longest group name pattern: Kafka's group ids have no limit, but a glob longer than this
# is a paste gone wrong.
PATTERN_MAX = 255


class GroupRuleForm(forms.ModelForm):
    """A cluster's consumer group rule. A new rule (``new=True``) chooses its kind and takes
    the kind's severity and whether it resolves by itself (``GroupRule.apply_defaults``); an
    existing one keeps its kind and edits the rest."""

    channels = forms.ModelMultipleChoiceField(
        queryset=Channel.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = GroupRule
        fields = [
            "kind",
            "enabled",
            "severity",
            "include",
            "exclude",
            "for_s",
            "resolves_itself",
            "resolve_after_s",
        ]
        labels = {
            "include": "Groups (patterns)",
            "exclude": "Except groups (patterns)",
            "for_s": "For (seconds)",
            "resolve_after_s": "Resolve after clear for (seconds)",
            "resolves_itself": "Resolves by itself once clear",
        }
        help_texts = {
            "include": "glob patterns over group names, separated by spaces or commas: * is "
            "every group of the cluster, billing-* every group whose name starts with billing-",
            "exclude": "groups matching one of these are never watched by this rule",
            "for_s": "stopped or stalled: how long before an incident opens",
            "resolves_itself": "off: the incident stays open until a person resolves it (the "
            "default for records lost, skipped or rewound)",
        }

    def __init__(self, *args: Any, new: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new
        if new:
            for name in ("enabled", "severity", "resolves_itself", "resolve_after_s"):
                del self.fields[name]
            self.fields["for_s"].required = False
            self.fields[
                "for_s"
            ].help_text = "stopped or stalled only: how long before an incident opens (empty: 300)"
        else:
            del self.fields["kind"]
            self.fields["channels"].initial = list(self.instance.channels.all())
            if self.instance.kind != group_alerts.GROUP_STOPPED:
                del self.fields["for_s"]

    def _patterns(self, name: str, required: bool) -> str:
        text = self.cleaned_data.get(name, "") or ""
        found = group_alerts.patterns(text)
        if required and not found:
            raise ValidationError("at least one pattern: * watches every group of the cluster")
        long = [p for p in found if len(p) > PATTERN_MAX]
        if long:
            raise ValidationError(f"a pattern is at most {PATTERN_MAX} characters")
        return " ".join(found)

    def clean_include(self) -> str:
        return self._patterns("include", required=True)

    def clean_exclude(self) -> str:
        return self._patterns("exclude", required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind") if self.new else self.instance.kind
        for_s = data.get("for_s")
        if kind == group_alerts.GROUP_STOPPED and for_s is not None and for_s < 1:
            self.add_error("for_s", "must be at least 1")
        return data

    def save(self, commit: bool = True) -> GroupRule:
        rule = super().save(commit=False)
        if self.new:
            for_s = self.cleaned_data.get("for_s")
            rule.apply_defaults()
            if rule.kind == group_alerts.GROUP_STOPPED and for_s:
                rule.for_s = for_s
        elif rule.kind != group_alerts.GROUP_STOPPED:
            rule.for_s = 0
        rule.save()
        rule.channels.set(self.cleaned_data["channels"])
        return rule
