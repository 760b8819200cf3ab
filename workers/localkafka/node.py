"""One node of a local cluster: its files, its ``server.properties`` and its process.

Every node is a ``java ... kafka.Kafka server.properties`` process in a session of its own, so
it outlives the command that started it and can be killed, paused and restarted alone for
fault injection. Its files live in ``.local/kafka/<cluster name>/node-N``:
``server.properties``, ``data/``, ``node.log`` and ``pid``. The pid file and the process are
the only state: any process may build a ``Node`` and act on one another process started.
Also here: the ``/proc`` helpers that tell whether a pid is alive, frozen, or ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.localkafka import LocalClusterError
from workers.localkafka.jars import LIBS_DIR, LOG4J2_CONFIG, java_binary
from workers.localkafka.security import LISTENER, Security
from workers.system import terminate_pid

NODE_MARKER = "-Ddeliverysentinel.node.dir="  # on every node's command line: how we know our pids
LOG_ROTATE_BYTES = 32 * 1024 * 1024
# Logged by a node once its broker is registered and unfenced (docker/kafka/log4j2.properties
# keeps kafka.server at INFO for it).
STARTED_LINE = b"Kafka Server started"
# More JVM options for every node (and storage format) this process starts, e.g. bin/test's
# ``-XX:TieredStopAtLevel=1``: a test cluster's nodes start, and restart, in about half the CPU
# time (no C2 compiling while they start; the suite's light load never needs its code).
JVM_OPTS_ENV = "LOCAL_KAFKA_JVM_OPTS"
# Class data sharing: a node's JVM loads some thousands of Kafka classes at every start. The
# first node to stop cleanly writes them to an archive (``-XX:ArchiveClassesAtExit``, at its
# exit), which every later start maps (``-XX:SharedArchiveFile``): a node then starts in about
# half the CPU time (measured: 4.3 s -> 2.0-2.3 s of CPU for a broker to register). One archive
# per Java, jars and JVM options (``cds_archive``), beside the jars; the JVM checks it and
# starts without it when it does not match.
CDS_DIR_NAME = "cds"
CDS_DUMP_NAME = "classes.jsa"
CDS_MIN_BYTES = 1 << 20  # a smaller file is no archive of a broker's classes

log = logging.getLogger(__name__)


class Node:
    """Paths, ports and process of one node (both broker and controller)."""

    def __init__(
        self,
        node_id: int,
        cluster_dir: Path,
        broker_port: int,
        controller_port: int,
        *,
        libs_dir: Path = LIBS_DIR,
        heap_mb: int = 384,
        secure_port: int | None = None,
        security: Security | None = None,
    ) -> None:
        """With ``security``, the node also listens on ``secure_port`` (``SASL_SSL``)."""
        self.id = node_id
        self.secure_port = secure_port
        self.security = security
        self.cluster_name = cluster_dir.name
        self.dir = cluster_dir / f"node-{node_id}"
        self.broker_port = broker_port
        self.controller_port = controller_port
        self.libs_dir = libs_dir
        self.heap_mb = heap_mb
        self.properties = self.dir / "server.properties"
        self.data = self.dir / "data"
        self.log = self.dir / "node.log"
        self.pid_file = self.dir / "pid"

    @property
    def formatted(self) -> bool:
        return (self.data / "meta.properties").is_file()

    @property
    def marker(self) -> str:
        return f"{NODE_MARKER}{self.dir}"

    # ----------------------------------------------------------------- its process

    def pid(self) -> int | None:
        """The pid of the node when it is running (or paused), else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        # Our process, not a stranger that reused the pid after a reboot or a kill.
        if alive(pid) and self.marker in _cmdline(pid):
            return pid
        return None

    def require_pid(self) -> int:
        pid = self.pid()
        if pid is None:
            raise LocalClusterError(f"node {self.id} of {self.cluster_name!r} is not running")
        return pid

    def launch(self) -> int:
        """Start the node's process in the background; does not wait for it to serve.

        The caller has formatted its storage and written its properties. Returns the size of
        ``node.log`` at launch: what follows is this process's output (see ``started_since``).
        """
        if self.log.exists() and self.log.stat().st_size > LOG_ROTATE_BYTES:
            self.log.replace(self.log.with_name("node.log.1"))
        with open(self.log, "ab") as out:
            out.write(f"\n===== starting node {self.id} at {time.ctime()} =====\n".encode())
            launched_at = out.tell()
        argv = self.java_argv("kafka.Kafka", str(self.properties), jvm=self.cds_options())
        # posix_spawn, not Popen: the node must outlive us, in a session of its own, and a
        # Popen object would warn when collected while its child still runs.
        pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()),
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (
                    os.POSIX_SPAWN_OPEN,
                    1,
                    str(self.log),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                    0o644,
                ),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        # posix_spawn returns while the kernel may still show an empty cmdline; pid()
        # recognises our nodes by their cmdline, so wait until it does.
        wait_until(lambda: not alive(pid) or self.marker in _cmdline(pid), 10, 0.005)
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.pid_file)
        log.info("node %s of %r started: pid %s", self.id, self.cluster_name, pid)
        return launched_at

    def started_since(self, offset: int) -> bool:
        """Whether the node logged its start (``STARTED_LINE``) after ``offset`` in its log."""
        try:
            with open(self.log, "rb") as handle:
                handle.seek(offset)
                return STARTED_LINE in handle.read()
        except OSError:
            return False

    def stop(self, timeout: float = 60) -> None:
        """Shut the node down cleanly (SIGTERM: controlled shutdown), SIGKILL after ``timeout``."""
        pid = self.pid()
        clean = pid is not None and terminate_pid(pid, timeout, alive)
        if pid is not None and not clean:
            log.warning("node %s did not stop in %.0fs: SIGKILL", self.id, timeout)
            sigkill(pid)
        self.pid_file.unlink(missing_ok=True)
        if clean:
            self.keep_cds_dump()

    def kill(self) -> None:
        """SIGKILL the node (a crash: no controlled shutdown) and wait until it is gone."""
        sigkill(self.require_pid())
        self.pid_file.unlink(missing_ok=True)

    def pause(self) -> None:
        """SIGSTOP the node: it stays connected but answers nothing, like a long GC pause."""
        pid = self.require_pid()
        os.kill(pid, signal.SIGSTOP)
        if not wait_until(lambda: process_state(pid) == "paused", 10):
            raise LocalClusterError(f"node {self.id} (pid {pid}) did not stop on SIGSTOP")

    def resume(self) -> None:
        """SIGCONT a paused node."""
        pid = self.require_pid()
        os.kill(pid, signal.SIGCONT)
        if not wait_until(lambda: process_state(pid) != "paused", 10):
            raise LocalClusterError(f"node {self.id} (pid {pid}) did not continue on SIGCONT")

    def log_tail(self, lines: int = 25) -> str:
        try:
            with open(self.log, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 64 * 1024))
                text = handle.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ----------------------------------------------------------------- its configuration

    # ----------------------------------------------------------------- class data sharing

    def cds_archive(self) -> Path:
        """The archive of this Java, these jars and these JVM options (any change: another)."""
        jars = sorted(
            (p.name, p.stat().st_size) for p in self.libs_dir.glob("*.jar") if p.is_file()
        )
        java = Path(shutil.which(java_binary()) or java_binary()).resolve()
        key = repr((str(java), java.stat().st_size if java.exists() else 0, jars, self.heap_mb,
                    os.environ.get(JVM_OPTS_ENV, "")))  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.libs_dir.parent / CDS_DIR_NAME / f"kafka-{digest}.jsa"

    def cds_options(self) -> list[str]:
        """Map the archive when there is one; else write this node's at its clean exit."""
        archive = self.cds_archive()
        if archive.is_file():
            (self.dir / CDS_DUMP_NAME).unlink(missing_ok=True)
            return [f"-XX:SharedArchiveFile={archive}"]
        return [f"-XX:ArchiveClassesAtExit={self.dir / CDS_DUMP_NAME}"]

    def keep_cds_dump(self) -> None:
        """After a clean stop: the archive this node wrote at its exit becomes the archive of
        every later start (the first one kept; an atomic rename, never a half-written file)."""
        dump = self.dir / CDS_DUMP_NAME
        with contextlib.suppress(OSError):
            if not dump.is_file():
                return
            archive = self.cds_archive()
            if archive.is_file() or dump.stat().st_size < CDS_MIN_BYTES:
                dump.unlink()
                return
            archive.parent.mkdir(parents=True, exist_ok=True)
            tmp = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
            shutil.move(dump, tmp)  # a copy where the node's directory is on another disk
            tmp.replace(archive)
            log.info("node %s: class data sharing archive %s", self.id, archive.name)

    def java_argv(self, main_class: str, *args: str, jvm: list[str] | None = None) -> list[str]:
        """The command line running ``main_class`` of the Kafka jars for this node (``jvm``:
        more JVM options)."""
        heap = f"{self.heap_mb}m"
        return [
            java_binary(),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxDirectMemorySize=128m",
            "-XX:+ExitOnOutOfMemoryError",
            f"-XX:ErrorFile={self.dir}/hs_err_pid%p.log",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.dir}",
            self.marker,
            *shlex.split(os.environ.get(JVM_OPTS_ENV, "")),
            *(jvm or ()),
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def write_properties(self, voters: str, cluster_size: int) -> None:
        """Write ``server.properties``: a small production cluster, tuned for a 2-core machine.

        ``voters`` is the KRaft ``controller.quorum.voters`` (every node of the cluster)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        rf = min(3, cluster_size)
        min_isr = min(2, rf)
        props = {
            "process.roles": "broker,controller",
            "node.id": self.id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.broker_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            **self._secure_properties(),
            "log.dirs": self.data,
            # Durability, as a production cluster should have it.
            "num.partitions": 3,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 12,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 12,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            # Sentinels create their topics with explicit settings; a metadata request (an
            # admin or producer asking about a topic not created yet) must never create one
            # with broker defaults, as a production cluster would not either.
            "auto.create.topics.enable": "false",
            # Fast fault detection: a killed or frozen node is fenced (and loses its
            # leaderships) ~6 s after its last heartbeat instead of 9 s; a lagging follower
            # leaves the ISR after 10 s instead of 30 s.
            "broker.session.timeout.ms": 6000,
            "broker.heartbeat.interval.ms": 1000,
            "replica.lag.time.max.ms": 10000,
            # Leadership goes back to the preferred replicas 30 s (not 5 min) after a restart.
            "leader.imbalance.check.interval.seconds": 30,
            # A 2-core machine running three nodes and the rest of the stack.
            "num.network.threads": 2,
            "num.io.threads": 2,
            "background.threads": 2,
            "num.replica.fetchers": 1,
            "num.recovery.threads.per.data.dir": 1,
            "log.cleaner.threads": 1,
            "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,  # default 128 MiB of the heap
            "log.segment.bytes": 16 * 1024 * 1024,
            "log.retention.hours": 24,
            "log.retention.bytes": 256 * 1024 * 1024,
            "metadata.log.segment.bytes": 8 * 1024 * 1024,
        }
        if self.security is not None:
            secure = f"{LISTENER}://127.0.0.1:{self.secure_port}"
            props["listeners"] += f",{secure}"
            props["advertised.listeners"] += f",{secure}"
            props["listener.security.protocol.map"] += f",{LISTENER}:SASL_SSL"
        text = "# Written by workers/localkafka/node.py at every start; edits are overwritten.\n"
        text += "".join(f"{key}={value}\n" for key, value in props.items())
        tmp = self.properties.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.properties)

    def _secure_properties(self) -> dict[str, Any]:
        """The secured listener's settings (``workers.localkafka.security``), if any."""
        return {} if self.security is None else self.security.broker_properties()


# --------------------------------------------------------------------------- processes


def process_state(pid: int) -> str:
    """``running``, ``paused`` (SIGSTOPped) or ``stopped`` (gone, or a zombie)."""
    state = _proc_state(pid)
    if state in (None, "Z", "X"):
        return "stopped"
    return "paused" if state in ("T", "t") else "running"


def alive(pid: int) -> bool:
    # A zombie is dead: its parent (perhaps an init that never reaps) merely holds its status.
    return _proc_state(pid) not in (None, "Z", "X")


def request_stop(pid: int) -> None:
    """SIGTERM ``pid`` without waiting, so that several nodes shut down in parallel
    (SIGCONT first: a frozen JVM cannot act on SIGTERM)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)


def sigkill(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: not alive(pid), 30):
        raise LocalClusterError(f"pid {pid} survived SIGKILL for 30s")


def rss_bytes(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM binds: SO_REUSEADDR, so TIME_WAIT leftovers of a killed node do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str | None:
    """Best effort: ``pid <n> (<command>)`` of the process listening on 127.0.0.1:``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return f"pid {proc.name} ({' '.join(_cmdline(int(proc.name)))[:200]})"
    return None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` s have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child, so a dead node is not left a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (R, S, D, T, Z...), None when it is gone."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _inheritable_fds() -> list[int]:
    """Our inheritable descriptors above stderr. A node must not keep them open: a pipe the
    caller reads to its end (``$(...)``, ``| tee``, a CI runner) would never see EOF."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):  # the listdir's own descriptor is gone by now
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
    return fds
