"""On-call latency: from a forged violation to the notification's arrival at a receiver.

    .venv/bin/python bench/oncall_bench.py [--rounds 10] [--bootstrap 127.0.0.1:9092,...]
        [--redis-url redis://127.0.0.1:6379/0] [--evaluate-every 2]

Wired as in production: a throwaway SQLite database with one at-most-once sentinel on the
given cluster, a Celery worker hosting it and running the tasks, Celery beat evaluating the
alert rules every ``--evaluate-every`` seconds (``ONCALL_EVALUATE_EVERY_S``), and a webhook
channel pointing at an HTTP receiver in this process. Each round writes one already
processed record to the sentinel topic again (a duplicate: a violation under at-most-once)
and times the receiver's "firing" request; the incident then resolves (hold-down 3 s) before
the next round. Celery's broker and the sentinel state use database 14 of ``--redis-url``
(a running ``bin/up`` on database 0 is left alone).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    default_bootstrap,
    default_redis_url,
    delete_topics,
    on_exit,
    print_machine_facts,
    require_loopback,
    spawn,
    start_watchdog,
    stop_child,
    table,
)


class Receiver(ThreadingHTTPServer):
    """Records (arrival time, body) of every POST."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.changed:
                    receiver.arrivals.append((time.time(), body))
                    receiver.changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def wait_for(self, status: str, after: int, timeout: float) -> tuple[float, dict]:
        """The first request with ``status`` among those after index ``after``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for t, body in self.arrivals[after:]:
                    if body.get("status") == status:
                        return t, body
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"no {status} notification within {timeout:.0f}s")
                self.changed.wait(left)


def setup(db_path: Path, redis_url: str, bootstrap: str, receiver_url: str, every: int):
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "DATABASE_URL": f"sqlite:///{db_path}",
            "REDIS_URL": redis_url,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-only-" + "x" * 40,
            "ONCALL_ALLOW_PRIVATE_URLS": "true",
            "ONCALL_EVALUATE_EVERY_S": str(every),
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    from dashboard.models import Channel, Cluster, Profile, Sentinel
    from dashboard.models.oncall import ensure_rules
    from workers.engine.alerts import VIOLATED
    from workers.engine.profiles import AT_MOST_ONCE, DEFAULT_PROFILES

    call_command("migrate", verbosity=0)
    cluster = Cluster.objects.create(name="bench", bootstrap_servers=bootstrap)
    data = DEFAULT_PROFILES[AT_MOST_ONCE]
    profile = Profile.objects.create(
        name=data.name,
        semantic=data.semantic,
        producer_properties=data.producer,
        consumer_properties=data.consumer,
        commit_strategy=data.commit_strategy,
    )
    sentinel = Sentinel.objects.create(
        name="oncall-bench",
        cluster=cluster,
        profile=profile,
        topic=f"bench-oncall-{int(time.time())}",
        grace_seconds=3,
        slo_p99_ms=10000,
    )
    channel = Channel.objects.create(name="receiver", kind="webhook", config={"url": receiver_url})
    for rule in ensure_rules(sentinel):
        rule.channels.set([channel] if rule.kind == VIOLATED else [])
        if rule.kind == VIOLATED:
            rule.resolve_after_s = 3
            rule.save()
    return sentinel


def forge_duplicate(bootstrap: str, topic: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"forge-{time.time_ns()}"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        msg = None
        while msg is None or msg.error():
            msg = consumer.poll(1.0)
    finally:
        consumer.close()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, msg.value(), partition=0)
    producer.flush(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--evaluate-every", type=int, default=2)
    args = parser.parse_args()
    require_loopback(args.bootstrap, args.redis_url)
    redis_url = urlunsplit(urlsplit(args.redis_url)._replace(path="/14"))
    start_watchdog(300 + args.rounds * 60)
    print_machine_facts("on-call latency: forged violation -> webhook request")

    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    on_exit(receiver.shutdown)
    workdir = Path(tempfile.mkdtemp(prefix="oncall-bench-"))
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    sentinel = setup(workdir / "db.sqlite3", redis_url, args.bootstrap, url, args.evaluate_every)
    from workers.store.connection import connect
    from workers.store.sentinel import SentinelStore

    store = SentinelStore(connect(redis_url), sentinel.pk)
    store.reset()
    on_exit(store.reset)
    on_exit(lambda: delete_topics(args.bootstrap, [sentinel.topic]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    celery = [sys.executable, "-m", "celery", "-A", "workers.runtime.celery"]
    log = open(workdir / "celery.log", "ab")  # noqa: SIM115 - closed at exit
    on_exit(log.close)
    worker = spawn([*celery, "worker", "-l", "warning"], env=env, stdout=log, stderr=log)
    beat = spawn(
        [*celery, "beat", "-l", "warning", "--schedule", str(workdir / "beat")],
        env=env,
        stdout=log,
        stderr=log,
    )
    on_exit(lambda: (stop_child(beat), stop_child(worker)))
    deadline = time.monotonic() + 180
    while ((store.status() or {}).get("totals") or {}).get("processed", 0) < 100:
        if time.monotonic() > deadline:
            raise SystemExit(f"the sentinel did not start; see {workdir / 'celery.log'}")
        time.sleep(0.5)
    print(f"   sentinel running on {sentinel.topic}; beat evaluates every {args.evaluate_every}s")

    from dashboard.models import Incident

    latencies = []
    for i in range(args.rounds):
        seen = len(receiver.arrivals)
        # A random phase against beat's ticks: the rounds would lock onto them otherwise (each
        # resolve arrives just after a tick).
        time.sleep(random.uniform(0, args.evaluate_every))
        forge_duplicate(args.bootstrap, sentinel.topic)
        forged = time.time()
        fired, _body = receiver.wait_for("firing", seen, 60)
        latencies.append(fired - forged)
        receiver.wait_for("resolved", seen, 90)
        print(f"   round {i + 1}: {latencies[-1]:.2f}s to the receiver", flush=True)
    opened = Incident.objects.filter(sentinel=sentinel).count()
    print()
    print(
        table(
            ["rounds", "median s", "min s", "max s", "incidents opened"],
            [
                [
                    len(latencies),
                    f"{statistics.median(latencies):.2f}",
                    f"{min(latencies):.2f}",
                    f"{max(latencies):.2f}",
                    opened,
                ]
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
