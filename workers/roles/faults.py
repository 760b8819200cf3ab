"""Fault hooks: deterministic crash points in the roles, armed by the scenario lab."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from workers.engine.streams import to_ranges
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)

# How often a hook asks Redis whether it is armed. Every consumer batch passes its points (ten
# a second at the default rate): asking at each of them was a Redis round trip per batch for
# something only the lab ever sets, and a scenario waits for the fault's event anyway.
CHECK_INTERVAL_S = 1.0


def batch_ranges(items: list[tuple[int, int, int, int, int]]) -> dict[str, list[list[int]]]:
    """``{"run:partition": [[first, last], ...]}`` of a batch of ledger items."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for run, partition, seq, _produced, _processed in items:
        seqs[f"{run}:{partition}"].append(seq)
    return {key: to_ranges(values) for key, values in seqs.items()}


class InjectedFault(RuntimeError):
    """A role failure injected by the lab (``FaultHook`` armed with ``action="raise"``)."""


class FaultHook:
    """Deterministic crash points in the consumer loops, armed through Redis.

    The store's ``fault`` hash (``SentinelStore.arm_fault``) holds ``point`` and ``after`` (how many passes through the point to let
    by first). When the point is reached the armed count is consumed atomically and the
    process SIGKILLs itself, so the crash lands exactly between two steps of the loop. Armed
    with ``action="hang"`` the step blocks for good instead, as a client call that never
    returns would (what the stuck-step watchdog of ``workers.runtime.run`` is there for).
    Armed with ``action="raise"`` the role fails with ``InjectedFault``: its sentinel stops
    and is restarted alone, other sentinels in the same process going on.
    """

    def __init__(self, store: SentinelStore) -> None:
        self.store = store
        self._checked = 0.0
        self._armed: str | None = None

    def armed(self, point: str) -> bool:
        """Whether ``point`` is armed (asked of Redis at most every ``CHECK_INTERVAL_S``): a
        loop that reaches the point only later in the usual course (a commit still in flight)
        gets there first when it is."""
        now = time.monotonic()
        if now - self._checked >= CHECK_INTERVAL_S:
            self._checked = now
            self._armed = self.store.armed_fault()
        return self._armed == point

    def at(
        self, point: str, kill: bool = True, detail: Callable[[], dict] | None = None, **extra: Any
    ) -> bool:
        """At crash point ``point``: die (or, with ``kill=False``, return True) if it is armed.

        ``detail`` (e.g. the batch in hand) goes into the ``fault`` event, so a scenario knows
        exactly which records the crash affected."""
        if not self.armed(point):
            return False
        action = self.store.take_fault()
        if action is None:
            return False
        self._armed = None
        info = {**extra, **(detail() if detail is not None else {})}
        self.store.event(
            "fault", f"fault injected at {point}", point=point, pid=os.getpid(), **info
        )
        if action == "hang":
            threading.Event().wait()
        if action == "raise":
            raise InjectedFault(f"fault injected at {point}")
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)
        return True
