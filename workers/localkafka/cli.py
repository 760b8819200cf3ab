"""The local cluster's command line (``python -m workers.localkafka``):

    python -m workers.localkafka start   [--name dev] [--port 9092] [--secure [--secure-port P]]
    python -m workers.localkafka status  [--json]
    python -m workers.localkafka {kill,pause,resume,restart,start,stop} NODE
    python -m workers.localkafka {stop,destroy}

``--name`` and ``--port`` (the first broker port) pick the cluster: ``dev`` on 9092 is the
one ``bin/up`` starts, ``test`` on 29092 the one ``bin/test`` starts. ``--secure`` (at the
first start, when the storage is formatted) adds a ``SASL_SSL`` listener on ``--secure-port``
(default ``--port`` + 10) with SCRAM-SHA-512 users and ACLs (``workers.localkafka.security``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from confluent_kafka import KafkaException

from workers.localkafka import LocalClusterError
from workers.localkafka.address import DEFAULT_NAME, DEFAULT_PORT
from workers.localkafka.cluster import LocalCluster

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
    if status["secure_bootstrap_servers"]:
        print(
            f"secured (SASL_SSL, SCRAM-SHA-512): {status['secure_bootstrap_servers']}  "
            f"CA and users in {status['security_dir']}"
        )
    for node in status["nodes"]:
        rss = f"{node['rss_bytes'] / 2**20:.0f} MiB" if node["rss_bytes"] else "-"
        print(
            f"  node {node['id']}  {node['state']:<8} pid {node['pid'] or '-':<8} "
            f"ports {node['broker_port']}/{node['controller_port']}  rss {rss}"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.localkafka", description="The local three-node Kafka cluster."
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("node", nargs="?", type=int, help="node id (1..3) for per-node commands")
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help=f"cluster name (default: {DEFAULT_NAME})"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"first broker port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--controller-port",
        type=int,
        default=None,
        help="first controller port (default: --port + 100)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="add a SASL_SSL listener with SCRAM users and ACLs (at the first start)",
    )
    parser.add_argument(
        "--secure-port",
        type=int,
        default=None,
        help="first SASL_SSL port (default: --port + 10)",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait (default 120)")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command in NODE_COMMANDS and args.node is None:
        parser.error(f"{args.command} needs a NODE")
    if args.node is not None and args.command in ("status", "destroy"):
        parser.error(f"{args.command} takes no NODE")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cluster = LocalCluster(
        args.name,
        broker_base_port=args.port,
        controller_base_port=args.controller_port,
        secure=args.secure,
        secure_base_port=args.secure_port,
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
        _run(cluster, args)
    except (LocalClusterError, KafkaException) as exc:
        print(f"localkafka: {exc}", file=sys.stderr)
        return 1
    target = f"node {args.node}" if args.node is not None else f"cluster {args.name!r}"
    print(
        f"{args.command} {target}: done in {time.monotonic() - started:.1f}s"
        + (f" ({cluster.bootstrap_servers})" if args.command == "start" else "")
        + (
            f", secured: {cluster.secure_bootstrap_servers}"
            if args.command == "start" and cluster.secure
            else ""
        )
    )
    return 0


def _run(cluster: LocalCluster, args: argparse.Namespace) -> None:
    """Carry out every command but ``status``."""
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


if __name__ == "__main__":
    sys.exit(main())
