"""The soak's own processes: a persisting Redis, two Celery workers hosting its sentinels, and
a way to find each sentinel process and read its memory.

The workers are the product's real ones (``celery -A workers.runtime.celery worker``, the
sentinel supervisor as a bootstep), not imported: they run in their own processes. Their spec
source is a file the soak owns: ``SENTINEL_SPECS=workers.engine.spec.specs_from_file`` with
``DS_SENTINEL_SPECS_FILE`` naming it, so they never read the dashboard's database and the soak
needs no Django models; rewriting the file enables and disables sentinels.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from workers.engine.spec import SPECS_FILE_ENV, SentinelSpec
from workers.lab.limits import HANG_AFTER_S
from workers.localkafka.devstack import port_open, redis_server_argv, wait_for_port
from workers.system import (
    PROJECT_ROOT,
    hosting_worker_argv,
    parse_host_argv,
    parse_sentinel_argv,
    terminate,
)

# How the soak's workers host sentinels. A short tick and lease make takeovers quick enough to
# see many in half an hour; the bounds the soak judges them by derive from these values (and
# from the step deadline, ``env()``).
SUPERVISOR_TICK_S = 1.0
LEASE_MS = 15_000
STOP_TIMEOUT_S = 60.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (for the soak's own Redis)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def process_age_s(pid: int) -> float | None:
    """Seconds since process ``pid`` started (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])  # field 4: ppid
    except (OSError, IndexError, ValueError):
        return None


def host_processes(worker_pids: set[int]) -> dict[int, int]:
    """The shared sentinel hosts of the workers ``worker_pids``: ``{worker pid: host pid}``
    (``workers.system.host_argv``; a worker's supervisor starts its host as its child)."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or parse_host_argv(cmdline(int(entry))) is None:
            continue
        ppid = parent_pid(int(entry))
        if ppid in worker_pids:
            found[ppid] = int(entry)
    return found


def sentinel_processes(ids: set[int]) -> dict[tuple[int, str], int]:
    """Live sentinel processes of sentinels ``ids``: ``{(id, role group): pid}``.

    A hosted sentinel is ``python -m workers.runtime.run --spec DIR/{id}.json`` (role group
    ``main``: the consuming roles) with ``--roles producer`` and ``--roles checker`` children
    (``workers.system.sentinel_argv``, read back with ``parse_sentinel_argv``)."""
    found: dict[tuple[int, str], int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        parsed = parse_sentinel_argv(cmdline(int(entry)))
        if parsed is None:
            continue
        spec, role = parsed
        stem = Path(spec).stem
        if not stem.isdigit() or int(stem) not in ids:
            continue
        found[(int(stem), role)] = int(entry)
    return found


class SoakRedis:
    """A Redis of the soak's own, started as ``bin/up`` starts one: append-only, ``everysec``."""

    def __init__(self, port: int, data: Path) -> None:
        self.port = port
        self.data = data
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} is in use: the soak needs a Redis of its own")
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            redis_server_argv(self.port, self.data),
            cwd=PROJECT_ROOT,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.port, 30, self.proc)

    def stop(self) -> None:
        """SIGTERM: Redis fsyncs its append-only file and exits, losing nothing."""
        if self.proc is not None:
            terminate(self.proc, 30)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


# How the soak's workers host its sentinels: ``shared`` (production's way for sentinels at the
# default rate: one host process per worker, a thread group per sentinel) or ``own`` (a
# process per sentinel, which the ``sentinel-kill`` fault needs).
SHARED = "shared"
OWN = "own"
HOSTINGS = (SHARED, OWN)


class SoakWorkers:
    """Two (or more) Celery workers with sentinel hosting on, on a queue nobody sends to."""

    def __init__(
        self,
        workdir: Path,
        redis_url: str,
        names: tuple[str, ...] = ("w1", "w2"),
        hosting: str = SHARED,
    ):
        if hosting not in HOSTINGS:
            raise ValueError(f"hosting {hosting!r}: one of {', '.join(HOSTINGS)}")
        self.hosting = hosting
        self.workdir = workdir
        self.redis_url = redis_url
        self.names = names
        self.specs_file = workdir / "specs.json"
        self.procs: dict[str, subprocess.Popen] = {}
        self.queue = f"soak-{uuid.uuid4().hex[:8]}"

    def publish(self, specs: list[SentinelSpec]) -> None:
        """Enable exactly ``specs`` (atomically: the supervisors read the file every tick)."""
        tmp = self.specs_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold secrets
        with os.fdopen(fd, "w") as fh:
            json.dump({str(s.id): {**s.to_dict(), "hosting": self.hosting} for s in specs}, fh)
        os.replace(tmp, self.specs_file)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "CELERY_RESULT_BACKEND": self.redis_url,
            "SENTINELS_ENABLED": "true",
            "SENTINEL_SPECS": "workers.engine.spec.specs_from_file",
            SPECS_FILE_ENV: str(self.specs_file),
            "DS_LEASE_MS": str(LEASE_MS),
            "DS_SUPERVISOR_TICK_S": str(SUPERVISOR_TICK_S),
            # A step stuck in a librdkafka call that ignores its timeout (librdkafka#5456: the
            # copier's send_offsets_to_transaction across a broker restart) ends its process
            # after the scenario lab's hang limit, not the production default of 180 s.
            "DS_STEP_DEADLINE_S": str(int(HANG_AFTER_S)),
            # Never used (the workers take no task that needs it), but never the dashboard's.
            "DATABASE_URL": f"sqlite:///{self.workdir / 'unused.sqlite3'}",
        }
        env.pop("DJANGO_TEST_DB_FILE", None)
        return env

    def start(self, name: str) -> subprocess.Popen:
        with (self.workdir / f"worker-{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                hosting_worker_argv(f"{name}-{self.queue}", self.queue),
                cwd=PROJECT_ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs[name] = proc
        return proc

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def kill(self, name: str) -> int:
        """SIGKILL worker ``name`` (its sentinels stop by themselves and release their leases)."""
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return proc.pid

    def stop_all(self) -> None:
        """Warm shutdown of every worker at once: each stops its sentinels first."""
        live = [p for p in self.procs.values() if p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def hosts(self) -> dict[str, int]:
        """``{worker name: pid of its shared sentinel host}`` for the workers that have one."""
        pids = self.pids()
        hosts = host_processes(set(pids.values()))
        return {n: hosts[pid] for n, pid in pids.items() if pid in hosts}

    def name_of(self, pid: int | None) -> str | None:
        return next((n for n, p in self.procs.items() if p.pid == pid), None)

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            return (self.workdir / f"worker-{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def lease_holder_pid(holder: str | None) -> int | None:
    """The worker pid in a lease token (``host:pid:nonce:lease-nonce``)."""
    if not holder:
        return None
    parts = holder.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
