"""Configuration: typed env helpers, settings that fail loudly, secret redaction, first admin."""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from workers.engine.env import (
    EnvError,
    envbool,
    envbootstrap,
    envchoice,
    envint,
    envlist,
    envredisurl,
    envsecret,
    envstr,
    redis_tls_options,
)
from workers.engine.redact import MASK, RedactingFilter, is_secret_key, redact_config, redact_text

ROOT = Path(__file__).resolve().parents[2]


def run_django(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` after ``django.setup()`` in a fresh interpreter with only ``env`` set."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django\ndjango.setup()\n{code}"],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- settings at import ------------------------------------------------------------------------

SUMMARY = """
import json
from django.conf import settings as s
print(json.dumps({
    "debug": s.DEBUG, "allowed_hosts": s.ALLOWED_HOSTS, "redis": s.REDIS_URL,
    "broker": s.CELERY_BROKER_URL, "backend": s.CELERY_RESULT_BACKEND,
    "kafka": s.KAFKA_BOOTSTRAP_SERVERS, "db": s.DATABASES["default"]["ENGINE"],
    "db_name": str(s.DATABASES["default"]["NAME"]), "secret": s.SECRET_KEY,
    "layer": s.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"],
}))
"""


def test_it_starts_with_zero_configuration():
    proc = run_django(SUMMARY)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["debug"] is True
    assert summary["allowed_hosts"] == ["127.0.0.1", "localhost"]
    assert summary["redis"] == summary["broker"] == summary["backend"] == summary["layer"]
    assert summary["redis"] == "redis://127.0.0.1:6379/0"
    assert summary["kafka"] == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert summary["db"] == "django.db.backends.sqlite3"
    assert summary["db_name"] == str(ROOT / "db.sqlite3")


def test_it_uses_redis_url_for_broker_backend_and_channel_layer():
    proc = run_django(SUMMARY, REDIS_URL="redis://10.0.0.5:6380/2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {summary["broker"], summary["backend"], summary["layer"]} == {"redis://10.0.0.5:6380/2"}


def test_it_parses_postgres_database_urls():
    proc = run_django(SUMMARY, DATABASE_URL="postgres://ds:pw@db.internal:5432/sentinel")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["db"] == "django.db.backends.postgresql"


def test_it_reads_the_secret_key_from_a_file_in_production(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("  prod-key-from-file\n")
    proc = run_django(SUMMARY, DJANGO_DEBUG="false", DJANGO_SECRET_KEY_FILE=str(key_file))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["debug"] is False
    assert summary["secret"] == "prod-key-from-file"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG: expected a boolean"),
        ({"DJANGO_DEBUG": "false"}, "DJANGO_SECRET_KEY: required when DJANGO_DEBUG is false"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL: expected a redis://"),
        ({"CELERY_BROKER_URL": "redis://"}, "CELERY_BROKER_URL: URL has no host"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "host:99999"}, "KAFKA_BOOTSTRAP_SERVERS: entry 'host:99999'"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "a:9092,b"}, "KAFKA_BOOTSTRAP_SERVERS: entry 'b'"),
        ({"DATABASE_URL": "bogus://x"}, "DATABASE_URL:"),
        ({"CHANNEL_LAYER_CAPACITY": "0"}, "CHANNEL_LAYER_CAPACITY: must be >= 1"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL: expected one of"),
    ],
)
def test_it_refuses_to_start_with_a_bad_value(env, expected):
    proc = run_django("print('started')", **env)
    assert proc.returncode != 0
    assert "started" not in proc.stdout
    assert expected in proc.stderr
    assert "EnvError" in proc.stderr


def test_it_does_not_echo_passwords_in_configuration_errors():
    proc = run_django("", REDIS_URL="http://:hunter2@cache.internal:6379/0")
    assert proc.returncode != 0
    assert "REDIS_URL" in proc.stderr
    assert "hunter2" not in proc.stderr
    assert f":{MASK}@cache.internal" in proc.stderr


def test_it_redacts_secrets_in_configured_logging():
    code = (
        "import logging\n"
        "log = logging.getLogger('dashboard.test')\n"
        "log.warning('connecting with %s', {'sasl.password': 'hunter2', 'acks': 'all'})\n"
        "log.warning('broker redis://:hunter3@cache:6379/0 token=hunter4')\n"
    )
    proc = run_django(code)
    assert proc.returncode == 0, proc.stderr
    assert "hunter" not in proc.stderr
    assert f"'sasl.password': '{MASK}'" in proc.stderr
    assert "'acks': 'all'" in proc.stderr
    assert f"token={MASK}" in proc.stderr


def test_json_logs_are_one_object_per_line_with_secrets_redacted_tracebacks_too():
    code = (
        "import logging\n"
        "log = logging.getLogger('dashboard.test')\n"
        "log.warning('connecting with %s', {'sasl.password': 'hunter2', 'acks': 'all'})\n"
        "try:\n"
        "    raise RuntimeError('redis://:hunter3@cache:6379/0 refused')\n"
        "except RuntimeError:\n"
        "    log.exception('sentinel failed')\n"
    )
    proc = run_django(code, LOG_FORMAT="json")
    assert proc.returncode == 0, proc.stderr
    assert "hunter" not in proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(line["level"], line["logger"]) for line in lines] == [
        ("WARNING", "dashboard.test"),
        ("ERROR", "dashboard.test"),
    ]
    assert f"'sasl.password': '{MASK}'" in lines[0]["message"]
    assert lines[1]["message"] == "sentinel failed"
    assert "RuntimeError" in lines[1]["exc_info"] and f":{MASK}@cache" in lines[1]["exc_info"]
    assert {"time", "process"} <= set(lines[0])


SEAL = "from workers.clientsecrets import seal; print(seal({'sasl.password': 'pw'})['sasl.password'][:7])"


def manage_py(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_command_by_hand_beside_bin_up_gets_the_stacks_keys_but_never_a_deployment(tmp_path):
    from workers.clientsecrets import generate_key

    (tmp_path / "secrets-key").write_text(generate_key())
    (tmp_path / "secret-key").write_text("local-" + "k" * 50)
    (tmp_path / "stack.env").write_text(
        "# Written by bin/up\n"
        f"DS_SECRETS_KEY_FILE={tmp_path / 'secrets-key'}\n"
        f"DJANGO_SECRET_KEY_FILE={tmp_path / 'secret-key'}\n"
        "DJANGO_DEBUG=false\n"
    )
    by_hand = manage_py("shell", "-c", SEAL, DS_LOCAL_DIR=str(tmp_path))
    assert by_hand.returncode == 0, by_hand.stderr
    assert by_hand.stdout.strip().splitlines()[-1] == "fernet:"
    # Nothing of the stack's: the same command fails as it always did.
    bare = manage_py("shell", "-c", SEAL, DS_LOCAL_DIR=str(tmp_path / "none"))
    assert "DS_SECRETS_KEY is not set" in bare.stderr
    # A deployment's own key decides: the local files are not read at all.
    deployed = manage_py(
        "shell", "-c", SEAL, DS_LOCAL_DIR=str(tmp_path), DJANGO_SECRET_KEY="d" * 50
    )
    assert "DS_SECRETS_KEY is not set" in deployed.stderr


def test_bin_up_writes_key_files_for_commands_by_hand_never_key_values(tmp_path):
    code = (
        "from workers.localkafka import devstack\n"
        "from workers import system\n"
        "d = devstack.local_defaults('127.0.0.1', 8000)\n"
        "system.write_local_stack_env(d)\n"
        "print(system.LOCAL_STACK_ENV.read_text())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DS_LOCAL_DIR": str(tmp_path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    written = dict(
        line.split("=", 1) for line in done.stdout.splitlines() if line and line[0] != "#"
    )
    assert written["DS_SECRETS_KEY_FILE"] == str(tmp_path / "secrets-key")
    assert written["DJANGO_SECRET_KEY_FILE"] == str(tmp_path / "secret-key")
    assert (tmp_path / "stack.env").stat().st_mode & 0o077 == 0
    key = (tmp_path / "secrets-key").read_text()
    assert key not in done.stdout


# What docs/deploy.md documents for production behind a TLS-terminating proxy.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "k7Vq-" + "x9" * 30,
    "ALLOWED_HOSTS": "sentinel.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://sentinel.example.com",
    "DJANGO_SECURE_COOKIES": "true",
    "DJANGO_TLS_PROXY": "true",
    "DJANGO_SSL_REDIRECT": "true",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DATABASE_URL": "postgres://sentinel:pw@db.internal:5432/sentinel",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "DS_SECRETS_KEY": "unused-by-the-checks",
}


def deploy_check(**env: str) -> subprocess.CompletedProcess[str]:
    return manage_py("check", "--deploy", "--fail-level", "WARNING", **env)


def test_manage_py_check_deploy_is_clean_under_the_documented_production_settings():
    done = deploy_check(**PRODUCTION_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    for name in PRODUCTION_ENV:
        assert name in deploy_doc, f"docs/deploy.md does not document {name}"


def test_manage_py_check_deploy_names_what_a_plain_http_setup_lacks():
    plain = {
        k: v
        for k, v in PRODUCTION_ENV.items()
        if k not in {"DJANGO_SSL_REDIRECT", "DJANGO_HSTS_SECONDS"}
    }
    done = deploy_check(**plain)
    assert done.returncode != 0
    assert "security.W004" in done.stderr and "security.W008" in done.stderr


# --- env helpers (workers.engine.env) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
        (" true ", True),
    ],
)
def test_it_parses_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("DS_FLAG", raw)
    assert envbool("DS_FLAG", not expected) is expected


@pytest.mark.parametrize("raw", [None, ""])
def test_it_uses_defaults_for_unset_or_empty_variables(monkeypatch, raw):
    if raw is None:
        monkeypatch.delenv("DS_X", raising=False)
    else:
        monkeypatch.setenv("DS_X", raw)
    assert envbool("DS_X", True) is True
    assert envint("DS_X", 7) == 7
    assert envstr("DS_X", "d") == "d"
    assert envlist("DS_X", "a, b") == ["a", "b"]
    assert envsecret("DS_X", None) is None


def test_it_names_the_variable_for_a_bad_boolean(monkeypatch):
    monkeypatch.setenv("DS_FLAG", "maybe")
    with pytest.raises(EnvError, match=r"^DS_FLAG: expected a boolean .* got 'maybe'$"):
        envbool("DS_FLAG", False)


def test_it_checks_integers_and_their_bounds(monkeypatch):
    monkeypatch.setenv("DS_N", "42")
    assert envint("DS_N", 0, min=1, max=42) == 42
    with pytest.raises(EnvError, match=r"^DS_N: must be <= 41, got 42$"):
        envint("DS_N", 0, max=41)
    with pytest.raises(EnvError, match=r"^DS_N: must be >= 43, got 42$"):
        envint("DS_N", 0, min=43)
    monkeypatch.setenv("DS_N", "4.5")
    with pytest.raises(EnvError, match=r"^DS_N: expected an integer, got '4.5'$"):
        envint("DS_N", 0)


def test_it_splits_lists_and_drops_empty_items(monkeypatch):
    monkeypatch.setenv("DS_HOSTS", " a.example , ,b.example,")
    assert envlist("DS_HOSTS", []) == ["a.example", "b.example"]
    monkeypatch.delenv("DS_HOSTS")
    assert envlist("DS_HOSTS", ["x"]) == ["x"]


def test_it_matches_choices_case_insensitively(monkeypatch):
    monkeypatch.setenv("DS_LEVEL", "debug")
    assert envchoice("DS_LEVEL", "INFO", ["DEBUG", "INFO"]) == "DEBUG"


def test_it_reads_secrets_from_files(monkeypatch, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("DS_PW", raising=False)
    monkeypatch.setenv("DS_PW_FILE", str(secret))
    assert envsecret("DS_PW", "default") == "s3cret"

    monkeypatch.setenv("DS_PW", "direct")
    with pytest.raises(EnvError, match=r"^DS_PW: set either DS_PW or DS_PW_FILE, not both$"):
        envsecret("DS_PW", None)


def test_it_reports_unreadable_or_empty_secret_files(monkeypatch, tmp_path):
    monkeypatch.delenv("DS_PW", raising=False)
    monkeypatch.setenv("DS_PW_FILE", str(tmp_path / "missing"))
    with pytest.raises(EnvError, match=r"^DS_PW_FILE: cannot read .*missing"):
        envsecret("DS_PW", None)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("DS_PW_FILE", str(empty))
    with pytest.raises(EnvError, match=r"^DS_PW_FILE: file .* is empty$"):
        envsecret("DS_PW", None)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@cache.example:6380/1",
        "unix:///run/redis.sock",
        "redis://cache",
    ],
)
def test_it_accepts_redis_urls(monkeypatch, url):
    monkeypatch.setenv("DS_REDIS", url)
    assert envredisurl("DS_REDIS", "redis://unused") == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379", "expected a redis://, rediss:// or unix:// URL"),
        ("redis://", "URL has no host"),
        ("redis://cache:99999/0", "not a valid URL"),
        ("redis://cache:0/0", "port must be 1-65535"),
        ("unix://", "unix:// URL needs a socket path"),
    ],
)
def test_it_rejects_bad_redis_urls(monkeypatch, url, message):
    monkeypatch.setenv("DS_REDIS", url)
    with pytest.raises(EnvError, match=rf"^DS_REDIS: {message}"):
        envredisurl("DS_REDIS", "redis://unused")


def test_it_accepts_a_tls_redis_url_naming_a_readable_ca_file(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    url = f"rediss://:pw@cache:6380/0?ssl_ca_certs={ca}"
    monkeypatch.setenv("DS_REDIS", url)
    assert envredisurl("DS_REDIS", "redis://unused") == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rediss://cache:6380/0?ssl_ca_certs=/no/such/ca.pem", "ssl_ca_certs='/no/such/ca.pem' is"),
        ("rediss://cache/0?ssl_cert_reqs=REQUIRED", "ssl_cert_reqs must be one of required,"),
        ("redis://:pw@cache/0?ssl_cert_reqs=none", "ssl_cert_reqs need a rediss:// URL"),
    ],
)
def test_it_rejects_bad_redis_tls_options_without_showing_the_password(monkeypatch, url, message):
    monkeypatch.setenv("DS_REDIS", url)
    with pytest.raises(EnvError, match=rf"^DS_REDIS: {re.escape(message)}") as raised:
        envredisurl("DS_REDIS", "redis://unused")
    assert "pw" not in str(raised.value)


def test_it_derives_celerys_tls_options_from_the_redis_url(tmp_path):
    assert redis_tls_options("redis://:pw@cache:6379/0") is None
    # Without options kombu would trust any certificate (CERT_NONE): required by default.
    assert redis_tls_options("rediss://:pw@cache:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    url = f"rediss://cache/0?ssl_ca_certs={tmp_path}/ca.pem&ssl_cert_reqs=optional"
    assert redis_tls_options(url) == {
        "ssl_ca_certs": f"{tmp_path}/ca.pem",
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
    }


def test_it_reads_redis_urls_from_files(monkeypatch, tmp_path):
    url_file = tmp_path / "redis_url"
    url_file.write_text("redis://:pw@cache:6379/3\n")
    monkeypatch.setenv("DS_REDIS_FILE", str(url_file))
    assert envredisurl("DS_REDIS", "redis://unused") == "redis://:pw@cache:6379/3"


def test_it_normalises_bootstrap_lists(monkeypatch):
    monkeypatch.setenv("DS_KAFKA", " k1:9092, [::1]:9093 ,10.0.0.3:65535 ")
    assert envbootstrap("DS_KAFKA", "unused:1") == "k1:9092,[::1]:9093,10.0.0.3:65535"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("k1:9092,k2", "entry 'k2' is not host:port"),
        ("k1:0", "entry 'k1:0' has port 0, expected 1-65535"),
        ("k1:99999", "entry 'k1:99999' has port 99999, expected 1-65535"),
        ("PLAINTEXT://k1:9092", "entry 'PLAINTEXT://k1:9092' is not host:port"),
        (",", "expected a comma separated host:port list"),
    ],
)
def test_it_rejects_bad_bootstrap_entries(monkeypatch, raw, message):
    monkeypatch.setenv("DS_KAFKA", raw)
    with pytest.raises(EnvError, match=rf"^DS_KAFKA: {message}"):
        envbootstrap("DS_KAFKA", "unused:1")


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("sasl.password", True),
        ("sasl.username", True),
        ("sasl.oauthbearer.client.secret", True),
        ("ssl.key.password", True),
        ("ssl.key.pem", True),
        ("api_token", True),
        ("sasl.mechanism", False),
        ("sasl.mechanisms", False),
        ("acks", False),
        ("bootstrap.servers", False),
    ],
)
def test_it_classifies_secret_keys(key, secret):
    assert is_secret_key(key) is secret


def test_it_redacts_nested_configs_without_mutating_them():
    config = {
        "sasl.password": "hunter2",
        "acks": "all",
        "nested": {"token": "t0k3n", "brokers": ["redis://:pw@h:1/0"]},
    }
    assert redact_config(config) == {
        "sasl.password": MASK,
        "acks": "all",
        "nested": {"token": MASK, "brokers": [f"redis://:{MASK}@h:1/0"]},
    }
    assert config["sasl.password"] == "hunter2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2 user=bob", f"password={MASK} user=bob"),
        ('{"sasl.password": "hunter2", "acks": 1}', f'{{"sasl.password": "{MASK}", "acks": 1}}'),
        ("{'client_secret': 'a b c'}", f"{{'client_secret': '{MASK}'}}"),
        ("postgres://ds:hunter2@db/x", f"postgres://ds:{MASK}@db/x"),
        ("Authorization: Bearer abc.def", f"Authorization: {MASK} {MASK}"),
        ("sasl.mechanism=PLAIN acks=all", "sasl.mechanism=PLAIN acks=all"),
        ("no secrets here", "no secrets here"),
    ],
)
def test_it_redacts_secrets_in_text(text, expected):
    assert redact_text(text) == expected


def test_it_redacts_log_arguments_and_tracebacks():
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("config %s", {"ssl.key.password": "hunter2"})
        try:
            raise RuntimeError("login failed for password=hunter3")
        except RuntimeError:
            logger.exception("broker said no")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "hunter" not in output
    assert f"'ssl.key.password': '{MASK}'" in output
    assert f"RuntimeError: login failed for password={MASK}" in output


# --- ensure_admin (first-run bootstrap; configured from the environment) ------------------------
# bin/up's start path, on SQLite too (both_databases): a user created once, in a transaction.


def ensure_admin() -> str:
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


@pytest.mark.both_databases
@pytest.mark.django_db
def test_it_creates_an_admin_with_a_generated_password_once(monkeypatch):
    monkeypatch.delenv("DS_ADMIN_USER", raising=False)
    monkeypatch.delenv("DS_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("DS_ADMIN_PASSWORD_FILE", raising=False)

    first = ensure_admin()
    assert "created admin user: admin" in first
    password = first.split("password: ", 1)[1].strip()
    assert len(password) >= 20
    admin = authenticate(username="admin", password=password)
    assert admin is not None and admin.is_superuser and admin.is_staff

    second = ensure_admin()
    assert second.strip() == "admin user exists"
    assert get_user_model().objects.count() == 1


@pytest.mark.both_databases
@pytest.mark.django_db
def test_it_uses_the_configured_admin_and_never_prints_a_supplied_password(monkeypatch, tmp_path):
    password_file = tmp_path / "admin_pw"
    password_file.write_text("operator-chosen-pw\n")
    monkeypatch.setenv("DS_ADMIN_USER", "oncall")
    monkeypatch.delenv("DS_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("DS_ADMIN_PASSWORD_FILE", str(password_file))

    out = ensure_admin()
    assert "created admin user: oncall" in out
    assert "operator-chosen-pw" not in out
    assert authenticate(username="oncall", password="operator-chosen-pw") is not None


@pytest.mark.both_databases
@pytest.mark.django_db
def test_it_does_nothing_when_any_user_exists(alice, monkeypatch):
    monkeypatch.delenv("DS_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("DS_ADMIN_PASSWORD_FILE", raising=False)
    assert ensure_admin().strip() == "admin user exists"
    assert not get_user_model().objects.filter(is_superuser=True).exists()


@pytest.mark.both_databases
@pytest.mark.django_db
def test_it_reports_a_bad_admin_password_file(monkeypatch, tmp_path):
    monkeypatch.delenv("DS_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("DS_ADMIN_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="DS_ADMIN_PASSWORD_FILE: cannot read"):
        ensure_admin()
    assert not get_user_model().objects.exists()
