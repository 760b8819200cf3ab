"""How the pages write numbers and times: the one Python place, twinned by the browser's
``DS.format`` (``dashboard/static/dashboard/format.js``); ``tests/unit/test_formatting.py`` runs
both on the same cases (``tests/support/format_cases.json``), so a server-rendered page and its
live updates write the same text.

- counts: integers as they are (``12540``); a float count is rounded to a whole number;
- decimals: ``decimal(355.84000000000003)`` is ``"355.8"``: one place, never float noise;
- latency: milliseconds up to 10 s (``"93.5 ms"``), seconds from there (``"93.6 s"``);
- durations: ``"45 s"``, ``"7 min"``, ``"2 h 5 min"``, ``"3 d 4 h"``;
- clock times: always with their zone, ``"10:06:27 UTC"``, and the date when not today.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

NONE = "—"
# From this many milliseconds up, a latency is written in seconds.
SECONDS_FROM_MS = 10_000.0


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _half_up(value: float, digits: int) -> float:
    """Round half away from zero at ``digits`` places, as the browser's ``toFixed`` mostly
    does, on the shortest decimal form of ``value`` (so both sides agree on 0.05 and 2.675)."""
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP))


def count(value: Any) -> str:
    """A counter: a whole number (``None``: ``—``)."""
    if _missing(value):
        return NONE
    return str(int(_half_up(float(value), 0)))


def decimal(value: Any, digits: int = 1) -> str:
    """A measured value to ``digits`` places (``None``: ``—``)."""
    if _missing(value):
        return NONE
    return f"{_half_up(float(value), digits) + 0.0:.{digits}f}"  # + 0.0: never "-0.0"


def compact(value: Any) -> str:
    """A chart's value, short: ``"12.5k"``, ``"1.2M"``, else up to two places, no trailing
    zeros."""
    if _missing(value):
        return NONE
    v = float(value)
    if abs(v) >= 1e6:
        return decimal(v / 1e6).removesuffix(".0") + "M"
    if abs(v) >= 1e4:
        return decimal(v / 1e3).removesuffix(".0") + "k"
    return f"{_half_up(v, 2) + 0.0:g}"


def latency_ms(value: Any) -> str:
    """A latency given in milliseconds, with its unit: ms below 10 s, seconds above."""
    if _missing(value):
        return NONE
    ms = float(value)
    if abs(ms) >= SECONDS_FROM_MS:
        return f"{decimal(ms / 1000.0)} s"
    return f"{decimal(ms)} ms"


def duration(seconds: Any) -> str:
    """How long, in the two largest units that matter (whole seconds)."""
    if _missing(seconds):
        return NONE
    s = max(0, int(float(seconds)))
    if s < 60:
        return f"{s} s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clock(ts: Any, now: float) -> str:
    """A Unix time as a UTC clock time with its zone; the date too when not ``now``'s day."""
    if _missing(ts):
        return NONE
    at = datetime.fromtimestamp(float(ts), UTC)
    if at.date() == datetime.fromtimestamp(now, UTC).date():
        return at.strftime("%H:%M:%S UTC")
    return at.strftime("%Y-%m-%d %H:%M UTC")


def since(ts: Any, now: float) -> str:
    """``"since 10:06:27 UTC, 7 min"``: when a state began and how long ago."""
    if _missing(ts):
        return ""
    return f"since {clock(ts, now)}, {duration(now - float(ts))}"
