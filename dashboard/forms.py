"""Forms of the Manage pages: clusters, profiles and sentinels.

Client properties are edited as ``key=value`` lines. Validation is librdkafka's own (the models'
``clean()`` builds the real client through ``workers.engine.profiles``), so an invalid property or an
impossible combination (``acks=0`` with idempotence) shows librdkafka's message next to the
field. A cluster's bootstrap servers must answer a metadata request within
``REACHABILITY_TIMEOUT_S``. Saving runs in one transaction: nothing is saved half-way.

Secrets never reach the browser: an edit form shows ``key=******`` for them, and a submitted
``******`` keeps the stored value.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction

from dashboard.models import Cluster, Profile, Sentinel
from workers.clients.validation import validate_properties
from workers.clientsecrets import SecretError, is_reference, is_sealed
from workers.engine.codec import HEADER_SIZE
from workers.engine.profiles import EXACTLY_ONCE, TRANSACTIONAL
from workers.engine.redact import MASK, is_secret_key

REACHABILITY_TIMEOUT_S = 3.0
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})$")
MIN_INSYNC_REPLICAS = 2  # what the sentinel sets on the topics it creates (SentinelSpec)


def parse_properties(text: str) -> dict[str, str]:
    """``key=value`` lines to a dict; blank lines and ``#`` comments are skipped.

    Raises ValidationError naming the offending line.
    """
    props: dict[str, str] = {}
    errors = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            errors.append(f"line {number}: expected key=value, got {line!r}")
        elif key in props:
            errors.append(f"line {number}: {key} is set twice")
        else:
            props[key] = value
    if errors:
        raise ValidationError(errors)
    return props


def format_properties(props: dict[str, Any] | None) -> str:
    """The textarea text for ``props``, secrets masked."""
    return "\n".join(
        f"{key}={MASK if is_secret_key(key) else value}" for key, value in (props or {}).items()
    )


def masked_text(text: str) -> str:
    """Submitted properties as shown back: secret values (passwords, JAAS configs) masked."""
    out = []
    for line in text.splitlines():
        key, sep, _ = line.partition("=")
        out.append(f"{key}={MASK}" if sep and is_secret_key(key.strip()) else line)
    return "\n".join(out)


class PropertiesField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "properties"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "One key=value per line, librdkafka property names.")
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, dict):
            return format_properties(value)
        # Submitted text shown back with an error: a secret typed in it is not echoed either.
        return "" if value is None else masked_text(str(value))

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        if isinstance(value, dict):
            return value
        return parse_properties(super().to_python(value) or "")

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.prepare_value(initial) != (data or "")


def keep_masked_secrets(submitted: dict[str, str], stored: dict[str, Any]) -> dict[str, Any]:
    """A submitted ``******`` for a secret means "unchanged": put the stored value back. A
    ``******`` with nothing stored (a form shown back with an error masks what was typed)
    asks for the secret again."""
    lost = [k for k, v in submitted.items() if v == MASK and is_secret_key(k) and k not in stored]
    if lost:
        raise ValidationError(
            [f"{key}: type the secret again (it is never sent back to the browser)" for key in lost]
        )
    return {
        key: stored[key] if value == MASK and is_secret_key(key) and key in stored else value
        for key, value in submitted.items()
    }


OIDC_ENDPOINT = "sasl.oauthbearer.token.endpoint.url"


def oidc_errors(props: dict[str, Any]) -> list[str]:
    """What librdkafka accepts but cannot work under ``sasl.oauthbearer.method=oidc``: a token
    endpoint that is not an https URL (http only on loopback: the client secret crosses it)."""
    if str(props.get("sasl.oauthbearer.method", "")).lower() != "oidc":
        return []
    url = str(props.get(OIDC_ENDPOINT, ""))
    if not url or is_sealed(url) or is_reference(url):
        return []  # a missing one: librdkafka's own message says it is mandatory
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or parts.scheme not in ("https", "http"):
        return [f"{OIDC_ENDPOINT}: expected the identity provider's token URL, https://..."]
    if parts.scheme == "http" and not loopback:
        return [f"{OIDC_ENDPOINT}: must be https (the client secret is sent to it)"]
    return []


def _property_errors(kind: str, props: dict[str, Any]) -> list[str]:
    return [f"{key}: {message}" for key, message in validate_properties(kind, props).items()]


def combined_errors(cluster: Cluster, profile: Profile) -> list[str]:
    """librdkafka's errors for a cluster's properties combined with a profile's."""
    try:
        client, data = cluster.client_config(), profile.to_data(opened=True)
    except SecretError as exc:
        return [str(exc)]
    errors = []
    for kind, own in (("producer", data.producer), ("consumer", data.consumer)):
        errors += [f"{kind}: {e}" for e in _property_errors(kind, {**client, **own})]
    return errors


def reachability_error(bootstrap: str, client_properties: dict[str, Any]) -> str | None:
    """librdkafka's message when no broker answers a metadata request in time, else None."""
    from confluent_kafka import KafkaException

    from workers.clients.kafka import list_topics_in_words

    conf = {**client_properties, "bootstrap.servers": bootstrap, "log_level": 0}
    try:
        list_topics_in_words(conf, REACHABILITY_TIMEOUT_S)
    except (KafkaException, ValueError, TypeError) as exc:
        error = exc.args[0] if exc.args else exc
        message = getattr(error, "str", lambda: str(error))()
        return f"no broker answered within {REACHABILITY_TIMEOUT_S:g} s: {message}"
    return None


class AtomicModelForm(forms.ModelForm):
    """A ModelForm whose save() is one transaction."""

    def save(self, commit: bool = True) -> Any:
        with transaction.atomic():
            return super().save(commit=commit)


class ClusterForm(AtomicModelForm):
    client_properties = PropertiesField(
        label="Client properties",
        help_text="Shared by every client of this cluster (security.protocol, sasl.*, ssl.*); "
        "one key=value per line.",
    )

    class Meta:
        model = Cluster
        fields = ["name", "bootstrap_servers", "client_properties"]
        help_texts = {"bootstrap_servers": "host:port, comma separated"}

    def clean_bootstrap_servers(self) -> str:
        entries = [e.strip() for e in self.cleaned_data["bootstrap_servers"].split(",")]
        entries = [e for e in entries if e]
        bad = [
            e for e in entries if not HOST_PORT.match(e) or not 0 < int(e.rsplit(":", 1)[1]) < 65536
        ]
        if not entries or bad:
            raise ValidationError(f"expected host:port entries, got {', '.join(bad) or 'nothing'}")
        return ",".join(entries)

    def clean_client_properties(self) -> dict[str, Any]:
        stored = self.instance.client_properties if self.instance.pk else {}
        props = keep_masked_secrets(self.cleaned_data["client_properties"], stored)
        errors = oidc_errors(props)
        if errors:
            raise ValidationError(errors)
        return props

    def _post_clean(self) -> None:
        super()._post_clean()  # the model's clean(): librdkafka validates the properties
        if self.errors:
            return
        if self.instance.pk:
            for sentinel in self.instance.sentinels.select_related("profile"):
                for error in combined_errors(self.instance, sentinel.profile):
                    self.add_error(
                        "client_properties", f"with sentinel {sentinel.name}'s profile: {error}"
                    )
            if self.errors:
                return
        error = reachability_error(self.instance.bootstrap_servers, self.instance.client_config())
        if error:
            self.add_error("bootstrap_servers", error)


class ProfileForm(AtomicModelForm):
    producer_properties = PropertiesField(label="Producer properties")
    consumer_properties = PropertiesField(label="Consumer properties")

    class Meta:
        model = Profile
        fields = [
            "name",
            "semantic",
            "commit_strategy",
            "producer_properties",
            "consumer_properties",
        ]

    def clean_producer_properties(self) -> dict[str, Any]:
        stored = self.instance.producer_properties if self.instance.pk else {}
        return keep_masked_secrets(self.cleaned_data["producer_properties"], stored)

    def clean_consumer_properties(self) -> dict[str, Any]:
        stored = self.instance.consumer_properties if self.instance.pk else {}
        return keep_masked_secrets(self.cleaned_data["consumer_properties"], stored)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        semantic, strategy = data.get("semantic"), data.get("commit_strategy")
        if semantic and strategy and (semantic == EXACTLY_ONCE) != (strategy == TRANSACTIONAL):
            self.add_error(
                "commit_strategy",
                "exactly-once needs the transactional strategy, and the transactional strategy "
                "is exactly-once only",
            )
        return data

    def _post_clean(self) -> None:
        if "semantic" in self.errors or "commit_strategy" in self.errors:
            return  # the model's clean() needs both to build the profile
        super()._post_clean()  # the model's clean(): librdkafka validates both property sets
        if self.errors or not self.instance.pk:
            return
        for sentinel in self.instance.sentinels.select_related("cluster"):
            for error in combined_errors(sentinel.cluster, self.instance):
                field = (
                    "producer_properties" if error.startswith("producer") else "consumer_properties"
                )
                self.add_error(
                    field, f"with cluster {sentinel.cluster.name} ({sentinel.name}): {error}"
                )


class SentinelForm(AtomicModelForm):
    class Meta:
        model = Sentinel
        fields = [
            "name",
            "cluster",
            "profile",
            "topic",
            "partitions",
            "replication_factor",
            "rate_per_partition",
            "record_size",
            "grace_seconds",
            "slo_p99_ms",
            "hosting",
            "enabled",
        ]
        labels = {"slo_p99_ms": "SLO p99 (ms)", "rate_per_partition": "Rate per partition"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["hosting"].required = False  # left out: automatic

    def clean_hosting(self) -> str:
        return self.cleaned_data.get("hosting") or "auto"

    def clean_topic(self) -> str:
        topic = self.cleaned_data["topic"].strip()
        if not TOPIC_NAME.match(topic) or topic in {".", ".."}:
            raise ValidationError(
                "a Kafka topic name is 1-249 characters of letters, digits, '.', '_' and '-'"
            )
        return topic

    def clean_partitions(self) -> int:
        value = self.cleaned_data["partitions"]
        if value < 1:
            raise ValidationError("a topic needs at least one partition")
        return value

    def clean_replication_factor(self) -> int:
        value = self.cleaned_data["replication_factor"]
        if value < MIN_INSYNC_REPLICAS:
            raise ValidationError(
                f"the sentinel creates its topic with min.insync.replicas={MIN_INSYNC_REPLICAS}: "
                f"with {value} replica(s) every acks=all write would fail"
            )
        return value

    def clean_rate_per_partition(self) -> float:
        value = self.cleaned_data["rate_per_partition"]
        if value < 0:
            raise ValidationError("records per second cannot be negative (0 means unthrottled)")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        cluster, profile = data.get("cluster"), data.get("profile")
        if cluster and profile:
            for error in combined_errors(cluster, profile):
                self.add_error("profile", f"with cluster {cluster.name}: {error}")
        for name in ("grace_seconds", "slo_p99_ms"):
            if data.get(name) is not None and data[name] <= 0:
                self.add_error(name, "must be greater than zero")
        if data.get("record_size") is not None and data["record_size"] < HEADER_SIZE:
            self.add_error(
                "record_size", f"a sentinel record needs at least {HEADER_SIZE} bytes (its header)"
            )
        return data
