"""Every Redis key the project uses, and every read and write of them.

Nothing else formats a ``ds:`` key: sentinel processes, the supervisor, the lab and the
dashboard all go through this module.

Keys of one sentinel, all under ``ds:{sentinel id}:``:

- ``epoch``      the state epoch: a token (``{created ms}-{random}``) written when the
                 sentinel's state is created. Every write of the state below (runs, acks,
                 ledger, offsets, checkpoint) is made only while the epoch is still the one
                 its writer joined (``StateLost`` otherwise), so a Redis that lost the state
                 (a restart without persistence, FLUSHALL, eviction) never mixes old and new.
- ``writes``     count of the guarded writes of this epoch; a count that goes back (a failover
                 to a replica that was behind) declares the state lost too.
- ``lost``       set once the epoch's ``state-lost`` event is recorded (one event per loss).
- ``runs``       hash run id -> JSON metadata of every producer run.
- ``acks``       stream of the producer's delivery results (JSON, one entry per ~100 ms).
- ``ledger``     stream of processed records: the durable effect of "processing".
- ``offsets``    hash "topic:partition" -> next offset, for the exactly-once verifier, written in the
                 same MULTI as its ledger entry so its processing is itself exactly-once.
- ``aborted``    set of copier transaction tokens known to be aborted.
- ``txn``        hash with the copier's last opened / committing transaction token.
- ``checker``    hash: checker snapshot + the stream ids it has consumed (one MULTI).
- ``status``     the status document (JSON), rewritten about once a second.
- ``health``     hash role -> JSON {"ts", "error"} heartbeat of each sentinel process.
- ``events``     capped list of notable events (new run, state lost, fenced...).
- ``incarnation`` which sentinel (by its database row's incarnation) the state belongs to.
- ``w1``         stream of one-second metric windows (``workers.engine.documents.Window``).
- ``applied:{writer}`` the number of the last guarded write one writer (a role's store,
                 ``for_writer``) made, so that a write sent again after its reply was lost
                 (the consumer resends a ledger entry until Redis takes it; the producer a
                 delivery report) is not made twice. Expires
                 ``APPLIED_TTL_MS`` after the writer's last write.
- ``lease``      token of the worker process that runs the sentinel (``Lease``).
- ``fault``      hash ``point``, ``after``, ``action``: a crash point armed by the lab.
- ``alerting``   what alert evaluation remembers between runs (``alert_state``).
- ``audit``      hash ``acks``, ``ledger``: the stream ids an auditor (the soak's ground truth)
                 has read up to; the checker trims no further (expires unless renewed).

Global keys: ``ds:workers`` (``WorkerRegistry``: the workers hosting sentinels, for placement);
``ds:scenario-lock`` (``LabLock``: one scenario at a time per Redis);
``ds:scenario-run:{run}:beat`` and ``:cancel`` (``ScenarioRuns``: a run's heartbeat, a cancel);
``ds:lint:{cluster}`` and ``ds:lint:{cluster}:running`` (``LintStore``: guarantee lint reports).
"""

from __future__ import annotations

import copy
import json
import struct
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis

from workers.engine.documents import STATE_LOST

LEDGER_ITEM = struct.Struct("<QIQQQ")  # run, partition, seq, produce_ts_us, processed_ts_us
ABORTED_ITEM = struct.Struct("<QIQ")  # run, partition, seq
EVENTS_KEPT = 200
PREFIX = "ds:"
LAB_LOCK_KEY = PREFIX + "scenario-lock"
WORKERS_KEY = PREFIX + "workers"
SCRIPT_ARGS_MAX = 4000
# What a state epoch covers: forgotten together when a new epoch begins.
EPOCH_STATE_KEYS = (
    "runs", "acks", "ledger", "offsets", "aborted", "txn", "checker", "writes", "lost",
)  # fmt: skip

# Renew / release only while we still hold the lease (compare-and-set).
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
# A write of the sentinel's state, made only while the epoch is the writer's and only once:
# KEYS[1] epoch, KEYS[2] writes, KEYS[3] the writer's applied key, KEYS[4..] the keys written;
# ARGV[1] the writer's epoch token, ARGV[2] the write's number, ARGV[3] the applied key's
# time to live (ms), then per command its name, its key's index in KEYS, its argument count
# and arguments. Returns the epoch's write count (without writing again when this write was
# made already: it is being sent again after its reply was lost), or nil when the epoch is
# gone or another one.
_GUARDED = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return false end
if redis.call('get', KEYS[3]) == ARGV[2] then return tonumber(redis.call('get', KEYS[2])) end
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i + 2])
  redis.call(ARGV[i], KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + n))
  i = i + 3 + n
end
redis.call('set', KEYS[3], ARGV[2], 'PX', ARGV[3])
return redis.call('incr', KEYS[2])
"""
# How long a writer's last write number is kept after its last write: a write whose reply was
# lost and that is sent again later than this could be made twice.
APPLIED_TTL_MS = 3_600_000
# Begin a new epoch, forgetting the state keys (KEYS[2..]), when there is none (ARGV[2] == "")
# or it is still ARGV[2]; returns the epoch in force afterwards.
_NEW_EPOCH = """
local current = redis.call('get', KEYS[1])
if (current or '') ~= ARGV[2] then return current end
redis.call('del', unpack(KEYS, 2))
redis.call('set', KEYS[1], ARGV[1])
return ARGV[1]
"""


class StateLost(Exception):
    """Redis no longer holds the state epoch this writer joined: it lost the sentinel's state
    (or another role found that out first and began a new epoch). The write was not made."""


def epoch_started_ms(token: str | None) -> int:
    """When the epoch ``token`` began (ms since the Unix epoch); 0 when unknown."""
    head = (token or "").partition("-")[0]
    return int(head) if head.isdigit() else 0


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


def pack_ledger(items: Iterable[tuple[int, int, int, int, int]]) -> bytes:
    pack = LEDGER_ITEM.pack
    return b"".join([pack(*item) for item in items])


def unpack_ledger(data: bytes) -> list[tuple[int, int, int, int, int]]:
    return list(LEDGER_ITEM.iter_unpack(data))


def pack_aborted(items: Iterable[tuple[int, int, int]]) -> bytes:
    return b"".join(ABORTED_ITEM.pack(*item) for item in items)


def unpack_aborted(data: bytes) -> list[tuple[int, int, int]]:
    return list(ABORTED_ITEM.iter_unpack(data))


def to_ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted inclusive ranges covering ``seqs``: [3, 1, 2, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


class SentinelStore:
    """Typed access to one sentinel's keys."""

    def __init__(self, client: redis.Redis, sentinel_id: int) -> None:
        self.r = client
        self.sid = sentinel_id
        self.prefix = self.key_for(sentinel_id, "")
        # The epoch this writer joined (None: not yet, it joins at its first write) and the
        # epoch's write count at its last write.
        self.token: str | None = None
        self.writes = 0
        self._guard = client.register_script(_GUARDED)
        self._new_writer()

    def _new_writer(self) -> None:
        # Who writes (``applied:{writer}``), its last write's number, and the write whose
        # outcome is unknown (its reply never came): ``(keys, args, number)``.
        self.writer = uuid.uuid4().hex[:16]
        self._number = 0
        self._in_doubt: tuple[list[str], list[Any], int] | None = None

    def for_writer(self) -> SentinelStore:
        """A store on the same connection with an epoch of its own to join: each role must
        notice a loss itself (its in-memory state belongs to the epoch it joined). A copy,
        so that a store of a subclass (a test's) stays what it is."""
        writer = copy.copy(self)
        writer.token, writer.writes = None, 0
        writer._new_writer()
        return writer

    def key(self, name: str) -> str:
        return self.prefix + name

    @staticmethod
    def key_for(sentinel_id: int, name: str) -> str:
        return f"{PREFIX}{sentinel_id}:{name}"

    def lease(self, token: str, ttl_ms: int) -> Lease:
        return Lease(self.r, self.key("lease"), token, ttl_ms)

    # -- epoch: detecting that Redis lost our state -------------------------------------
    def ensure_epoch(self) -> tuple[str, bool]:
        """Join the current epoch, beginning one when there is none (then forgetting whatever
        state keys were left without one); returns its token and whether this call began it."""
        current, created = self.epoch(), False
        if current is None:
            current, created = self._new_epoch(expected="")
        self.token, self.writes = current, 0
        return current, created

    def declare_lost(self, reason: str) -> None:
        """The state is not trustworthy although the epoch is (Redis went back in time): begin
        a new epoch, unless another writer already did; every writer then sees ``StateLost``."""
        if self.token is not None:
            self._new_epoch(expected=self.token)
        raise StateLost(reason)

    def _new_epoch(self, expected: str) -> tuple[str, bool]:
        """Begin an epoch if the current one is ``expected`` ("": none); the epoch in force
        afterwards, and whether it is the one begun here."""
        token = f"{int(time.time() * 1000)}-{uuid.uuid4().hex}"
        keys = [self.key("epoch"), *(self.key(name) for name in EPOCH_STATE_KEYS)]
        current = self.r.eval(_NEW_EPOCH, len(keys), *keys, token, expected)
        current = current.decode() if isinstance(current, bytes) else current
        return current, current == token

    def _guarded(self, *commands: tuple[str, str, list[Any]]) -> None:
        """Run ``(command, key name, args)`` in one script, only while our epoch holds."""
        if self.token is None:
            self.ensure_epoch()
        keys = [self.key("epoch"), self.key("writes"), self.key(f"applied:{self.writer}")]
        args: list[Any] = [self.token]
        for command, name, values in commands:
            if self.key(name) not in keys:
                keys.append(self.key(name))
            args += [command, keys.index(self.key(name)) + 1, len(values), *values]
        # The same write sent again (its reply was lost, the caller retries) keeps its number,
        # so Redis makes it once; any other write is a new one.
        doubt = self._in_doubt
        if doubt is not None and doubt[0] == keys and doubt[1] == args:
            number = doubt[2]
        else:
            self._number += 1
            number = self._number
        try:
            writes = self._guard(keys=keys, args=[args[0], number, APPLIED_TTL_MS, *args[1:]])
        except (redis.ConnectionError, redis.TimeoutError):
            self._in_doubt = (keys, args, number)  # made or not: sent again, made at most once
            raise
        self._in_doubt = None
        if writes is None:
            raise StateLost("the sentinel's state epoch in Redis is gone or was replaced")
        if writes <= self.writes:
            self.declare_lost(f"Redis went back in time (write {writes} after {self.writes})")
        self.writes = writes

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

    def epoch(self) -> str | None:
        value = self.r.get(self.key("epoch"))
        return value.decode() if value else None

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

    # -- producer results ----------------------------------------------------------------
    def append_acks(
        self, run_id: int, partitions: dict[int, dict[str, Any]], latency: str | dict | None
    ) -> None:
        doc = {"run": run_id, "p": {str(p): v for p, v in partitions.items()}}
        if latency:
            doc["lat"] = latency
        self._guarded(("xadd", "acks", ["*", "d", json.dumps(doc, separators=(",", ":"))]))

    def read_acks(self, after_id: str, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """Acks entries after ``after_id``, oldest first: ``[(entry id, fields), ...]``."""
        return _entries(self.r.xread({self.key("acks"): after_id}, count=count))

    def read_streams(
        self, acks_id: str, ledger_id: str, count: int
    ) -> tuple[str | None, list[tuple[str, dict[bytes, bytes]]], list[tuple[str, dict]]]:
        """``(epoch, acks entries, ledger entries)`` after the given ids, at most ``count`` of
        each, in one round trip. The ledger is read before the acks, so every delivery report
        written before a ledger entry read here is read too (unless ``count`` cut it off)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.key("epoch"))
        pipe.xread({self.key("ledger"): ledger_id}, count=count)
        pipe.xread({self.key("acks"): acks_id}, count=count)
        epoch, ledger, acks = pipe.execute()
        return (epoch.decode() if epoch else None), _entries(acks), _entries(ledger)

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
        self,
        items: list[tuple[int, int, int, int, int]],
        *,
        foreign: int = 0,
        aborted: list[tuple[int, int, int]] | None = None,
        offsets: dict[int, int] | None = None,
        topic: str = "",
    ) -> None:
        """Append one processed batch; with ``offsets``, store them in the same transaction."""
        fields: list[Any] = ["*", "d", pack_ledger(items)]
        if foreign:
            fields += ["f", foreign]
        if aborted:
            fields += ["a", pack_aborted(aborted)]
        commands = [("xadd", "ledger", fields)]
        pairs = [v for p, o in (offsets or {}).items() for v in (f"{topic}:{p}", o)]
        for start in range(0, len(pairs), SCRIPT_ARGS_MAX):  # Lua unpacks ~8,000 values at most
            commands.append(("hset", "offsets", pairs[start : start + SCRIPT_ARGS_MAX]))
        self._guarded(*commands)

    def read_ledger(self, after_id: str, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """Ledger entries after ``after_id``, oldest first: ``[(entry id, fields), ...]``."""
        return _entries(self.r.xread({self.key("ledger"): after_id}, count=count))

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
            pipe.xrange(SentinelStore.key_for(sid, "w1"), min=_stream_ms(since), max="+")
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


def _entries(reply: Any) -> list[tuple[str, dict[bytes, bytes]]]:
    """``[(entry id, fields), ...]`` of an XREAD reply for one stream ([] when none)."""
    return [(entry_id.decode(), fields) for entry_id, fields in reply[0][1]] if reply else []


def sentinel_ids(client: redis.Redis) -> set[int]:
    """Ids of every sentinel with state in Redis (for forgetting deleted ones)."""
    ids = set()
    for key in client.scan_iter(match=f"{PREFIX}*:*", count=1000):
        middle = key.decode()[len(PREFIX) :].partition(":")[0]
        if middle.isdigit():
            ids.add(int(middle))
    return ids


class Lease:
    """A renewable lease on one key (``SET NX PX``), held by ``token``; renewed and released
    only by its holder (compare-and-set in Lua)."""

    def __init__(self, client: redis.Redis, key: str, token: str, ttl_ms: int) -> None:
        self.r = client
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms

    def acquire_or_renew(self) -> bool:
        if self.r.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        return bool(self.r.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        self.r.eval(_RELEASE, 1, self.key, self.token)

    def holder(self) -> str | None:
        value = self.r.get(self.key)
        return value.decode() if value else None

    def held(self) -> tuple[bool, int]:
        """Whether ``token`` holds the lease now, and its time left in ms."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.key)
        pipe.pttl(self.key)
        holder, pttl = pipe.execute()
        return holder is not None and holder.decode() == self.token, pttl


def lease_holders(client: redis.Redis, sentinel_ids: Iterable[int]) -> dict[int, str | None]:
    """The worker holding each sentinel's lease now (None: nobody runs it).

    A lease token is ``{worker id}:{suffix}`` (``SentinelSupervisor``); the worker id is what
    is returned."""
    ids = list(sentinel_ids)
    pipe = client.pipeline(transaction=False)
    for sid in ids:
        pipe.get(SentinelStore.key_for(sid, "lease"))
    return {
        sid: token.decode().rpartition(":")[0] if token else None
        for sid, token in zip(ids, pipe.execute(), strict=True)
    }


class WorkerRegistry:
    """The workers hosting sentinels (``ds:workers``: worker id -> JSON ``{"at", "cap",
    "held"}``), each beating once per supervisor tick, for placing sentinels fairly.

    ``at`` is Redis's own clock (ms), so workers on hosts with skewed clocks agree on who is
    alive. ``held`` is the worker's own report of the leases it holds; the leases themselves
    stay the truth of who runs what (``lease_holders``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def now_ms(self) -> int:
        seconds, micros = self.r.time()
        return seconds * 1000 + micros // 1000

    def beat(self, worker_id: str, cap: int, held: Iterable[int], tick_ms: int = 0) -> None:
        """``tick_ms``: how often this worker beats (0: unknown)."""
        doc = {"at": self.now_ms(), "cap": cap, "held": sorted(held), "tick_ms": tick_ms}
        self.r.hset(WORKERS_KEY, worker_id, json.dumps(doc, separators=(",", ":")))

    def alive(self, within_ms: int, *, ticks: int = 0) -> dict[str, dict[str, Any]]:
        """Workers that beat in the last ``within_ms``, and (``ticks``) within that many of
        their own beat periods; entries ten times ``within_ms`` old are removed."""
        now = self.now_ms()
        alive, stale = {}, []
        for worker, raw in self.r.hgetall(WORKERS_KEY).items():
            doc = json.loads(raw)
            limit = within_ms
            if ticks and doc.get("tick_ms"):
                limit = min(limit, ticks * doc["tick_ms"])
            if now - doc["at"] <= limit:
                alive[worker.decode()] = doc
            elif now - doc["at"] > 10 * within_ms:
                stale.append(worker)
        if stale:
            self.r.hdel(WORKERS_KEY, *stale)
        return alive

    def leave(self, worker_id: str) -> None:
        self.r.hdel(WORKERS_KEY, worker_id)


class LabLock:
    """One scenario at a time per Redis: faults of two runs would corrupt both. The lock
    expires unless its holder renews it (``renew``), so a dead runner's lock frees itself."""

    def __init__(self, client: redis.Redis, ttl_ms: int) -> None:
        self.r = client
        self.ttl_ms = ttl_ms

    def acquire(self, token: str, scenario: str, run_id: str | None = None) -> str | None:
        """Take the lock for ``scenario`` (of run ``run_id``, when the caller keeps runs);
        None when taken, else the scenario holding it."""
        held = {"token": token, "scenario": scenario, "run": run_id, "at": time.time()}
        if self.r.set(LAB_LOCK_KEY, json.dumps(held), nx=True, px=self.ttl_ms):
            return None
        holder = self.holder()
        return (holder or {}).get("scenario", "?")

    def holder(self) -> dict[str, Any] | None:
        held = self.r.get(LAB_LOCK_KEY)
        return json.loads(held) if held else None

    def renew(self, token: str) -> bool:
        """Extend the lock by its time, if ``token`` still holds it."""
        held = self.holder()
        return bool(
            held and held.get("token") == token and self.r.pexpire(LAB_LOCK_KEY, self.ttl_ms)
        )

    def release(self, token: str) -> None:
        held = self.holder()
        if held and held.get("token") == token:
            self.r.delete(LAB_LOCK_KEY)

    def release_run(self, run_id: str) -> bool:
        """Free the lock held for run ``run_id`` (its runner died); True when it was."""
        held = self.holder()
        if held and held.get("run") == run_id:
            self.r.delete(LAB_LOCK_KEY)
            return True
        return False


class ScenarioRuns:
    """Scenario runs in progress: the runner's heartbeat (``ds:scenario-run:{id}:beat``, the
    time of its last beat) and cancel requests (``ds:scenario-run:{id}:cancel``, who asked)."""

    KEEP_S = 3600  # both keys outlive any run, then go

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @staticmethod
    def _key(run_id: str, what: str) -> str:
        return f"{PREFIX}scenario-run:{run_id}:{what}"

    def beat(self, run_id: str, now: float | None = None) -> None:
        self.r.set(
            self._key(run_id, "beat"), repr(time.time() if now is None else now), ex=self.KEEP_S
        )

    def last_beat(self, run_id: str) -> float | None:
        value = self.r.get(self._key(run_id, "beat"))
        return float(value) if value else None

    def request_cancel(self, run_id: str, by: str) -> None:
        self.r.set(self._key(run_id, "cancel"), by, ex=self.KEEP_S)

    def cancel_requested(self, run_id: str) -> str | None:
        value = self.r.get(self._key(run_id, "cancel"))
        return value.decode() if value else None

    def forget(self, run_id: str) -> None:
        self.r.delete(self._key(run_id, "beat"), self._key(run_id, "cancel"))


class LintStore:
    """The guarantee lint's latest report per cluster (``ds:lint:{cluster}``, JSON) and the
    claim that stops two runs of one cluster's lint at once (``ds:lint:{cluster}:running``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @staticmethod
    def _key(cluster: str, suffix: str = "") -> str:
        return f"{PREFIX}lint:{cluster}{suffix}"

    def save(self, cluster: str, report: dict[str, Any]) -> None:
        self.r.set(self._key(cluster), json.dumps(report, separators=(",", ":")))

    def report(self, cluster: str) -> dict[str, Any] | None:
        raw = self.r.get(self._key(cluster))
        return json.loads(raw) if raw else None

    def claim_run(self, cluster: str, ttl_ms: int) -> bool:
        """Whether this caller may lint ``cluster`` now (no other run in the last ``ttl_ms``)."""
        return bool(self.r.set(self._key(cluster, ":running"), "1", nx=True, px=ttl_ms))

    def release_run(self, cluster: str) -> None:
        self.r.delete(self._key(cluster, ":running"))

    def forget(self, cluster: str) -> None:
        """Drop ``cluster``'s stored report (a cluster removed, or a test's clean slate)."""
        self.r.delete(self._key(cluster))


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
