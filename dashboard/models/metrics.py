"""Metric windows: one-minute rollups of a sentinel's one-second windows.

One-second windows live in Redis (``ds:{id}:w1``, one hour by default) where the checker
writes them; Celery beat rolls complete minutes up into these rows (30 days by default) and
prunes both. ``dashboard.metrics.windows`` reads whichever resolution a time range needs.
"""

from __future__ import annotations

from django.db import models

from dashboard.models.core import Sentinel


class MetricWindow(models.Model):
    sentinel = models.ForeignKey(Sentinel, on_delete=models.CASCADE, related_name="windows")
    start = models.DateTimeField()
    resolution = models.PositiveIntegerField(default=60, help_text="seconds")
    # Counter increases over the window (keys of workers.engine.documents.COUNTERS; pending is
    # the level at the window's end), per partition only where non-zero.
    counts = models.JSONField(default=dict)
    partitions = models.JSONField(default=dict)
    # {"e2e": {"p50", "p99", "max", "count"}, "ack": {...}} and the mergeable histograms.
    latency = models.JSONField(default=dict)
    hist = models.JSONField(default=dict)
    verdict = models.CharField(max_length=10, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sentinel", "resolution", "start"], name="one_window_per_slot"
            )
        ]
        indexes = [models.Index(fields=["sentinel", "resolution", "start"])]
        ordering = ["start"]

    def as_window(self) -> dict:
        """The same shape as a one-second window document (``Window.to_doc``: ``t`` is the end)."""
        return {
            "t": int(self.start.timestamp()) + self.resolution,
            "seconds": self.resolution,
            "sentinel": self.sentinel_id,
            "verdict": self.verdict,
            "counts": self.counts,
            "partitions": self.partitions,
            "e2e": self.latency.get("e2e", {}),
            "ack": self.latency.get("ack", {}),
        }
