"""The guarantee lint as the dashboard runs it: which clusters, one run, the stored reports.

``run(target)`` reads the cluster (``workers.clients.lintfacts.gather``, read-only), lints its
topics (``workers.engine.lint``) and every profile (``workers.engine.lint.client``), and keeps
the report in Redis (``workers.store.lint.LintStore``); the management command, the Celery beat
task, the pages and the API all go through here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from dashboard.redisclient import redis_client
from workers.clients.lintfacts import FactsError, gather
from workers.clientsecrets import SecretError, unseal
from workers.engine.groups import worst_lags
from workers.engine.lint.client import lint_profile
from workers.engine.lint.topics import ClusterFacts, lint_report, with_group_lags
from workers.engine.profiles import DEFAULT_PROFILES
from workers.engine.redact import redact_text
from workers.store.groups import GroupStore
from workers.store.lint import LintStore

# A run claims its cluster this long at most, so a crashed run does not block the next one.
RUN_CLAIM_MS = 120_000


class UnknownCluster(LookupError):
    pass


@dataclass(frozen=True)
class Target:
    name: str
    bootstrap_servers: str
    client_properties: dict[str, Any] = field(default_factory=dict)


def targets(name: str | None = None) -> list[Target]:
    """The configured clusters (``name``: only that one). Without any cluster row, the
    settings' ``KAFKA_BOOTSTRAP_SERVERS`` under the local cluster's name."""
    from dashboard.models import Cluster
    from dashboard.models.core import LOCAL_CLUSTER

    rows = Cluster.objects.all()
    found = [Target(c.name, c.bootstrap_servers, dict(c.client_properties)) for c in rows]
    if not found:
        found = [Target(LOCAL_CLUSTER, settings.KAFKA_BOOTSTRAP_SERVERS)]
    if name is None:
        return found
    chosen = [t for t in found if t.name == name]
    if not chosen:
        names = ", ".join(t.name for t in found)
        raise UnknownCluster(f"no cluster named {name!r} (configured: {names})")
    return chosen


def store() -> LintStore:
    return LintStore(redis_client())


def _profiles(facts: ClusterFacts | None) -> list[dict[str, Any]]:
    from dashboard.models import Profile

    data = [p.to_data() for p in Profile.objects.all()] or list(DEFAULT_PROFILES.values())
    return [lint_profile(p, facts) for p in data]


def run(target: Target, *, timeout: float = 15.0) -> dict[str, Any]:
    """Lint ``target`` now and store the report. A cluster that cannot be read gives a report
    with an ``error`` (and no topics) rather than an exception."""
    started = time.time()
    try:
        facts = gather(
            target.bootstrap_servers,
            unseal(target.client_properties),
            name=target.name,
            timeout=timeout,
        )
    except (FactsError, SecretError) as exc:
        report: dict[str, Any] = {
            "cluster": target.name,
            "generated_at": started,
            "error": redact_text(str(exc)),
            "brokers": [],
            "cluster_findings": [],
            "topics": [],
            "counts": {"error": 0, "warning": 0},
            "profiles": _profiles(None),
        }
    else:
        # What the cluster's group watcher measured: a retention shorter than a group's lag.
        groups = GroupStore(redis_client(), target.name).states().values()
        facts = with_group_lags(facts, worst_lags(groups, started))
        report = lint_report(facts, generated_at=started)
        report["error"] = None
        report["profiles"] = _profiles(facts)
    report["duration_s"] = round(time.time() - started, 3)
    store().save(target.name, report)
    return report


def run_claimed(target: Target) -> dict[str, Any] | None:
    """``run`` unless another run of the same cluster is in progress (then ``None``)."""
    s = store()
    if not s.claim_run(target.name, RUN_CLAIM_MS):
        return None
    try:
        return run(target)
    finally:
        s.release_run(target.name)


def latest(name: str) -> dict[str, Any] | None:
    return store().report(name)


def latest_reports() -> dict[str, dict[str, Any]]:
    """Cluster name -> its latest stored report, for the clusters that have one."""
    s = store()
    found = {t.name: s.report(t.name) for t in targets()}
    return {name: report for name, report in found.items() if report and not report["error"]}
