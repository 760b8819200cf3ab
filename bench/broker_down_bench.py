"""How soon the status document says a killed broker is unreachable (the cluster page and the
detail page's partition table read it), against how soon the cluster metadata drops it.

    .venv/bin/python bench/broker_down_bench.py [--rounds 3] [--node 3]
        [--name default --port 9092]   # the local cluster (python -m workers.localkafka)

Each round starts the check runner's own ``MetadataRefresher`` (refreshing every 5 s, as in
production) on a three-partition topic, SIGKILLs one node at a random phase against the
refresh, and times (1) the first fetch that reports the broker unreachable and (2) the first
fetch whose metadata no longer names it as a broker. Then the node is started again and the
script waits until it is a broker before the next round.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid

from _common import ROOT, create_topics, delete_topics, print_machine_facts  # noqa: F401

from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec
from workers.localkafka.address import LocalAddress
from workers.localkafka.cluster import LocalCluster
from workers.runtime.checkrunner import MetadataRefresher


def wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout} s: {what}")


def one_round(cluster: LocalCluster, bootstrap: str, topic: str, node: int) -> tuple[float, float]:
    spec = SentinelSpec(
        id=990_777,
        name="broker-down-bench",
        profile=DEFAULT_PROFILES[AT_LEAST_ONCE],
        bootstrap_servers=bootstrap,
        topic=topic,
    )
    refresher = MetadataRefresher(spec)
    refresher.start()
    key = str(node)
    try:
        wait(
            lambda: (refresher.latest or {}).get("brokers", {}).get(key, {}).get("reachable"),
            60,
            f"broker {node} up in a fetch",
        )
        time.sleep(random.uniform(0, refresher.interval))  # a random phase against the refresh
        cluster.kill(node)
        killed = time.time()

        def broker():
            return (refresher.latest or {}).get("brokers", {}).get(key, {})

        wait(
            lambda: refresher.latest["updated_at"] > killed and not broker()["reachable"],
            60,
            "unreachable",
        )
        unreachable = refresher.latest["updated_at"] - killed
        wait(lambda: not broker().get("in_metadata", True), 120, "gone from the metadata")
        gone = refresher.latest["updated_at"] - killed
        return unreachable, gone
    finally:
        refresher.stop()
        cluster.start_node(node)
        cluster.wait_for_brokers({node}, timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--node", type=int, default=3)
    parser.add_argument("--name", default="default")
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args()
    cluster = LocalCluster(args.name, broker_base_port=args.port)
    bootstrap = LocalAddress(args.name, args.port).bootstrap_servers
    print_machine_facts("broker down: status document vs cluster metadata")
    topic = f"bench-broker-down-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic], 3)
    results = []
    try:
        for i in range(args.rounds):
            unreachable, gone = one_round(cluster, bootstrap, topic, args.node)
            results.append((unreachable, gone))
            print(
                f"round {i + 1}: unreachable after {unreachable:.2f} s, "
                f"out of the metadata after {gone:.2f} s"
            )
    finally:
        delete_topics(bootstrap, [topic])
    for label, values in (
        ("unreachable", [r[0] for r in results]),
        ("out of the metadata", [r[1] for r in results]),
    ):
        print(
            f"{label}: median {statistics.median(values):.2f} s, "
            f"min {min(values):.2f} s, max {max(values):.2f} s"
        )


if __name__ == "__main__":
    main()
