"""The local three-node Apache Kafka cluster (KRaft, combined broker + controller nodes).

    python -m workers.localkafka start   [--name dev] [--port 9092]
    python -m workers.localkafka status  [--json]
    python -m workers.localkafka {kill,pause,resume,restart,start,stop} NODE
    python -m workers.localkafka {stop,destroy}

Kafka comes from Maven Central as plain jars (``docker/kafka/pom.xml``, fetched once into
``.local/kafka/libs``); every node is a ``java ... kafka.Kafka server.properties`` process in
a session of its own, so nodes outlive the command that started them and can be killed,
paused and restarted one by one for fault injection. Node ``N`` (1..3) listens on
``127.0.0.1:<port + N - 1>`` (clients) and ``127.0.0.1:<controller port + N - 1>`` (KRaft);
its files live in ``.local/kafka/<name>/node-N``: ``server.properties``, ``data/``,
``node.log`` and ``pid``.

The cluster is configured like a small production cluster, not like a toy: replication
factor 3, ``min.insync.replicas=2``, no unclean leader election. It is tuned for a 2-core
machine (few threads, small heaps) and for fast fault detection: a killed or frozen node is
fenced, and loses its leaderships, about ``broker.session.timeout.ms`` (6 s) after its last
heartbeat.

No Django here: only the standard library and confluent_kafka.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from workers.system import LOCAL_DIR, PROJECT_ROOT

KAFKA_DIR = LOCAL_DIR / "kafka"
KAFKA_RECIPE_DIR = PROJECT_ROOT / "docker" / "kafka"
POM = KAFKA_RECIPE_DIR / "pom.xml"
LOG4J2_CONFIG = KAFKA_RECIPE_DIR / "log4j2.properties"

SENTINEL_TOPIC_DEFAULTS = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
DEFAULT_REPLICATION_FACTOR = 3

JARS_STAMP = ".pom-sha256"  # in the libs dir: the pom the jars were fetched with
NODE_MARKER = "-Ddeliverysentinel.node.dir="  # on every node's command line: how we know our pids
LOG_ROTATE_BYTES = 32 * 1024 * 1024
# Logged by a node once its broker is registered and unfenced (docker/kafka/log4j2.properties
# keeps kafka.server at INFO for it).
STARTED_LINE = b"Kafka Server started"

log = logging.getLogger(__name__)


class LocalClusterError(RuntimeError):
    """The local cluster could not do what was asked; the message says why and what to do."""


# --------------------------------------------------------------------------- jars


def ensure_jars(libs_dir: Path = KAFKA_DIR / "libs") -> Path:
    """Return a directory holding the Kafka jars, fetching them with Maven the first time.

    The jars are cached; a call finds them and does nothing. They are fetched again only when
    ``docker/kafka/pom.xml`` changed since (its sha256 is stored with the jars). The download
    goes to a temporary directory next to ``libs_dir`` that is renamed into place, so an
    interrupted fetch never leaves a half-filled cache; a file lock serialises concurrent calls.
    """
    libs_dir = Path(libs_dir)
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if _jars_current(libs_dir, digest):
        return libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalClusterError(
            "Maven (mvn) is not on PATH; it fetches the Kafka jars from Maven Central. "
            "Run bin/install (Debian: apt-get install maven)."
        )
    java_binary()  # fail now, not after a download, when Java is missing
    libs_dir.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(libs_dir.parent / f".{libs_dir.name}.lock"):
        if _jars_current(libs_dir, digest):  # another process fetched them while we waited
            return libs_dir
        _fetch_jars(mvn, libs_dir, digest)
    return libs_dir


def _jars_current(libs_dir: Path, digest: str) -> bool:
    stamp = libs_dir / JARS_STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest


def _fetch_jars(mvn: str, libs_dir: Path, digest: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{libs_dir.name}-fetch-", dir=libs_dir.parent))
    try:
        argv = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        log.info("fetching the Kafka jars: %s", " ".join(argv))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
            raise LocalClusterError(
                f"mvn could not fetch the Kafka jars (exit {proc.returncode}):\n"
                + "\n".join(output)
            )
        if not list(tmp.glob("kafka_2.13-*.jar")):
            raise LocalClusterError(f"mvn succeeded but {POM} yielded no kafka_2.13 jar")
        (tmp / JARS_STAMP).write_text(digest + "\n")
        stale = None
        if libs_dir.exists():  # fetched with an older pom
            stale = libs_dir.with_name(f".{libs_dir.name}-stale-{os.getpid()}")
            libs_dir.rename(stale)
        tmp.rename(libs_dir)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def java_binary() -> str:
    """The ``java`` to run Kafka with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise LocalClusterError(
            "Java is not installed (Kafka 4 needs Java 17 or newer). "
            "Run bin/install (Debian: apt-get install openjdk-17-jre-headless)."
        )
    return found


# --------------------------------------------------------------------------- processes


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


def _alive(pid: int) -> bool:
    # A zombie is dead: its parent (perhaps an init that never reaps) merely holds its status.
    return _proc_state(pid) not in (None, "Z", "X")


def _rss_bytes(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


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


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM binds: SO_REUSEADDR, so TIME_WAIT leftovers of a killed node do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_owner(port: int) -> str | None:
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


def _wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, URL-safe base64 without padding (22 characters)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):  # as Kafka's Uuid.randomUuid: keeps CLI parsing sane
            return value


def _tail(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- cluster


class Node:
    """Paths and ports of one node; no state of its own (the pid file is the state)."""

    def __init__(self, node_id: int, cluster_dir: Path, broker_port: int, controller_port: int):
        self.id = node_id
        self.dir = cluster_dir / f"node-{node_id}"
        self.broker_port = broker_port
        self.controller_port = controller_port
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


class LocalCluster:
    """A three-node KRaft cluster on loopback, each node both broker and controller.

    The state is the pid files and the processes themselves, never this object: any process
    may build one and act on a cluster another process started (the CLI on a cluster a test
    run started, and the other way round). Node ids are 1..``nodes``.
    """

    def __init__(
        self,
        name: str = "dev",
        *,
        base_dir: Path | None = None,
        broker_base_port: int = 9092,
        controller_base_port: int | None = None,
        nodes: int = 3,
        heap_mb: int = 384,
        libs_dir: Path | None = None,
    ) -> None:
        """``base_dir`` holds the clusters' directories (default ``.local/kafka``)."""
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.name = name
        self.dir = Path(base_dir or KAFKA_DIR) / name
        self.libs_dir = Path(libs_dir or KAFKA_DIR / "libs")
        self.broker_base_port = broker_base_port
        self.controller_base_port = (
            broker_base_port + 100 if controller_base_port is None else controller_base_port
        )
        self.heap_mb = heap_mb
        self.nodes = {
            i: Node(i, self.dir, broker_base_port + i - 1, self.controller_base_port + i - 1)
            for i in range(1, nodes + 1)
        }
        self.bootstrap_servers = ",".join(
            f"127.0.0.1:{node.broker_port}" for node in self.nodes.values()
        )
        self._admin_clients: dict[str, AdminClient] = {}
        # Nodes this object launched and has not yet seen start: id -> node.log size at launch.
        self._launched: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"LocalCluster({self.name!r}, bootstrap_servers={self.bootstrap_servers!r})"

    # ----------------------------------------------------------------- whole cluster

    def start(self, timeout: float = 120) -> None:
        """Start every node that is not running and wait until all are brokers in metadata.

        The first start fetches the jars and formats each node's storage; later starts reuse
        both. Raises LocalClusterError, with the tail of the node logs, when a node dies or
        the cluster is not ready within ``timeout`` seconds.
        """
        stopped = [node for node in self.nodes.values() if self.node_pid(node.id) is None]
        for node in stopped:  # before any slow step: a port conflict is the likeliest failure
            self._check_ports(node)
        ensure_jars(self.libs_dir)
        self._format([node for node in stopped if not node.formatted])
        for node in stopped:
            self.start_node(node.id)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120, brokers: int | None = None) -> None:
        """Wait until the metadata lists ``brokers`` brokers (default: every node)."""
        expected = len(self.nodes) if brokers is None else brokers
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        while True:
            alive = [n for n in self.nodes if self.node_pid(n) is not None]
            if len(alive) < expected:
                raise LocalClusterError(
                    f"cluster {self.name!r}: only nodes {alive} are running, "
                    f"{expected} brokers were expected\n{self._log_tails()}"
                )
            remaining = deadline - time.monotonic()
            seen = self._brokers(timeout=max(0.5, min(5.0, remaining))) or []
            if len(seen) >= expected and self._started(set(self.nodes)):
                return
            if time.monotonic() >= deadline:
                raise LocalClusterError(
                    f"cluster {self.name!r} not ready after {timeout:.0f}s: brokers {seen} in "
                    f"metadata, {expected} expected\n{self._log_tails()}"
                )
            time.sleep(0.2)

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot: every node's process, and what the cluster itself reports.

        ``nodes``: per node ``id``, ``pid``, ``state`` (running, paused or stopped), ports and
        ``rss_bytes``. ``brokers``: the broker ids in the metadata (live and unfenced), None
        when no broker answered. ``controller``: the active KRaft controller (the quorum leader
        of the highest epoch a running node recorded), None when unknown.
        """
        nodes = []
        for node in self.nodes.values():
            pid = self.node_pid(node.id)
            state = "stopped" if pid is None else self._state(pid)
            nodes.append(
                {
                    "id": node.id,
                    "pid": pid,
                    "state": state,
                    "broker_port": node.broker_port,
                    "controller_port": node.controller_port,
                    "rss_bytes": None if pid is None else _rss_bytes(pid),
                    "dir": str(node.dir),
                }
            )
        running = any(n["state"] == "running" for n in nodes)
        return {
            "name": self.name,
            "bootstrap_servers": self.bootstrap_servers,
            "cluster_id": self._stored_cluster_id(),
            "nodes": nodes,
            "brokers": self._brokers(timeout=3.0) if running else [],
            "controller": self._active_controller(),
        }

    def stop(self, timeout: float = 60) -> None:
        """Stop every node cleanly (SIGTERM; SIGKILL after ``timeout``); nothing is left running."""
        pids = {n: pid for n in self.nodes if (pid := self.node_pid(n)) is not None}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a frozen JVM cannot act on SIGTERM
                os.kill(pid, signal.SIGTERM)
        _wait_until(lambda: not any(_alive(pid) for pid in pids.values()), timeout, 0.1)
        for node_id, pid in pids.items():
            if _alive(pid):
                log.warning(
                    "node %s (pid %s) did not stop in %.0fs: SIGKILL", node_id, pid, timeout
                )
                self._sigkill(pid)
            self.nodes[node_id].pid_file.unlink(missing_ok=True)
        self._close_admin()

    def destroy(self) -> None:
        """Stop the cluster and delete its directory (data, logs, cluster id). Jars stay."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ----------------------------------------------------------------- one node

    def node_pid(self, node_id: int) -> int | None:
        """The pid of node ``node_id`` when it is running (or paused), else None."""
        node = self._node(node_id)
        try:
            pid = int(node.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        # Our process, not a stranger that reused the pid after a reboot or a kill.
        if _alive(pid) and node.marker in _cmdline(pid):
            return pid
        return None

    def start_node(self, node_id: int) -> None:
        """Start one node in the background (no-op when it runs); does not wait for it."""
        node = self._node(node_id)
        if self.node_pid(node_id) is not None:
            return
        node.pid_file.unlink(missing_ok=True)  # stale: its process is gone
        ensure_jars(self.libs_dir)
        if not node.formatted:
            self._format([node])
        self._check_ports(node)
        self._write_properties(node)
        if node.log.exists() and node.log.stat().st_size > LOG_ROTATE_BYTES:
            node.log.replace(node.log.with_name("node.log.1"))
        with open(node.log, "ab") as out:
            out.write(f"\n===== starting node {node.id} at {time.ctime()} =====\n".encode())
            launched_at = out.tell()
        argv = self._java_argv(node, "kafka.Kafka", str(node.properties))
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
                    str(node.log),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                    0o644,
                ),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        # posix_spawn returns while the kernel may still show an empty cmdline; node_pid()
        # recognises our nodes by their cmdline, so wait until it does.
        _wait_until(lambda: not _alive(pid) or node.marker in _cmdline(pid), 10, 0.005)
        tmp = node.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(node.pid_file)
        self._launched[node.id] = launched_at
        log.info("node %s of %r started: pid %s", node.id, self.name, pid)

    def stop_node(self, node_id: int, timeout: float = 60) -> None:
        """Shut one node down cleanly (SIGTERM: controlled shutdown), SIGKILL after ``timeout``."""
        node = self._node(node_id)
        pid = self.node_pid(node_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGTERM)
            if not _wait_until(lambda: not _alive(pid), timeout, 0.1):
                log.warning("node %s did not stop in %.0fs: SIGKILL", node_id, timeout)
                self._sigkill(pid)
        node.pid_file.unlink(missing_ok=True)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (a crash: no controlled shutdown) and wait until it is gone."""
        pid = self._require_pid(node_id)
        self._sigkill(pid)
        self._node(node_id).pid_file.unlink(missing_ok=True)

    def pause(self, node_id: int) -> None:
        """SIGSTOP one node: it stays connected but answers nothing, like a long GC pause."""
        pid = self._require_pid(node_id)
        os.kill(pid, signal.SIGSTOP)
        if not _wait_until(lambda: self._state(pid) == "paused", 10):
            raise LocalClusterError(f"node {node_id} (pid {pid}) did not stop on SIGSTOP")

    def resume(self, node_id: int) -> None:
        """SIGCONT a paused node."""
        pid = self._require_pid(node_id)
        os.kill(pid, signal.SIGCONT)
        if not _wait_until(lambda: self._state(pid) != "paused", 10):
            raise LocalClusterError(f"node {node_id} (pid {pid}) did not continue on SIGCONT")

    def restart(self, node_id: int, timeout: float = 120) -> None:
        """Stop one node cleanly if it runs, start it, and wait until it is a broker again."""
        self.stop_node(node_id, timeout=min(timeout, 60))
        self.start_node(node_id)
        self.wait_for_brokers({node_id}, timeout)

    def wait_for_brokers(self, node_ids: set[int], timeout: float = 120) -> None:
        """Wait until every one of ``node_ids`` is a broker in the metadata."""
        deadline = time.monotonic() + timeout
        while True:
            dead = [n for n in node_ids if self.node_pid(n) is None]
            if dead:
                raise LocalClusterError(
                    f"nodes {dead} of {self.name!r} are not running\n{self._log_tails(dead)}"
                )
            seen = self._brokers(timeout=max(0.5, min(5.0, deadline - time.monotonic()))) or []
            if node_ids <= set(seen) and self._started(node_ids):
                return
            if time.monotonic() >= deadline:
                raise LocalClusterError(
                    f"nodes {sorted(node_ids)} not back in metadata after {timeout:.0f}s "
                    f"(brokers {seen})\n{self._log_tails(sorted(node_ids))}"
                )
            time.sleep(0.2)

    # ----------------------------------------------------------------- topics

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The broker id leading ``topic``/``partition`` now; -1 while it has no leader."""
        deadline = time.monotonic() + 5
        while True:
            info = self._admin().list_topics(topic, timeout=10).topics.get(topic)
            if info is not None and info.error is None:
                break
            # A topic created a moment ago may not have reached the broker asked yet.
            if time.monotonic() >= deadline:
                raise LocalClusterError(f"topic {topic!r}: {info.error if info else 'not found'}")
            time.sleep(0.1)
        if partition not in info.partitions:
            raise LocalClusterError(f"topic {topic!r} has no partition {partition}")
        return info.partitions[partition].leader

    def create_topic(
        self,
        name: str,
        partitions: int = 3,
        replication_factor: int = DEFAULT_REPLICATION_FACTOR,
        min_insync_replicas: int = 2,
        config: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> None:
        """Create a topic and wait until every partition has a leader.

        The topic gets ``SENTINEL_TOPIC_DEFAULTS`` (no unclean leader election) and
        ``min_insync_replicas``; entries in ``config`` win over both, so a scenario can turn
        unclean election on deliberately. Raises KafkaException when the topic exists.
        """
        topic_config = {
            **SENTINEL_TOPIC_DEFAULTS,
            "min.insync.replicas": str(min_insync_replicas),
            **{key: str(value) for key, value in (config or {}).items()},
        }
        new = NewTopic(name, partitions, replication_factor, config=topic_config)
        futures = self._admin().create_topics(
            [new], operation_timeout=timeout, request_timeout=timeout
        )
        futures[name].result()

        # Every broker serves metadata from its own copy of the metadata log, a few ms apart;
        # wait until each running one (asked alone) knows every partition's leader, so that a
        # client may use the topic at once, whichever broker it asks.
        def led_everywhere() -> bool:
            for node in self._usable_nodes():
                client = self._client(f"127.0.0.1:{node.broker_port}")
                try:
                    info = client.list_topics(name, timeout=5).topics.get(name)
                except KafkaException:
                    return False
                if (
                    info is None
                    or info.error is not None
                    or len(info.partitions) != partitions
                    or any(p.leader < 0 for p in info.partitions.values())
                ):
                    return False
            return True

        if not _wait_until(led_everywhere, timeout, 0.05):
            raise LocalClusterError(
                f"topic {name!r}: not every partition has a leader on every broker after {timeout}s"
            )

    # ----------------------------------------------------------------- internals

    def _node(self, node_id: int) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise LocalClusterError(
                f"cluster {self.name!r} has nodes {sorted(self.nodes)}, not {node_id}"
            ) from None

    def _require_pid(self, node_id: int) -> int:
        pid = self.node_pid(node_id)
        if pid is None:
            raise LocalClusterError(f"node {node_id} of {self.name!r} is not running")
        return pid

    def _state(self, pid: int) -> str:
        state = _proc_state(pid)
        if state in (None, "Z", "X"):
            return "stopped"
        return "paused" if state in ("T", "t") else "running"

    def _sigkill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_until(lambda: not _alive(pid), 30):
            raise LocalClusterError(f"pid {pid} survived SIGKILL for 30s")

    def _check_ports(self, node: Node) -> None:
        for port in (node.broker_port, node.controller_port):
            if not _port_free(port):
                owner = _port_owner(port) or "another process"
                raise LocalClusterError(
                    f"cannot start node {node.id} of {self.name!r}: 127.0.0.1:{port} is in "
                    f"use by {owner}. Stop it, or give this cluster other ports "
                    f"(--port / broker_base_port, controller_base_port)."
                )

    def _java_argv(self, node: Node, main_class: str, *args: str) -> list[str]:
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
            f"-XX:ErrorFile={node.dir}/hs_err_pid%p.log",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={node.dir}",
            node.marker,
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def _write_properties(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values())
        rf = min(3, len(self.nodes))
        min_isr = min(2, rf)
        props = {
            "process.roles": "broker,controller",
            "node.id": node.id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": node.data,
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
        text = "# Written by workers/localkafka/cluster.py at every start; edits are overwritten.\n"
        text += "".join(f"{key}={value}\n" for key, value in props.items())
        tmp = node.properties.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(node.properties)

    def _stored_cluster_id(self) -> str | None:
        with contextlib.suppress(OSError):
            return (self.dir / "cluster.id").read_text().strip() or None
        return None

    def _cluster_id(self) -> str:
        """The cluster id: stored, else recovered from a formatted node, else a new one."""
        stored = self._stored_cluster_id()
        if stored:
            return stored
        value = None
        for node in self.nodes.values():
            with contextlib.suppress(OSError):
                for line in (node.data / "meta.properties").read_text().splitlines():
                    if line.startswith("cluster.id="):
                        value = line.split("=", 1)[1].strip()
        value = value or _new_cluster_id()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "cluster.id").write_text(value + "\n")
        return value

    def _format(self, nodes: list[Node]) -> None:
        """Format the storage of ``nodes`` (in parallel: each is a JVM start)."""
        if not nodes:
            return
        cluster_id = self._cluster_id()
        procs = []
        for node in nodes:
            self._write_properties(node)
            argv = self._java_argv(
                node,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(node.properties),
                "--ignore-formatted",
            )
            argv[1:3] = ["-Xms64m", "-Xmx256m"]
            procs.append(
                (
                    node,
                    subprocess.Popen(
                        argv,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    ),
                )
            )
        failures = []
        for node, proc in procs:
            output, _ = proc.communicate(timeout=120)
            if proc.returncode != 0 or not node.formatted:
                failures.append(
                    f"node {node.id}: exit {proc.returncode}\n{output.decode()[-3000:]}"
                )
        if failures:
            raise LocalClusterError("formatting storage failed:\n" + "\n".join(failures))

    def _admin(self) -> AdminClient:
        """An admin client bootstrapped from the nodes that can answer now.

        A frozen (SIGSTOPped) broker accepts TCP connections and answers nothing: a client
        that already talks to it sends it metadata requests that only time out. So the client
        is chosen by the set of running, unpaused nodes, and a pause gets a fresh one.
        """
        usable = [f"127.0.0.1:{node.broker_port}" for node in self._usable_nodes()]
        return self._client(",".join(usable) or self.bootstrap_servers)

    def _usable_nodes(self) -> list[Node]:
        usable = []
        for node in self.nodes.values():
            pid = self.node_pid(node.id)
            if pid is not None and self._state(pid) == "running":
                usable.append(node)
        return usable

    def _client(self, bootstrap: str) -> AdminClient:
        client = self._admin_clients.get(bootstrap)
        if client is None:
            client = AdminClient(
                {
                    "bootstrap.servers": bootstrap,
                    "socket.connection.setup.timeout.ms": 5000,
                    # Nodes are down on purpose here; "connection refused" (level 3) is not news.
                    "log_level": 2,
                }
            )
            self._admin_clients[bootstrap] = client
        return client

    def _close_admin(self) -> None:
        self._admin_clients.clear()

    def _brokers(self, timeout: float) -> list[int] | None:
        """Broker ids in the metadata; None when no broker answered within ``timeout``."""
        try:
            return sorted(self._admin().list_topics(timeout=timeout).brokers)
        except KafkaException:
            return None

    def _active_controller(self) -> int | None:
        """The KRaft leader per the running nodes' ``quorum-state`` files (highest epoch)."""
        best: tuple[int, int] | None = None
        for node in self.nodes.values():
            if self.node_pid(node.id) is None:
                continue
            path = node.data / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
            if leader >= 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        return None if best is None else best[0]

    def _started(self, node_ids: set[int]) -> bool:
        """Whether every node of ``node_ids`` that we launched has logged its start since.

        The metadata alone can mislead right after a crash: a SIGKILLed broker stays
        registered, and listed, until its session expires (broker.session.timeout.ms), so a
        quick restart would look done before the new process has even registered.
        """
        for node_id in node_ids & set(self._launched):
            node = self.nodes[node_id]
            try:
                with open(node.log, "rb") as handle:
                    handle.seek(self._launched[node_id])
                    if STARTED_LINE not in handle.read():
                        return False
            except OSError:
                return False
            del self._launched[node_id]
        return True

    def _log_tails(self, node_ids: list[int] | None = None, lines: int = 25) -> str:
        chosen = [self.nodes[n] for n in (node_ids or self.nodes)]
        return "\n".join(
            f"--- node {node.id}: {node.log} (last {lines} lines)\n{_tail(node.log, lines)}"
            for node in chosen
        )


# --------------------------------------------------------------------------- CLI


COMMANDS = ("start", "stop", "status", "kill", "pause", "resume", "restart", "destroy")
NODE_COMMANDS = ("kill", "pause", "resume", "restart")


def _print_status(status: dict[str, Any]) -> None:
    print(
        f"cluster {status['name']!r}  id {status['cluster_id'] or '-'}  "
        f"bootstrap {status['bootstrap_servers']}"
    )
    brokers = "no answer" if status["brokers"] is None else status["brokers"] or "none"
    controller = "-" if status["controller"] is None else status["controller"]
    print(f"brokers in metadata: {brokers}  active controller: {controller}")
    for node in status["nodes"]:
        rss = f"{node['rss_bytes'] / 2**20:.0f} MiB" if node["rss_bytes"] else "-"
        print(
            f"  node {node['id']}  {node['state']:<8} pid {node['pid'] or '-':<8} "
            f"ports {node['broker_port']}/{node['controller_port']}  rss {rss}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.localkafka", description="The local three-node Kafka cluster."
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("node", nargs="?", type=int, help="node id (1..3) for per-node commands")
    parser.add_argument("--name", default="dev", help="cluster name (default: dev)")
    parser.add_argument("--port", type=int, default=9092, help="first broker port (default 9092)")
    parser.add_argument(
        "--controller-port",
        type=int,
        default=None,
        help="first controller port (default: --port + 100)",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait (default 120)")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_args(argv)
    if args.command in NODE_COMMANDS and args.node is None:
        parser.error(f"{args.command} needs a NODE")
    if args.node is not None and args.command in ("status", "destroy"):
        parser.error(f"{args.command} takes no NODE")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cluster = LocalCluster(
        args.name, broker_base_port=args.port, controller_base_port=args.controller_port
    )
    started = time.monotonic()
    try:
        if args.command == "status":
            status = cluster.status()
            if args.json:
                print(json.dumps(status, indent=2))
            else:
                _print_status(status)
            return 0
        if args.command == "start" and args.node is None:
            cluster.start(args.timeout)
        elif args.command == "start":
            cluster.start_node(args.node)
            cluster.wait_for_brokers({args.node}, args.timeout)
        elif args.command == "stop" and args.node is None:
            cluster.stop(min(args.timeout, 60))
        elif args.command == "stop":
            cluster.stop_node(args.node, min(args.timeout, 60))
        elif args.command == "restart":
            cluster.restart(args.node, args.timeout)
        elif args.command == "destroy":
            cluster.destroy()
        else:
            getattr(cluster, args.command)(args.node)
    except (LocalClusterError, KafkaException) as exc:
        print(f"localcluster: {exc}", file=sys.stderr)
        return 1
    target = f"node {args.node}" if args.node is not None else f"cluster {args.name!r}"
    print(
        f"{args.command} {target}: done in {time.monotonic() - started:.1f}s"
        + (f" ({cluster.bootstrap_servers})" if args.command == "start" else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
