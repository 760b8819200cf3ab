"""Ground truth for the soak, kept apart from the sentinels' own bookkeeping.

Two sources, neither of them the checker:

- ``StreamTap`` tails each sentinel's raw ``acks`` stream (what the producer recorded of its
  delivery reports) and ``ledger`` stream (the durable effect of processing) from the first
  entry, as an auditor the checker does not trim past (``SentinelStore.audit_read``), and
  proves at the end that it saw every entry ever appended (``SentinelStore.stream_added``).
- ``read_topics()`` reads every sentinel topic to its end at the close: what Kafka really
  holds (the input topic read_uncommitted; under exactly-once, the output read_committed).

``Truth.counts()`` recounts the checker's counters from the tap with code of its own, and
``Truth.kafka()`` compares the acks with the topics; ``compare()`` puts the recount beside the
checker's final totals.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from typing import Any

import redis

from workers.clients.kafka import read_to_end, txn_token
from workers.engine import codec
from workers.engine.spec import SentinelSpec
from workers.engine.streams import AckReport, LedgerEntry
from workers.store.sentinel import SentinelStore

log = logging.getLogger(__name__)

READ_COUNT = 1000
# The tap's hold on the streams' trimming lapses this long after its last read (a soak that
# died must not make Redis grow for long; a live one renews it every ``interval_s``).
AUDIT_TTL_MS = 60_000
# Counters recounted from the tap, compared with the checker's totals at the close. lost is
# compared as lost + pending (acked and never processed): a record the consumer never passed
# stays pending, one it passed is lost; either way it was acked and not processed.
RECOUNTED = ("produced", "acked", "failed", "processed", "duplicated", "unprocessed", "phantom")


class Truth:
    """One sentinel's raw facts, folded exactly: per (run, partition), the first delivery
    report of each sequence number and every processing of it."""

    def __init__(self, spec: SentinelSpec) -> None:
        self.spec = spec
        self.produced = 0
        self.first_report: dict[tuple[int, int], dict[int, bool]] = defaultdict(dict)
        self.processings: dict[tuple[int, int], Counter[int]] = defaultdict(Counter)
        self.aborted_reads = 0
        self.foreign = 0
        self.entries = {"acks": 0, "ledger": 0}
        self.last_id = {"acks": "0-0", "ledger": "0-0"}

    def add_acks(self, report: AckReport) -> None:
        run = report.run
        for part, entry in report.partitions.items():
            reports = self.first_report[(run, part)]
            self.produced += entry.produced
            for acked, ranges in ((True, entry.acked), (False, entry.failed)):
                for lo, hi in ranges:
                    for seq in range(lo, hi + 1):
                        reports.setdefault(seq, acked)  # the first report wins

    def add_ledger(self, entry: LedgerEntry) -> None:
        for run, partition, seq, _produced_us, _processed_us in entry.items:
            self.processings[(run, partition)][seq] += 1
        self.foreign += entry.foreign
        self.aborted_reads += len(entry.aborted)

    def counts(self, runs: set[int]) -> dict[str, int]:
        """The checker's counters, recounted (processings of runs not in ``runs``, the
        registered ones, are foreign there, and left out here)."""
        out = dict.fromkeys(RECOUNTED, 0)
        out["produced"] = self.produced
        for key, reports in self.first_report.items():
            done = self.processings.get(key, Counter())
            for seq, acked in reports.items():
                if acked:
                    out["acked"] += 1
                    out["unprocessed"] += seq not in done
                else:
                    out["failed"] += 1
                    out["phantom"] += seq in done
        for (run, _partition), done in self.processings.items():
            if run not in runs:
                continue
            out["processed"] += sum(done.values())
            out["duplicated"] += sum(n - 1 for n in done.values())
        out["aborted_read"] = self.aborted_reads
        return out

    def acked_keys(self) -> set[tuple[int, int, int]]:
        return {
            (run, part, seq)
            for (run, part), reports in self.first_report.items()
            for seq, acked in reports.items()
            if acked
        }


class StreamTap(threading.Thread):
    """Tails the ``acks`` and ``ledger`` streams of the soak's sentinels into ``Truth``s.

    Survives a Redis restart (it reads on from the last entry id it saw; ids persist)."""

    def __init__(self, client: redis.Redis, specs: list[SentinelSpec], interval_s: float = 0.2):
        super().__init__(name="soak-stream-tap", daemon=True)
        self.client = client
        self.truths = {spec.id: Truth(spec) for spec in specs}
        self.interval_s = interval_s
        self.stopping = threading.Event()
        self.errors = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.drain()
            except redis.RedisError:  # Redis restarting: read on when it is back
                self.errors += 1
            except Exception:  # a bug here must show, not end the tap silently
                log.exception("soak stream tap: read failed")
                self.errors += 1
            self.stopping.wait(self.interval_s)

    def drain(self) -> None:
        with self.lock:
            for sid, truth in self.truths.items():
                store = SentinelStore(self.client, sid)
                for name, read, add in (
                    ("acks", store.read_acks, truth.add_acks),
                    ("ledger", store.read_ledger, truth.add_ledger),
                ):
                    while True:
                        entries = read(truth.last_id[name], READ_COUNT)
                        for entry_id, entry in entries:
                            add(entry)
                            truth.last_id[name] = entry_id
                            truth.entries[name] += 1
                        if len(entries) < READ_COUNT:
                            break
                # Hold the checker's trimming back to what we have read.
                store.audit_read(truth.last_id["acks"], truth.last_id["ledger"], AUDIT_TTL_MS)

    def finish(self) -> dict[int, dict[str, Any]]:
        """Stop tailing after a last read; per sentinel, whether every entry was seen."""
        self.stopping.set()
        self.join(10)
        self.drain()
        out = {}
        for sid, truth in self.truths.items():
            store = SentinelStore(self.client, sid)
            added = {name: store.stream_added(name) for name in ("acks", "ledger")}
            out[sid] = {"entries_seen": dict(truth.entries), "entries_added": added}
        return out


def read_topics(conf: dict[str, Any], spec: SentinelSpec) -> dict[str, Any]:
    """What Kafka holds of ``spec``'s records: copies per record in the input topic and, under
    exactly-once, in the output topic read_committed (and the records there written by a
    copier transaction known to be aborted)."""
    out: dict[str, Any] = {"input": _copies(conf, spec.topic, "read_uncommitted")}
    if spec.eos:
        out["output"] = _copies(conf, spec.output_topic_name, "read_committed")
    return out


def _copies(conf: dict[str, Any], topic: str, isolation: str) -> dict[str, Any]:
    copies: Counter[tuple[int, int, int]] = Counter()
    tokens: dict[tuple[int, int, int], set[str]] = defaultdict(set)
    foreign = 0
    for msg in read_to_end(conf, topic, isolation=isolation, timeout=120):
        record = codec.decode(msg.value())
        if not isinstance(record, codec.Record):
            foreign += 1
            continue
        key = (record.run_id, record.partition, record.seq)
        copies[key] += 1
        token = (txn_token(msg) or b"").decode()
        if token:
            tokens[key].add(token)
    return {"copies": copies, "tokens": tokens, "foreign": foreign}


def kafka_truth(truth: Truth, topics: dict[str, Any], aborted_txns: set[str]) -> dict[str, int]:
    """Acked records compared with what the topics hold: ``missing_in_topic`` acked and absent
    (Kafka lost them), ``written_twice`` records the topic holds more than once; under
    exactly-once ``missing_in_output`` (acked, never committed to the output),
    ``committed_twice`` and ``aborted_in_output`` (a read_committed read returned a record
    written only by a transaction known to be aborted)."""
    acked = truth.acked_keys()
    topic = topics["input"]["copies"]
    out = {
        "acked": len(acked),
        "missing_in_topic": sum(1 for k in acked if k not in topic),
        "written_twice": sum(1 for n in topic.values() if n > 1),
    }
    if "output" in topics:
        output = topics["output"]
        copies, tokens = output["copies"], output["tokens"]
        out["missing_in_output"] = sum(1 for k in acked if k not in copies)
        out["committed_twice"] = sum(1 for n in copies.values() if n > 1)
        out["aborted_in_output"] = sum(
            1 for k, toks in tokens.items() if toks and toks <= aborted_txns
        )
    return out


def compare(recount: dict[str, int], totals: dict[str, int]) -> dict[str, Any]:
    """The checker's final totals beside the recount: ``{counter: [checker, truth]}`` and the
    counters that differ (lost + pending against the acked-and-never-processed)."""
    checker = {c: int(totals.get(c, 0)) for c in RECOUNTED if c != "unprocessed"}
    checker["unprocessed"] = int(totals.get("lost", 0)) + int(totals.get("pending", 0))
    checker["aborted_read"] = int(totals.get("aborted_read", 0))
    pairs = {c: [checker[c], recount.get(c, 0)] for c in checker}
    return {"pairs": pairs, "differ": sorted(c for c, (a, b) in pairs.items() if a != b)}
