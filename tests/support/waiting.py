"""The one way a test waits for something to happen: poll a condition until it holds.

A wait's timeout is how long to keep looking, never a claim about speed (timing targets live in
``bench/``). Its failure names what was awaited, the last thing seen, and any details the
caller adds (a process's log, a status document).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.25,
    details: Callable[[], str] | None = None,
) -> T:
    """Call ``condition`` until it returns something truthy and return that.

    Fails with "timed out after <timeout> s waiting for <what>" and the last value seen (plus
    ``details()`` when given). ``condition`` may itself fail the test early, for example when
    the process it waits on has died. It is called at least once, however short the timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    extra = f"\n{details()}" if details else ""
    raise AssertionError(
        f"timed out after {timeout:g} s waiting for {what} (last: {last!r}){extra}"
    )
