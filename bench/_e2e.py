"""Shared by the end-to-end benchmark's parts: what one measurement holds, timers, CPU."""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    cpu_seconds,
    thread_cpu,
)

BURST = 100  # records per partition per producer step, as SentinelProducer.produce_burst
MP = multiprocessing.get_context("fork")
SAMPLE_S = 0.5


@dataclass
class Measurement:
    rate: float = 0.0
    interval: float = 0.0
    counted: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def steady_rate(
    samples: list[tuple[float, float]], start: float, end: float
) -> tuple[float, float]:
    """Rate of a counter over [start, end] from ``(time, value)`` samples; (rate, seconds)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return 0.0, 0.0
    (t1, v1), (t2, v2) = inside[0], inside[-1]
    return ((v2 - v1) / (t2 - t1) if t2 > t1 else 0.0), t2 - t1


class Timers:
    """Calls and seconds per named operation: cheap, per-batch timing counters."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, obj: Any, method: str, name: str) -> None:
        """Time every call of ``obj.method`` (an instance attribute shadows the class's)."""
        original = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        setattr(obj, method, timed)

    def snapshot(self) -> dict[str, tuple[int, float]]:
        with self.lock:
            return {k: (self.calls[k], self.seconds[k]) for k in self.calls}


def timer_report(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]], wall: float
) -> list[str]:
    """``name: ms per call, share of wall time`` for what happened between two snapshots."""
    lines = []
    for name in sorted(after):
        calls = after[name][0] - before.get(name, (0, 0.0))[0]
        seconds = after[name][1] - before.get(name, (0, 0.0))[1]
        if calls:
            lines.append(
                f"{name} {calls}x {1000 * seconds / calls:.2f} ms = {100 * seconds / wall:.0f}%"
            )
    return lines


class GilProbe(threading.Thread):
    """Sleeps 2 ms in a loop and records the overshoot: how long a thread that wakes up from a
    blocking call waits for the GIL (plus the kernel's wake-up latency). Compare raw vs sentinel.
    """

    def __init__(self) -> None:
        super().__init__(name="gil-probe", daemon=True)
        self.stopped = threading.Event()
        self.delays: list[float] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.perf_counter()
            time.sleep(0.002)
            self.delays.append(time.perf_counter() - started - 0.002)

    def stop(self) -> str:
        self.stopped.set()
        self.join(2)
        d = sorted(self.delays)
        if not d:
            return "no samples"
        pick = lambda q: 1000 * d[min(len(d) - 1, int(q * len(d)))]  # noqa: E731
        return f"p50 {pick(0.5):.2f} ms, p90 {pick(0.9):.2f} ms, p99 {pick(0.99):.2f} ms"


def cpu_of(children: list[Any]) -> dict[int, tuple[str, float]]:
    """CPU seconds of this process's threads and of each child process (by its name)."""
    out = thread_cpu()
    for child in children:
        out[child.pid] = (f"{child.name} (process)", cpu_seconds(child.pid) or 0.0)
    return out
