"""The whole app, live, for browser tests: Daphne, the three default sentinels, Chromium.

- a file-based SQLite database in a temporary directory, migrated with ``manage.py migrate``,
  with a user from ``manage.py ensure_admin`` and the default sentinels from
  ``manage.py sentinels ensure-defaults``;
- Redis: the suite's (``REDIS_URL``), but a database index of its own (``BROWSER_REDIS_DB``),
  flushed first, so the sentinels' keys and channel groups meet no other test's;
- Daphne on a free port, one server (``served_app``), one Chromium and one logged-in session
  for every browser test module of the run;
- for a module that asks for ``live_app``: one ``manage.py sentinels run <name>`` process per
  default sentinel on the suite's local Kafka cluster (``KAFKA_BOOTSTRAP_SERVERS``, started by
  bin/test), publishing live windows to the dashboard's channel layer, from the module's first
  test to its last; then they stop and their Redis state is flushed, so the next module meets
  a quiet app (``quiet_app``: no sentinel running, no live state);
- Debian's Chromium through Playwright (never ``playwright install``).

What a module writes to the database (incidents, rules, a sentinel's SLO) stays for the
modules after it: each module makes the state it asserts on itself, whatever ran before.

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

    def stop(self, names: list[str]) -> None:
        """Stops the named processes (SIGTERM, then SIGKILL after 30 s) and forgets them."""
        procs = [self.procs.pop(name) for name in names]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        self.stop(list(self.procs))

    def flush_redis(self) -> None:
        """Forgets every sentinel's state and the channel layer's groups (the app's own Redis
        database): what the next sentinels, or seeded data, write starts from nothing."""
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            client.flushdb()
        except redis.RedisError as exc:
            pytest.fail(f"Redis not reachable at {self.redis_url}: {exc}", pytrace=False)
        finally:
            client.close()

    def run_sentinels(self) -> None:
        """Starts the default sentinels on ``bootstrap`` over a flushed Redis database and waits
        until each has processed records (its status document says so)."""
        self.flush_redis()
        docs = json.loads(self.manage("sentinels", "status", "--json"))["sentinels"]
        self.sentinels = {doc["name"]: doc for doc in docs}
        try:
            for name in self.sentinels:
                self.start(f"sentinel-{name}", "manage.py", "sentinels", "run", name)
            self.wait(
                lambda: all(
                    (self.status(doc["id"]) or {}).get("totals", {}).get("processed", 0) > 0
                    for doc in self.sentinels.values()
                ),
                SENTINELS_READY_TIMEOUT,
                "the default sentinels did not process records",
            )
        except BaseException:
            self.stop_sentinels()
            raise

    def stop_sentinels(self) -> None:
        """Stops the sentinel processes, then flushes their state (``flush_redis``)."""
        self.stop([name for name in self.procs if name.startswith("sentinel-")])
        self.flush_redis()

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


def serve_app(tmp: Path, *, bootstrap: str = "") -> LiveApp:
    """Daphne over a fresh, migrated database (admin user, the default sentinels' rows) and a
    flushed Redis database of its own; ``run_sentinels`` starts the sentinels on ``bootstrap``.
    The caller stops it (``stop_all``); a failed start stops what it began."""
    redis_url = with_db(_required_env("REDIS_URL"), BROWSER_REDIS_DB)
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
        # A dropped live connection is seen after 2.5 heartbeats: 10 s, not the default's 25 s.
        "DS_LIVE_HEARTBEAT_S": "4",
    }
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env.pop("DJANGO_SETTINGS_MODULE", None)
    app = LiveApp(f"http://127.0.0.1:{port}", env, redis_url, bootstrap, tmp)
    app.flush_redis()
    try:
        app.manage("migrate", "--noinput")
        app.manage("ensure_admin")
        app.manage("sentinels", "ensure-defaults")
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
    except BaseException:
        app.stop_all()
        raise
    return app


@pytest.fixture(scope="session")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """Daphne over a fresh database with the default sentinels' rows, started once for every
    browser test module of the run; no sentinel runs unless a module asks for ``live_app``."""
    app = serve_app(
        tmp_path_factory.mktemp("browser"), bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    )
    try:
        yield app
    finally:
        app.stop_all()


@pytest.fixture(scope="module")
def live_app(served_app: LiveApp) -> Iterator[LiveApp]:
    """The app with the default sentinels running on the suite's Kafka cluster, for one module:
    they start over a flushed Redis database before its first test and stop (their state
    flushed again) after its last, so they never run under another module's tests."""
    _required_env("KAFKA_BOOTSTRAP_SERVERS")
    served_app.run_sentinels()
    try:
        yield served_app
    finally:
        served_app.stop_sentinels()


@pytest.fixture(scope="module")
def quiet_app(served_app: LiveApp) -> LiveApp:
    """The app with no sentinel process (nothing needs Kafka) and no sentinel's live state
    left in Redis, for the modules that seed their own data."""
    running = [name for name in served_app.procs if name.startswith("sentinel-")]
    assert not running, f"sentinels still running for a quiet module: {running}"
    return served_app


def _healthy(base_url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module. Not for the session: Playwright's sync API keeps its asyncio
    loop running in the main thread while it is open, and every pytest-asyncio test after it
    would fail ("Runner.run() cannot be called from a running event loop")."""
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
def storage_state(
    browser: Any, served_app: LiveApp, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A logged-in session, saved once per module for every test's fresh context."""
    context = browser.new_context()
    page = context.new_page()
    log_in(page, served_app.base_url)
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
    browser: Any, served_app: LiveApp, request: pytest.FixtureRequest, console_errors: ConsoleErrors
) -> Iterator[Any]:
    yield from _new_page(browser, request, None, console_errors)
