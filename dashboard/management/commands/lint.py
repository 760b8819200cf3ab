"""``manage.py lint [--cluster NAME] [--json] [--internal]``: the guarantee lint, now.

Lints every configured cluster (or one), prints each topic's verdict per semantic and the
findings, and stores the reports as the scheduled run does. Exit status: 0 when no finding is
an error, 1 when one is (a topic's, the cluster's or a profile's) (so a CI pipeline can gate a deploy on it), 2 when a cluster could
not be read.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dashboard.lint import services as lint
from workers.engine.documents import SEMANTICS
from workers.engine.lint.topics import CANNOT_HOLD, has_errors


class Command(BaseCommand):
    help = "Can each topic and each profile deliver its semantic? (read-only)"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--cluster", help="lint only this cluster (by name)")
        parser.add_argument("--json", action="store_true", help='{"clusters": [report, ...]}')
        parser.add_argument(
            "--internal", action="store_true", help="also show (and fail on) internal topics"
        )

    def handle(self, *args: Any, cluster: str | None, json: bool, internal: bool, **_: Any) -> None:  # noqa: A002
        try:
            targets = lint.targets(cluster)
        except lint.UnknownCluster as exc:
            raise CommandError(str(exc)) from None
        reports = [lint.run(t) for t in targets]
        if json:
            self.stdout.write(_dumps({"clusters": reports}))
        else:
            for report in reports:
                self._print(report, internal)
        if any(r["error"] for r in reports):
            raise SystemExit(2)
        broken = [p for r in reports for p in r["profiles"] if p["verdict"] == CANNOT_HOLD]
        if broken or any(has_errors(r, include_internal=internal) for r in reports):
            raise SystemExit(1)

    def _print(self, report: dict[str, Any], internal: bool) -> None:
        w = self.stdout.write
        w(
            f"cluster {report['cluster']}: {len(report['brokers'])} broker(s), "
            f"{report['duration_s']} s"
        )
        if report["error"]:
            w(f"  cannot read the cluster: {report['error']}")
            return
        for f in report["cluster_findings"]:
            w(f"  {f['severity']:<7} {f['rule']:<32} {f['message']} ({f['source']})")
        for topic in report["topics"]:
            if topic["internal"] and not internal:
                continue
            cells = "  ".join(f"{s}={topic['verdicts'][s]['verdict']}" for s in SEMANTICS)
            w(f"  {topic['name']}: {cells}")
            for f in topic["findings"]:
                w(
                    f"    {f['severity']:<7} {f['rule']:<32} {f['message']} "
                    f"[{f['setting']}: {f['source']}] fix: {f['fix']}"
                )
        for p in report["profiles"]:
            first = p["first"]
            note = f" ({first['rule']}: {first['message']})" if first else ""
            w(f"  profile {p['profile']} ({p['semantic']}): {p['verdict']}{note}")


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)
