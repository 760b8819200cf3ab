"""``manage.py scenario``: the failure scenario lab from the command line.

manage.py scenario list [--json]
manage.py scenario run NAME [--cluster NAME] [--json]

``run`` records the run in the database like a run started from the dashboard, prints the
progress on stderr and the per-semantic results (or the run as JSON) on stdout, and exits
non-zero unless the run passed.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dashboard.lab.tasks import execute_run
from dashboard.models import Cluster, ScenarioRun
from workers.lab.catalogue import SCENARIOS, catalog
from workers.lab.outcome import PASSED


class Command(BaseCommand):
    help = "List the failure scenarios, or run one against a cluster."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="the scenarios and what each one injects")
        listing.add_argument("--json", action="store_true")
        run = sub.add_parser("run", help="run one scenario now, in this process")
        run.add_argument("name", choices=list(SCENARIOS))
        run.add_argument("--cluster", help="a configured cluster (default: the local one)")
        run.add_argument("--json", action="store_true", help="print the run as JSON")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"handle_{action}")(**options)

    def handle_list(self, json: bool = False, **_: Any) -> None:  # noqa: A002
        entries = catalog()
        if json:
            self.stdout.write(_dumps({"scenarios": entries}))
            return
        for entry in entries:
            where = "local cluster only" if entry["broker_fault"] else "any cluster"
            self.stdout.write(f"{entry['name']:<30} {entry['title']} ({where})")
            self.stdout.write(f"{'':<30} {entry['description']}")

    def handle_run(self, name: str, cluster: str | None, json: bool = False, **_: Any) -> None:  # noqa: A002
        run = ScenarioRun.objects.create(scenario=name, cluster=_cluster(cluster))
        claimed = ScenarioRun.claim(run.pk)
        assert claimed is not None
        execute_run(claimed, progress=lambda phase, pct: self.stderr.write(f"[{pct:3d}%] {phase}"))
        if json:
            self.stdout.write(_dumps(claimed.to_dict()))
        else:
            self.print_results(claimed)
        if claimed.state != PASSED:
            raise CommandError(f"scenario {name} {claimed.state}" + _suffix(claimed.reason))

    def print_results(self, run: ScenarioRun) -> None:
        self.stdout.write(f"{run.scenario} #{run.pk}: {run.state} in {run.duration_s}s")
        for r in run.results:
            c = r["counters"]
            mark = "ok  " if r["matched"] else "MISS"
            self.stdout.write(
                f"  {mark} {r['profile']:<40} acked={c['acked']} processed={c['processed']} "
                f"lost={c['lost']} duplicated={c['duplicated']} "
                f"aborted_read={c['aborted_read']}  expected: {', '.join(r['expected'])}"
            )
            for note in r["notes"]:
                self.stdout.write(f"       - {note}")


def _cluster(name: str | None) -> Cluster | None:
    if name is None:
        return Cluster.objects.filter(is_local=True).order_by("pk").first()
    try:
        return Cluster.objects.get(name=name)
    except Cluster.DoesNotExist:
        known = ", ".join(Cluster.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"no cluster named {name!r} (configured: {known})") from None


def _suffix(reason: str) -> str:
    return f": {reason}" if reason else ""


def _dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)
