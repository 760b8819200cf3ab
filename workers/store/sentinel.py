"""One sentinel's state in Redis (``SentinelStore``): runs, the acks and ledger streams, the
verifier's offsets, the copier's transactions, the checker's checkpoint, the status document
and one-second windows, events, health, alert state and fault hooks. Every write of the
state proper is epoch-guarded (``workers.store.epoch``); the keys are listed in
``workers.store.keys``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis

from workers.engine.documents import STATE_LOST
from workers.engine.streams import AckReport, LedgerEntry, MalformedEntry
from workers.store.coordination import Lease
from workers.store.epoch import SCRIPT_ARGS_MAX, EpochGuardedStore
from workers.store.keys import SENTINEL_KEYS_MATCH, sentinel_id_of, sentinel_key

EVENTS_KEPT = 200
T = TypeVar("T")


DRAIN_REQUESTED = "requested"
DRAIN_DONE = "done"


class SentinelStore(EpochGuardedStore):
    """Typed access to one sentinel's keys."""

    def lease(self, token: str, ttl_ms: int) -> Lease:
        return Lease(self.r, self.key("lease"), token, ttl_ms)

    # -- whose state it is, and its loss ---------------------------------------------------
    def adopt(self, incarnation: str) -> bool:
        """Make the state this sentinel's: when it was another sentinel's under the same id
        (a database recreated while Redis kept its data, a deleted sentinel's id reused),
        forget it, so its runs and checkpoints can never become false losses. True when
        state was forgotten. Call it before any process of the sentinel starts."""
        previous = self.r.set(self.key("incarnation"), incarnation, get=True)
        if previous is None or previous.decode() == incarnation:
            return False
        self.reset()
        self.r.set(self.key("incarnation"), incarnation)
        return True

    def note_state_lost(self, message: str) -> bool:
        """Record the ``state-lost`` event of the current epoch, unless it is recorded
        already (several roles find out about one loss); True when this call recorded it."""
        if not self.r.set(self.key("lost"), self.token or "", nx=True):
            return False
        self.event(STATE_LOST, message, epoch=self.token)
        return True

    # -- runs ----------------------------------------------------------------------------
    def register_run(self, run_id: int, meta: dict[str, Any]) -> None:
        self._guarded(("hset", "runs", [str(run_id), json.dumps(meta)]))

    def runs(self) -> dict[int, dict[str, Any]]:
        return {int(k): json.loads(v) for k, v in self.r.hgetall(self.key("runs")).items()}

    def run_registered(self, run_id: int) -> bool:
        return bool(self.r.hexists(self.key("runs"), str(run_id)))

    # -- events and health ---------------------------------------------------------------
    def event(self, kind: str, message: str, **extra: Any) -> None:
        doc = {"ts": time.time(), "kind": kind, "message": message, **extra}
        pipe = self.r.pipeline()
        pipe.lpush(self.key("events"), json.dumps(doc))
        pipe.ltrim(self.key("events"), 0, EVENTS_KEPT - 1)
        pipe.execute()

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.r.lrange(self.key("events"), 0, limit - 1)]

    def heartbeat(self, role: str, error: str | None = None, **extra: Any) -> None:
        doc = {"ts": time.time(), "error": error, **extra}
        self.r.hset(self.key("health"), role, json.dumps(doc))

    def health(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(self.key("health")).items()}

    # -- alert evaluation ------------------------------------------------------------------
    def alert_state(self) -> dict[str, Any]:
        """What alert evaluation remembers between runs (since when a condition holds, the
        totals it last saw); ``{}`` at first."""
        value = self.r.get(self.key("alerting"))
        return json.loads(value) if value else {}

    def set_alert_state(self, doc: dict[str, Any]) -> None:
        self.r.set(self.key("alerting"), json.dumps(doc, separators=(",", ":")))

    # -- fault hooks (armed by the lab) ---------------------------------------------------
    def arm_fault(self, point: str, after: int = 0, action: str = "kill") -> None:
        self.r.hset(self.key("fault"), mapping={"point": point, "after": after, "action": action})

    def armed_fault(self) -> str | None:
        """The armed crash point, if any."""
        point = self.r.hget(self.key("fault"), "point")
        return point.decode() if point else None

    def take_fault(self) -> str | None:
        """Pass the armed point once: None while passes remain to let by, else the armed
        action (``kill``, ``hang`` or ``raise``), disarming it."""
        if self.r.hincrby(self.key("fault"), "after", -1) >= 0:
            return None
        action = (self.r.hget(self.key("fault"), "action") or b"kill").decode()
        self.r.delete(self.key("fault"))
        return action

    # -- draining (asked by the soak) ------------------------------------------------------
    def request_drain(self) -> None:
        """Ask the producer to stop cleanly, wherever it runs (its own process, a thread of
        a shared host): it produces nothing more, writes its last delivery reports and says
        ``done``; the consuming roles and the checker go on."""
        self.r.set(self.key("drain"), DRAIN_REQUESTED)

    def drain_state(self) -> str | None:
        """None (producing), ``requested`` or ``done``."""
        value = self.r.get(self.key("drain"))
        return value.decode() if value else None

    def mark_drained(self) -> None:
        self.r.set(self.key("drain"), DRAIN_DONE)

    # -- producer results ----------------------------------------------------------------
    def append_acks(self, report: AckReport) -> None:
        self._guarded(("xadd", "acks", ["*", *_flat(report.to_fields())]))

    def read_acks(self, after_id: str, count: int) -> list[tuple[str, AckReport]]:
        """Acks entries after ``after_id``, oldest first: ``[(entry id, report), ...]``."""
        reply = self.r.xread({self.key("acks"): after_id}, count=count)
        return _entries(reply, AckReport.from_fields)

    def read_streams(
        self, acks_id: str, ledger_id: str, count: int
    ) -> tuple[str | None, list[tuple[str, AckReport]], list[tuple[str, LedgerEntry]]]:
        """``(epoch, acks entries, ledger entries)`` after the given ids, at most ``count`` of
        each, in one round trip. The ledger is read before the acks, so every delivery report
        written before a ledger entry read here is read too (unless ``count`` cut it off)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.key("epoch"))
        pipe.xread({self.key("ledger"): ledger_id}, count=count)
        pipe.xread({self.key("acks"): acks_id}, count=count)
        epoch, ledger, acks = pipe.execute()
        return (
            epoch.decode() if epoch else None,
            _entries(acks, AckReport.from_fields),
            _entries(ledger, LedgerEntry.from_fields),
        )

    def stream_added(self, name: str) -> int:
        """Entries ever appended to this sentinel's ``acks`` or ``ledger`` stream (XINFO's
        entries-added: kept across trims and a restart of a persisting Redis), so that a reader
        tailing the stream can prove it saw every entry before the checker trimmed it; 0 for
        a stream that does not exist."""
        if name not in ("acks", "ledger"):
            raise ValueError(f"not a sentinel stream: {name!r}")
        try:
            info = self.r.xinfo_stream(self.key(name))
        except redis.ResponseError:  # no such key
            return 0
        return int(info["entries-added"])

    # -- processing ledger ---------------------------------------------------------------
    def append_ledger(
        self, entry: LedgerEntry, *, offsets: dict[int, int] | None = None, topic: str = ""
    ) -> None:
        """Append one processed batch; with ``offsets`` (of ``topic``), store them in the same
        transaction."""
        commands = [("xadd", "ledger", ["*", *_flat(entry.to_fields())])]
        pairs = [v for p, o in (offsets or {}).items() for v in (f"{topic}:{p}", o)]
        for start in range(0, len(pairs), SCRIPT_ARGS_MAX):  # Lua unpacks ~8,000 values at most
            commands.append(("hset", "offsets", pairs[start : start + SCRIPT_ARGS_MAX]))
        self._guarded(*commands)

    def read_ledger(self, after_id: str, count: int) -> list[tuple[str, LedgerEntry]]:
        """Ledger entries after ``after_id``, oldest first: ``[(entry id, entry), ...]``."""
        reply = self.r.xread({self.key("ledger"): after_id}, count=count)
        return _entries(reply, LedgerEntry.from_fields)

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """The verifier's next offsets for ``topic`` (keyed by topic, so that offsets of
        another topic, e.g. before the sentinel was edited, can never be applied to it)."""
        out = {}
        for key, value in self.r.hgetall(self.key("offsets")).items():
            name, _, partition = key.decode().rpartition(":")
            if name == topic:
                out[int(partition)] = int(value)
        return out

    # -- exactly-once copier bookkeeping --------------------------------------------------
    def add_aborted_txn(self, token: str) -> None:
        self.r.sadd(self.key("aborted"), token)

    def aborted_txns(self) -> set[str]:
        return {t.decode() for t in self.r.smembers(self.key("aborted"))}

    def set_txn_state(self, state: str, token: str) -> None:
        self.r.hset(self.key("txn"), mapping={"state": state, "token": token})

    def txn_state(self) -> tuple[str | None, str | None]:
        doc = self.r.hgetall(self.key("txn"))
        state, token = doc.get(b"state"), doc.get(b"token")
        return (state.decode() if state else None, token.decode() if token else None)

    # -- checker checkpoint and status ----------------------------------------------------
    def save_checkpoint(self, doc: dict[str, Any], acks_id: str, ledger_id: str) -> None:
        state = json.dumps(doc, separators=(",", ":"))
        # Entries up to the checkpoint are folded into the snapshot: keep Redis memory flat;
        # but never trim what a registered auditor (``audit_read``) has not read yet.
        audited = self.r.hmget(self.key("audit"), "acks", "ledger")
        trim_acks, trim_ledger = (
            _min_id(mine, theirs.decode() if theirs else None)
            for mine, theirs in zip((acks_id, ledger_id), audited, strict=True)
        )
        self._guarded(
            ("hset", "checker", ["state", state, "acks_id", acks_id, "ledger_id", ledger_id]),
            ("xtrim", "acks", ["MINID", _next_id(trim_acks)]),
            ("xtrim", "ledger", ["MINID", _next_id(trim_ledger)]),
        )

    def audit_read(self, acks_id: str, ledger_id: str, ttl_ms: int) -> None:
        """An auditor (the soak's ground truth, ``workers.lab.soak.truth``) has read the ``acks``
        and ``ledger`` streams up to these ids: the checker trims no further than that, so
        the auditor sees every entry however slow it is. The mark expires after ``ttl_ms``
        unless renewed, so an auditor that died holds nothing back for long."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.key("audit"), mapping={"acks": acks_id, "ledger": ledger_id})
        pipe.pexpire(self.key("audit"), ttl_ms)
        pipe.execute()

    def load_checkpoint(self) -> tuple[dict[str, Any] | None, str, str]:
        doc = self.r.hgetall(self.key("checker"))
        if not doc:
            return None, "0-0", "0-0"
        return json.loads(doc[b"state"]), doc[b"acks_id"].decode(), doc[b"ledger_id"].decode()

    # -- metric windows --------------------------------------------------------------------
    def append_window(self, window: dict[str, Any], *, retention_s: int) -> None:
        """One-second window; entries older than ``retention_s`` are trimmed as we go."""
        now_ms = int(window["t"] * 1000)
        self.r.xadd(
            self.key("w1"),
            {"d": json.dumps(window, separators=(",", ":"))},
            minid=str(now_ms - retention_s * 1000),
            approximate=True,
        )

    def windows(
        self, since: float, until: float | None = None, count: int | None = None
    ) -> list[dict[str, Any]]:
        """One-second windows with ``since <= t <= until`` (Unix seconds), oldest first."""
        hi = "+" if until is None else _stream_ms(until)
        entries = self.r.xrange(self.key("w1"), min=_stream_ms(since), max=hi, count=count)
        return [json.loads(fields[b"d"]) for _id, fields in entries]

    @staticmethod
    def recent_windows(
        client: redis.Redis, sentinel_ids: Iterable[int], since: float
    ) -> dict[int, list[dict[str, Any]]]:
        """One-second windows since ``since`` of several sentinels, in one round trip."""
        ids = list(sentinel_ids)
        pipe = client.pipeline(transaction=False)
        for sid in ids:
            pipe.xrange(sentinel_key(sid, "w1"), min=_stream_ms(since), max="+")
        return {
            sid: [json.loads(fields[b"d"]) for _id, fields in entries]
            for sid, entries in zip(ids, pipe.execute(), strict=True)
        }

    def set_status(self, doc: dict[str, Any]) -> None:
        self.r.set(self.key("status"), json.dumps(doc, separators=(",", ":")))

    def status(self) -> dict[str, Any] | None:
        value = self.r.get(self.key("status"))
        return json.loads(value) if value else None

    def reset(self) -> None:
        """Forget this sentinel's state (a new or deleted sentinel).

        The lease stays: it belongs to whichever worker runs the sentinel, which stops its
        copy when the sentinel is gone and lets the lease expire otherwise."""
        lease = self.key("lease")
        keys = [
            k for k in self.r.scan_iter(match=self.prefix + "*", count=500) if k != lease.encode()
        ]
        if keys:
            self.r.delete(*keys)


def _entries(reply: Any, parse: Callable[[dict[bytes, bytes]], T]) -> list[tuple[str, T]]:
    """``[(entry id, entry), ...]`` of an XREAD reply for one stream ([] when none), each
    entry read by ``parse``; a malformed one raises ``MalformedEntry`` naming it."""
    if not reply:
        return []
    stream, entries = reply[0]
    out = []
    for entry_id, fields in entries:
        try:
            out.append((entry_id.decode(), parse(fields)))
        except MalformedEntry as exc:
            raise MalformedEntry(
                f"{exc} (entry {entry_id.decode()} of {stream.decode()})"
            ) from None
    return out


def _flat(fields: dict[bytes, bytes]) -> list[bytes]:
    """A stream entry's fields as XADD takes them: name, value, name, value..."""
    return [part for pair in fields.items() for part in pair]


def sentinel_ids(client: redis.Redis) -> set[int]:
    """Ids of every sentinel with state in Redis (for forgetting deleted ones)."""
    ids = set()
    for key in client.scan_iter(match=SENTINEL_KEYS_MATCH, count=1000):
        sid = sentinel_id_of(key)
        if sid is not None:
            ids.add(sid)
    return ids


def _stream_ms(t: float) -> str:
    """Unix seconds as a stream id bound: ids are milliseconds, never below 0."""
    return str(max(0, int(t * 1000)))


def _min_id(a: str, b: str | None) -> str:
    """The lower of two stream ids (``b`` None: ``a``)."""
    if b is None:
        return a
    key = [tuple(int(x) for x in i.split("-")) for i in (a, b)]
    return a if key[0] <= key[1] else b


def _next_id(stream_id: str) -> str:
    """The smallest stream id after ``stream_id`` (XTRIM MINID keeps ids >= it)."""
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"
