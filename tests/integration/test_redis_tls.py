"""Redis with a password and TLS (``rediss://``): Celery, Channels and the sentinel state.

A real redis-server listens on a TLS port only (``--port 0 --tls-port``), with
``--requirepass``, and a certificate from the project's own generator
(``workers.localkafka.security``); every client names the CA in the URL's query.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from channels_redis.core import RedisChannelLayer
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.integration.test_hosting import Workers, make_sentinel
from tests.integration.tlsserver import TlsServer, tls_server
from tests.support.waiting import wait_until
from workers.engine.documents import Verdict
from workers.engine.profiles import AT_LEAST_ONCE
from workers.engine.redact import MASK
from workers.localkafka.security import write_ca
from workers.runtime.publish import channel_layer_config
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

PASSWORD = "tls-redis-Pa55word"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory) -> Iterator[TlsServer]:
    with tls_server(tmp_path_factory.mktemp("tls-redis"), PASSWORD) as server:
        yield server


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_hosts_a_sentinel_with_celery_and_its_state_in_a_tls_redis(tls_redis, tmp_path):
    workers = Workers(tmp_path)
    url = tls_redis.url()
    sentinel = make_sentinel(AT_LEAST_ONCE)
    store = SentinelStore(connect(url), sentinel.pk)
    try:
        env = {"REDIS_URL": url, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
        workers.start("tls", **env)

        def holding() -> dict | None:
            doc = store.status()
            mine = doc and doc.get("incarnation") == sentinel.incarnation.hex
            ok = mine and doc["verdict"] == Verdict.HOLDING and doc["totals"]["processed"] > 50
            return doc if ok else None

        try:
            doc = wait_until(holding, 90, "sentinel HOLDING with its state in the TLS Redis")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{store.status()}\n{workers.logs()}") from None
        assert doc["totals"]["lost"] == 0, doc["totals"]
        # Celery's broker connection went through TLS too (the log masks the password).
        broker = f"Connected to rediss://:{MASK}@127.0.0.1:{tls_redis.port}/0"
        # The whole log: the line is near its start, and a tail of it may not reach back.
        wait_until(
            lambda: broker in workers.logs(tail=None), 30, "Celery connected to the TLS Redis"
        )
        # The password travels in the environment: no command line of ours shows it.
        assert not [line for line in _command_lines() if PASSWORD in line]
        assert PASSWORD not in workers.logs()
    finally:
        sentinel.__class__.objects.filter(pk=sentinel.pk).update(enabled=False)
        workers.stop_all()


def _command_lines() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


async def test_it_round_trips_a_group_message_through_the_tls_channel_layer(tls_redis):
    layer = RedisChannelLayer(**channel_layer_config(tls_redis.url()))
    try:
        channel = await layer.new_channel()
        await layer.group_add("tls-test", channel)
        await layer.group_send("tls-test", {"type": "window.update", "sentinel": 7})
        assert await layer.receive(channel) == {"type": "window.update", "sentinel": 7}
    finally:
        await layer.flush()
        await layer.close_pools()


def test_it_says_in_words_that_the_redis_password_is_wrong(tls_redis, settings):
    settings.REDIS_URL = tls_redis.url(password="not-the-password")
    # manage.py prints a CommandError as its message alone, without a traceback.
    with pytest.raises(CommandError) as raised:
        call_command("sentinels", "status")
    said = str(raised.value)
    assert said.startswith(f"Redis at rediss://127.0.0.1:{tls_redis.port}: authentication failed")
    assert "not-the-password" not in said


def test_it_says_in_words_that_redis_has_an_untrusted_certificate(
    tls_redis, tmp_path, settings, client, caplog
):
    settings.REDIS_URL = tls_redis.url(ca=write_ca(tmp_path / "other-ca.pem"))
    with pytest.raises(CommandError, match="not signed by a CA this client trusts") as raised:
        call_command("sentinels", "status")
    assert PASSWORD not in str(raised.value)
    # /healthz says only "error"; its log says why.
    assert client.get("/healthz").json()["redis"] == "error"
    logged = [r.getMessage() for r in caplog.records if "healthz" in r.getMessage()]
    assert any("not signed by a CA this client trusts" in m for m in logged), logged
    assert not any(PASSWORD in m for m in logged)
