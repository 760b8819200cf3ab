"""Shared helpers for the benchmark scripts in ``bench/`` (not a test module).

Machine facts, loopback-only defaults, topic creation, child processes that are always cleaned
up, a watchdog that bounds every script's wall time, and /proc readers for RSS and CPU time.
No Django here; the scripts that need Django run it in subprocesses.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workers.localkafka.address import bootstrap_servers  # noqa: E402  (the project is on sys.path now)
from workers.system import terminate  # noqa: E402

DEV_REDIS_URL = "redis://127.0.0.1:6379/0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- machine facts ---------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, str]:
    facts = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        facts["memory"] = f"{kb / 1024 / 1024:.1f} GiB"
    with contextlib.suppress(ImportError):
        import confluent_kafka

        facts["confluent-kafka"] = (
            f"{confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]})"
        )
    return facts


def print_machine_facts(title: str) -> None:
    print(f"== {title}")
    for key, value in machine_facts().items():
        print(f"   {key:16} {value}")
    print(f"   {'started':16} {time.strftime('%Y-%m-%d %H:%M:%S %z')}", flush=True)


# -- loopback-only defaults ------------------------------------------------------------------


def default_bootstrap() -> str:
    return bootstrap_servers()


def default_redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEV_REDIS_URL


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_loopback(bootstrap: str, redis_url: str) -> None:
    """These benchmarks only ever talk to 127.0.0.1: refuse anything else."""
    hosts = [hp.rsplit(":", 1)[0] for hp in bootstrap.split(",") if hp.strip()]
    hosts.append(urlparse(redis_url).hostname or "")
    bad = [h for h in hosts if not _loopback(h.strip())]
    if bad:
        raise SystemExit(f"refusing non-loopback address(es) {bad}: benchmarks run on 127.0.0.1")


def bench_sentinel_id() -> int:
    """A sentinel id (uint32) far above any the dashboard hands out, unique per call."""
    return 4_000_000_000 + random.randrange(290_000_000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Kafka topics ----------------------------------------------------------------------------


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 3,
    min_insync: int = 2,
    timeout: float = 120,
) -> float:
    """Create fresh topics and wait until every partition has a leader; seconds it took."""
    from confluent_kafka.admin import NewTopic

    names = list(names)
    client = admin(bootstrap)
    started = time.monotonic()
    config = {
        "min.insync.replicas": str(min(min_insync, replication_factor)),
        "unclean.leader.election.enable": "false",
    }
    futures = client.create_topics(
        [NewTopic(n, partitions, replication_factor, config=config) for n in names],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    for future in futures.values():
        future.result(timeout=timeout + 10)
    deadline = started + timeout
    pending = set(names)
    while pending:
        md = client.list_topics(timeout=30)
        for name in list(pending):
            meta = md.topics.get(name)
            if (
                meta is not None
                and meta.error is None
                and len(meta.partitions) == partitions
                and all(
                    p.leader >= 0 and len(p.isrs) >= min(min_insync, replication_factor)
                    for p in meta.partitions.values()
                )
            ):
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"topics {sorted(pending)} not ready after {timeout}s")
        if pending:
            time.sleep(0.5)
    return time.monotonic() - started


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    names = [n for n in names if n]
    if not names:
        return
    client = admin(bootstrap)  # keep a reference: a collected client drops its requests
    try:
        futures = client.delete_topics(names, operation_timeout=30)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the results
        print(f"   (could not delete topics {names}: {exc})")
        return
    for name, future in futures.items():
        try:
            future.result(timeout=40)
        except Exception as exc:  # noqa: BLE001
            print(f"   (could not delete topic {name}: {exc})")


# -- child processes and the watchdog --------------------------------------------------------

_children: list[subprocess.Popen] = []
_cleanups: list[Callable[[], None]] = []


def spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start a child in its own process group; it is stopped when this script ends."""
    proc = subprocess.Popen(argv, cwd=kwargs.pop("cwd", ROOT), start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def stop_child(proc: subprocess.Popen, timeout: float = 30) -> int | None:
    """SIGTERM, wait, then SIGKILL; only ever the given child's own process group."""
    terminate(proc, timeout, group=True)
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def on_exit(callback: Callable[[], None]) -> None:
    """Run ``callback`` at exit (also when the watchdog fires), most recent first."""
    _cleanups.append(callback)


def cleanup() -> None:
    for proc in list(_children):
        with contextlib.suppress(Exception):
            stop_child(proc, timeout=15)
    while _cleanups:
        with contextlib.suppress(Exception):
            _cleanups.pop()()


atexit.register(cleanup)


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _terminate)


def start_watchdog(seconds: float) -> None:
    """The script stops by itself: after ``seconds`` clean up and exit with status 3."""

    def fire() -> None:
        print(f"\n!! watchdog: still running after {seconds:.0f}s, stopping", flush=True)
        cleanup()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


# -- /proc readers ---------------------------------------------------------------------------


def proc_status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stat_cpu(path: str) -> float | None:
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(c) for c in task.read_text().split())
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a whole process (all its threads)."""
    return _stat_cpu(f"/proc/{pid}/stat")


def thread_cpu(pid: int | None = None) -> dict[int, tuple[str, float]]:
    """``{tid: (name, cpu seconds)}`` for every thread of ``pid`` (default: this process).

    Python threads of this process are named after ``threading`` names; librdkafka's own
    threads keep their kernel names (``rdk:main``, ``rdk:broker1``...).
    """
    pid = pid or os.getpid()
    names: dict[int, str] = {}
    if pid == os.getpid():
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id}
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(f"/proc/{pid}/task"):
            tid = int(entry)
            cpu = _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
            if cpu is None:
                continue
            name = names.get(tid)
            if name is None:
                with contextlib.suppress(OSError):
                    name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            out[tid] = (name or str(tid), cpu)
    return out


def thread_cpu_delta(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per thread name (librdkafka threads grouped by kind) between two readings."""
    out: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        if name.startswith("rdk:broker"):
            name = "rdk:broker*"
        out[name] = out.get(name, 0.0) + used
    return out


# -- numbers ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 with fewer than two)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain-text (and Markdown-compatible) table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
