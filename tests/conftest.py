"""Shared fixtures: real Redis, named actors, and a websocket helper for the full ASGI stack.

The tests live in four folders, each marked with its name: ``unit`` (pure Python, the fast
loop), ``web`` (the dashboard with Redis), ``integration`` (workers against real Redis and
Kafka) and ``browser`` (Chromium). Helpers shared across folders are in ``tests/support``.

Actors (as in healthchecks' BaseTestCase): ``alice`` is an ordinary user with a known password
(``ALICE_PASSWORD``); ``admin_user`` is a superuser "admin" with ``ADMIN_PASSWORD``;
``user`` is alice, for tests that just need somebody logged in.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

ALICE_PASSWORD = "alice-correct-horse"
ADMIN_PASSWORD = "admin-battery-staple"
ALLOWED_ORIGIN = "http://127.0.0.1:8000"


# Each folder is a room of its own, with the marker of the same name (pyproject.toml).
FOLDERS = ("unit", "web", "integration", "browser")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test with its folder's marker; a test module outside the folders is an error."""
    for item in items:
        parts = Path(item.path).resolve().relative_to(TESTS).parts
        if len(parts) < 2 or parts[0] not in FOLDERS:
            raise pytest.UsageError(
                f"{item.path}: a test module belongs in one of tests/{{{','.join(FOLDERS)}}}"
            )
        item.add_marker(parts[0])


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest) -> None:
    """PBKDF2 at production strength costs ~0.5 s per hash; tests do not need that. Unit tests
    have no Django: they do not get pytest-django's ``settings`` fixture from here."""
    if request.node.get_closest_marker("unit"):
        return
    settings = request.getfixturevalue("settings")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _kafka_at_rest(request: pytest.FixtureRequest) -> None:
    """Every test marked ``kafka`` starts on a cluster at rest: replicas in sync, partitions on
    their preferred leaders, group coordinators loaded. After a test that restarted a broker,
    Kafka moves leaderships back by itself up to 30 s later (the local cluster's
    ``leader.imbalance.check.interval.seconds``), and the group coordinators with them: in
    the next test, whose consumers then could not join for seconds (a clean run's first
    records 10 s late, over the at-most-once latency SLO, in a CI run)."""
    if not request.node.get_closest_marker("kafka"):
        return
    name, port = os.environ.get("LOCAL_KAFKA_NAME"), os.environ.get("LOCAL_KAFKA_PORT")
    if not name or not port:
        return  # the test itself says what is missing
    from workers.localkafka.cluster import LocalCluster

    done = LocalCluster(name, broker_base_port=int(port)).settle(timeout=120)
    if done:
        print(f"[kafka at rest before {request.node.name}: {'; '.join(done)}]")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``settings.REDIS_URL``, verified reachable; fails (does not skip) when it is not."""
    url = django_settings.REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.fail(f"Redis not reachable at {url}: run `make test` ({exc})", pytrace=False)
    finally:
        client.close()
    return url


@pytest.fixture
def alice(db: None) -> Any:
    return get_user_model().objects.create_user(
        username="alice", email="alice@example.org", password=ALICE_PASSWORD
    )


@pytest.fixture
def user(alice: Any) -> Any:
    return alice


@pytest.fixture
def admin_user(db: None) -> Any:
    """Overrides pytest-django's fixture of the same name (``admin_client`` keeps working)."""
    return get_user_model().objects.create_superuser(
        username="admin", email="admin@example.org", password=ADMIN_PASSWORD
    )


def session_cookie_for(user: Any) -> str:
    """Log ``user`` in through Django's test client; return the session cookie value (sync)."""
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


class Asgi:
    """Opens websockets against the real ``dashboard.asgi.application`` (origin check,
    session auth, routing, Redis channel layer) and disconnects them at teardown."""

    def __init__(self) -> None:
        from dashboard.asgi import application

        self.application = application
        self._open: list[WebsocketCommunicator] = []

    async def websocket(
        self,
        path: str,
        *,
        user: Any = None,
        origin: str | None = ALLOWED_ORIGIN,
        cookie: str | None = None,
    ) -> WebsocketCommunicator:
        """``cookie``: a session cookie of the caller's (else a new session of ``user``)."""
        headers = [(b"host", b"127.0.0.1:8000")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if user is not None or cookie is not None:
            cookie = cookie or await sync_to_async(session_cookie_for)(user)
            headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        communicator = WebsocketCommunicator(self.application, path, headers=headers)
        self._open.append(communicator)
        return communicator

    async def close_all(self) -> None:
        for communicator in self._open:
            await communicator.disconnect(timeout=5)


@pytest.fixture
async def asgi() -> AsyncIterator[Asgi]:
    """Websocket helper. Each test gets its own event loop, so it also gets a fresh channel
    layer (channels-redis keeps receive state per layer instance, not per loop)."""
    channel_layers.backends.clear()
    # Open the layer's Redis connection now. redis-py 8.1 loses a cancellation that lands
    # while a *new* connection is handshaking: a consumer closed within a millisecond of
    # starting then keeps its BZPOPMIN loop alive until cancelled again (Daphne does that
    # after application_close_timeout). A long-running server has warm pools.
    await get_channel_layer().group_send("warmup", {"type": "warmup"})
    helper = Asgi()
    try:
        yield helper
        await helper.close_all()
    finally:
        for layer in channel_layers.backends.values():
            await layer.close_pools()
        channel_layers.backends.clear()


@pytest.fixture
def sentinels(redis_url: str) -> Iterator[dict[str, Any]]:
    """The three default sentinels in the test database, their Redis state wiped before and
    after: by name."""
    from tests.support.dashboard_data import fresh_defaults, wipe

    made = fresh_defaults(redis_url)
    yield made
    wipe(redis_url, made)
