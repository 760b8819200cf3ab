"""Scenario runs: one row per run of the failure scenario lab (``workers.lab``).

The row is the run's durable state: the Celery task (or ``manage.py scenario run``) claims it,
runs the scenario through ``dashboard.lab.tasks.execute_run()``, which writes its phase and percent
as it goes and stores the per-semantic results at the end, so a page reload, another browser
or the JSON export all see the same run. The model holds the data and its small state changes
(``claim()``, ``set_progress()``, ``finish()``); the lab itself knows nothing of it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from dashboard.models.core import Cluster
from workers.engine.documents import SEMANTICS
from workers.lab.catalogue import SCENARIOS, catalog
from workers.lab.outcome import ABORTED, FAILED, PASSED, QUEUED, RUNNING, STATES
from workers.localkafka.cluster import LocalCluster

STATE_CHOICES = [(s, s) for s in STATES]
FINISHED = (PASSED, FAILED, ABORTED)


class ScenarioRun(models.Model):
    scenario = models.CharField(max_length=64)
    cluster = models.ForeignKey(
        Cluster,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scenario_runs",
        help_text="target cluster; empty means the settings' KAFKA_BOOTSTRAP_SERVERS",
    )
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=QUEUED)
    phase = models.CharField(max_length=200, blank=True)
    percent = models.PositiveSmallIntegerField(default=0)
    reason = models.TextField(blank=True)
    results = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.scenario} #{self.pk} ({self.state})"

    @property
    def title(self) -> str:
        cls = SCENARIOS.get(self.scenario)
        return cls.title if cls else self.scenario

    @property
    def done(self) -> bool:
        return self.state in FINISHED

    @property
    def duration_s(self) -> float | None:
        if self.started and self.finished:
            return round((self.finished - self.started).total_seconds(), 1)
        return None

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def claim(cls, pk: int) -> ScenarioRun | None:
        """Move a queued run to running (a conditional UPDATE: one claimer wins); None when it
        is not queued any more (a redelivered task, or a run already started elsewhere)."""
        claimed = cls.objects.filter(pk=pk, state=QUEUED).update(
            state=RUNNING, started=timezone.now(), phase="starting", percent=0
        )
        return cls.objects.get(pk=pk) if claimed else None

    def set_progress(self, phase: str, percent: int) -> None:
        """Persist progress at once (another process serves it to the browser)."""
        self.phase, self.percent = phase[:200], percent
        ScenarioRun.objects.filter(pk=self.pk).update(phase=self.phase, percent=percent)

    def finish(
        self, state: str, reason: str = "", results: list[dict[str, Any]] | None = None
    ) -> None:
        """Store how the run ended: its state, the reason (why it aborted) and its
        per-semantic results; a run that was not aborted shows "done", 100%."""
        self.state, self.reason, self.results = state, reason, list(results or [])
        self.finished = timezone.now()
        if state != ABORTED:
            self.phase, self.percent = "done", 100
        self.save()

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON: what the progress poller reads and what the export downloads."""
        return {
            "id": self.pk,
            "scenario": self.scenario,
            "title": self.title,
            "cluster": self.cluster.name if self.cluster else None,
            "state": self.state,
            "phase": self.phase,
            "percent": self.percent,
            "reason": self.reason,
            "results": self.results,
            "created": _iso(self.created),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "duration_s": self.duration_s,
        }


def local_cluster_for(cluster: Cluster | None) -> LocalCluster | None:
    """The project's LocalCluster when ``cluster`` is it (or None: the default target).

    The local cluster is named by the ``LOCAL_KAFKA_NAME`` / ``LOCAL_KAFKA_PORT`` settings
    (``workers.localkafka.address``; defaults dev / 9092). The lab still checks that it serves
    the target's bootstrap servers before injecting any broker fault."""
    if cluster is not None and not cluster.is_local:
        return None
    return LocalCluster(settings.LOCAL_KAFKA_NAME, broker_base_port=int(settings.LOCAL_KAFKA_PORT))


def matrix() -> dict[str, Any]:
    """The result matrix: for every scenario, its latest passed or failed run's results,
    grouped by semantic (a semantic may hold several profiles, e.g. idempotence on/off)."""
    rows = []
    for entry in catalog():
        run = (
            ScenarioRun.objects.filter(scenario=entry["name"], state__in=(PASSED, FAILED))
            .select_related("cluster")
            .first()
        )
        cells: dict[str, list[dict[str, Any]]] = {s: [] for s in SEMANTICS}
        for result in run.results if run else []:
            cells.setdefault(result["semantic"], []).append(result)
        rows.append(
            {
                "scenario": entry["name"],
                "title": entry["title"],
                "semantics": entry["semantics"],
                "run": None if run is None else _run_summary(run),
                "cells": cells,
            }
        )
    return {"semantics": list(SEMANTICS), "scenarios": rows}


def _run_summary(run: ScenarioRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "state": run.state,
        "cluster": run.cluster.name if run.cluster else None,
        "finished": _iso(run.finished),
        "duration_s": run.duration_s,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None
