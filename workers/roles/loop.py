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

from workers.clients.kafka import describe
from workers.clients.tlsprobe import verify_reason
from workers.engine.acls import AclNeed, role_acls
from workers.engine.failures import in_words
from workers.engine.spec import SentinelSpec
from workers.store.epoch import StateLost
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)


HEARTBEAT_INTERVAL_S = 1.0
# How long past its own timeout a client call may take before it counts as stuck
# (``Loop.bounded_call``): the GIL and a loaded machine may delay its return, never this much.
CALL_GRACE_S = 30.0
# A role that cannot start (a wrong password, a missing ACL, an unreachable cluster) tries
# again after 1, 2, 4, 8 s, then every 10 s: once the cause is fixed it starts within 10 s
# (with 30 s, fixing an ACL was seen to take a minute to show), for one failed attempt per
# role every 10 s meanwhile.
START_BACKOFF_MAX_S = 10.0


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
        # A store of its own: this role joins the state epoch and notices its loss itself.
        self.store = store.for_writer()
        self.shutdown = threading.Event()
        self.error: str | None = None
        self._step_error: str | None = None  # the error a failed step set, until one succeeds
        self.busy_since: float | None = None
        # When the client call in progress is past its own timeout (``bounded_call``).
        self.call_deadline: float | None = None
        self._last_heartbeat = 0.0

    def start(self) -> None:  # pragma: no cover - overridden
        pass

    def step(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        pass

    def acl_needs(self) -> list[AclNeed]:
        """The ACLs this role's clients use (``workers.engine.acls``): a denial names them."""
        return role_acls(self.role, self.spec.semantic, self.spec.id, self.spec.topic)

    def in_words(self, error: str | None) -> str | None:
        """``error`` as the sentence the status shows (``workers.engine.failures``)."""
        if not error:
            return error
        client = self.spec.client
        return in_words(
            error,
            user=client.get("sasl.username"),
            mechanism=client.get("sasl.mechanism") or client.get("sasl.mechanisms"),
            needs=self.acl_needs(),
            tls=verify_reason(error, client),
        )

    def heartbeat(self, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_INTERVAL_S:
            self._last_heartbeat = now
            # Best effort: Redis restarting (refused, loading its data) must not end the role;
            # the next beat a second later gets through, and the work itself retries.
            with contextlib.suppress(redis.RedisError):
                self.store.heartbeat(
                    self.role,
                    self.in_words(self.error),
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    **extra,
                )

    def on_client_error(self, err: KafkaError) -> None:
        """librdkafka's error_cb: connectivity trouble is reported as STALLED, never as loss."""
        self.error = f"{err.name()}: {err.str()}"
        log.warning("%s %s: %s", self.role, self.spec.name, self.error)

    def join_epoch(self) -> str:
        """Join the sentinel's state epoch (``SentinelStore.ensure_epoch``); the role that
        begins a new one while it held an epoch itself knows the state was lost, and says so
        (the producer also finds out at start, see ``SentinelProducer.new_run``)."""
        had = self.store.token
        token, created = self.store.ensure_epoch()
        if created and had is not None:
            self.note_state_lost("Redis lost it")
        return token

    def note_state_lost(self, how: str) -> None:
        """Record the ``state-lost`` event, once per epoch whoever finds out first."""
        message = f"sentinel state in Redis was lost ({how}): a new run starts, and nothing "
        message += "from before counts as lost or duplicated"
        if self.store.note_state_lost(message):
            log.warning("%s %s: %s", self.role, self.spec.name, message)

    def on_state_lost(self, reason: str) -> None:
        """Redis lost the state this role was writing to: join the new epoch. Roles whose
        in-memory state belongs to the old one (the producer's run, the checker) override."""
        log.warning("%s %s: %s", self.role, self.spec.name, reason)
        self.join_epoch()

    def recover_state(self, reason: str) -> None:
        """``on_state_lost`` until it went through (Redis may lose the state again meanwhile);
        Redis or cluster trouble is left to the next step, which meets the loss again."""
        while not self.shutdown.is_set():
            try:
                self.on_state_lost(reason)
                return
            except StateLost as exc:
                reason = str(exc)
            except (KafkaException, redis.RedisError) as exc:
                self.error = describe(exc)
                self.shutdown.wait(1.0)
                return

    @contextlib.contextmanager
    def bounded_call(self, timeout_s: float):
        """Around a client call given ``timeout_s``: a call still running ``CALL_GRACE_S``
        later ignored its timeout (librdkafka's ``send_offsets_to_transaction`` across a broker
        restart, librdkafka#5456) and will not return; ``RoleRunner.stuck`` says so then,
        instead of after the whole step deadline."""
        self.call_deadline = time.monotonic() + timeout_s + CALL_GRACE_S
        try:
            yield
        finally:
            self.call_deadline = None

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
                except StateLost as exc:
                    self.busy_since = None
                    self.recover_state(str(exc))
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
        """``start()`` until it succeeds (backing off to ``START_BACKOFF_MAX_S``) or shutdown;
        False on shutdown."""
        backoff = 1.0
        while not self.shutdown.is_set():
            try:
                self.start()
                return True
            except StateLost as exc:  # Redis lost the state while we started: start again
                log.warning("%s %s: %s", self.role, self.spec.name, exc)
                continue
            except (KafkaException, TimeoutError, redis.RedisError) as exc:
                self.error = self._step_error = f"cannot start: {self.in_words(describe(exc))}"
                log.warning("%s %s: %s", self.role, self.spec.name, self.error)
                with contextlib.suppress(redis.RedisError):
                    self.store.heartbeat(self.role, self.error, pid=os.getpid())
                self.shutdown.wait(backoff)
                backoff = min(backoff * 2, START_BACKOFF_MAX_S)
        return False
