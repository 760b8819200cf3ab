"""Where the project lives on disk, how a hosting worker and a sentinel process are started (their
command lines), and how processes stop.

Used by every layer that starts processes (the runtime, the lab, the local cluster tooling);
imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Everything the project writes at run time (git-ignored): jars, cluster data, spec files.
# DS_LOCAL_DIR moves it (a container whose code is read-only; each worker machine has its own).
LOCAL_DIR = Path(os.environ.get("DS_LOCAL_DIR") or PROJECT_ROOT / ".local")
# A sentinel that exits is started again after a back-off that doubles with each quick exit
# in a row: 1 s after a first crash (the worker keeps the lease meanwhile), at most 30 s.
RESPAWN_FIRST_BACKOFF_S = 1.0
RESPAWN_BACKOFF_MAX_S = 30.0
# An exit within this long of the sentinel's start counts as one more in a row.
QUICK_EXIT_S = 60.0


# The settings bin/up gives its processes (key *files*, never key values), for commands run by
# hand beside it: ``python manage.py shell`` then sees the same keys (manage.py).
LOCAL_STACK_ENV = LOCAL_DIR / "stack.env"
# A deployment configures these itself: with any of them set, the local stack's file is ignored.
_DEPLOYED_BY = (
    "DJANGO_SECRET_KEY",
    "DJANGO_SECRET_KEY_FILE",
    "DS_SECRETS_KEY",
    "DS_SECRETS_KEY_FILE",
)


def write_local_stack_env(values: dict[str, str]) -> Path:
    """Write ``values`` (names to values that are no secrets: key files by path) for commands
    run by hand beside the local stack (mode 0600)."""
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    tmp = LOCAL_STACK_ENV.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Written by bin/up: the settings it gave its processes (manage.py reads it).\n")
        fh.writelines(f"{name}={value}\n" for name, value in sorted(values.items()))
    os.replace(tmp, LOCAL_STACK_ENV)
    return LOCAL_STACK_ENV


def local_stack_env(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """What bin/up wrote for commands by hand, unless this environment is configured as a
    deployment is (a Django or secrets key of its own): then nothing, never the local files."""
    if any(environ.get(name) for name in _DEPLOYED_BY) or not LOCAL_STACK_ENV.is_file():
        return {}
    values = {}
    for line in LOCAL_STACK_ENV.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def respawn_backoff(exits: int) -> float:
    """Seconds to wait before starting a sentinel again after ``exits`` quick exits in a row
    (the worker's supervisor for a sentinel's processes, the shared host for its threads)."""
    return min(RESPAWN_BACKOFF_MAX_S, RESPAWN_FIRST_BACKOFF_S * 2.0 ** max(0, exits - 1))


def redis_env(redis_url: str) -> dict[str, str]:
    """The environment of a child process that opens Redis: this one's, with ``REDIS_URL``.

    The URL carries the Redis password: in the environment (readable by the process's owner
    only), never on a command line, which every local user reads with ``ps``."""
    return {**os.environ, "REDIS_URL": redis_url}


def hosting_worker_argv(name: str, queue: str, loglevel: str = "info") -> list[str]:
    """The command line of a Celery worker that hosts sentinels and takes tasks only from
    ``queue`` (the soak, the hosting tests and the density benchmark start such workers):
    solo pool, no gossip, mingle or heartbeat, so that it starts fast and alone."""
    return [
        sys.executable, "-m", "celery", "-A", "workers.runtime.celery", "worker",
        "--pool=solo", "-Q", queue, "-n", f"{name}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", loglevel,
    ]  # fmt: skip


# A sentinel process is ``python -m SENTINEL_MODULE`` (its options are read there); one
# started without ``--roles`` runs the role group ``MAIN_ROLES`` (every role, or under
# ``--layout processes`` the consuming ones, with a child per other role group).
SENTINEL_MODULE = "workers.runtime.run"
MAIN_ROLES = "main"


def sentinel_argv(
    spec_path: str | Path,
    *,
    roles: str | None = None,
    layout: str | None = None,
    lease_token: str | None = None,
    lease_ms: int | None = None,
    live: bool = False,
    exit_with_parent: bool = False,
    redis_url: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line of a sentinel process (the one way to build it: the supervisor, a
    sentinel's own role children, the lab's probes, tests and benchmarks), running the spec at
    ``spec_path`` (a private file; no secret in it). ``roles``: comma-separated, or ``all``;
    ``lease_token`` / ``lease_ms``: run only while the sentinel's lease holds the token.
    ``redis_url`` is for tests and benchmarks on a Redis without a password: a worker hands
    the URL over in the environment (``redis_env``), never here, where ``ps`` shows it."""
    argv = [python, "-m", SENTINEL_MODULE, "--spec", str(spec_path)]
    if roles is not None:
        argv += ["--roles", roles]
    if layout is not None:
        argv += ["--layout", layout]
    if lease_token is not None:
        argv += ["--lease-token", lease_token]
        if lease_ms is not None:
            argv += ["--lease-ms", str(lease_ms)]
    if live:
        argv.append("--live")
    if exit_with_parent:
        argv.append("--exit-with-parent")
    if redis_url is not None:
        argv += ["--redis-url", redis_url]
    return argv


def parse_sentinel_argv(argv: Sequence[str]) -> tuple[str, str] | None:
    """``(spec path, role group)`` of a sentinel process's command line (``sentinel_argv``),
    None for any other process's; the role group is ``--roles``' value, else ``MAIN_ROLES``."""
    if SENTINEL_MODULE not in argv or "--spec" not in argv:
        return None

    def value(flag: str) -> str | None:
        i = argv.index(flag) + 1 if flag in argv else len(argv)
        return argv[i] if i < len(argv) else None

    return value("--spec") or "", value("--roles") or MAIN_ROLES


# A worker's shared host of light sentinels is ``python -m HOST_MODULE --manifest DIR``.
HOST_MODULE = "workers.runtime.host"


def host_argv(manifest_dir: str | Path, *, live: bool = False) -> list[str]:
    """The command line of a worker's shared sentinel host (the one way to build it)."""
    argv = [sys.executable, "-m", HOST_MODULE, "--manifest", str(manifest_dir)]
    return argv + (["--live"] if live else [])


def parse_host_argv(argv: Sequence[str]) -> str | None:
    """The manifest directory of a shared host's command line (``host_argv``), None for any
    other process's."""
    if HOST_MODULE not in argv or "--manifest" not in argv:
        return None
    i = argv.index("--manifest") + 1
    return argv[i] if i < len(argv) else None


def terminate(proc: subprocess.Popen, timeout: float, *, group: bool = False) -> bool:
    """SIGTERM ``proc``, wait up to ``timeout`` s, then SIGKILL it; reaped either way.

    ``group``: signal its whole process group (a child started in a session of its own).
    True when it stopped by itself (or had already stopped)."""
    return terminate_all([proc], timeout, group=group)


def terminate_all(
    procs: Iterable[subprocess.Popen], timeout: float, *, group: bool = False
) -> bool:
    """SIGTERM every process at once (they stop in parallel), then wait for all of them
    within one ``timeout``; SIGKILL what is left. True when none needed SIGKILL."""

    def send(proc: subprocess.Popen, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)

    running = [p for p in procs if p.poll() is None]
    for proc in running:
        send(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    clean = True
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            clean = False
            send(proc, signal.SIGKILL)
            proc.wait()
    return clean


def terminate_pid(pid: int, timeout: float, alive: Callable[[int], bool]) -> bool:
    """The same for a process that is not our child (a cluster node started detached).

    SIGCONT first: a frozen (SIGSTOPped) process cannot act on SIGTERM. ``alive(pid)`` says
    whether it still runs. True when it stopped without SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.1)
    return True
