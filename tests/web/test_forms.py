"""Manage forms: key=value properties checked by librdkafka, reachability, secrets kept back."""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ValidationError

from dashboard import forms
from dashboard.forms import ClusterForm, ProfileForm, SentinelForm, parse_properties
from dashboard.models import Cluster, Profile, Sentinel, ensure_defaults
from workers.clientsecrets import unseal

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fast_reachability(monkeypatch):
    monkeypatch.setattr(forms, "REACHABILITY_TIMEOUT_S", 0.5)


def profile_data(**overrides):
    data = {
        "name": "alo-acks1",
        "semantic": "at-least-once",
        "commit_strategy": "process-before-commit",
        "producer_properties": "acks=1\nenable.idempotence=false",
        "consumer_properties": "enable.auto.commit=false",
    }
    data.update(overrides)
    return data


def test_it_parses_key_value_lines_skipping_blanks_and_comments():
    text = "# producer\nacks = all\n\nlinger.ms=5\nsasl.password=a=b\n"
    assert parse_properties(text) == {"acks": "all", "linger.ms": "5", "sasl.password": "a=b"}


def test_it_names_the_line_of_a_malformed_or_repeated_property():
    with pytest.raises(ValidationError) as exc:
        parse_properties("acks=all\nlinger.ms\nacks=1")
    assert exc.value.messages == [
        "line 2: expected key=value, got 'linger.ms'",
        "line 3: acks is set twice",
    ]


def test_it_shows_librdkafkas_message_next_to_an_unknown_property():
    form = ProfileForm(profile_data(producer_properties="acks=all\nlinger.mss=5"))
    assert not form.is_valid()
    assert form.errors["producer_properties"] == [
        'linger.mss: No such configuration property: "linger.mss"'
    ]
    assert not Profile.objects.filter(name="alo-acks1").exists()


def test_it_refuses_acks_0_with_idempotence_with_librdkafkas_message():
    form = ProfileForm(profile_data(producer_properties="acks=0\nenable.idempotence=true"))
    assert not form.is_valid()
    (message,) = form.errors["producer_properties"]
    assert "`acks` must be set to `all` when `enable.idempotence` is true" in message


def test_it_says_what_to_use_instead_of_a_java_only_key():
    form = ProfileForm(profile_data(consumer_properties="sasl.jaas.config=x"))
    assert not form.is_valid()
    assert "librdkafka takes sasl.mechanism" in form.errors["consumer_properties"][0]


def test_it_refuses_a_commit_strategy_that_contradicts_the_semantic():
    form = ProfileForm(profile_data(semantic="exactly-once"))
    assert not form.is_valid()
    assert "exactly-once needs the transactional strategy" in form.errors["commit_strategy"][0]


def test_it_saves_a_valid_profile():
    form = ProfileForm(profile_data())
    assert form.is_valid(), form.errors
    profile = form.save()
    assert profile.producer_properties == {"acks": "1", "enable.idempotence": "false"}


def test_it_never_sends_a_stored_secret_back_and_keeps_it_when_unchanged(settings):
    cluster = Cluster.objects.create(
        name="secure",
        bootstrap_servers="127.0.0.1:9092",
        client_properties={"sasl.password": "hunter2", "client.id": "ds"},
    )
    form = ClusterForm(instance=cluster)
    rendered = str(form["client_properties"])
    assert "hunter2" not in rendered
    assert "sasl.password=******" in rendered
    data = {
        "name": "secure",
        "bootstrap_servers": "127.0.0.1:9092",
        "client_properties": "sasl.password=******\nclient.id=ds2",
    }
    form = ClusterForm(data, instance=cluster)
    form.is_valid()  # the reachability check may fail; the properties are cleaned before it
    kept = form.cleaned_data["client_properties"]
    assert kept["sasl.password"] == cluster.client_properties["sasl.password"] != "hunter2"
    assert unseal(kept) == {"sasl.password": "hunter2", "client.id": "ds2"}


def test_it_refuses_a_bootstrap_list_that_is_not_host_port():
    form = ClusterForm({"name": "x", "bootstrap_servers": "kafka1, :9092", "client_properties": ""})
    assert not form.is_valid()
    assert "expected host:port entries" in form.errors["bootstrap_servers"][0]


@pytest.mark.usefixtures("fast_reachability")
def test_it_shows_unreachable_bootstrap_servers_inline_and_saves_nothing():
    form = ClusterForm(
        {"name": "gone", "bootstrap_servers": f"127.0.0.1:{closed_port()}", "client_properties": ""}
    )
    assert not form.is_valid()
    (message,) = form.errors["bootstrap_servers"]
    assert message.startswith("no broker answered within 0.5 s: ")
    assert "Failed to get metadata" in message
    assert not Cluster.objects.filter(name="gone").exists()


@pytest.mark.kafka
def test_it_saves_a_cluster_whose_brokers_answer(settings):
    form = ClusterForm(
        {
            "name": "reachable",
            "bootstrap_servers": settings.KAFKA_BOOTSTRAP_SERVERS,
            "client_properties": "client.id=delivery-sentinel",
        }
    )
    assert form.is_valid(), form.errors
    cluster = form.save()
    assert cluster.client_properties == {"client.id": "delivery-sentinel"}


def sentinel_data(cluster, profile, **overrides):
    data = {
        "name": "alo-2",
        "cluster": cluster.pk,
        "profile": profile.pk,
        "topic": "sentinel.alo-2",
        "partitions": 3,
        "replication_factor": 3,
        "rate_per_partition": 10,
        "record_size": 64,
        "grace_seconds": 10,
        "slo_p99_ms": 1000,
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_it_refuses_impossible_sentinel_settings_field_by_field():
    ensure_defaults()
    cluster, profile = Cluster.objects.get(), Profile.objects.get(name="at-least-once")
    form = SentinelForm(
        sentinel_data(
            cluster, profile, topic="bad topic!", replication_factor=1, record_size=8, partitions=0
        )
    )
    assert not form.is_valid()
    assert set(form.errors) == {"topic", "replication_factor", "record_size", "partitions"}
    assert "min.insync.replicas=2" in form.errors["replication_factor"][0]


def test_it_checks_the_cluster_and_profile_properties_together():
    ensure_defaults()
    cluster = Cluster.objects.create(
        name="inflight",
        bootstrap_servers="127.0.0.1:9092",
        client_properties={"max.in.flight.requests.per.connection": "10"},
    )
    profile = Profile.objects.get(name="at-least-once")  # enable.idempotence=true
    form = SentinelForm(sentinel_data(cluster, profile))
    assert not form.is_valid()
    (message,) = form.errors["profile"]
    assert message.startswith("with cluster inflight: producer: ")
    assert "must be set <= 5 when `enable.idempotence` is true" in message


def test_it_refuses_a_profile_edit_that_breaks_a_sentinel_using_it():
    ensure_defaults()
    cluster = Cluster.objects.get()
    cluster.client_properties = {"acks": "1"}
    cluster.save()
    profile = Profile.objects.get(name="at-most-once")
    form = ProfileForm(
        profile_data(
            name=profile.name,
            semantic="at-most-once",
            commit_strategy="commit-before-process",
            producer_properties="enable.idempotence=true",
        ),
        instance=profile,
    )
    assert not form.is_valid()
    assert "with cluster local (at-most-once)" in form.errors["producer_properties"][0]
    profile.refresh_from_db()
    assert profile.producer_properties["enable.idempotence"] == "false"


def test_it_creates_a_sentinel():
    ensure_defaults()
    cluster, profile = Cluster.objects.get(), Profile.objects.get(name="at-least-once")
    form = SentinelForm(sentinel_data(cluster, profile))
    assert form.is_valid(), form.errors
    assert form.save().topic == "sentinel.alo-2"
    assert Sentinel.objects.count() == 4


OIDC = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "OAUTHBEARER",
    "sasl.oauthbearer.method": "oidc",
    "sasl.oauthbearer.client.id": "delivery-sentinel",
    "sasl.oauthbearer.client.secret": "s3cr3t-oidc",
    "sasl.oauthbearer.token.endpoint.url": "https://idp.example.com/oauth2/token",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sasl.oauthbearer.token.endpoint.url": "idp.example.com/token"}, "expected the"),
        ({"sasl.oauthbearer.token.endpoint.url": "http://idp.example.com/t"}, "must be https"),
        ({"sasl.oauthbearer.token.endpoint.url": None}, "is mandatory when"),
    ],
)
def test_it_validates_an_oauthbearer_oidc_configuration(change, message):
    props = {k: v for k, v in {**OIDC, **change}.items() if v is not None}
    text = "\n".join(f"{k}={v}" for k, v in props.items())
    form = ClusterForm(
        {"name": "cloud", "bootstrap_servers": "127.0.0.1:1", "client_properties": text}
    )
    assert not form.is_valid()
    assert message in " ".join(form.errors["client_properties"]), form.errors


def test_it_accepts_an_oauthbearer_oidc_configuration_up_to_the_reachability_check():
    text = "\n".join(f"{k}={v}" for k, v in OIDC.items())
    form = ClusterForm(
        {"name": "cloud", "bootstrap_servers": "127.0.0.1:1", "client_properties": text}
    )
    assert not form.is_valid()
    assert "client_properties" not in form.errors and "bootstrap_servers" in form.errors
