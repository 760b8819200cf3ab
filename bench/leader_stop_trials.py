"""Stop-the-leader trials: how soon the cluster events watcher sees a stopped leader.

    .venv/bin/python bench/leader_stop_trials.py --cluster-name NAME --port PORT
        [--redis-url URL] [--trials 20] [--wait 90]

Against the project's own local cluster (``python -m workers.localkafka start --name NAME
--port PORT``; keep PORT below the ephemeral port range, 32768 here, or a client's connection
to a stopped node can connect to itself), each trial: creates a topic of one partition
(replication factor 3, ``min.insync.replicas=2``), steps a fresh events sampler
(``workers/roles/eventsampler.py``) until it knows the leader, stops the leader cleanly,
steps the sampler until it records the leader change and the ISR shrink (or ``--wait``
seconds pass), starts the node again and deletes the topic. Reports per trial the seconds from
the stop to both events and how many times the reader renewed its admin client
(``ClusterReader.renewals``: after a sample whose requests got no answer), and the trials that
saw nothing. The suite's test of the same steps is
``tests/integration/test_cluster_events.py::test_a_stopped_leader_is_a_leader_change_and_isr_shrink_and_back_an_isr_expand``.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    create_topics,
    default_redis_url,
    delete_topics,
    print_machine_facts,
    require_loopback,
    start_watchdog,
)
from workers.localkafka.cluster import LocalCluster  # noqa: E402
from workers.roles.eventsampler import EventSampler  # noqa: E402
from workers.runtime.watch import ClusterWatch  # noqa: E402
from workers.store.connection import connect  # noqa: E402


def known_partition(sample: dict | None, topic: str) -> dict | None:
    part = ((sample or {}).get("topics", {}).get(topic) or {}).get("partitions", {}).get("0")
    if part and part["leader"] >= 0 and part["end"] is not None and len(part["isr"]) == 3:
        return part
    return None


def trial(cluster: LocalCluster, bootstrap: str, redis_url: str, wait_s: float) -> dict:
    topic = f"leader-stop-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic], partitions=1)
    sampler = EventSampler(
        ClusterWatch(f"leader-stop-{uuid.uuid4().hex[:6]}", bootstrap, {}, (topic,)),
        connect(redis_url),
    )
    leader = None
    try:
        deadline = time.monotonic() + 60
        while not known_partition(sampler.store.last_sample(), topic):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no sample of {topic} with its leader and ISR")
            sampler.sample()
            time.sleep(0.25)
        leader = known_partition(sampler.store.last_sample(), topic)["leader"]
        cluster.stop_node(leader)
        stopped = time.monotonic()
        kinds: set[str] = set()
        while time.monotonic() - stopped < wait_s and not {"leader-change", "isr-shrink"} <= kinds:
            kinds |= {e["kind"] for e in sampler.sample() if e.get("topic") == topic}
            time.sleep(0.25)
        seen = {"leader-change", "isr-shrink"} <= kinds
        return {
            "leader": leader,
            "seen_after_s": round(time.monotonic() - stopped, 1) if seen else None,
            "renewals": sampler.reader.renewals,
        }
    finally:
        if leader is not None:
            cluster.start_node(leader)
            cluster.wait_for_brokers({leader}, timeout=180)
        sampler.store.forget()
        sampler.close()
        delete_topics(bootstrap, [topic])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--port", type=int, required=True, help="the cluster's first broker port")
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--wait", type=float, default=90.0)
    args = parser.parse_args()
    bootstrap = ",".join(f"127.0.0.1:{args.port + i}" for i in range(3))
    require_loopback(bootstrap, args.redis_url)
    start_watchdog(args.trials * (args.wait + 240))
    print_machine_facts("stop-the-leader trials")
    cluster = LocalCluster(args.cluster_name, broker_base_port=args.port)
    blind = 0
    for n in range(1, args.trials + 1):
        result = trial(cluster, bootstrap, args.redis_url, args.wait)
        blind += result["seen_after_s"] is None
        print(f"trial {n}: {result}", flush=True)
    print(f"{args.trials} trials, {blind} without the leader change within {args.wait:g} s")


if __name__ == "__main__":
    main()
