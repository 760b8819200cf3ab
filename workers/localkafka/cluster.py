"""``LocalCluster``: the local cluster's nodes together, and what the cluster itself reports.

Node ``N`` (1..3) listens on ``127.0.0.1:<port + N - 1>`` (clients) and
``127.0.0.1:<controller port + N - 1>`` (KRaft); its files live in
``.local/kafka/<name>/node-N`` (see ``workers.localkafka.node``).

The cluster is configured like a small production cluster, not like a toy: replication
factor 3, ``min.insync.replicas=2``, no unclean leader election. It is tuned for a 2-core
machine (few threads, small heaps) and for fast fault detection: a killed or frozen node is
fenced, and loses its leaderships, about ``broker.session.timeout.ms`` (6 s) after its last
heartbeat.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ElectionType, KafkaException, TopicPartition
from confluent_kafka.admin import (
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from workers.engine.acls import AclNeed, sentinel_acls
from workers.engine.documents import EXACTLY_ONCE
from workers.engine.spec import sentinel_topic_config
from workers.localkafka import LocalClusterError
from workers.localkafka.address import DEFAULT_NAME, DEFAULT_PORT
from workers.localkafka.admin import AdminClients, with_retries
from workers.localkafka.jars import KAFKA_DIR, LIBS_DIR, ensure_jars
from workers.localkafka.node import (
    Node,
    alive,
    port_free,
    port_owner,
    process_state,
    request_stop,
    rss_bytes,
    sigkill,
    wait_until,
)
from workers.localkafka.security import (
    SECURE_PORT_OFFSET,
    SENTINEL_USER,
    Security,
    acl_binding,
    acl_filter,
)
from workers.localkafka.storage import cluster_id, format_storage, stored_cluster_id
from workers.system import terminate_pid

DEFAULT_REPLICATION_FACTOR = 3
OFFSETS_TOPIC = "__consumer_offsets"
# The group whose coordinator start() asks for (its committed offsets only: it is never joined).
READY_GROUP = "delivery-sentinel-local-ready"

log = logging.getLogger(__name__)


class LocalCluster:
    """A three-node KRaft cluster on loopback, each node both broker and controller.

    The state is the pid files and the processes themselves, never this object: any process
    may build one and act on a cluster another process started (the CLI on a cluster a test
    run started, and the other way round). Node ids are 1..``nodes``.
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        base_dir: Path | None = None,
        broker_base_port: int = DEFAULT_PORT,
        controller_base_port: int | None = None,
        nodes: int = 3,
        heap_mb: int = 384,
        libs_dir: Path | None = None,
        secure: bool = False,
        secure_base_port: int | None = None,
    ) -> None:
        """``base_dir`` holds the clusters' directories (default ``.local/kafka``).

        ``secure``: the cluster gets a ``SASL_SSL`` listener (``workers.localkafka.security``)
        on ``secure_base_port`` (default: the one chosen at its first secured start, else
        ``broker_base_port + 10``) at its first format; a cluster formatted so stays secured
        without the flag."""
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.name = name
        self.dir = Path(base_dir or KAFKA_DIR) / name
        self.libs_dir = Path(libs_dir or LIBS_DIR)
        self.broker_base_port = broker_base_port
        self.controller_base_port = (
            broker_base_port + 100 if controller_base_port is None else controller_base_port
        )
        self.heap_mb = heap_mb
        self.security = Security(self.dir / "security")
        self.secure = secure or self.security.exists
        self.secure_base_port = (
            secure_base_port or self.security.saved_port() or broker_base_port + SECURE_PORT_OFFSET
        )
        self.nodes = {
            i: Node(
                i,
                self.dir,
                broker_base_port + i - 1,
                self.controller_base_port + i - 1,
                libs_dir=self.libs_dir,
                heap_mb=heap_mb,
                secure_port=self.secure_base_port + i - 1,
                security=self.security if self.secure else None,
            )
            for i in range(1, nodes + 1)
        }
        self.bootstrap_servers = ",".join(
            f"127.0.0.1:{node.broker_port}" for node in self.nodes.values()
        )
        self.secure_bootstrap_servers = (
            ",".join(f"127.0.0.1:{node.secure_port}" for node in self.nodes.values())
            if self.secure
            else None
        )
        self.admins = AdminClients(self.nodes, self.bootstrap_servers)
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
        stopped = [node for node in self.nodes.values() if node.pid() is None]
        for node in stopped:  # before any slow step: a port conflict is the likeliest failure
            self._check_ports(node)
        if self.secure and not self.security.exists:
            formatted = [n.id for n in self.nodes.values() if n.formatted]
            if formatted:
                raise LocalClusterError(
                    f"cluster {self.name!r} was formatted without --secure (its SCRAM users are "
                    "created when its storage is formatted): destroy it, then start it --secure"
                )
            self.security.create(self.secure_base_port)
        ensure_jars(self.libs_dir)
        self._format([node for node in stopped if not node.formatted])
        for node in stopped:
            self.start_node(node.id)
        deadline = time.monotonic() + timeout
        self.wait_ready(timeout)
        self.wait_groups_ready(max(1.0, deadline - time.monotonic()))
        if self.secure:
            self.grant(f"User:{SENTINEL_USER}", sentinel_acls(EXACTLY_ONCE, "*", "*"))

    def secure_client_config(self, user: str = SENTINEL_USER) -> dict[str, str]:
        """librdkafka properties (``bootstrap.servers`` included) of a client of the secured
        listener as SCRAM ``user``; LocalClusterError when the cluster is not secured."""
        if self.secure_bootstrap_servers is None:
            raise LocalClusterError(f"cluster {self.name!r} is not secured (start it --secure)")
        return self.security.client_config(self.secure_bootstrap_servers, user)

    def add_user(self, name: str, password: str) -> None:
        """Create (or reset) the SCRAM-SHA-512 user ``name`` at run time, through the
        plaintext listener; the cluster's own users were created at format time."""
        upsert = UserScramCredentialUpsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password.encode()
        )
        with_retries(lambda: self.admins.usable().alter_user_scram_credentials([upsert]))

    def grant(self, principal: str, needs: list[AclNeed], *, revoke: bool = False) -> None:
        """Create (or with ``revoke`` delete) ALLOW ACLs for ``principal``, through the
        plaintext listener (its ANONYMOUS principal is a super user). Idempotent."""
        if revoke:
            filters = [acl_filter(principal, n) for n in needs]
            with_retries(lambda: self.admins.usable().delete_acls(filters))
        else:
            bindings = [acl_binding(principal, need) for need in needs]
            with_retries(lambda: self.admins.usable().create_acls(bindings))

    def wait_ready(self, timeout: float = 120, brokers: int | None = None) -> None:
        """Wait until the metadata lists ``brokers`` brokers (default: every node)."""
        expected = len(self.nodes) if brokers is None else brokers
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        while True:
            alive_ids = [n for n in self.nodes if self.node_pid(n) is not None]
            if len(alive_ids) < expected:
                raise LocalClusterError(
                    f"cluster {self.name!r}: only nodes {alive_ids} are running, "
                    f"{expected} brokers were expected\n{self._log_tails()}"
                )
            remaining = deadline - time.monotonic()
            seen = self.admins.brokers(timeout=max(0.5, min(5.0, remaining))) or []
            if len(seen) >= expected and self._started(set(self.nodes)):
                return
            if time.monotonic() >= deadline:
                raise LocalClusterError(
                    f"cluster {self.name!r} not ready after {timeout:.0f}s: brokers {seen} in "
                    f"metadata, {expected} expected\n{self._log_tails()}"
                )
            time.sleep(0.2)

    def wait_groups_ready(self, timeout: float = 60) -> int:
        """Wait until a consumer group can find its coordinator: the offsets topic exists and
        each of its partitions has a leader. Returns the offsets topic's partition count.

        A freshly formatted cluster creates ``__consumer_offsets`` only when the first group
        asks for its coordinator, and elects its partitions' leaders after that: on a loaded
        2-core machine a consumer started then joins its group seconds late (10 s seen), and
        its first records read as late ones. So "ready" includes this; on a cluster that has
        the topic already, it returns after one request."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            admin = self.admins.usable()
            try:
                # Asking for a group's coordinator creates the offsets topic when it is missing.
                self.coordinators_answer([READY_GROUP], timeout=5)
                topic = admin.list_topics(OFFSETS_TOPIC, timeout=5).topics.get(OFFSETS_TOPIC)
                if topic is not None and topic.error is None and topic.partitions:
                    leaderless = [p for p, m in topic.partitions.items() if m.leader < 0]
                    if not leaderless:
                        return len(topic.partitions)
                    last = f"partitions without a leader: {sorted(leaderless)}"
                else:
                    last = topic.error if topic is not None else "no offsets topic yet"
            except KafkaException as exc:
                last = exc.args[0] if exc.args else exc
            if time.monotonic() >= deadline:
                raise LocalClusterError(
                    f"cluster {self.name!r}: consumer groups not ready after {timeout:.0f}s "
                    f"({OFFSETS_TOPIC}: {last})\n{self._log_tails()}"
                )
            time.sleep(0.2)

    def give_back_leaders(self, timeout: float = 120) -> list[str]:
        """Wait until every replica is in sync, then give every partition led elsewhere back
        to its preferred replica (Kafka would do it by itself up to
        ``leader.imbalance.check.interval.seconds`` later, in the middle of whatever runs
        then). Returns what it did (empty: nothing to do); raises LocalClusterError when the
        replicas are not in sync within ``timeout``."""
        deadline = time.monotonic() + timeout
        done: list[str] = []
        while True:
            try:
                meta = self.admins.usable().list_topics(timeout=10)
            except KafkaException:
                meta = None  # no broker answered this time
            if meta is not None:
                partitions = [p for t in meta.topics.values() for p in t.partitions.values()]
                lagging = [p for p in partitions if p.leader < 0 or set(p.isrs) != set(p.replicas)]
                if not lagging:
                    break
            if time.monotonic() >= deadline:
                lag = "no metadata" if meta is None else f"{len(lagging)} partitions"
                raise LocalClusterError(
                    f"cluster {self.name!r}: replicas not in sync after {timeout:.0f}s ({lag})"
                )
            if not done:
                done.append("waited for replicas in sync")
            time.sleep(0.2)
        moved = [p for p in partitions if p.replicas and p.leader != p.replicas[0]]
        if moved:
            try:
                self.admins.usable().elect_leaders(ElectionType.PREFERRED, None).result(timeout=30)
            except KafkaException as exc:  # "election not needed" for some: not a failure
                log.info("preferred leader election: %s", exc)
            done.append(f"{len(moved)} partitions given back to their preferred leader")
        return done

    def settle(self, timeout: float = 120) -> list[str]:
        """Bring the cluster back to rest after faults: ``give_back_leaders``, then wait until
        every consumer group coordinator has loaded. Returns what it did (empty: the cluster
        was at rest); raises LocalClusterError when it cannot within ``timeout``."""
        deadline = time.monotonic() + timeout
        done = self.give_back_leaders(timeout)
        groups = coordinator_probes(self.wait_groups_ready(max(1.0, deadline - time.monotonic())))
        while True:
            # A coordinator that moved loads its partition of the offsets topic first: until it
            # is loaded its groups cannot join or commit (COORDINATOR_LOAD_IN_PROGRESS).
            try:
                self.coordinators_answer(groups, timeout=5)
                return done
            except KafkaException as exc:
                if time.monotonic() >= deadline:
                    raise LocalClusterError(
                        f"cluster {self.name!r}: group coordinators not ready after "
                        f"{timeout:.0f}s: {exc}"
                    ) from None
                if "waited for group coordinators" not in done:
                    done.append("waited for group coordinators")
                time.sleep(0.2)

    def coordinators_answer(self, groups: list[str], timeout: float) -> None:
        """Ask each group's coordinator for the group's committed offsets, as a consumer does
        before it reads (OffsetFetch: the client finds the coordinator and resends while it
        answers COORDINATOR_LOAD_IN_PROGRESS); raises KafkaException when one did not answer
        within ``timeout``.

        Consumers ask, not the admin client: librdkafka's admin requests to a coordinator
        (DescribeConsumerGroups, ListConsumerGroupOffsets) can abort the process when a send
        fails as a connection drops (confluentinc/librdkafka#4605, a use-after-free not fixed
        in a release), and here brokers stop on purpose."""
        bootstrap = self.admins.usable_bootstrap()
        consumers = [
            Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": group,
                    "enable.auto.commit": False,
                    "socket.connection.setup.timeout.ms": 5000,
                    "log_level": 2,
                }
            )
            for group in groups
        ]
        probe = [TopicPartition(OFFSETS_TOPIC, 0)]
        try:
            with ThreadPoolExecutor(max_workers=len(consumers)) as pool:
                for _ in pool.map(lambda c: c.committed(probe, timeout=timeout), consumers):
                    pass
        finally:
            for consumer in consumers:
                consumer.close()

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot: every node's process, and what the cluster itself reports.

        ``nodes``: per node ``id``, ``pid``, ``state`` (running, paused or stopped), ports and
        ``rss_bytes``. ``brokers``: the broker ids in the metadata (live and unfenced), None
        when no broker answered. ``controller``: the active KRaft controller (the quorum leader
        of the highest epoch a running node recorded), None when unknown.
        """
        nodes = []
        for node in self.nodes.values():
            pid = node.pid()
            nodes.append(
                {
                    "id": node.id,
                    "pid": pid,
                    "state": "stopped" if pid is None else process_state(pid),
                    "broker_port": node.broker_port,
                    "controller_port": node.controller_port,
                    "rss_bytes": None if pid is None else rss_bytes(pid),
                    "dir": str(node.dir),
                }
            )
        running = any(n["state"] == "running" for n in nodes)
        return {
            "name": self.name,
            "bootstrap_servers": self.bootstrap_servers,
            "secure_bootstrap_servers": self.secure_bootstrap_servers,
            "security_dir": str(self.security.dir) if self.secure else None,
            "cluster_id": stored_cluster_id(self.dir),
            "nodes": nodes,
            "brokers": self.admins.brokers(timeout=3.0) if running else [],
            "controller": self._active_controller(),
        }

    def stop(self, timeout: float = 60) -> None:
        """Stop every node cleanly (SIGTERM; SIGKILL after ``timeout``); nothing is left running.

        Every node is signalled before any is waited for: they shut down in parallel, all
        within the one ``timeout``."""
        pids = {node: pid for node in self.nodes.values() if (pid := node.pid()) is not None}
        for pid in pids.values():
            request_stop(pid)
        deadline = time.monotonic() + timeout
        for node, pid in pids.items():
            if not terminate_pid(pid, max(0.0, deadline - time.monotonic()), alive):
                log.warning(
                    "node %s (pid %s) did not stop in %.0fs: SIGKILL", node.id, pid, timeout
                )
                sigkill(pid)
            node.pid_file.unlink(missing_ok=True)
        self.admins.clear()

    def destroy(self) -> None:
        """Stop the cluster and delete its directory (data, logs, cluster id). Jars stay."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ----------------------------------------------------------------- one node

    def node_pid(self, node_id: int) -> int | None:
        """The pid of node ``node_id`` when it is running (or paused), else None."""
        return self._node(node_id).pid()

    def start_node(self, node_id: int) -> None:
        """Start one node in the background (no-op when it runs); does not wait for it."""
        node = self._node(node_id)
        if node.pid() is not None:
            return
        node.pid_file.unlink(missing_ok=True)  # stale: its process is gone
        ensure_jars(self.libs_dir)
        if not node.formatted:
            self._format([node])
        self._check_ports(node)
        node.write_properties(self._voters(), len(self.nodes))
        self._launched[node.id] = node.launch()

    def stop_node(self, node_id: int, timeout: float = 60) -> None:
        """Shut one node down cleanly (SIGTERM: controlled shutdown), SIGKILL after ``timeout``."""
        self._node(node_id).stop(timeout)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (a crash: no controlled shutdown) and wait until it is gone."""
        self._node(node_id).kill()

    def pause(self, node_id: int) -> None:
        """SIGSTOP one node: it stays connected but answers nothing, like a long GC pause."""
        self._node(node_id).pause()

    def resume(self, node_id: int) -> None:
        """SIGCONT a paused node."""
        self._node(node_id).resume()

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
            seen = (
                self.admins.brokers(timeout=max(0.5, min(5.0, deadline - time.monotonic()))) or []
            )
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
            info = self.admins.usable().list_topics(topic, timeout=10).topics.get(topic)
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

        The topic gets the sentinel topic settings (``sentinel_topic_config``: no unclean
        leader election, ``min_insync_replicas``); entries in ``config`` win over them, so a
        scenario can turn unclean election on deliberately. Raises KafkaException when the
        topic exists.
        """
        topic_config = {
            **sentinel_topic_config(min_insync_replicas),
            **{key: str(value) for key, value in (config or {}).items()},
        }
        new = NewTopic(name, partitions, replication_factor, config=topic_config)
        futures = self.admins.usable().create_topics(
            [new], operation_timeout=timeout, request_timeout=timeout
        )
        futures[name].result()

        # Every broker serves metadata from its own copy of the metadata log, a few ms apart;
        # wait until each running one (asked alone) knows every partition's leader, so that a
        # client may use the topic at once, whichever broker it asks.
        def led_everywhere() -> bool:
            for node in self.admins.usable_nodes():
                client = self.admins.client(f"127.0.0.1:{node.broker_port}")
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

        if not wait_until(led_everywhere, timeout, 0.05):
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

    def _voters(self) -> str:
        """``controller.quorum.voters``: every node is a controller."""
        return ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values())

    def _check_ports(self, node: Node) -> None:
        ports = [node.broker_port, node.controller_port]
        if self.secure:
            ports.append(node.secure_port)
        for port in ports:
            if not port_free(port):
                owner = port_owner(port) or "another process"
                raise LocalClusterError(
                    f"cannot start node {node.id} of {self.name!r}: 127.0.0.1:{port} is in "
                    f"use by {owner}. Stop it, or give this cluster other ports "
                    f"(--port / broker_base_port, controller_base_port)."
                )

    def _active_controller(self) -> int | None:
        """The KRaft leader per the running nodes' ``quorum-state`` files (highest epoch)."""
        best: tuple[int, int] | None = None
        for node in self.nodes.values():
            if node.pid() is None:
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
            if not self.nodes[node_id].started_since(self._launched[node_id]):
                return False
            del self._launched[node_id]
        return True

    def _format(self, nodes: list[Node]) -> None:
        """Format the storage of ``nodes`` (``workers.localkafka.storage``)."""
        if not nodes:
            return
        scram = self.security.scram_arguments() if self.secure else []
        cluster = cluster_id(self.dir, self.nodes.values())
        format_storage(nodes, cluster, self._voters(), len(self.nodes), scram)

    def _log_tails(self, node_ids: list[int] | None = None, lines: int = 25) -> str:
        chosen = [self.nodes[n] for n in (node_ids or self.nodes)]
        return "\n".join(
            f"--- node {node.id}: {node.log} (last {lines} lines)\n{node.log_tail(lines)}"
            for node in chosen
        )


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()`` (UTF-16 code units, 32-bit wrap-around), as Kafka hashes
    a group id to its partition of the offsets topic."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group: str, partitions: int) -> int:
    """The offsets topic partition (so the coordinator) of ``group`` (Kafka's
    ``Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount``; its ``abs`` maps
    Integer.MIN_VALUE to 0)."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def coordinator_probes(partitions: int) -> list[str]:
    """One group id per partition of the offsets topic: describing them asks every
    coordinator."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        name = f"{READY_GROUP}-{i}"
        found.setdefault(offsets_partition(name, partitions), name)
        i += 1
    return [found[p] for p in range(partitions)]
