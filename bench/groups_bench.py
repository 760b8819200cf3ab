"""Group watcher benchmark: what one sample of many consumer groups costs, against a real cluster.

    .venv/bin/python bench/groups_bench.py [--bootstrap HOSTS] [--redis-url URL] [--groups 500]
        [--partitions 2000] [--topics 20] [--samples 5] [--replication-factor 1]

Creates ``--topics`` topics holding ``--partitions`` partitions in all, writes 10 records to each
partition, and makes ``--groups`` groups with ``alter_consumer_group_offsets`` (each commits
offset 5 on its share of the partitions, so every partition is committed by one group and has
5 records of lag: the first sample reads each partition's record at the committed offset).
Then it takes ``--samples`` samples with ``GroupSampler.sample()`` exactly as the watcher does
and reports, per sample: the process's CPU seconds (every thread, librdkafka's too), the
wall time, the records read for timestamps, and the Redis round trips (commands outside a
pipeline plus pipelines). The share of a core is CPU seconds / 30 s, the default interval.
Deletes its groups, topics and Redis keys at the end (also on failure or Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid

import redis
from _common import (
    ROOT,  # noqa: F401  (puts the project on sys.path)
    admin,
    create_topics,
    default_bootstrap,
    default_redis_url,
    delete_topics,
    on_exit,
    print_machine_facts,
    require_loopback,
    table,
)
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition

from workers.clients.groups import GroupReader
from workers.runtime.groups import GroupSampler
from workers.store.connection import connect
from workers.store.groups import GroupStore


class RoundTrips:
    """Counts Redis round trips: a command outside a pipeline, or a whole pipeline."""

    def __init__(self) -> None:
        self.count = 0
        self._command = redis.Redis.execute_command
        self._pipeline = redis.client.Pipeline.execute
        trips = self

        def command(self, *args, **options):  # noqa: ANN001, ANN202
            trips.count += 1
            return trips._command(self, *args, **options)

        def pipeline(self, *args, **options):  # noqa: ANN001, ANN202
            trips.count += 1
            return trips._pipeline(self, *args, **options)

        redis.Redis.execute_command = command
        redis.client.Pipeline.execute = pipeline


def make_groups(bootstrap: str, tag: str, topics: list[str], per_topic: int, groups: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    partitions = [(t, p) for t in topics for p in range(per_topic)]
    for t, p in partitions:
        for i in range(10):
            producer.produce(t, value=b"%d" % i, partition=p)
        producer.poll(0)
    assert producer.flush(120) == 0
    client = admin(bootstrap)
    share = max(1, len(partitions) // groups)
    futures = {}
    for g in range(groups):
        mine = partitions[g * share : (g + 1) * share] or [partitions[g % len(partitions)]]
        request = ConsumerGroupTopicPartitions(
            f"{tag}-g{g}", [TopicPartition(t, p, 5) for t, p in mine]
        )
        futures.update(client.alter_consumer_group_offsets([request]))
    for future in futures.values():
        future.result(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=2000)
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--replication-factor", type=int, default=1)
    args = parser.parse_args()
    require_loopback(args.bootstrap, args.redis_url)
    print_machine_facts("group watcher")

    tag = f"bench-groups-{uuid.uuid4().hex[:6]}"
    per_topic = args.partitions // args.topics
    topics = [f"{tag}-t{i}" for i in range(args.topics)]
    client = connect(args.redis_url)
    cluster = f"{tag}-cluster"
    group_names = [f"{tag}-g{g}" for g in range(args.groups)]

    def clean() -> None:
        GroupStore(client, cluster).forget()
        for future in admin(args.bootstrap).delete_consumer_groups(group_names).values():
            with contextlib.suppress(Exception):  # best effort at exit
                future.result(timeout=60)
        delete_topics(args.bootstrap, topics)

    on_exit(clean)
    took = create_topics(args.bootstrap, topics, per_topic, args.replication_factor, 1, 300)
    print(f"{len(topics)} topics x {per_topic} partitions ready in {took:.1f} s")
    make_groups(args.bootstrap, tag, topics, per_topic, args.groups)
    print(f"{args.groups} groups committed")

    reader = GroupReader({"bootstrap.servers": args.bootstrap}, include=(f"{tag}-*",))
    sampler = GroupSampler(cluster, {}, client, reader=reader)
    trips = RoundTrips()
    rows = []
    for i in range(args.samples):
        before_trips, cpu, wall = trips.count, time.process_time(), time.monotonic()
        result = sampler.sample()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        parts = sum(len(s.partitions) for s in result.states.values())
        rows.append(
            [
                i + 1,
                len(result.states),
                parts,
                reader.stats.probes,
                f"{cpu:.2f}",
                f"{wall:.2f}",
                trips.count - before_trips,
                f"{100 * cpu / 30:.1f} %",
            ]
        )
    sampler.close()
    headers = ["sample", "groups", "group-partitions", "records read", "CPU s", "wall s",
               "Redis round trips", "of a core at 30 s"]  # fmt: skip
    print(table(headers, rows))


if __name__ == "__main__":
    main()
