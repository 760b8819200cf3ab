"""Cluster events (pure): two samples of a cluster in, what changed between them out.

A **sample** is what the cluster's watcher (``workers/runtime/clusterwatch.py``) read at one
moment, as plain JSON::

    {"at": seconds,
     "brokers": {"1": {"host", "reachable", "since", "error", "in_metadata"}},   # brokerhealth.track
     "topics": {"t": {"id": topic id, "min_isr": int | None, "unclean": bool | None,
                      "partitions": {"0": {"leader": int (-1: none), "epoch": int | None,
                                           "replicas": [int], "isr": [int],
                                           "start": int | None, "end": int | None}}}}}

A topic missing from ``topics`` or a field that is None was not known at that moment (the
cluster did not answer, the partition's leader was down): nothing is concluded from it, and
``carry`` keeps the last value seen so that the next sample is compared with what was really
last seen. ``diff`` compares two samples and returns the **events** between them, each a dict::

    {"at": when seen (the later sample), "since": the earlier sample's time (it happened
     between the two), "kind": one of KINDS, "topic", "partition" (None for a broker event),
     "broker" (a broker event's id, else None), "before", "after", "count" (records, for
     log-start-jump and end-offset-back; else None), "text": in words}

No event comes from an unchanged cluster, nor from the first sample of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# kind -> (severity, what it means, where it is read from). Severity: "bad" (a guarantee may
# be at risk now), "warn" (worth knowing around a violation), "good" (back to normal).
KINDS: dict[str, tuple[str, str, str]] = {
    "leader-change": (
        "warn",
        "the partition's leader or its leader epoch changed (an election: broker stopped, "
        "preferred-leader election, reassignment)",
        "describe_topics (leader) and list_offsets (leader epoch)",
    ),
    "offline": (
        "bad",
        "the partition has no leader: nothing can be written to or read from it",
        "describe_topics (leader none)",
    ),
    "unclean-election": (
        "bad",
        "the new leader was not in the last in-sync replica set seen and the old leader left "
        "it: acknowledged records may have been destroyed",
        "describe_topics (leader, ISR), describe_configs (unclean.leader.election.enable)",
    ),
    "isr-shrink": (
        "warn",
        "replicas left the in-sync replica set",
        "describe_topics (ISR)",
    ),
    "isr-expand": ("good", "replicas joined the in-sync replica set", "describe_topics (ISR)"),
    "under-min-isr": (
        "bad",
        "fewer in-sync replicas than min.insync.replicas: acks=all writes are refused",
        "describe_topics (ISR), describe_configs (min.insync.replicas)",
    ),
    "min-isr-restored": (
        "good",
        "in-sync replicas back at or above min.insync.replicas",
        "describe_topics (ISR), describe_configs (min.insync.replicas)",
    ),
    "log-start-jump": (
        "warn",
        "the log start offset moved forward: records deleted (retention or DeleteRecords), "
        "with how many",
        "list_offsets (earliest)",
    ),
    "end-offset-back": (
        "bad",
        "the high watermark went backwards: the log was truncated, with how many offsets",
        "list_offsets (latest)",
    ),
    "topic-recreated": (
        "bad",
        "the topic was deleted and created again (its id changed): every offset starts over",
        "describe_topics (topic id)",
    ),
    "partitions-added": (
        "warn",
        "the topic has more partitions",
        "describe_topics",
    ),
    "broker-unreachable": (
        "bad",
        "a broker stopped accepting connections or left the cluster metadata",
        "a TCP connection to each broker and the cluster metadata (workers.engine.brokerhealth)",
    ),
    "broker-back": (
        "good",
        "a broker is reachable again",
        "a TCP connection to each broker and the cluster metadata (workers.engine.brokerhealth)",
    ),
}


def severity(kind: str) -> str:
    return KINDS[kind][0] if kind in KINDS else "warn"


def _leader(value: int | None) -> str:
    return "none" if value is None or value < 0 else str(value)


def _replicas(values: list[int]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _epoch(value: int | None) -> str:
    return "?" if value is None else str(value)


def carry(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """``after``, with what it did not know filled in from ``before``: the sample to compare
    the next one with. A topic ``after`` could not read keeps its last sample; a partition
    field ``after`` has as None (its leader did not answer) keeps its last value."""
    out = {**after, "topics": dict(after.get("topics", {}))}
    if before is None:
        return out
    for name, old in before.get("topics", {}).items():
        new = out["topics"].get(name)
        if new is None:
            out["topics"][name] = old
            continue
        if new.get("id") != old.get("id"):
            continue  # another topic under the same name: nothing carries over
        topic = {**new, "partitions": dict(new.get("partitions", {}))}
        for field in ("min_isr", "unclean"):
            if topic.get(field) is None:
                topic[field] = old.get(field)
        for pid, p_old in old.get("partitions", {}).items():
            p_new = topic["partitions"].get(pid)
            if p_new is None:
                continue
            kept = {
                **p_new,
                **{k: p_old.get(k) for k in ("epoch", "start", "end") if p_new.get(k) is None},
            }
            if p_new.get("leader", -1) < 0:
                # Offline: remember who led, with which ISR, when last seen led. Kafka 4.1
                # (KIP-966) empties the ISR of a leaderless partition, and the election that
                # ends the outage is told against what was in sync before it.
                led = p_old.get("last_led")
                if p_old.get("leader", -1) >= 0:
                    led = {"leader": p_old["leader"], "isr": list(p_old.get("isr", []))}
                if led:
                    kept["last_led"] = led
            topic["partitions"][pid] = kept
        out["topics"][name] = topic
    return out


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events between two samples of one cluster (``before`` None: none)."""
    if before is None:
        return []
    events: list[dict[str, Any]] = []
    at, since = after["at"], before["at"]

    def event(
        kind, text, *, topic=None, partition=None, broker=None, was=None, now=None, count=None
    ):
        events.append(
            {
                "at": at,
                "since": since,
                "kind": kind,
                "topic": topic,
                "partition": partition,
                "broker": broker,
                "before": was,
                "after": now,
                "count": count,
                "text": text,
            }
        )

    old_brokers, new_brokers = before.get("brokers", {}), after.get("brokers", {})
    for bid in sorted(new_brokers, key=_sort_key):
        old, new = old_brokers.get(bid), new_brokers[bid]
        if old is None:
            continue
        host = new.get("host") or old.get("host") or ""
        if old.get("reachable") and not new.get("reachable"):
            why = new.get("error") or "unreachable"
            event(
                "broker-unreachable", f"broker {bid} ({host}) unreachable: {why}", broker=bid,
                was={"reachable": True}, now={"reachable": False, "error": new.get("error")},
            )  # fmt: skip
        elif not old.get("reachable") and new.get("reachable"):
            event(
                "broker-back", f"broker {bid} ({host}) reachable again", broker=bid,
                was={"reachable": False, "error": old.get("error")}, now={"reachable": True},
            )  # fmt: skip

    for name, new_topic in sorted(after.get("topics", {}).items()):
        old_topic = before.get("topics", {}).get(name)
        if old_topic is None:
            continue
        if old_topic.get("id") and new_topic.get("id") and old_topic["id"] != new_topic["id"]:
            event(
                "topic-recreated",
                f"{name} deleted and created again (topic id {old_topic['id']} → {new_topic['id']})",
                topic=name, was={"id": old_topic["id"]}, now={"id": new_topic["id"]},
            )  # fmt: skip
            continue
        old_parts, new_parts = old_topic.get("partitions", {}), new_topic.get("partitions", {})
        if old_parts and len(new_parts) > len(old_parts):
            event(
                "partitions-added",
                f"{name}: {len(old_parts)} → {len(new_parts)} partitions",
                topic=name, was={"partitions": len(old_parts)}, now={"partitions": len(new_parts)},
            )  # fmt: skip
        for pid in sorted(new_parts, key=int):
            if pid in old_parts:
                _partition(
                    event, name, int(pid), old_topic, new_topic, old_parts[pid], new_parts[pid]
                )
    return events


def _partition(event, topic: str, partition: int, old_topic, new_topic, old, new) -> None:
    where = f"{topic} p{partition}"
    ctx = {"topic": topic, "partition": partition}
    o_leader, n_leader = old.get("leader", -1), new.get("leader", -1)
    o_epoch, n_epoch = old.get("epoch"), new.get("epoch")
    o_isr, n_isr = list(old.get("isr", [])), list(new.get("isr", []))

    if o_leader >= 0 and n_leader < 0:
        event(
            "offline", f"{where} offline: no leader (was {o_leader}; last ISR {_replicas(n_isr)})",
            was={"leader": o_leader, "epoch": o_epoch}, now={"leader": None, "isr": n_isr}, **ctx,
        )  # fmt: skip
    elif n_leader >= 0 and (
        n_leader != o_leader or (o_epoch is not None and n_epoch is not None and n_epoch > o_epoch)
    ):
        preferred = bool(new.get("replicas")) and new["replicas"][0] == n_leader
        event(
            "leader-change",
            f"{where} leader {_leader(o_leader)} → {n_leader} "
            f"(epoch {_epoch(o_epoch)} → {_epoch(n_epoch)})"
            + (", the preferred replica" if preferred and o_leader >= 0 else ""),
            was={"leader": o_leader if o_leader >= 0 else None, "epoch": o_epoch},
            now={"leader": n_leader, "epoch": n_epoch, "preferred": preferred},
            **ctx,
        )
        # An election from outside the ISR: the new leader was not in sync when last seen, and
        # the old leader is no longer in sync (a preferred election after an ISR growth the
        # samples missed keeps the old leader in the ISR). After an outage the ISR last seen
        # is the one seen with the last leader when the offline samples show none (KIP-966).
        led = old.get("last_led") if o_leader < 0 else None
        if led and not o_isr:
            o_isr = list(led.get("isr", []))
        last_leader = led["leader"] if led else o_leader
        # And an old leader already back in the ISR by this sample (it truncated its log to the
        # new leader's and caught up) still leaves the high watermark lower than before: a
        # preferred election never takes it back.
        o_end, n_end = old.get("end"), new.get("end")
        went_back = o_end is not None and n_end is not None and n_end < o_end
        if o_isr and n_leader not in o_isr and (last_leader not in n_isr or went_back):
            unclean = new_topic.get("unclean")
            config = {
                True: "unclean.leader.election.enable=true on the topic",
                False: "unclean.leader.election.enable=false on the topic: an eligible leader "
                "replica (KIP-966) or an unclean election requested by an admin",
                None: "the topic's unclean.leader.election.enable unknown",
            }[unclean]
            event(
                "unclean-election",
                f"{where}: broker {n_leader} became leader from outside the last ISR seen "
                f"{_replicas(o_isr)} (epoch {_epoch(o_epoch)} → {_epoch(n_epoch)}; {config})",
                was={"leader": o_leader if o_leader >= 0 else None, "epoch": o_epoch, "isr": o_isr},
                now={"leader": n_leader, "epoch": n_epoch, "isr": n_isr, "unclean_enabled": unclean},
                **ctx,
            )  # fmt: skip

    left = [r for r in o_isr if r not in n_isr]
    joined = [r for r in n_isr if r not in o_isr]
    if left:
        event(
            "isr-shrink", f"{where} ISR {_replicas(o_isr)} → {_replicas(n_isr)} ({_replicas(left)} left)",
            was={"isr": o_isr}, now={"isr": n_isr, "left": left}, **ctx,
        )  # fmt: skip
    if joined:
        event(
            "isr-expand", f"{where} ISR {_replicas(o_isr)} → {_replicas(n_isr)} ({_replicas(joined)} joined)",
            was={"isr": o_isr}, now={"isr": n_isr, "joined": joined}, **ctx,
        )  # fmt: skip

    min_isr = new_topic.get("min_isr")
    old_min = old_topic.get("min_isr") or min_isr
    if min_isr is not None and old_min is not None:
        was_under, now_under = len(o_isr) < old_min, len(n_isr) < min_isr
        if now_under and not was_under:
            event(
                "under-min-isr",
                f"{where} under min.insync.replicas: {len(n_isr)} in sync {_replicas(n_isr)}, "
                f"{min_isr} required",
                was={"isr": o_isr, "min_isr": old_min}, now={"isr": n_isr, "min_isr": min_isr},
                **ctx,
            )  # fmt: skip
        elif was_under and not now_under:
            event(
                "min-isr-restored",
                f"{where} back at min.insync.replicas: {len(n_isr)} in sync {_replicas(n_isr)}",
                was={"isr": o_isr, "min_isr": old_min}, now={"isr": n_isr, "min_isr": min_isr},
                **ctx,
            )  # fmt: skip

    o_start, n_start = old.get("start"), new.get("start")
    if o_start is not None and n_start is not None and n_start > o_start:
        count = n_start - o_start
        event(
            "log-start-jump",
            f"{where} log start {o_start} → {n_start}: {count} record{'s' * (count != 1)} deleted",
            was={"start": o_start}, now={"start": n_start}, count=count, **ctx,
        )  # fmt: skip
    o_end, n_end = old.get("end"), new.get("end")
    if o_end is not None and n_end is not None and n_end < o_end:
        count = o_end - n_end
        event(
            "end-offset-back",
            f"{where} high watermark went back {o_end} → {n_end}: {count} offset{'s' * (count != 1)} truncated",
            was={"end": o_end, "epoch": o_epoch}, now={"end": n_end, "epoch": n_epoch}, count=count, **ctx,
        )  # fmt: skip


def _sort_key(bid: str) -> tuple[int, str]:
    return (0, f"{int(bid):012d}") if bid.isdigit() else (1, bid)
