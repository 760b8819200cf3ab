"""Checker throughput benchmark (single process, pure Python).

    .venv/bin/python bench/checker_bench.py [--records N] [--batch 500] [--seed 1]

Scenarios (records classified per second, wall clock, best of --repeat):

- in-order, acks first: the common case. Each batch of seqs is acked as one
  range, then processed in order; tick() every 100 batches.
- in-order, processing first: the same, with the delivery report read after
  the processing (the other order the checker can see the two streams in).
- adversarial: 5% of records reordered (moved up to 20 places later), 1%
  duplicated (re-processed a few places later), 1% dropped (never processed:
  lost once passed and the grace period is over).

Input lists are built before timing: decoding is not the checker's cost.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.engine.checker import Checker  # noqa: E402

RUN, PARTITION = 1, 0
TICK_EVERY = 100  # batches
STEP_S = 0.001  # simulated time per batch
GRACE_S = 1.0


def in_order_batches(records: int, batch: int) -> list[list[int]]:
    return [list(range(s, min(s + batch, records))) for s in range(0, records, batch)]


def adversarial_batches(records: int, batch: int, seed: int) -> list[list[int]]:
    """Consumer order with 5% reorders, 1% duplicates and 1% drops.

    Exactly records/100 seqs are dropped and records/100 processed twice; each
    reordered seq is moved 1..20 places later (so it is processed after higher
    seqs, unless another move cancels that out).
    """
    rng = random.Random(seed)
    n = records
    picked = rng.sample(range(n), n // 20 + n // 100 + n // 100)
    moved = picked[: n // 20]
    dropped = set(picked[n // 20 : n // 20 + n // 100])
    duplicated = picked[n // 20 + n // 100 :]
    # Sort (position, seq) pairs: a moved seq takes a position a bit further on,
    # a duplicate is a second pair a few places after the first.
    later = {i: i + rng.randint(1, 20) + 0.5 for i in moved}
    keyed = [(later.get(i, float(i)), i) for i in range(n) if i not in dropped]
    keyed += [(i + rng.randint(1, 10) + 0.25, i) for i in duplicated]
    keyed.sort()
    order = [seq for _, seq in keyed]
    return [order[s : s + batch] for s in range(0, len(order), batch)]


def run_acks_first(batches: list[list[int]], batch: int) -> Checker:
    checker = Checker(grace_seconds=GRACE_S)
    checker.register_run(RUN)
    produced, acked, processed = checker.produced, checker.acked, checker.processed
    tick = checker.tick
    now = 0.0
    for i, seqs in enumerate(batches):
        now += STEP_S
        first = i * batch
        produced(RUN, PARTITION, batch)
        acked(RUN, PARTITION, first, first + batch - 1, now)
        processed(RUN, PARTITION, seqs, now)
        if i % TICK_EVERY == 0:
            tick(now)
    tick(now + 2 * GRACE_S)
    return checker


def run_processing_first(batches: list[list[int]], batch: int) -> Checker:
    checker = Checker(grace_seconds=GRACE_S)
    checker.register_run(RUN)
    produced, acked, processed = checker.produced, checker.acked, checker.processed
    tick = checker.tick
    now = 0.0
    for i, seqs in enumerate(batches):
        now += STEP_S
        first = i * batch
        produced(RUN, PARTITION, batch)
        processed(RUN, PARTITION, seqs, now)
        acked(RUN, PARTITION, first, first + batch - 1, now)
        if i % TICK_EVERY == 0:
            tick(now)
    tick(now + 2 * GRACE_S)
    return checker


def measure(
    name: str, runner: Callable[[], Checker], records: int, repeat: int
) -> tuple[float, Checker]:
    best = float("inf")
    checker = None
    for _ in range(repeat):
        start = time.perf_counter()
        checker = runner()
        best = min(best, time.perf_counter() - start)
    assert checker is not None
    rate = records / best
    print(f"{name:<32} {records:>10,} records  {best:7.3f} s  {rate:>13,.0f} records/s")
    return rate, checker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, b = args.records - args.records % args.batch, args.batch

    print(f"Python {sys.version.split()[0]}, batches of {b}, best of {args.repeat}")
    ordered = in_order_batches(n, b)
    _, c1 = measure("in-order, acks first", lambda: run_acks_first(ordered, b), n, args.repeat)
    _, c2 = measure(
        "in-order, processing first", lambda: run_processing_first(ordered, b), n, args.repeat
    )
    for c in (c1, c2):
        totals = c.totals()
        assert totals["processed"] == n and totals["lost"] == 0, totals
        assert totals["duplicated"] == totals["reordered"] == 0, totals

    mixed = adversarial_batches(n, b, args.seed)
    processings = sum(len(s) for s in mixed)
    _, c3 = measure(
        "adversarial 5%/1%/1%", lambda: run_acks_first(mixed, b), processings, args.repeat
    )
    totals = c3.totals()
    assert totals["lost"] == n // 100 and totals["duplicated"] == n // 100, totals
    print("adversarial totals:", {k: v for k, v in totals.items() if v})


if __name__ == "__main__":
    main()
