"""Brokers as an on-call engineer reads them (pure): which are reachable and since when, and
the sentinels' client errors grouped by broker, in words instead of librdkafka's codes.

The check runner's metadata thread calls :func:`track` after each fetch with the brokers the
cluster metadata names and the result of a connection attempt to each broker it ever saw
(a killed broker leaves the metadata only when the controller fences it, ~10 s later; a
refused connection says so at once). The cluster page reads the result from the status
documents' ``metadata.brokers`` and groups the ``errors`` with :func:`group_errors`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# librdkafka's error names, in words.
CODE_WORDS = {
    "_TRANSPORT": "connection failed",
    "_ALL_BROKERS_DOWN": "all brokers down",
    "_MSG_TIMED_OUT": "records timed out",
    "_TIMED_OUT": "request timed out",
    "_RESOLVE": "host name not resolved",
    "_AUTHENTICATION": "authentication failed",
    "_SSL": "TLS handshake failed",
    "_DESTROY": "client closing",
}
_CODE = re.compile(r"\b(_[A-Z_]+)(?::\s*)?")
# librdkafka names a broker "host:port/id" (or ".../bootstrap" before it knows the id).
_BROKER = re.compile(r"(?P<host>[\w.\-]+:\d+)/(?P<id>\d+|bootstrap)\b")


def track(
    previous: Mapping[str, Mapping[str, Any]],
    seen: Mapping[str, str],
    failures: Mapping[str, str | None],
    now: float,
) -> dict[str, dict[str, Any]]:
    """Every broker known so far (by id, as text): ``host``, ``reachable``, ``since`` (when it
    became unreachable, kept while it stays so), ``error`` (why), ``in_metadata``.

    ``seen``: id -> "host:port" in this fetch's metadata; ``failures``: id -> why a
    connection to it failed (None: it answered) for every broker probed."""
    out: dict[str, dict[str, Any]] = {}
    for bid in sorted({*previous, *seen}, key=sort_key):
        before = previous.get(bid, {})
        host = seen.get(bid) or before.get("host", "")
        error = failures.get(bid)
        if bid not in seen and error is None and bid in previous:
            error = before.get("error") or "not in the cluster metadata"
        reachable = error is None
        since = None if reachable else (before.get("since") or now)
        out[bid] = {
            "host": host,
            "reachable": reachable,
            "since": since,
            "error": error,
            "in_metadata": bid in seen,
        }
    return out


def sort_key(bid: str) -> tuple[int, str]:
    return (int(bid), "") if bid.isdigit() else (1 << 30, bid)


def in_words(error: str) -> str:
    """A client error with librdkafka's code names said in words:
    ``"consumer: _TRANSPORT: 127.0.0.1:9093/2: Connect ... refused"`` ->
    ``"consumer: connection failed: 127.0.0.1:9093/2: Connect ... refused"``."""
    return _CODE.sub(
        lambda m: f"{CODE_WORDS.get(m.group(1), m.group(1).strip('_').lower())}: ", error
    )


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def broker_state(bid: str, info: Mapping[str, Any]) -> str:
    """E.g. "broker 2 (127.0.0.1:9093) unreachable since 14:02:11 UTC: connection refused"."""
    name = f"broker {bid} ({info.get('host') or 'address unknown'})"
    if info.get("reachable", True):
        return f"{name} up"
    since = f" since {clock(info['since'])} UTC" if info.get("since") else ""
    why = f": {info['error']}" if info.get("error") else ""
    return f"{name} unreachable{since}{why}"


def cluster_summary(brokers: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The cluster's state in words when something is wrong, ``None`` when every known broker
    is reachable: "all 3 brokers unreachable since 10:08:27 UTC" (since the last of them went),
    or per broker "broker 1 unreachable since 10:03:04 UTC" (several: joined by "; ")."""
    down = {bid: info for bid, info in brokers.items() if not info.get("reachable", True)}
    if not down:
        return None

    def since(info: Mapping[str, Any]) -> str:
        return f" since {clock(info['since'])} UTC" if info.get("since") else ""

    if len(down) == len(brokers):
        latest = max((info.get("since") or 0 for info in down.values()), default=0)
        noun = "the broker" if len(down) == 1 else f"all {len(down)} brokers"
        return f"{noun} unreachable{since({'since': latest})}"
    return "; ".join(
        f"broker {bid} unreachable{since(down[bid])}" for bid in sorted(down, key=sort_key)
    )


def group_errors(errors: Iterable[str], brokers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{"brokers": {id: [error in words, ...]}, "other": [...]}``: each error under every
    broker it names (by "host:port/id", or by an address of a known broker), duplicates
    dropped; errors that name no broker go to ``other``."""
    by_host = {info.get("host"): bid for bid, info in brokers.items() if info.get("host")}
    grouped: dict[str, list[str]] = {}
    other: list[str] = []
    for error in dict.fromkeys(errors):
        ids = []
        for m in _BROKER.finditer(error):
            bid = m.group("id") if m.group("id") != "bootstrap" else by_host.get(m.group("host"))
            ids.append(bid or m.group("host"))
        if not ids:
            other.append(in_words(error))
        for bid in dict.fromkeys(ids):
            grouped.setdefault(bid, []).append(in_words(error))
    return {"brokers": grouped, "other": other}
