"""Guarantee lint benchmark: how long a lint of N topics takes against a real cluster.

    .venv/bin/python bench/lint_bench.py [--bootstrap HOSTS] [--topics 500] [--partitions 1]
                                         [--repeat 3]

Creates N topics (replication factor 3, a quarter of them with a risky setting so the rules
have findings to write), times the whole read-only lint (``gather``: one list_topics and
batched describe_configs; ``lint_report``: the rules) ``--repeat`` times, prints the best and
the worst, and deletes the topics again (also on failure or Ctrl-C). Target: under 10 s.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench._common import default_bootstrap  # noqa: E402
from workers.clients.lintfacts import gather  # noqa: E402
from workers.engine.lint.topics import lint_report  # noqa: E402

RISKY = ({}, {"min.insync.replicas": "1"}, {"unclean.leader.election.enable": "true"}, {})


def create(admin: AdminClient, names: list[str], partitions: int) -> None:
    for i in range(0, len(names), 100):
        batch = [
            NewTopic(n, partitions, 3, config=RISKY[j % len(RISKY)])
            for j, n in enumerate(names[i : i + 100], start=i)
        ]
        for future in admin.create_topics(batch, operation_timeout=60).values():
            future.result()
    deadline = time.monotonic() + 120
    while not set(names) <= set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise SystemExit("topics not visible after 120 s")
        time.sleep(0.5)


def delete(admin: AdminClient, names: list[str]) -> None:
    for i in range(0, len(names), 100):
        for future in admin.delete_topics(names[i : i + 100], operation_timeout=60).values():
            try:
                future.result()
            except Exception as exc:  # already gone: fine
                print(f"delete: {exc}", file=sys.stderr)


def _all_seen(bootstrap: str, names: list[str]) -> bool:
    topics = gather(bootstrap, timeout=30).topics
    risky = [n for i, n in enumerate(names) if RISKY[i % len(RISKY)]]
    return set(names) <= set(topics) and all(
        any(s.source == "topic override" for s in topics[n].configs.values()) for n in risky
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=default_bootstrap())
    parser.add_argument("--topics", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap, "log_level": 3})
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:
        raise SystemExit(f"cannot reach {args.bootstrap}: {exc}") from None
    tag = uuid.uuid4().hex[:6]
    names = [f"lintbench-{tag}-{i:04d}" for i in range(args.topics)]
    started = time.monotonic()
    try:
        create(admin, names, args.partitions)
        print(
            f"created {len(names)} topics x {args.partitions} partition(s), RF 3, in "
            f"{time.monotonic() - started:.1f} s"
        )
        # Every broker answers metadata from its own cache: wait until the one the lint asks
        # sees them all (and their overrides), so each timed run lints the same 500 topics.
        deadline = time.monotonic() + 120
        while not _all_seen(args.bootstrap, names):
            if time.monotonic() > deadline:
                raise SystemExit("the lint did not see every topic after 120 s")
            time.sleep(0.5)
        times = []
        for _ in range(args.repeat):
            t0 = time.monotonic()
            facts = gather(args.bootstrap, name="bench", timeout=30)
            t1 = time.monotonic()
            report = lint_report(facts)
            t2 = time.monotonic()
            times.append((t2 - t0, t1 - t0, t2 - t1))
        ours = [t for t in report["topics"] if t["name"].startswith(f"lintbench-{tag}")]
        assert len(ours) == len(names), f"linted {len(ours)} of {len(names)} topics"
        flagged = sum(1 for t in ours if t["findings"])
        errors = sorted({t["error"] for t in ours if t["error"]})
        if errors:
            print(f"{sum(1 for t in ours if t['error'])} topics unreadable: {errors[:3]}")
        best, worst = min(times), max(times)
        print(
            f"lint of {len(report['topics'])} topics ({flagged} of ours with findings): "
            f"best {best[0]:.2f} s (gather {best[1]:.2f} s, rules {best[2]:.3f} s), "
            f"worst {worst[0]:.2f} s"
        )
    finally:
        delete(admin, names)


if __name__ == "__main__":
    main()
