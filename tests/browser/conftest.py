"""The whole app, live, for browser tests: Daphne, the three default sentinels, Chromium.

- a file-based SQLite database in a temporary directory, migrated with ``manage.py migrate``,
  with a user from ``manage.py ensure_admin`` and the default sentinels from
  ``manage.py sentinels ensure-defaults``;
- Redis: the suite's (``REDIS_URL``), but a database index of its own (``BROWSER_REDIS_DB``),
  flushed first, so the sentinels' keys and channel groups meet no other test's;
- the local Kafka cluster of the suite (``KAFKA_BOOTSTRAP_SERVERS``, started by bin/test);
- one ``manage.py sentinels run <name>`` process per default sentinel (they publish live
  windows to the dashboard's channel layer) and Daphne on a free port;
- Debian's Chromium through Playwright (never ``playwright install``).

Each test gets a fresh page in a logged-in context; when the test ends the page's screenshot
goes to ``test-artifacts/`` and any browser console error or uncaught page error fails it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BROWSER_REDIS_DB = int(os.environ.get("DS_BROWSER_REDIS_DB", "9"))
USERNAME = "browser-tester"
PASSWORD = "browser-tester-correct-horse"
SENTINELS_READY_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@dataclass
class LiveApp:
    base_url: str
    env: dict[str, str]
    redis_url: str
    bootstrap: str
    logs: Path
    sentinels: dict[str, dict[str, Any]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115  the child keeps it
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def status(self, sentinel_id: int) -> dict[str, Any] | None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            raw = client.get(f"ds:{sentinel_id}:status")
        finally:
            client.close()
        return json.loads(raw) if raw else None

    def wait(self, condition: Any, timeout: float, message: str) -> Any:
        """``wait_until`` that fails at once, with the logs, when a process of the app exited."""

        def holds() -> Any:
            value = condition()
            if value:
                return value
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}\n{self.log_tail()}")
            return value

        return wait_until(holds, timeout, message, 0.5, self.log_tail)


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the browser tests with bin/test", pytrace=False)
    return value


def serve_app(
    tmp: Path, *, bootstrap: str = "", run_sentinels: bool = False, redis_db: int = BROWSER_REDIS_DB
) -> LiveApp:
    """Daphne over a fresh, migrated database (admin user, the default sentinels' rows) and a
    flushed Redis database of its own; with ``run_sentinels``, the default sentinels running on
    ``bootstrap`` too. The caller stops it (``stop_all``); a failed start stops what it began."""
    redis_url = with_db(_required_env("REDIS_URL"), redis_db)
    flush = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        flush.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"Redis not reachable at {redis_url}: {exc}", pytrace=False)
    finally:
        flush.close()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'browser.sqlite3'}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "DJANGO_DEBUG": "true",  # static files straight from the app (no collectstatic)
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DS_ADMIN_USER": USERNAME,
        "DS_ADMIN_PASSWORD": PASSWORD,
        "PYTHONUNBUFFERED": "1",
    }
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env.pop("DJANGO_SETTINGS_MODULE", None)
    app = LiveApp(f"http://127.0.0.1:{port}", env, redis_url, bootstrap, tmp)
    try:
        app.manage("migrate", "--noinput")
        app.manage("ensure_admin")
        app.manage("sentinels", "ensure-defaults")
        if run_sentinels:
            docs = json.loads(app.manage("sentinels", "status", "--json"))["sentinels"]
            app.sentinels = {doc["name"]: doc for doc in docs}
            for name in app.sentinels:
                app.start(f"sentinel-{name}", "manage.py", "sentinels", "run", name)
        app.start(
            "daphne",
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "dashboard.asgi:application",
        )
        app.wait(lambda: _healthy(app.base_url), 60, "Daphne to answer /healthz")
        if run_sentinels:
            app.wait(
                lambda: all(
                    (app.status(doc["id"]) or {}).get("totals", {}).get("processed", 0) > 0
                    for doc in app.sentinels.values()
                ),
                SENTINELS_READY_TIMEOUT,
                "the default sentinels did not process records",
            )
    except BaseException:
        app.stop_all()
        raise
    return app


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The app served by Daphne with the default sentinels running (module-scoped, so the
    sentinel processes stop before other test modules run)."""
    app = serve_app(
        tmp_path_factory.mktemp("browser"),
        bootstrap=_required_env("KAFKA_BOOTSTRAP_SERVERS"),
        run_sentinels=True,
    )
    try:
        yield app
    finally:
        app.stop_all()


@pytest.fixture(scope="session")
def quiet_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """Daphne over a fresh database with the default sentinels' rows and no sentinel process
    (nothing needs Kafka), on a Redis database of its own so the modules with running
    sentinels never flush it. Started once for the modules that seed their own data."""
    app = serve_app(tmp_path_factory.mktemp("quiet-browser"), redis_db=BROWSER_REDIS_DB + 1)
    try:
        yield app
    finally:
        app.stop_all()


def _healthy(base_url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(page: Any, base_url: str) -> None:
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + "/")


@pytest.fixture(scope="module")
def storage_state(browser: Any, live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A logged-in session, saved once for every test's fresh context."""
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_app.base_url)
    path = tmp_path_factory.mktemp("state") / "state.json"
    context.storage_state(path=str(path))
    context.close()
    return str(path)


class ConsoleErrors(list):
    def attach(self, page: Any) -> None:
        page.on(
            "console",
            lambda msg: (
                self.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: self.append(f"page error: {exc}"))


def _new_page(
    browser: Any, request: pytest.FixtureRequest, storage: str | None, errors: ConsoleErrors
) -> Iterator[Any]:
    context = browser.new_context(storage_state=storage, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors.attach(page)
    page.set_default_timeout(15000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
    assert not errors, "browser console errors:\n" + "\n".join(errors)


@pytest.fixture
def console_errors() -> ConsoleErrors:
    """The console errors of the test's page, checked after the test: a test that provokes
    an error on purpose removes the ones it expects."""
    return ConsoleErrors()


@pytest.fixture
def page(
    browser: Any, storage_state: str, request: pytest.FixtureRequest, console_errors: ConsoleErrors
) -> Iterator[Any]:
    """A fresh, logged-in page; screenshot saved and console errors checked at the end."""
    yield from _new_page(browser, request, storage_state, console_errors)


@pytest.fixture
def anonymous_page(
    browser: Any, live_app: LiveApp, request: pytest.FixtureRequest, console_errors: ConsoleErrors
) -> Iterator[Any]:
    yield from _new_page(browser, request, None, console_errors)
