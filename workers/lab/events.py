"""The scenario's own cluster events watcher.

A scenario's probes are sentinels no worker watches (their topics are the run's own), so while
a scenario runs the lab samples its probes' topics itself with the watcher's sampler
(``workers.roles.eventsampler.EventSampler``), in a thread of its own every ``SAMPLE_S``, into a
cluster events stream of its own (``lab-<token>``: the cluster page's stream stays the real
watcher's), forgotten when the lab closes; each probe's judgement explains what it counted
with them (``workers.engine.explain.explain_fault``).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import redis
from confluent_kafka import KafkaException

from workers.roles.eventsampler import EventSampler

log = logging.getLogger(__name__)

SAMPLE_S = 2.0
JOIN_S = 15.0


class EventsWatch:
    """Samples ``topics`` of the cluster at ``bootstrap_servers`` every ``SAMPLE_S`` until
    ``close()``; a sample that fails (a frozen broker, Redis restarting) is logged and the next
    one tries again."""

    def __init__(
        self,
        client: redis.Redis,
        bootstrap_servers: str,
        conf: Mapping[str, Any],
        topics: list[str],
    ) -> None:
        watch = SimpleNamespace(
            cluster=f"lab-{secrets.token_hex(4)}",
            bootstrap_servers=bootstrap_servers,
            client=dict(conf),
            topics=tuple(topics),
        )
        self.sampler = EventSampler(watch, client)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scenario-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failed = False
        while not self._stop.is_set():
            try:
                self.sampler.sample()
                self.samples += 1
                failed = False
            except (KafkaException, redis.RedisError, OSError) as exc:
                if not failed:  # once per spell, not every two seconds
                    log.warning("scenario events: a sample failed: %s", exc)
                failed = True
            self._stop.wait(SAMPLE_S)

    def events(self, topic: str) -> list[dict[str, Any]]:
        """The events recorded on ``topic`` (and the cluster's, e.g. a broker unreachable)."""
        return self.sampler.store.events(topic=topic, limit=1000)

    def knows_log_starts(self, topic: str, partitions: int) -> bool:
        """Whether the last sample read the log start of each of ``topic``'s ``partitions``
        (a jump is told against it)."""
        parts = self._sampled(topic)
        return len(parts) == partitions and all(p.get("start") is not None for p in parts.values())

    def partition(self, topic: str, partition: int) -> dict[str, Any]:
        """What the last sample read of ``topic``'s ``partition`` (leader, isr, ...); {} when
        it did not read it."""
        return dict(self._sampled(topic).get(str(partition)) or {})

    def _sampled(self, topic: str) -> dict[str, dict[str, Any]]:
        """The last sample's partitions of ``topic``, by number as text."""
        sample = self.sampler.store.last_sample() or {}
        return sample.get("topics", {}).get(topic, {}).get("partitions", {})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(JOIN_S)
        if self._thread.is_alive():  # a sample stuck in a client call: leave it to its timeout
            log.warning("scenario events: the sampler did not stop within %gs", JOIN_S)
            return
        try:
            self.sampler.store.forget()
        except redis.RedisError as exc:
            log.warning("scenario events: not forgotten: %s", exc)
        self.sampler.close()
