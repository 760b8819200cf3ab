"""Unit tests: pure Python, the fast loop (``bin/test tests/unit -q``).

No test here imports Django, the dashboard, Redis or the Kafka client's broker-facing code
(``test_purity.py`` imports every module here in a fresh interpreter and checks), and none asks
for a service: a unit test that requests a Django, Redis or Kafka fixture or carries a service
marker fails collection, and the services' addresses are not in its environment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SERVICE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_setup",
    "settings",
    "client",
    "admin_client",
    "live_server",
    "redis_url",
    "alice",
    "user",
    "admin_user",
    "asgi",
    "sentinels",
}
SERVICE_MARKERS = {"django_db", "kafka", "browser", "soak", "web", "integration"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here not in item.path.parents:
            continue
        asks = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        marked = SERVICE_MARKERS & {m.name for m in item.iter_markers()}
        if asks or marked:
            raise pytest.UsageError(
                f"{item.nodeid}: a unit test needs no service, but it asks for "
                f"{sorted(asks | marked)}: move it to tests/web or tests/integration"
            )


@pytest.fixture(autouse=True)
def _no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that reaches for Redis or Kafka through the environment finds nothing."""
    for name in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "LOCAL_KAFKA_PORT"):
        monkeypatch.delenv(name, raising=False)
