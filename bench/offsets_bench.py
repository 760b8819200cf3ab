"""What recording offsets costs per record, CPU, pure Python (no Kafka, no Redis).

    .venv/bin/python bench/offsets_bench.py [--records 200000] [--batch 500] [--repeat 5]

Run from a checkout of the code before offsets were recorded (it then times "without" only),
the same script gives the true "before" (the "without" column of the new code also pays for
old entries being read the new way).

Each stage is timed (CPU time of this process) without offsets (as before they were recorded: old stream entries, no
``offsets`` argument) and with them, best of ``--repeat``, in nanoseconds per record:

- consumer decode: ``codec.decode_messages`` of a batch of in-order records (messages are
  small Python objects standing in for confluent-kafka's: their ``offset()`` and
  ``leader_epoch()`` are Python calls here, C calls there, so this over-states the cost);
- ledger wire: ``LedgerEntry.to_fields`` then ``from_fields``;
- producer report: folding a flush's delivery reports into a ``PartitionReport`` (and the
  acks entry's JSON) -- the offsets add ``offset_segments``;
- check runner: ``CheckRunner.apply_acks`` + ``apply_ledger`` (the checker's classification,
  and with offsets ``PartitionOffsets``), in-order traffic, acks read first as the runner does.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.engine import codec  # noqa: E402
from workers.engine.checker import Checker  # noqa: E402
from workers.engine.streams import AckReport, LedgerEntry, PartitionReport  # noqa: E402
from workers.runtime.checkrunner import CheckRunner  # noqa: E402

try:
    from workers.engine.streams import offset_segments
except ImportError:  # the code before offsets were recorded
    offset_segments = None  # type: ignore[assignment]
MODES = (False, True) if offset_segments is not None else (False,)

SID, RUN, PARTITION = 7, (1_795_000_000_000 << 16) | 1, 0


class Msg:
    __slots__ = ("_v", "_o")

    def __init__(self, value: bytes, offset: int) -> None:
        self._v, self._o = value, offset

    def value(self) -> bytes:
        return self._v

    def partition(self) -> int:
        return PARTITION

    def offset(self) -> int:
        return self._o

    def leader_epoch(self) -> int:
        return 3


def best(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()  # CPU time: the machine may be busy with other work
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def runner() -> CheckRunner:
    """A check runner with no store (the stages timed here never ask it anything)."""
    cr = CheckRunner.__new__(CheckRunner)
    cr.checker = Checker(grace_seconds=10.0)
    cr.known_runs, cr.earlier_runs = {RUN}, set()
    cr.checker.register_run(RUN)
    from collections import deque

    from workers.engine.latency import LatencyHistogram, RecentLatency

    cr.e2e, cr.sec_e2e, cr.ack_latency, cr.sec_ack = (LatencyHistogram() for _ in range(4))
    cr.recent_e2e = deque()
    cr.partition_e2e = RecentLatency(60.0)
    cr.spec = SimpleNamespace(eos=False, grace_seconds=10.0)
    return cr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, batch = args.records, args.batch
    values = [codec.encode_fields(SID, RUN, PARTITION, s, 1_000_000 + s, 100) for s in range(n)]
    msgs = [Msg(v, 1000 + s) for s, v in enumerate(values)]
    batches = [msgs[i : i + batch] for i in range(0, n, batch)]

    def decode(with_offsets: bool) -> list[LedgerEntry]:
        out = []
        for b in batches:
            if not with_offsets:
                out.append(LedgerEntry(*codec.decode_messages(b, SID, 2_000_000)))
                continue
            offsets: list = []
            epochs: list = []
            items, foreign = codec.decode_messages(b, SID, 2_000_000, offsets, epochs)
            out.append(LedgerEntry(items, foreign, offsets=offsets, epochs=epochs, session=42))
        return out

    entries = {w: decode(w) for w in MODES}
    wires = {w: [e.to_fields() for e in entries[w]] for w in MODES}

    def wire(with_offsets: bool) -> None:
        for e in entries[with_offsets]:
            LedgerEntry.from_fields(e.to_fields())

    seqs = list(range(n))
    offs = [1000 + s for s in seqs]
    eps = [3] * n

    def report(with_offsets: bool) -> list[AckReport]:
        out = []
        for i in range(0, n, batch):
            s, o, e = seqs[i : i + batch], offs[i : i + batch], eps[i : i + batch]
            if with_offsets:
                report = PartitionReport.of(len(s), s, (), offset_segments(s, o, e))
            else:
                report = PartitionReport.of(len(s), s, ())
            rep = AckReport(RUN, {PARTITION: report})
            rep.to_fields()
            out.append(rep)
        return out

    reports = {w: report(w) for w in MODES}
    ledgers = {w: [LedgerEntry.from_fields(f) for f in wires[w]] for w in MODES}

    def check(with_offsets: bool) -> None:
        cr = runner()
        for rep, entry in zip(reports[with_offsets], ledgers[with_offsets], strict=True):
            cr.apply_acks(rep, 1.0)
            cr.apply_ledger(entry, 1.0)
        totals = cr.checker.totals()
        assert totals["processed"] == n
        assert not any(totals.get(k) for k in ("divergent", "rewound", "skipped", "truncated"))

    stages = {
        "consumer decode": decode,
        "ledger wire (to + from fields)": wire,
        "producer report (+ JSON)": report,
        "check runner (acks + ledger)": check,
    }
    print(f"{n:,} in-order records, batches of {batch}, best of {args.repeat}: ns per record")
    print(f"{'stage':34} {'without':>9} {'with':>9} {'added':>9}")
    total = [0.0, 0.0]
    for name, fn in stages.items():
        without = best(lambda fn=fn: fn(False), args.repeat) / n * 1e9
        with_ = best(lambda fn=fn: fn(True), args.repeat) / n * 1e9 if True in MODES else 0.0
        total[0] += without
        total[1] += with_
        print(f"{name:34} {without:9.0f} {with_:9.0f} {with_ - without:+9.0f}")
    print(f"{'all stages':34} {total[0]:9.0f} {total[1]:9.0f} {total[1] - total[0]:+9.0f}")


if __name__ == "__main__":
    main()
