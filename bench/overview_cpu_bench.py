"""Browser CPU on the overview with many live sentinels (Chromium's performance metrics).

    .venv/bin/python bench/overview_cpu_bench.py [--sentinels 100] [--duration 30]
        [--redis-url redis://127.0.0.1:6379/0] [--redis-db 13]

Target (issue 15): with 100 sentinels the overview page stays under 10 % of a core.

What runs (all on 127.0.0.1, all stopped at the end): a throw-away SQLite database with
``--sentinels`` sentinel rows and a logged-in session (``dashboard_bench.seed_database`` /
``seed_redis``: status documents and a minute of one-second windows in Redis database
``--redis-db``, flushed first), Daphne serving the app (``DJANGO_DEBUG=true`` so that static
files need no collectstatic), and Debian's Chromium through Playwright with the overview open.
Every second the script publishes one ``window.update`` per sentinel to the ``overview``
group, as each sentinel's check runner does (``workers.runtime.publish``). Over ``--duration``
seconds after a 5 s warm-up it reads Chromium's ``Performance.getMetrics`` (CDP): CPU % =
increase of ``TaskDuration`` (time the renderer's main thread was busy: script, style,
layout, paint) / wall time, plus the script share and the websocket messages the page received
per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from _common import (
    ROOT,
    default_redis_url,
    on_exit,
    print_machine_facts,
    require_loopback,
    start_watchdog,
)
from ws_latency_bench import SESSION_SCRIPT, django_env, start_daphne

from workers.engine.documents import OVERVIEW_GROUP, WINDOW_UPDATE, compact
from workers.runtime.publish import channel_layer_config
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

CHROMIUM = "/usr/bin/chromium"
WARMUP_S = 5.0
# Runs in a child with the benchmark's Django environment: the sentinels, then the session.
SEED_SCRIPT = """
import json, random, sys
import django
django.setup()
sys.path.insert(0, "bench")
from dashboard_bench import seed_database, seed_redis
rng = random.Random(15)
sentinels = seed_database(int(sys.argv[1]), 0, rng)
seed_redis(sentinels, 60, rng)
print(json.dumps([s.pk for s in sentinels]))
"""


def feed(redis_url: str, ids: list[int], stop: threading.Event) -> None:
    """One window a second per sentinel to the overview group, as check runners publish."""
    from channels_redis.core import RedisChannelLayer

    async def run() -> None:
        layer = RedisChannelLayer(**channel_layer_config(redis_url))
        statuses = {
            sid: compact(SentinelStore(connect(redis_url), sid).status() or {}) for sid in ids
        }
        rng = random.Random(1)

        def payload(sid: int, now: float) -> dict:
            processed = 30 + rng.randrange(-3, 4)
            window = {
                "t": round(now, 3),
                "seconds": 1.0,
                "sentinel": sid,
                "verdict": "HOLDING",
                "counts": {"produced": processed, "acked": processed, "processed": processed},
                "partitions": {},
                "e2e": {"p50": 6.1, "p99": 10.4, "max": 12.0, "count": processed},
                "ack": {"p50": 4.0, "p99": 7.9, "max": 8.0, "count": processed},
            }
            return {"sentinel": sid, "window": window, "status": statuses[sid]}

        while not stop.is_set():
            started = time.time()
            # All at once, as a hundred check runners would: a loaded machine must not turn
            # the feed into fewer windows a second than sentinels.
            await asyncio.gather(
                *(
                    layer.group_send(
                        OVERVIEW_GROUP, {"type": WINDOW_UPDATE, "payload": payload(sid, started)}
                    )
                    for sid in ids
                )
            )
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - started)))
        await layer.close_pools()

    asyncio.run(run())


def metrics(cdp) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentinels", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--redis-db", type=int, default=13, help="flushed, then used alone")
    args = parser.parse_args(argv)
    require_loopback("127.0.0.1:1", args.redis_url)
    start_watchdog(args.duration + 240)
    redis_url = urlunsplit(urlsplit(args.redis_url)._replace(path=f"/{args.redis_db}"))
    connect(redis_url).flushdb()
    on_exit(lambda: connect(redis_url).flushdb())

    print_machine_facts(f"browser CPU on the overview with {args.sentinels} live sentinels")
    tmp = Path(tempfile.mkdtemp(prefix="bench-overview-"))
    on_exit(lambda: shutil.rmtree(tmp, ignore_errors=True))
    env = {**django_env(tmp, redis_url), "DJANGO_DEBUG": "true"}

    def child(*argv: str) -> str:
        """The last line a Python child (with the benchmark's Django environment) printed."""
        done = subprocess.run(
            [sys.executable, *argv], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip().splitlines()[-1]

    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    ids = json.loads(child("-c", SEED_SCRIPT, str(args.sentinels)))
    session = json.loads(child("-c", SESSION_SCRIPT))

    _daphne, port = start_daphne(env, tmp)
    base = f"http://127.0.0.1:{port}"

    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(redis_url, ids, stop), daemon=True)
    feeder.start()
    from playwright.sync_api import sync_playwright

    frames, windows = [0], [0]

    def received(payload: str | bytes) -> None:
        frames[0] += 1
        message = json.loads(payload)
        windows[0] += len(message.get("windows") or []) + (message.get("type") == "window")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context()
        context.add_cookies([{"name": session["cookie"], "value": session["key"], "url": base}])
        page = context.new_page()
        page.on("websocket", lambda ws: ws.on("framereceived", received))
        page.goto(base + "/")
        cells = page.locator("[data-sentinel]").count()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.wait_for_timeout(WARMUP_S * 1000)
        before, t0, f0, w0 = metrics(cdp), time.monotonic(), frames[0], windows[0]
        page.wait_for_timeout(args.duration * 1000)
        after, t1, f1, w1 = metrics(cdp), time.monotonic(), frames[0], windows[0]
        browser.close()
    stop.set()
    feeder.join(10)

    wall = t1 - t0
    busy = lambda name: after.get(name, 0.0) - before.get(name, 0.0)  # noqa: E731
    print(f"   {cells} cells on the page, {args.duration:.0f}s measured after {WARMUP_S:.0f}s")
    print(
        f"   websocket messages received: {(f1 - f0) / wall:.1f}/s, "
        f"carrying {(w1 - w0) / wall:.1f} windows/s"
    )
    print(
        f"   renderer main thread busy (TaskDuration): {100 * busy('TaskDuration') / wall:.1f}% "
        f"of a core; script {100 * busy('ScriptDuration') / wall:.1f}%, style "
        f"{100 * busy('RecalcStyleDuration') / wall:.1f}%, layout "
        f"{100 * busy('LayoutDuration') / wall:.1f}%  (target < 10 %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
