"""Per-semantic verdict: is the delivery guarantee holding right now?

Pure Python. The rules are DESIGN.md's, in precedence order:

1. VIOLATED: the guarantee itself broke.
   at-most-once: a duplicate or an aborted read;
   at-least-once: a loss;
   exactly-once: a loss, a duplicate or an aborted read;
   and the offset anomalies each forbids (``documents.FORBIDDEN``).
   Violations are facts already counted, so they win over STALLED.
2. STALLED: an error is reported (cluster unreachable, sentinel down) or no
   progress for ``stall_after_s``. A stall is never reported as loss.
3. DEGRADED: an allowed event above its threshold (default thresholds are 0,
   i.e. any occurrence), or latency p99 over the SLO.
4. HOLDING otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.engine.documents import FORBIDDEN, SEMANTICS, Verdict

# Counters that may be allowed by a threshold (DEGRADED above it). Forbidden
# counters of a semantic are never checked as degradations.
DEFAULT_THRESHOLDS: dict[str, int] = {
    "lost": 0,
    "duplicated": 0,
    "aborted_read": 0,
    "reordered": 0,
    "late": 0,
    "phantom": 0,
    "divergent": 0,
    "rewound": 0,
    "skipped": 0,
    "truncated": 0,
}

_WHAT = {
    "lost": "lost",
    "duplicated": "duplicated",
    "aborted_read": "aborted read",
    "reordered": "reordered",
    "late": "late",
    "phantom": "phantom (processed though not acked)",
    "divergent": "divergent offsets (log rewritten)",
    "rewound": "rewound reads",
    "skipped": "skipped offsets",
    "truncated": "truncated offsets",
}


def evaluate(
    semantic: str,
    totals: Mapping[str, int],
    *,
    latency_p99_ms: float | None,
    slo_p99_ms: float,
    last_progress_age_s: float | None,
    stall_after_s: float,
    thresholds: Mapping[str, int] | None = None,
    error: str | None = None,
) -> tuple[Verdict, list[str]]:
    """Return the verdict and human-readable reasons (empty for HOLDING).

    ``totals`` are checker counters (missing keys count as 0). ``thresholds``
    override ``DEFAULT_THRESHOLDS`` per counter; an event is DEGRADED when its
    count is strictly above its threshold. ``last_progress_age_s`` is seconds
    since the consumer last processed a record; None means "no information" and
    never stalls by itself (callers should pass the time since the sentinel
    started while nothing has been processed yet). ``latency_p99_ms`` None means
    no latency sample yet. When VIOLATED and also stalled, the stall reasons are
    appended after the violations.

    Raises ValueError for an unknown semantic or an unknown threshold name.
    """
    if semantic not in FORBIDDEN:
        raise ValueError(f"unknown semantic {semantic!r}; expected one of {', '.join(SEMANTICS)}")
    limits = dict(DEFAULT_THRESHOLDS)
    if thresholds:
        unknown = sorted(set(thresholds) - set(DEFAULT_THRESHOLDS))
        if unknown:
            raise ValueError(f"unknown threshold(s) {unknown}; known: {sorted(DEFAULT_THRESHOLDS)}")
        limits.update(thresholds)

    def count(name: str) -> int:
        return int(totals.get(name, 0) or 0)

    forbidden = FORBIDDEN[semantic]
    violations = [
        f"{count(name)} {_WHAT[name]} under {semantic}" for name in forbidden if count(name) > 0
    ]
    stalls = _stall_reasons(error, last_progress_age_s, stall_after_s)
    if violations:
        return Verdict.VIOLATED, violations + stalls
    if stalls:
        return Verdict.STALLED, stalls

    degradations = [
        f"{count(name)} {_WHAT[name]} (threshold {limits[name]})"
        for name in DEFAULT_THRESHOLDS
        if name not in forbidden and count(name) > limits[name]
    ]
    if latency_p99_ms is not None and latency_p99_ms > slo_p99_ms:
        degradations.append(f"latency p99 {latency_p99_ms:g} ms over SLO {slo_p99_ms:g} ms")
    if degradations:
        return Verdict.DEGRADED, degradations
    return Verdict.HOLDING, []


def _stall_reasons(
    error: str | None, last_progress_age_s: float | None, stall_after_s: float
) -> list[str]:
    reasons = []
    if error:
        reasons.append(error)
    if last_progress_age_s is not None and last_progress_age_s >= stall_after_s:
        reasons.append(
            f"no progress for {last_progress_age_s:.0f} s (stall after {stall_after_s:g} s)"
        )
    return reasons
