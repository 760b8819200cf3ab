"""Two callers at the same moment, as two Celery workers (or a slow task and the next beat
tick) would be: each in a thread with a database connection of its own."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def at_once(call: Callable[[], Any], times: int = 2, timeout: float = 60) -> list[Any]:
    """Run ``call`` in ``times`` threads at once; what each returned (order of finishing).
    An exception in a thread fails the caller, naming it."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), f"a call still running after {timeout} s"
    assert not errors, f"a call raised: {errors[0]!r}"
    return results


def meet(together: threading.Barrier, timeout: float = 2) -> None:
    """Wait for the other caller at this point, or go on alone after ``timeout`` (the other
    one is held elsewhere, by a lock or a claim: the interleaving the guard allows)."""
    with contextlib.suppress(threading.BrokenBarrierError):
        together.wait(timeout=timeout)
