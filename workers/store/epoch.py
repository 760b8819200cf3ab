"""The state epoch: every write of a sentinel's state is made only while the epoch its
writer joined still holds, and only once.

``ds:{sid}:epoch`` is a token written when the sentinel's state is created; each write of the
state (runs, acks, ledger, verifier offsets, checkpoint) is one Lua script that checks it,
counts the epoch's writes (``writes``) and remembers the writer's last write number
(``applied:{writer}``). An epoch gone or replaced, or a count gone back, raises ``StateLost``
in the writer, which joins a new epoch (docs/architecture.md, "State epoch").
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any, Self

import redis

from workers.store.keys import EPOCH_STATE_KEYS, sentinel_key

# Commands' arguments per script call: Lua unpacks ~8,000 values at most.
SCRIPT_ARGS_MAX = 4000
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


class EpochGuardedStore:
    """One sentinel's keys, and the epoch-guarded write of its state (``_guarded``);
    ``workers.store.sentinel.SentinelStore`` adds what is written."""

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

    def for_writer(self) -> Self:
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
        return sentinel_key(sentinel_id, name)

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

    def epoch(self) -> str | None:
        value = self.r.get(self.key("epoch"))
        return value.decode() if value else None
