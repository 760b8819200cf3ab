"""Live latency: from a record's consumption to its one-second window reaching websocket clients.

    .venv/bin/python bench/ws_latency_bench.py [--clients 100] [--duration 60]
        [--semantic at-least-once] [--partitions 3] [--rate 10]
        [--bootstrap ...] [--redis-url ...]

Target: with 100 connected clients, p99 of consumption -> client under 1.5 s.

What runs (all on 127.0.0.1, all stopped at the end):

- a throw-away SQLite database (``DATABASE_URL``), migrated with ``manage.py migrate``, with a
  user and a logged-in session written through Django's session engine;
- Daphne (``daphne -b 127.0.0.1 -p <free port> dashboard.asgi:application``, ``DJANGO_DEBUG``
  false) as a child process;
- one sentinel, ``python -m workers.runtime.run --spec ... --roles all --live``: its checker cuts a
  window about once a second and publishes it to the Channels groups ``sentinel.<id>`` and
  ``overview`` (``workers/runtime/publish.py``);
- ``--clients`` websocket clients in this process (autobahn's asyncio client: autobahn is
  already installed with Daphne), each on ``ws://127.0.0.1:<port>/ws/sentinel/<id>/`` with the
  session cookie and ``Origin: http://127.0.0.1:<port>``. A client only timestamps each frame
  on arrival; JSON is decoded after the run.

For every ``window`` message and client:

- delivery = receive time - ``window["t"]`` (the checker's clock when it cut the window):
  the publish path, checker -> channel layer -> Daphne -> client;
- consumption -> client (upper bound) = receive time - (``window["t"]`` - ``window["seconds"]``):
  the oldest record the window can hold was consumed (written to the processing ledger) at
  the earliest at the start of the window, so this bounds the time from consumption to the
  browser from above (it includes up to one window of batching by design).

Prints p50 / p99 / max of both over every (window, client) pair received during
``--duration`` seconds, per-client delivery completeness, and the CPU and RSS of Daphne and
the sentinel process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import txaio
from _common import (
    ROOT,
    bench_sentinel_id,
    cpu_seconds,
    create_topics,
    default_bootstrap,
    default_redis_url,
    delete_topics,
    free_port,
    on_exit,
    percentile,
    print_machine_facts,
    proc_status_kb,
    require_loopback,
    spawn,
    start_watchdog,
    stop_child,
    table,
)

txaio.use_asyncio()
from autobahn.asyncio.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
)

from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES, SEMANTICS  # noqa: E402
from workers.engine.spec import SentinelSpec  # noqa: E402
from workers.store.connection import connect  # noqa: E402
from workers.store.sentinel import SentinelStore  # noqa: E402
from workers.system import sentinel_argv  # noqa: E402

BIN = Path(sys.executable).parent

# Runs in a child with the benchmark's Django environment: a user and a logged-in session.
SESSION_SCRIPT = """
import json, secrets
import django
django.setup()
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
user, _ = get_user_model().objects.get_or_create(username="ws-bench")
user.set_password(secrets.token_hex(16))
user.save()
session = import_module(settings.SESSION_ENGINE).SessionStore()
session[SESSION_KEY] = user._meta.pk.value_to_string(user)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(json.dumps({"cookie": settings.SESSION_COOKIE_NAME, "key": session.session_key}))
"""


class BenchClient(WebSocketClientProtocol):
    """Timestamps every text frame on arrival; decoding waits until the run is over."""

    def onOpen(self) -> None:  # noqa: N802 - autobahn's API
        state = self.factory.state
        state["opened"] += 1
        state["handshake_s"] = time.time() - state["connect_at"]
        if not state["done"].done():
            state["done"].set_result(True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.factory.state["frames"].append((time.time(), payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        state = self.factory.state
        state["closed"] = (code, reason)
        if not state["done"].done():
            state["done"].set_result(False)


async def connect_clients(
    port: int, sentinel_id: int, cookie: str, count: int, parallel: int
) -> tuple[list[dict], list]:
    """Open ``count`` websocket connections, ``parallel`` opening handshakes at a time."""
    loop = asyncio.get_running_loop()
    url = f"ws://127.0.0.1:{port}/ws/sentinel/{sentinel_id}/"
    states: list[dict] = []
    transports = []
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> None:
        factory = WebSocketClientFactory(
            url, origin=f"http://127.0.0.1:{port}", headers={"Cookie": cookie}
        )
        factory.protocol = BenchClient
        factory.setProtocolOptions(utf8validateIncoming=False, openHandshakeTimeout=60)
        state = factory.state = {
            "index": index,
            "opened": 0,
            "frames": [],
            "closed": None,
            "done": loop.create_future(),
        }
        states.append(state)
        async with gate:
            state["connect_at"] = time.time()
            try:
                transport, _proto = await asyncio.wait_for(
                    loop.create_connection(factory, "127.0.0.1", port), 30
                )
                transports.append(transport)
                await asyncio.wait_for(state["done"], 65)
            except (OSError, TimeoutError) as exc:
                state["closed"] = ("connect failed", str(exc))

    await asyncio.gather(*(one(i) for i in range(count)))
    return states, transports


async def run_clients(args, port: int, sid: int, cookie: str) -> tuple[list[dict], float, float]:
    """Connect, wait for the first window, measure ``--duration`` s; (states, start, end)."""
    started = time.time()
    states, transports = await connect_clients(port, sid, cookie, args.clients, args.parallel)
    opened = sum(s["opened"] for s in states)
    handshakes = [s["handshake_s"] for s in states if "handshake_s" in s]
    print(
        f"   {opened}/{args.clients} clients connected in {time.time() - started:.1f}s "
        f"({args.parallel} handshakes at a time; handshake p50 "
        f"{1000 * percentile(handshakes, 50):,.0f} ms, max {1000 * max(handshakes or [0]):,.0f} ms)",
        flush=True,
    )

    # Wait until every client has had a live message after its initial state (the sentinel's
    # first windows), so the measurement starts in steady state.
    def live() -> int:
        return sum(1 for s in states if len(s["frames"]) >= 2)

    deadline = time.time() + args.startup_timeout
    while time.time() < deadline and live() < opened:
        await asyncio.sleep(0.2)
    start = time.time()
    print(f"   measuring for {args.duration:.0f}s", flush=True)
    await asyncio.sleep(args.duration)
    end = time.time()
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.5)
    return states, start, end


def django_env(tmp: Path, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        REDIS_URL=redis_url,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_hex(32),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SENTINELS_ENABLED="false",
        LOG_LEVEL="WARNING",
    )
    return env


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise TimeoutError(f"daphne did not listen on {port} within {timeout}s")


def start_daphne(env: dict[str, str], tmp: Path) -> tuple[subprocess.Popen, int]:
    """Daphne serving the app on a free loopback port (log in ``tmp``); stopped at exit."""
    port = free_port()
    log = open(tmp / "daphne.log", "ab")  # noqa: SIM115 - the child keeps it open
    daphne = spawn(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "dashboard.asgi:application"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, daphne, 60)
    return daphne, port


def summarize(values: list[float]) -> list[str]:
    return [
        f"{1000 * percentile(values, 50):,.0f}",
        f"{1000 * percentile(values, 99):,.0f}",
        f"{1000 * max(values):,.0f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--semantic", default=AT_LEAST_ONCE, choices=SEMANTICS)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="records/s per partition")
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--parallel", type=int, default=10, help="handshakes at a time")
    parser.add_argument("--startup-timeout", type=float, default=90.0)
    args = parser.parse_args(argv)
    require_loopback(args.bootstrap, args.redis_url)
    start_watchdog(args.duration + args.startup_timeout + 300)

    print_machine_facts(
        f"live latency: {args.clients} websocket clients, one {args.semantic} sentinel"
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    on_exit(lambda: shutil.rmtree(tmp, ignore_errors=True))
    env = django_env(tmp, args.redis_url)
    started = time.time()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )
    out = subprocess.run(
        [sys.executable, "-c", SESSION_SCRIPT],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    session = json.loads(out.strip().splitlines()[-1])
    cookie = f"{session['cookie']}={session['key']}"
    print(f"   database migrated and session created in {time.time() - started:.1f}s ({tmp})")

    daphne, port = start_daphne(env, tmp)
    print(f"   daphne pid {daphne.pid} on 127.0.0.1:{port}", flush=True)

    sid = bench_sentinel_id()
    spec = SentinelSpec(
        id=sid,
        name=f"bench-ws-{sid}",
        profile=DEFAULT_PROFILES[args.semantic],
        bootstrap_servers=args.bootstrap,
        topic=f"bench-ws-{sid}-{uuid.uuid4().hex[:6]}",
        partitions=args.partitions,
        rate_per_partition=args.rate,
    )
    topics = [spec.topic] + ([spec.output_topic_name] if spec.eos else [])
    create_topics(args.bootstrap, topics, args.partitions, 3, 2)
    on_exit(lambda: delete_topics(args.bootstrap, topics))
    store = SentinelStore(connect(args.redis_url), sid)
    on_exit(store.reset)
    # channels-redis keeps group membership for a day; drop ours with the sentinel's keys.
    on_exit(lambda: store.r.delete(f"asgi:group:sentinel.{sid}"))
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec.to_dict()))
    sentinel_log = open(tmp / "sentinel.log", "ab")  # noqa: SIM115 - the child keeps it open
    sentinel = spawn(
        sentinel_argv(spec_path, roles="all", live=True, redis_url=args.redis_url),
        env=env,
        stdout=sentinel_log,
        stderr=subprocess.STDOUT,
    )
    print(f"   sentinel {sid} pid {sentinel.pid}, topic {spec.topic}", flush=True)

    cpu0 = {p.pid: cpu_seconds(p.pid) or 0.0 for p in (daphne, sentinel)}
    t_cpu0 = time.time()
    states, start, end = asyncio.run(run_clients(args, port, sid, cookie))
    cpu = {
        p.pid: 100 * ((cpu_seconds(p.pid) or 0.0) - cpu0[p.pid]) / (time.time() - t_cpu0)
        for p in (daphne, sentinel)
    }
    rss = {p.pid: (proc_status_kb(p.pid, "VmRSS") or 0) / 1024 for p in (daphne, sentinel)}
    alive = {"daphne": daphne.poll() is None, "sentinel": sentinel.poll() is None}
    stop_child(sentinel)
    stop_child(daphne)

    # Decode now: the clients only timestamped frames while measuring.
    delivery, upper = [], []
    per_client: list[int] = []
    windows_t: set[float] = set()
    arrivals: dict[float, list[float]] = {}
    closes = {}
    for state in states:
        if not state["opened"]:
            continue
        received = 0
        for recv_at, payload in state["frames"]:
            msg = json.loads(payload)
            if msg.get("type") != "window" or not start <= recv_at <= end:
                continue
            window = msg["window"]
            windows_t.add(window["t"])
            arrivals.setdefault(window["t"], []).append(recv_at)
            delivery.append(recv_at - window["t"])
            upper.append(recv_at - (window["t"] - window["seconds"]))
            received += 1
        per_client.append(received)
    for state in states:
        if state["closed"] and state["closed"][0] not in (1000, 1006, None):
            closes[str(state["closed"])] = closes.get(str(state["closed"]), 0) + 1

    print(f"\n== results over {end - start:.0f}s")
    print(
        f"   daphne: {cpu[daphne.pid]:.0f}% CPU, RSS {rss[daphne.pid]:.0f} MB; "
        f"sentinel: {cpu[sentinel.pid]:.0f}% CPU, RSS {rss[sentinel.pid]:.0f} MB; "
        f"both alive to the end: {alive}"
    )
    if closes:
        print(f"   unexpected close codes: {closes}")
    if not delivery:
        print("   !! no window reached any client; daphne log tail:")
        print((tmp / "daphne.log").read_text(errors="replace")[-2000:])
        print("   sentinel log tail:")
        print((tmp / "sentinel.log").read_text(errors="replace")[-2000:])
        return 1
    expected = len(windows_t) * len(per_client)
    print(
        f"   {len(windows_t)} windows published, {len(delivery):,} (window, client) deliveries "
        f"of {expected:,} possible ({100 * len(delivery) / expected:.1f}%); per client "
        f"min {min(per_client)}, max {max(per_client)}"
    )
    # Per window: how long until the first client had it, and how long the fan-out took.
    first = [min(a) - t for t, a in arrivals.items()]
    spread = [max(a) - min(a) for a in arrivals.values()]
    print(
        table(
            ["latency (ms)", "p50", "p99", "max"],
            [
                ["delivery: window cut -> client", *summarize(delivery)],
                ["consumption -> client (upper bound)", *summarize(upper)],
                ["window cut -> first client", *summarize(first)],
                ["fan-out: first -> last client", *summarize(spread)],
            ],
        )
    )
    p99 = percentile(upper, 99)
    print(
        f"   target p99 consumption -> client < 1500 ms: {'PASS' if p99 < 1.5 else 'FAIL'} "
        f"({1000 * p99:,.0f} ms)"
    )
    print(f"   finished {time.strftime('%Y-%m-%d %H:%M:%S %z')}", flush=True)
    return 0 if p99 < 1.5 else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
