"""Talking to the running local cluster through Kafka's admin API: which client to ask (only
nodes that can answer now), and resending an idempotent request after a transient error.
``LocalCluster`` (``workers.localkafka.cluster``) asks through ``AdminClients``."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from workers.localkafka.node import Node, process_state

log = logging.getLogger(__name__)

# Errors of a request that says nothing about the request itself: a broker handle the client
# replaced (a bootstrap connection, once the metadata named the brokers), a connection that
# dropped, a timeout. Just after a start, an admin request meets these at random.
TRANSIENT = {
    KafkaError._DESTROY_BROKER,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
}


def transient(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (err.retriable() or err.code() in TRANSIENT)


def with_retries(send: Any, timeout: float = 30.0) -> None:
    """``send()`` an idempotent admin request (it returns futures) and wait for every result,
    sending it again after a transient error until ``timeout``; other errors are raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for future in send().values():
                future.result()
            return
        except KafkaException as exc:
            if not transient(exc) or time.monotonic() >= deadline:
                raise
            log.info("admin request failed (%s): sending it again", exc.args[0])
            time.sleep(0.5)


class AdminClients:
    """Admin clients of one cluster's ``nodes``, one per bootstrap list, kept until ``clear()``."""

    def __init__(self, nodes: dict[int, Node], bootstrap_servers: str) -> None:
        self.nodes = nodes
        self.bootstrap_servers = bootstrap_servers
        self._clients: dict[str, AdminClient] = {}

    def usable(self) -> AdminClient:
        """An admin client bootstrapped from the nodes that can answer now.

        A frozen (SIGSTOPped) broker accepts TCP connections and answers nothing: a client
        that already talks to it sends it metadata requests that only time out. So the client
        is chosen by the set of running, unpaused nodes, and a pause gets a fresh one.
        """
        return self.client(self.usable_bootstrap())

    def usable_bootstrap(self) -> str:
        """The bootstrap list of the nodes that can answer now (all of them when none can)."""
        usable = [f"127.0.0.1:{node.broker_port}" for node in self.usable_nodes()]
        return ",".join(usable) or self.bootstrap_servers

    def usable_nodes(self) -> list[Node]:
        usable = []
        for node in self.nodes.values():
            pid = node.pid()
            if pid is not None and process_state(pid) == "running":
                usable.append(node)
        return usable

    def client(self, bootstrap: str) -> AdminClient:
        client = self._clients.get(bootstrap)
        if client is None:
            client = AdminClient(
                {
                    "bootstrap.servers": bootstrap,
                    "socket.connection.setup.timeout.ms": 5000,
                    # Nodes are down on purpose here; "connection refused" (level 3) is not news.
                    "log_level": 2,
                }
            )
            self._clients[bootstrap] = client
        return client

    def clear(self) -> None:
        self._clients.clear()

    def brokers(self, timeout: float) -> list[int] | None:
        """Broker ids in the metadata; None when no broker answered within ``timeout``."""
        try:
            return sorted(self.usable().list_topics(timeout=timeout).brokers)
        except KafkaException:
            return None
