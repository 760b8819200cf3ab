"""``manage.py sentinels``: status of every sentinel, default setup, and a foreground runner.

manage.py sentinels status [--json]
manage.py sentinels placement [--json]
manage.py sentinels ensure-defaults
manage.py sentinels run NAME [--roles producer,consumer,checker]
"""

from __future__ import annotations

import json
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dashboard.models import Sentinel, ensure_defaults
from dashboard.oncall.services import with_explanations
from dashboard.redisclient import redis_client
from dashboard.status import all_statuses, placement, redis_problem
from workers.clientsecrets import SecretError
from workers.runtime.publish import LivePublisher
from workers.runtime.run import RoleRunner, adopt_state, open_spec, roles_for
from workers.store.sentinel import SentinelStore


class Command(BaseCommand):
    help = "Sentinel status, default setup, and a foreground runner."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="print every sentinel's status")
        status.add_argument("--json", action="store_true", help="the documented JSON document")
        placed = sub.add_parser("placement", help="which worker runs each enabled sentinel")
        placed.add_argument("--json", action="store_true")
        sub.add_parser("ensure-defaults", help="create the three default sentinels if absent")
        run = sub.add_parser("run", help="run one sentinel in the foreground (Ctrl-C stops)")
        run.add_argument("name")
        run.add_argument("--roles", default="all")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, "handle_" + action.replace("-", "_"))(**options)

    def handle_status(self, json: bool = False, **_: Any) -> None:  # noqa: A002
        problem = redis_problem(5.0)
        if problem:  # every status lives in Redis: say why there is none, not "no report"
            raise CommandError(problem)
        docs = with_explanations(all_statuses())
        if json:
            self.stdout.write(_dumps({"sentinels": docs}))
            return
        for doc in docs:
            t = doc["totals"]
            self.stdout.write(
                f"{doc['name']:<24} {doc['semantic']:<14} {doc['verdict']:<9} "
                f"processed={t['processed']} lost={t['lost']} duplicated={t['duplicated']} "
                f"reordered={t['reordered']} pending={t['pending']} p99={doc['latency_ms']['p99']}ms"
            )

    def handle_placement(self, json: bool = False, **_: Any) -> None:  # noqa: A002
        sentinels = list(Sentinel.objects.filter(enabled=True).order_by("name"))
        placed = placement(sentinels)
        holders, workers = placed["holders"], placed["workers"]
        if json:
            doc = {
                "sentinels": {s.name: holders.get(s.pk) for s in sentinels},
                "workers": workers,
            }
            self.stdout.write(_dumps(doc))
            return
        by_worker: dict[str | None, list[str]] = {}
        for s in sentinels:
            by_worker.setdefault(holders.get(s.pk), []).append(s.name)
        for worker, doc in sorted(workers.items()):
            names = by_worker.pop(worker, [])
            cap = doc["cap"] or "no cap"
            self.stdout.write(f"{worker} ({len(names)} sentinels, {cap}): {', '.join(names)}")
        for worker, names in by_worker.items():  # holders that stopped beating, or nobody
            label = f"{worker} (not beating)" if worker else "not running"
            self.stdout.write(f"{label}: {', '.join(names)}")

    def handle_ensure_defaults(self, **_: Any) -> None:
        for sentinel in ensure_defaults():
            self.stdout.write(f"sentinel {sentinel.name} ({sentinel.semantic}) on {sentinel.topic}")

    def handle_run(self, name: str, roles: str, **_: Any) -> None:
        try:
            sentinel = Sentinel.objects.select_related("cluster", "profile").get(name=name)
        except Sentinel.DoesNotExist:
            raise CommandError(f"no sentinel named {name!r}") from None
        try:
            spec = open_spec(sentinel.to_spec())  # in this process: its clients need them clear
        except SecretError as exc:
            raise CommandError(str(exc)) from None
        chosen = roles_for(spec) if roles == "all" else roles.split(",")
        publisher = LivePublisher(settings.REDIS_URL)
        store = SentinelStore(redis_client(), spec.id)
        adopt_state(store, spec)
        host = RoleRunner(spec, store, chosen, publisher)
        signal.signal(signal.SIGINT, lambda *_: host.stop())
        signal.signal(signal.SIGTERM, lambda *_: host.stop())
        host.start()
        while host.alive():
            host.join(0.5)
        if host.failures:
            raise CommandError("; ".join(host.failures))


def _dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)
