"""Running one named scenario end to end, without Django: ``run()`` and ``run_against()``.

``run_against()`` takes plain values (the target cluster, Redis, the ``LocalCluster`` or
None, a progress callback), builds the ``Lab`` and runs the scenario in it; callers that
keep runs somewhere (``dashboard.lab.tasks``) store its ``ScenarioOutcome``.

Contracts:

- Every wait is on a condition, with a timeout from ``Timeouts``; a timeout ends the run as
  ``aborted`` with the reason. The only fixed-length wait is a fault whose definition is a
  duration (the leader frozen for N seconds).
- ``run()`` returns only after every process it started is gone, every node it stopped or
  froze runs again with all brokers in the metadata, and its topics and Redis keys are
  deleted; a failure to restore turns the outcome into ``aborted`` and says why.
- The progress callback receives ``(phase, percent)``; an exception it raises aborts the run
  (that is how a caller cancels).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from workers.lab.catalogue import SCENARIOS, Scenario
from workers.lab.lab import Lab
from workers.lab.outcome import (
    ABORTED,
    FAILED,
    PASSED,
    ProgressFn,
    ScenarioAborted,
    ScenarioOutcome,
    SemanticResult,
)
from workers.localkafka.cluster import LocalCluster

log = logging.getLogger(__name__)


def run_against(
    name: str,
    *,
    bootstrap_servers: str,
    redis_url: str,
    cluster_name: str = "local",
    client: dict[str, Any] | None = None,
    local: LocalCluster | None = None,
    progress: ProgressFn | None = None,
    **lab_options: Any,
) -> ScenarioOutcome:
    """Run scenario ``name`` against the cluster at ``bootstrap_servers`` (``client``: its
    security properties), with ``local`` when it is the project's own cluster.

    Returns the outcome as ``run()`` does; raises ``ScenarioAborted`` (the reason) only when
    the lab cannot be built. ``lab_options`` go to ``Lab`` (timeouts, load, workdir, keep)."""
    try:
        lab = Lab(
            bootstrap_servers=bootstrap_servers,
            redis_url=redis_url,
            local=local,
            cluster_name=cluster_name,
            client=client,
            progress=progress,
            **lab_options,
        )
    except (ValueError, OSError) as exc:  # a bad Redis URL, no room for the work directory
        raise ScenarioAborted(f"{exc}") from exc
    return run(name, lab)


def run(name: str, lab: Lab) -> ScenarioOutcome:
    """Run scenario ``name`` in ``lab``; never raises for a failed or aborted run.

    passed: every probe's observation matched its expectations; failed: at least one did
    not; aborted: the run could not complete (refused, cluster not ready, timeout, crash,
    cancelled) or the cluster could not be restored afterwards; ``reason`` says which."""
    started = time.time()
    if name not in SCENARIOS:
        return ScenarioOutcome(
            name, ABORTED, f"no scenario named {name!r}", [], started, time.time()
        )
    lab.scenario_name = name
    results: list[SemanticResult] = []
    state, reason, problems = ABORTED, "", []
    try:
        with lab.lock():
            try:
                results, state = _run(SCENARIOS[name](), lab), ""
            except ScenarioAborted as exc:
                reason = str(exc)
            except Exception as exc:  # a crash of the lab itself ends the run, with the reason
                log.exception("scenario %s crashed", name)
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                problems = lab.close()
    except ScenarioAborted as exc:  # the lock is held by another run
        reason = str(exc)
        lab.close()
    if problems:
        reason = "; ".join(filter(None, [reason, "cluster not restored: " + "; ".join(problems)]))
        state = ABORTED
    if not state:
        state = PASSED if all(r.matched for r in results) else FAILED
    return ScenarioOutcome(name, state, reason, results, started, time.time())


def _run(scenario: Scenario, lab: Lab) -> list[SemanticResult]:
    scenario.preflight(lab)
    return scenario.run(lab)
