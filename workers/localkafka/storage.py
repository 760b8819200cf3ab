"""The local cluster's storage on disk before any node runs: its cluster id (kept in
``.local/kafka/<name>/cluster.id``) and formatting the nodes' storage with Kafka's
``StorageTool``. ``LocalCluster`` (``workers.localkafka.cluster``) formats a node at its first
start."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path

from workers.localkafka import LocalClusterError
from workers.localkafka.node import Node


def stored_cluster_id(cluster_dir: Path) -> str | None:
    with contextlib.suppress(OSError):
        return (cluster_dir / "cluster.id").read_text().strip() or None
    return None


def cluster_id(cluster_dir: Path, nodes: Iterable[Node]) -> str:
    """The cluster id: stored, else recovered from a formatted node, else a new one."""
    stored = stored_cluster_id(cluster_dir)
    if stored:
        return stored
    value = None
    for node in nodes:
        with contextlib.suppress(OSError):
            for line in (node.data / "meta.properties").read_text().splitlines():
                if line.startswith("cluster.id="):
                    value = line.split("=", 1)[1].strip()
    value = value or new_cluster_id()
    cluster_dir.mkdir(parents=True, exist_ok=True)
    (cluster_dir / "cluster.id").write_text(value + "\n")
    return value


def format_storage(
    nodes: list[Node], cluster: str, voters: str, node_count: int, extra: list[str]
) -> None:
    """Format the storage of ``nodes`` as cluster id ``cluster`` (in parallel: each is a JVM
    start); ``extra``: more ``StorageTool format`` arguments (the SCRAM users)."""
    procs = []
    for node in nodes:
        node.write_properties(voters, node_count)
        argv = node.java_argv(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster,
            "--config",
            str(node.properties),
            "--ignore-formatted",
            *extra,
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
            failures.append(f"node {node.id}: exit {proc.returncode}\n{output.decode()[-3000:]}")
    if failures:
        raise LocalClusterError("formatting storage failed:\n" + "\n".join(failures))


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, URL-safe base64 without padding (22 characters)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):  # as Kafka's Uuid.randomUuid: keeps CLI parsing sane
            return value
