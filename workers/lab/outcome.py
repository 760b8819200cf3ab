"""What a scenario run promises and what it found: run states, expectations, results.

``promise()`` states what a semantic promises whatever the fault, derived from
``workers.engine.documents`` (``FORBIDDEN``, ``ALLOWED``); a scenario ``override()``s the
claims its fault changes (``workers.lab.catalogue``); each probe's final counters are judged
against them into a ``SemanticResult`` (``workers.lab.probes``), and a whole run ends as a
``ScenarioOutcome`` (``workers.lab.runner``). Plain data: no Kafka, Redis or Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.engine.documents import ALLOWED, FORBIDDEN

# Called with (phase, percent) as a run goes; an exception it raises aborts the run.
ProgressFn = Callable[[str, int], None]

QUEUED, RUNNING, PASSED, FAILED, ABORTED = "queued", "running", "passed", "failed", "aborted"
STATES = (QUEUED, RUNNING, PASSED, FAILED, ABORTED)


class ScenarioAborted(Exception):
    """The run cannot complete; ``str(exc)`` is the reason shown to the user."""


@dataclass(frozen=True)
class Expect:
    """One claim about a final counter: ``counter == value`` (or ``== ref`` counter), or
    ``may`` (any value is within the promise; the count is reported, not judged)."""

    counter: str
    op: str = "eq"  # "eq" or "may"
    value: int = 0
    ref: str | None = None

    def target(self, counters: dict[str, int]) -> int:
        return counters.get(self.ref, 0) if self.ref else self.value

    def holds(self, counters: dict[str, int]) -> bool:
        if self.op == "may":
            return True
        return counters.get(self.counter, 0) == self.target(counters)

    def text(self, counters: dict[str, int]) -> str:
        if self.op == "may":
            return f"{self.counter}: may be > 0 (reported)"
        if self.ref:
            return f"{self.counter} = {self.ref} ({self.target(counters)})"
        return f"{self.counter} = {self.value}"


def promise(semantic: str) -> list[Expect]:
    """What the semantic itself promises, whatever the fault (DESIGN.md, verdict rules).

    Every counter it forbids stays 0, in ``FORBIDDEN`` order; where loss is forbidden, so is
    a record left ``pending`` once the producers stopped and the checker settled (the lab's
    own claim: pending is a loss not yet declared), claimed right after ``lost``. Every
    counter it gives up (``ALLOWED``) may be > 0: reported, not judged."""
    claims = []
    for counter in FORBIDDEN[semantic]:
        claims.append(Expect(counter))
        if counter == "lost":
            claims.append(Expect("pending"))
    return claims + [Expect(counter, "may") for counter in ALLOWED[semantic]]


def override(base: list[Expect], *changes: Expect) -> list[Expect]:
    """``base`` with the claims on the same counters replaced by ``changes``."""
    replaced = {c.counter for c in changes}
    return [e for e in base if e.counter not in replaced] + list(changes)


@dataclass
class SemanticResult:
    """What one sentinel saw in one scenario, and whether that is what it promises."""

    semantic: str
    profile: str
    fault: str
    fault_at: float | None  # seconds after the scenario started
    counters: dict[str, int]
    expected: list[str]
    matched: bool
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScenarioOutcome:
    scenario: str
    state: str  # passed / failed / aborted
    reason: str
    results: list[SemanticResult]
    started_at: float
    finished_at: float

    @property
    def duration_s(self) -> float:
        return round(self.finished_at - self.started_at, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "state": self.state,
            "reason": self.reason,
            "results": [r.to_dict() for r in self.results],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
        }
