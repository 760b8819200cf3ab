"""The lab's actions on the target cluster: checks, topics, and broker faults it can undo.

``BrokerActions`` is the Kafka side of a ``Lab`` (``workers.lab.lab``): whether the cluster
answers and is ready, the sentinel topics (created with ``SentinelSpec.topic_config``,
optionally all led by one chosen broker), and the broker faults — SIGKILL, SIGSTOP, clean
stop and restart of a node — which only ever hit the project's own ``LocalCluster`` and are
tracked, so that ``restore()`` can undo them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from workers.clientsecrets import unseal
from workers.lab.limits import POLL_S, Timeouts
from workers.lab.outcome import ScenarioAborted
from workers.localkafka import LocalClusterError
from workers.localkafka.admin import transient
from workers.localkafka.cluster import LocalCluster

if TYPE_CHECKING:
    from workers.lab.probes import Probe

log = logging.getLogger(__name__)

# Answers of a partition between leaders, which a moment later answers right (besides the
# transient errors of any request, ``workers.localkafka.admin.transient``).
BETWEEN_LEADERS = {
    KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
}


class BrokerActions:
    """The target cluster of one scenario run, and what the run did to its brokers.

    ``local`` is the project's ``LocalCluster`` when the target is that cluster, else None
    (broker faults are then refused)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        local: LocalCluster | None,
        cluster_name: str,
        client: dict[str, Any] | None,
        timeouts: Timeouts,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.local = local
        self.cluster_name = cluster_name
        # ``client`` as stored (secrets sealed or referenced): what probe spec files get; this
        # process's own clients use it opened.
        self.stored_client = dict(client or {})
        self.client = unseal(self.stored_client)
        self.timeouts = timeouts
        self.scenario_name = "scenario"
        self.replication_factor = 3
        self.stopped_nodes: set[int] = set()  # nodes this run killed or stopped
        self.paused_nodes: set[int] = set()  # nodes this run froze
        self.touched_nodes: set[int] = set()  # nodes this run did anything to
        self.victim = -1  # the broker a broker scenario injects its fault into
        self._admins: dict[str, AdminClient] = {}

    # -- preflight ---------------------------------------------------------------------------
    def require_local(self, scenario: str) -> LocalCluster:
        """The local cluster, or a refusal: broker faults only ever hit the project's own."""
        if self.local is None:
            raise ScenarioAborted(
                f"refused: scenario {scenario!r} injects broker faults (SIGKILL, SIGSTOP or "
                f"restart of Kafka nodes), which the lab only does to the project's local "
                f"cluster; cluster {self.cluster_name!r} is not it. Run it against the local "
                f"cluster, or choose a consumer-side scenario."
            )
        mine = set(self.local.bootstrap_servers.split(","))
        if set(self.bootstrap_servers.split(",")) != mine:
            raise ScenarioAborted(
                f"refused: scenario {scenario!r} injects broker faults, and the local cluster "
                f"{self.local.name!r} serves {self.local.bootstrap_servers}, not the target "
                f"cluster {self.cluster_name!r} ({self.bootstrap_servers})"
            )
        return self.local

    def check_local_ready(self) -> None:
        local = self.local
        assert local is not None
        status = local.status()
        states = {n["id"]: n["state"] for n in status["nodes"]}
        if any(state != "running" for state in states.values()):
            raise ScenarioAborted(f"local cluster {local.name!r} not ready: nodes {states}")
        if sorted(status["brokers"] or []) != sorted(states):
            raise ScenarioAborted(
                f"local cluster {local.name!r} not ready: brokers {status['brokers']} in the "
                f"metadata, {sorted(states)} expected"
            )

    def check_reachable(self) -> list[int]:
        """Broker ids of the target cluster; aborts when it does not answer."""
        try:
            meta = self.admin().list_topics(timeout=10)
        except KafkaException as exc:
            raise ScenarioAborted(
                f"cluster {self.cluster_name!r} ({self.bootstrap_servers}) not reachable: {exc}"
            ) from None
        return sorted(meta.brokers)

    # -- topics ------------------------------------------------------------------------------
    def consumer_conf(self) -> dict[str, Any]:
        return {**self.client, "bootstrap.servers": self.bootstrap_servers, "log_level": 2}

    def admin(self) -> AdminClient:
        """An admin client over the brokers that can answer now (a frozen one answers nothing)."""
        bootstrap = self.bootstrap_servers
        if self.local is not None and self.paused_nodes:
            bootstrap = ",".join(
                f"127.0.0.1:{node.broker_port}"
                for node in self.local.nodes.values()
                if node.id not in self.paused_nodes | self.stopped_nodes
            )
        client = self._admins.get(bootstrap)
        if client is None:
            conf = {**self.client, "bootstrap.servers": bootstrap, "log_level": 2}
            client = self._admins[bootstrap] = AdminClient(conf)
        return client

    def create_topics(
        self,
        probe: Probe,
        leader: int | None = None,
        *,
        replicas: list[int] | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        """Fresh topics for ``probe``; with ``leader``, that broker leads every partition; with
        ``replicas``, every partition has those (the first leads). ``config`` is added to the
        sentinel topics' own."""
        topics = []
        config = {**probe.spec.topic_config, **(config or {})}
        for name in probe.topics:
            if replicas is not None:
                assignment = [list(replicas) for _ in range(probe.spec.partitions)]
                topics.append(
                    NewTopic(name, len(assignment), replica_assignment=assignment, config=config)
                )
            elif leader is None:
                topics.append(
                    NewTopic(
                        name, probe.spec.partitions, probe.spec.replication_factor, config=config
                    )
                )
            else:
                led = self.assignment(probe, leader)
                # confluent-kafka 2.16 wants the partition count to match the assignment.
                topics.append(NewTopic(name, len(led), replica_assignment=led, config=config))
        for name, future in self.admin().create_topics(topics, operation_timeout=30).items():
            try:
                future.result(timeout=60)
            except KafkaException as exc:
                raise ScenarioAborted(f"could not create topic {name}: {exc}") from None

    # -- offsets (the records-deleted scenario's ground truth) --------------------------------
    def committed(self, probe: Probe) -> dict[int, int]:
        """The probe's consumer group's committed offset per partition of its topic (-1: none)."""
        consumer = Consumer({**self.consumer_conf(), "group.id": probe.spec.group_id})
        try:
            parts = [TopicPartition(probe.spec.topic, p) for p in range(probe.spec.partitions)]
            return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=30)}
        except KafkaException as exc:
            raise ScenarioAborted(
                f"could not read {probe.key}'s committed offsets: {exc}"
            ) from None
        finally:
            consumer.close()

    def high_watermarks(self, topic: str, partitions: int) -> dict[int, int]:
        """Each partition's high watermark (the offset its next record will get). Asked again
        while the answer is a retriable error (a leader just elected answers "high watermark
        not caught up" for a moment), up to the fault timeout."""
        consumer = Consumer({**self.consumer_conf(), "group.id": "ds-scenario-watermarks"})
        deadline = time.monotonic() + self.timeouts.fault
        try:
            while True:
                try:
                    return {
                        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                        for p in range(partitions)
                    }
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    retriable = transient(exc) or (
                        isinstance(err, KafkaError) and err.code() in BETWEEN_LEADERS
                    )
                    if not retriable or time.monotonic() >= deadline:
                        raise ScenarioAborted(
                            f"could not read {topic}'s watermarks: {exc}"
                        ) from None
                    time.sleep(POLL_S)
        finally:
            consumer.close()

    def delete_records(self, topic: str, upto: dict[int, int]) -> None:
        """Delete every record of ``topic`` below ``upto[partition]`` (DeleteRecords)."""
        tps = [TopicPartition(topic, p, offset) for p, offset in upto.items()]
        try:
            for future in self.admin().delete_records(tps).values():
                future.result(timeout=60)
        except KafkaException as exc:
            raise ScenarioAborted(f"could not delete records of {topic}: {exc}") from None

    def assignment(self, probe: Probe, leader: int) -> list[list[int]]:
        assert self.local is not None
        others = sorted(n for n in self.local.nodes if n != leader)
        replicas = [leader, *others][: probe.spec.replication_factor]
        return [replicas for _ in range(probe.spec.partitions)]

    def delete_topics(self, names: list[str]) -> None:
        """Delete topics ``names`` (best effort: a failure is logged, not raised)."""
        if not names:
            return
        try:
            futures = self.admin().delete_topics(names, operation_timeout=30)
        except KafkaException as exc:
            log.warning("scenario %s: could not delete topics: %s", self.scenario_name, exc)
            return
        for name, future in futures.items():
            try:
                future.result(timeout=60)
            except Exception as exc:
                log.warning("scenario %s: could not delete %s: %s", self.scenario_name, name, exc)

    def isr_full(self, topics: list[str] | None = None) -> bool:
        """Every partition (of ``topics``, else of every topic) has all replicas in sync."""
        try:
            meta = self.admin().list_topics(timeout=5)
        except KafkaException:
            return False
        chosen = topics if topics is not None else list(meta.topics)
        for name in chosen:
            info = meta.topics.get(name)
            if info is None or info.error is not None:
                return False
            for part in info.partitions.values():
                if part.leader < 0 or set(part.isrs) != set(part.replicas):
                    return False
        return True

    # -- broker faults (tracked, so that restore() can undo them) ---------------------------
    def kill_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        self.touched_nodes.add(node)
        self.stopped_nodes.add(node)
        local.kill(node)

    def pause_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        self.touched_nodes.add(node)
        self.paused_nodes.add(node)
        local.pause(node)

    def resume_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        local.resume(node)
        self.paused_nodes.discard(node)

    def start_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        started = time.monotonic()
        self.spawn_node(node)
        self.wait_brokers({node})
        self.stopped_nodes.discard(node)
        log.info(
            "scenario %s: node %d started in %.1fs",
            self.scenario_name,
            node,
            time.monotonic() - started,
        )

    def spawn_node(self, node: int) -> None:
        """``LocalCluster.start_node``, waiting out ports the stopped node's sockets still
        hold for a moment (its check refuses a port in use; TIME_WAIT sockets of a JVM that
        just exited sometimes count)."""
        local = self.local
        assert local is not None
        deadline = time.monotonic() + self.timeouts.broker
        while True:
            try:
                local.start_node(node)
                return
            except LocalClusterError as exc:
                if "in use" not in str(exc) or time.monotonic() >= deadline:
                    raise
                log.info("scenario %s: node %d: %s; retrying", self.scenario_name, node, exc)
                time.sleep(1.0)

    def stop_node(self, node: int) -> None:
        local = self.local
        assert local is not None
        self.touched_nodes.add(node)
        self.stopped_nodes.add(node)
        started = time.monotonic()
        local.stop_node(node, timeout=self.timeouts.stop)
        log.info(
            "scenario %s: node %d stopped in %.1fs",
            self.scenario_name,
            node,
            time.monotonic() - started,
        )

    def wait_brokers(self, nodes: set[int]) -> None:
        local = self.local
        assert local is not None
        try:
            local.wait_for_brokers(nodes, self.timeouts.broker)
        except LocalClusterError as exc:
            raise ScenarioAborted(f"node(s) {sorted(nodes)} did not come back: {exc}") from None

    def restore(self) -> list[str]:
        """Undo this run's broker faults: resume frozen nodes, start stopped ones, wait until
        every broker is in the metadata. Returns what could not be restored."""
        problems: list[str] = []
        local = self.local
        if local is None:
            return problems
        for node in sorted(self.paused_nodes):
            try:
                self.resume_node(node)
            except LocalClusterError as exc:
                problems.append(f"resume node {node}: {exc}")
        for node in sorted(self.stopped_nodes):
            try:
                self.spawn_node(node)
            except LocalClusterError as exc:
                problems.append(f"start node {node}: {exc}")
        if self.touched_nodes and not problems:
            try:
                local.wait_for_brokers(set(local.nodes), self.timeouts.broker)
                self.stopped_nodes.clear()
            except LocalClusterError as exc:
                problems.append(f"brokers not back: {exc}")
            else:
                self.rebalance_leaders()
        return problems

    def rebalance_leaders(self) -> None:
        """Give every partition back to its preferred leader once all replicas are in sync
        (``LocalCluster.give_back_leaders``).

        Kafka would do it by itself up to leader.imbalance.check.interval.seconds later, in
        the middle of the next run, where a leadership move loses acks=0 records. Best effort:
        a cluster whose leaders are not preferred is still healthy."""
        assert self.local is not None
        try:
            self.local.give_back_leaders(self.timeouts.broker)
        except LocalClusterError as exc:
            log.warning("scenario %s: %s; leaders left as they are", self.scenario_name, exc)
