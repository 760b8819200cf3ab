"""Redis with a password and TLS (``rediss://``): Celery, Channels and the sentinel state.

A real redis-server listens on a TLS port only (``--port 0 --tls-port``), with
``--requirepass``, and a certificate from the project's own generator
(``workers.localkafka.security``); every client names the CA in the URL's query.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from channels_redis.core import RedisChannelLayer
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.integration.test_hosting import Workers, make_sentinel
from tests.sentinels import wait_until
from workers.engine.documents import Verdict
from workers.engine.profiles import AT_LEAST_ONCE
from workers.localkafka.security import write_ca, write_tls_files
from workers.runtime.publish import channel_layer_config
from workers.store import SentinelStore, connect
from workers.system import terminate

PASSWORD = "tls-redis-Pa55word"


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca: Path

    def url(self, password: str = PASSWORD, ca: Path | None = None) -> str:
        return f"rediss://:{password}@127.0.0.1:{self.port}/0?ssl_ca_certs={ca or self.ca}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory) -> TlsRedis:
    work = tmp_path_factory.mktemp("tls-redis")
    files = write_tls_files(work)
    server = TlsRedis(free_port(), files.ca)
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(server.port)]
    argv += ["--tls-cert-file", str(files.cert), "--tls-key-file", str(files.key)]
    argv += ["--tls-ca-cert-file", str(files.ca), "--tls-auth-clients", "no"]
    argv += ["--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(work)]
    with (work / "redis.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    client = connect(server.url())

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(answers, 20, f"TLS redis-server on {server.port}")
        yield server
    finally:
        terminate(proc, 10)


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
