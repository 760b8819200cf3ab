"""The shape of every sentinel role: a loop of small steps with a shutdown flag.

Each role is a small class with a ``shutdown`` flag and a ``step()`` that does one unit of
work, so a host (a test, ``python -m workers.runtime.run``, a Celery worker) can run it in a
thread or a process. librdkafka clients are created in ``start()``, inside the process that
runs the loop (never before a fork).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from confluent_kafka import (
    KafkaError,
    KafkaException,
)

from workers.engine.spec import SentinelSpec
from workers.roles.kafka import describe
from workers.store import SentinelStore

log = logging.getLogger(__name__)


HEARTBEAT_INTERVAL_S = 1.0


def now_us() -> int:
    return time.time_ns() // 1000


class RestartRole(Exception):
    """Raised by a step whose clients are in a state it cannot go on from (e.g. an abort that
    failed with the consumer already past the batch): the loop closes its clients and starts
    afresh from what Kafka and Redis hold, as a process restart would."""


class Loop:
    """A long-running unit of sentinel work: ``start()``, ``step()`` until ``shutdown``, ``close()``.

    ``busy_since`` is when the current step began (``time.monotonic()``), or None between
    steps; retry loops inside a step call ``progress()``. A step that stays busy for minutes is
    stuck in a call that never returns (librdkafka's ``send_offsets_to_transaction`` was seen
    to block for good when the group coordinator stopped): ``python -m workers.runtime.run`` exits
    then, so the worker restarts the sentinel (see ``RoleRunner.stuck``).
    """

    role = "loop"

    def __init__(self, spec: SentinelSpec, store: SentinelStore) -> None:
        self.spec = spec
        self.store = store
        self.shutdown = threading.Event()
        self.error: str | None = None
        self._step_error: str | None = None  # the error a failed step set, until one succeeds
        self.busy_since: float | None = None
        self._last_heartbeat = 0.0

    def start(self) -> None:  # pragma: no cover - overridden
        pass

    def step(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        pass

    def heartbeat(self, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_INTERVAL_S:
            self._last_heartbeat = now
            # Best effort: Redis restarting (refused, loading its data) must not end the role;
            # the next beat a second later gets through, and the work itself retries.
            with contextlib.suppress(redis.RedisError):
                self.store.heartbeat(
                    self.role, self.error, pid=os.getpid(), host=socket.gethostname(), **extra
                )

    def on_client_error(self, err: KafkaError) -> None:
        """librdkafka's error_cb: connectivity trouble is reported as STALLED, never as loss."""
        self.error = f"{err.name()}: {err.str()}"
        log.warning("%s %s: %s", self.role, self.spec.name, self.error)

    def progress(self) -> None:
        """Inside a step: still working (a retry came back), not stuck."""
        self.busy_since = time.monotonic()

    def run(self) -> None:
        if not self.start_with_retries():
            return
        try:
            while not self.shutdown.is_set():
                self.busy_since = time.monotonic()
                try:
                    self.step()
                except (KafkaException, redis.RedisError) as exc:
                    # Cluster or Redis trouble: report it (the verdict becomes STALLED), wait, go on.
                    self.error = self._step_error = describe(exc)
                    log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                    self.busy_since = None
                    self.shutdown.wait(1.0)
                except RestartRole as exc:
                    self.error = self._step_error = f"restarting: {exc}"
                    log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                    self.busy_since = None
                    with contextlib.suppress(Exception):
                        self.close()
                    if not self.start_with_retries():
                        return
                else:
                    # A step went through: the trouble a failed step reported is over (else
                    # the sentinel stays STALLED for good after, e.g., a Redis restart). An
                    # error the role reported itself (librdkafka's error_cb) is the role's to
                    # clear when its own work succeeds.
                    if self._step_error is not None and self.error == self._step_error:
                        self.error = None
                    self._step_error = None
                self.busy_since = None
                self.heartbeat()
        finally:
            self.busy_since = None
            self.close()
            with contextlib.suppress(redis.RedisError):
                self.store.heartbeat(self.role, "stopped", pid=os.getpid())

    def start_with_retries(self) -> bool:
        """``start()`` until it succeeds (backing off to 30 s) or shutdown; False on shutdown."""
        backoff = 1.0
        while not self.shutdown.is_set():
            try:
                self.start()
                return True
            except (KafkaException, TimeoutError, redis.RedisError) as exc:
                self.error = self._step_error = f"cannot start: {describe(exc)}"
                log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                with contextlib.suppress(redis.RedisError):
                    self.store.heartbeat(self.role, self.error, pid=os.getpid())
                self.shutdown.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        return False
