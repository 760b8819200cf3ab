"""Client secrets at rest: sealed with Fernet or given as references, never stored, dumped,
shown or logged in clear (``workers.clientsecrets``, ``dashboard.models.fields``)."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from dashboard.models import ApiToken, Channel, Cluster, Profile, Sentinel, ensure_defaults
from dashboard.oncall.transports import transport_for
from tests.support.database import stored_text
from workers.clientsecrets import (
    SecretError,
    generate_key,
    is_sealed,
    seal,
    unseal,
    unseal_tokens,
)
from workers.engine.profiles import Profile as ProfileData
from workers.engine.spec import SentinelSpec
from workers.runtime.run import open_spec

PASSWORD = "correct-horse-7f3a9c2e"  # distinctive: grepped for in bytes, pages and logs
KEY_PASSWORD = "pem-key-pass-51d0b8"
HOOK_URL = "https://hooks.example.com/services/T0KEN-c0ffee-91ab"  # an on-call webhook's
ROUTING_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"  # a PagerDuty integration key

# On SQLite too (both_databases): secrets sealed on their way into the database (save,
# QuerySet.update, bulk_create), what each engine keeps on disk, and the migrations that seal
# and open existing rows.
pytestmark = pytest.mark.both_databases


def test_it_seals_secrets_and_opens_them_again_leaving_other_properties_alone():
    sealed = seal({"sasl.password": PASSWORD, "sasl.mechanism": "SCRAM-SHA-512", "acks": "all"})
    assert is_sealed(sealed["sasl.password"]) and PASSWORD not in str(sealed)
    assert sealed["sasl.mechanism"] == "SCRAM-SHA-512" and sealed["acks"] == "all"
    assert seal(sealed) == sealed  # idempotent: a token is not sealed twice
    assert unseal(sealed)["sasl.password"] == PASSWORD


def test_it_resolves_env_and_file_references_where_the_client_is_built(tmp_path, monkeypatch):
    secret_file = tmp_path / "key-password"
    secret_file.write_text(KEY_PASSWORD + "\n")
    monkeypatch.setenv("DS_TEST_KAFKA_PASSWORD", PASSWORD)
    props = {
        "sasl.password": "env:DS_TEST_KAFKA_PASSWORD",
        "ssl.key.password": f"file:{secret_file}",
    }
    assert seal(props) == props  # references are stored as given: they hold no secret
    assert unseal(props) == {"sasl.password": PASSWORD, "ssl.key.password": KEY_PASSWORD}
    monkeypatch.delenv("DS_TEST_KAFKA_PASSWORD")
    with pytest.raises(SecretError, match="sasl.password: environment variable 'DS_TEST_KAFKA"):
        unseal(props)


def test_it_says_which_key_is_missing_or_wrong_without_showing_the_value(monkeypatch):
    sealed = seal({"sasl.password": PASSWORD})
    monkeypatch.delenv("DS_SECRETS_KEY_FILE", raising=False)
    monkeypatch.setenv("DS_SECRETS_KEY", generate_key())
    with pytest.raises(SecretError, match="none of the keys in DS_SECRETS_KEY opens") as wrong:
        unseal(sealed)
    monkeypatch.delenv("DS_SECRETS_KEY")
    with pytest.raises(SecretError, match="DS_SECRETS_KEY is not set") as missing:
        seal({"sasl.password": PASSWORD})
    assert PASSWORD not in str(wrong.value) + str(missing.value)


def test_the_sentinel_process_opens_its_spec_which_holds_only_sealed_values(monkeypatch):
    monkeypatch.setenv("DS_TEST_SSL_KEY_PASSWORD", KEY_PASSWORD)
    profile = ProfileData(
        "p", "at-least-once", producer={"ssl.key.password": "env:DS_TEST_SSL_KEY_PASSWORD"}
    )
    spec = SentinelSpec(
        id=1,
        name="s",
        profile=profile,
        bootstrap_servers="127.0.0.1:9",
        topic="t",
        client=seal({"sasl.password": PASSWORD, "security.protocol": "SASL_SSL"}),
    )
    assert PASSWORD not in str(spec.to_dict())
    opened = open_spec(spec)
    assert opened.producer_conf()["sasl.password"] == PASSWORD
    assert opened.producer_conf()["ssl.key.password"] == KEY_PASSWORD


@pytest.mark.django_db(transaction=True)
def test_it_never_writes_a_secret_in_clear_to_the_database_file_or_a_dump():
    cluster = Cluster.objects.create(
        name="secured",
        bootstrap_servers="127.0.0.1:9093",
        client_properties={"sasl.username": "sentinel", "sasl.password": PASSWORD},
    )
    Profile.objects.create(
        name="with-key",
        semantic="at-least-once",
        commit_strategy="process-before-commit",
        producer_properties={"ssl.key.password": KEY_PASSWORD},
    )
    Cluster.objects.filter(pk=cluster.pk).update(client_properties={"sasl.password": PASSWORD})
    assert unseal(Cluster.objects.get(pk=cluster.pk).client_properties)["sasl.password"] == PASSWORD
    Channel.objects.create(name="hook", kind="webhook", config={"url": HOOK_URL})
    Channel.objects.bulk_create(
        [Channel(name="pager", kind="pagerduty", config={"routing_key": ROUTING_KEY})]
    )
    assert transport_for(Channel.objects.get(name="pager")).config["routing_key"] == ROUTING_KEY
    if connection.vendor == "sqlite":
        connection.close()  # everything on disk: nothing left in a connection's cache
        db_file = Path(connection.settings_dict["NAME"])
        data = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    else:  # a server's files are its own: read every row as the server stores it
        tables = connection.introspection.table_names()
        data = stored_text([t for t in tables if t.startswith("dashboard_")])
    assert b"secured" in data  # what was read is what was written
    for secret in (PASSWORD, KEY_PASSWORD, "T0KEN-c0ffee", ROUTING_KEY):
        assert secret.encode() not in data, secret
    dump = io.StringIO()
    call_command("dumpdata", "dashboard", stdout=dump)
    assert "secured" in dump.getvalue() and "fernet:" in dump.getvalue()
    assert "hooks.example.com" not in dump.getvalue()
    for secret in (PASSWORD, KEY_PASSWORD, "T0KEN-c0ffee", ROUTING_KEY):
        assert secret not in dump.getvalue(), secret


@pytest.mark.django_db
def test_pages_api_and_logs_never_show_a_configured_secret(client, alice, caplog):
    caplog.set_level(logging.DEBUG)
    ensure_defaults()
    cluster = Cluster.objects.get(name="local")
    cluster.client_properties = {"sasl.password": PASSWORD, "security.protocol": "PLAINTEXT"}
    cluster.save()
    sentinel = Sentinel.objects.first()
    client.force_login(alice)
    token = ApiToken.issue(alice, "reader", "read")
    hook = Channel.objects.create(name="hook", kind="webhook", config={"url": HOOK_URL})
    pager = Channel.objects.create(
        name="pager", kind="pagerduty", config={"routing_key": ROUTING_KEY}
    )
    pages = [
        client.get("/manage/"),
        client.get(f"/manage/clusters/{cluster.pk}/"),
        client.get("/channels/"),
        client.get(f"/channels/{hook.pk}/"),
        client.get(f"/channels/{pager.pk}/"),
        client.get(f"/sentinels/{sentinel.pk}/"),
        client.get("/api/v1/clusters", HTTP_AUTHORIZATION=f"Bearer {token}"),
    ]
    for response in pages:
        assert response.status_code == 200
        for secret in (PASSWORD, "T0KEN-c0ffee", ROUTING_KEY):
            assert secret not in response.content.decode()
    assert "sasl.password=******" in pages[1].content.decode()
    # The channel list shows a masked form, as healthchecks does: enough to tell them apart.
    assert "url=https://hooks.example.com/******" in pages[2].content.decode()
    assert "routing_key=******8f90" in pages[2].content.decode()
    assert PASSWORD not in caplog.text and "T0KEN-c0ffee" not in caplog.text


FORMS_WITH_A_SECRET = {
    "cluster": (
        "/manage/clusters/new/",
        {
            "name": "c2",
            "bootstrap_servers": "127.0.0.1:9",
            "client_properties": f"sasl.password={PASSWORD}",
        },
        PASSWORD,
        Cluster,
    ),
    "channel": (
        "/channels/new/",
        {"name": "hook", "kind": "webhook", "webhook__url": HOOK_URL},
        "T0KEN-c0ffee",
        Channel,
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("form", FORMS_WITH_A_SECRET)
def test_a_form_refuses_a_secret_it_cannot_store_encrypted(form, client, alice, monkeypatch):
    path, data, secret, model = FORMS_WITH_A_SECRET[form]
    monkeypatch.delenv("DS_SECRETS_KEY_FILE", raising=False)
    monkeypatch.delenv("DS_SECRETS_KEY", raising=False)
    client.force_login(alice)
    existing = model.objects.count()
    response = client.post(path, data)
    html = response.content.decode()
    assert response.status_code == 200 and "DS_SECRETS_KEY is not set" in html
    assert secret not in html and model.objects.count() == existing


@pytest.mark.django_db
def test_existing_rows_are_sealed_by_the_migration_and_opened_by_its_reverse():
    migration = importlib.import_module("dashboard.migrations.0007_client_secrets")
    seal_existing = migration.Migration.operations[0].code
    with connection.cursor() as cursor:  # a row as 0006 stored it: the secret in clear
        cursor.execute(
            "INSERT INTO dashboard_cluster (name, bootstrap_servers, client_properties, is_local,"
            " created) VALUES (%s, %s, %s, %s, %s)",
            ["legacy", "h:1", json.dumps({"sasl.password": PASSWORD}), False, "2026-01-01"],
        )
    seal_existing(apps, None)
    stored = Cluster.objects.get(name="legacy").client_properties["sasl.password"]
    assert is_sealed(stored) and unseal({"sasl.password": stored})["sasl.password"] == PASSWORD
    seal_existing(apps, None)  # a second run changes nothing
    assert Cluster.objects.get(name="legacy").client_properties["sasl.password"] == stored
    assert unseal_tokens({"sasl.password": stored, "x": "env:Y"}) == (
        {"sasl.password": PASSWORD, "x": "env:Y"},
        1,
    )


@pytest.mark.django_db
def test_existing_channels_are_sealed_by_migration_0009_and_opened_by_its_reverse(settings):
    migration = importlib.import_module("dashboard.migrations.0009_channel_secrets")
    sealing = migration.Migration.operations[0]
    with connection.cursor() as cursor:  # a row as 0008 stored it: the webhook URL in clear
        cursor.execute(
            "INSERT INTO dashboard_channel (name, kind, config, enabled, disabled_reason,"
            " created) VALUES (%s, %s, %s, %s, %s, %s)",
            ["legacy", "webhook", json.dumps({"url": HOOK_URL}), True, "", "2026-01-01"],
        )

    def stored() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT config FROM dashboard_channel WHERE name = 'legacy'")
            return json.loads(cursor.fetchone()[0])["url"]

    # Both run on the models as of 0008 (config a plain JSONField): forwards before the field
    # changes, backwards after it changed back.
    settings.MIGRATION_MODULES = {}  # the test database is built without them: load them
    before = MigrationLoader(connection).project_state(("dashboard", "0008_sentinel_hosting"))
    sealing.code(before.apps, None)
    sealed = stored()
    assert is_sealed(sealed) and transport_for(Channel.objects.get()).config["url"] == HOOK_URL
    sealing.code(before.apps, None)  # a second run changes nothing
    assert stored() == sealed
    sealing.reverse_code(before.apps, None)
    assert stored() == HOOK_URL


@pytest.mark.django_db(transaction=True)
def test_rotating_the_key_reencrypts_every_secret_under_the_new_key(monkeypatch):
    Cluster.objects.create(
        name="r", bootstrap_servers="h:1", client_properties={"sasl.password": PASSWORD}
    )
    Channel.objects.create(name="hook", kind="webhook", config={"url": HOOK_URL})
    old_key = Path(os.environ["DS_SECRETS_KEY_FILE"]).read_text().strip()
    new_key = generate_key()
    monkeypatch.delenv("DS_SECRETS_KEY_FILE")
    monkeypatch.setenv("DS_SECRETS_KEY", f"{new_key},{old_key}")
    out = io.StringIO()
    call_command("secrets", "rotate", stdout=out)
    assert out.getvalue().startswith("2 secret(s) re-encrypted")
    monkeypatch.setenv("DS_SECRETS_KEY", new_key)  # the old key dropped
    assert Cluster.objects.get(name="r").client_config()["sasl.password"] == PASSWORD
    assert transport_for(Channel.objects.get(name="hook")).config["url"] == HOOK_URL


def test_the_scenario_lab_uses_secrets_opened_and_hands_its_probes_them_sealed():
    from workers.lab.brokeractions import BrokerActions
    from workers.lab.limits import Timeouts

    stored = seal({"sasl.password": PASSWORD, "security.protocol": "SASL_SSL"})
    lab = BrokerActions(
        bootstrap_servers="127.0.0.1:9",
        local=None,
        cluster_name="c",
        client=stored,
        timeouts=Timeouts(),
    )
    assert lab.client["sasl.password"] == PASSWORD  # its own admin and read-back clients
    assert lab.stored_client == stored  # what goes into a probe's spec file
