"""Lab coordination: one scenario at a time per Redis (``LabLock``) and the runs in
progress (``ScenarioRuns``: heartbeats, cancel requests)."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from workers.store.keys import LAB_LOCK_KEY, scenario_run_key


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

    def beat(self, run_id: str, now: float | None = None) -> None:
        self.r.set(
            scenario_run_key(run_id, "beat"),
            repr(time.time() if now is None else now),
            ex=self.KEEP_S,
        )

    def last_beat(self, run_id: str) -> float | None:
        value = self.r.get(scenario_run_key(run_id, "beat"))
        return float(value) if value else None

    def request_cancel(self, run_id: str, by: str) -> None:
        self.r.set(scenario_run_key(run_id, "cancel"), by, ex=self.KEEP_S)

    def cancel_requested(self, run_id: str) -> str | None:
        value = self.r.get(scenario_run_key(run_id, "cancel"))
        return value.decode() if value else None

    def forget(self, run_id: str) -> None:
        self.r.delete(scenario_run_key(run_id, "beat"), scenario_run_key(run_id, "cancel"))
