"""Client failures in words a person on call understands (pure: texts in, a sentence out).

librdkafka says "SASL authentication error: Authentication failed during authentication due to
invalid credentials with SASL mechanism SCRAM-SHA-512" or "Broker: Group authorization
failed"; the sentinel's errors say who could not do what, and what to check. The original
text follows in parentheses, so nothing librdkafka said is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.engine.acls import GROUP, TOPIC, TRANSACTIONAL_ID, AclNeed

_DENIED = {
    "topic authorization failed": TOPIC,
    "group authorization failed": GROUP,
    "transactional id authorization failed": TRANSACTIONAL_ID,
}
_PREFIXES = ("authentication failed", "not authorized", "TLS:", "the broker closed")


def in_words(
    error: str,
    *,
    user: str | None = None,
    mechanism: str | None = None,
    needs: Sequence[AclNeed] = (),
    tls: str | None = None,
) -> str:
    """``error`` as a sentence naming the cause and the fix, or ``error`` itself when it is
    none of the failures known here (or already a sentence of this function).

    ``user`` and ``mechanism`` are the client's SASL login; ``needs`` the ACLs the role that
    failed uses (``workers.engine.acls``): a denial names the ones of the denied resource;
    ``tls`` OpenSSL's reason a certificate failed verification, which librdkafka does not give
    (``workers.clients.tlsprobe``): without it an expired certificate, an untrusted CA and a
    hostname mismatch read the same."""
    lowered = error.lower()
    if any(error.startswith(p) or f": {p}" in error[:40] for p in _PREFIXES):
        return error
    for phrase, resource in _DENIED.items():
        if phrase in lowered:
            return _denied(error, resource, user, needs)
    if "sasl authentication error" in lowered or "authentication failed" in lowered:
        return (
            f"authentication failed for user {user or '?'!r} ({mechanism or 'SASL'}): check "
            f"sasl.username and sasl.password ({error})"
        )
    if "certificate verify failed" in lowered:
        return f"TLS: the broker's certificate could not be verified: {_unverified(tls)} ({error})"
    if "incorrect security.protocol" in lowered or "ssl handshake failed" in lowered:
        return (
            "the broker closed the connection during the handshake: does security.protocol "
            f"match the listener (SSL / SASL_SSL on a TLS port)? ({error})"
        )
    return error


def _unverified(reason: str | None) -> str:
    said = (reason or "").lower()
    if "expired" in said:
        return (
            f"it has expired (certificate expired, OpenSSL: {reason}): the brokers need a new one"
        )
    if "mismatch" in said:
        return (
            f"it is not valid for the host name connected to (hostname mismatch, OpenSSL: "
            f"{reason}): connect to a name or address in its subject alternative names"
        )
    if reason:
        return (
            f"it is not signed by a CA this client trusts (untrusted certificate, OpenSSL: "
            f"{reason}): check ssl.ca.location"
        )
    return (
        "untrusted certificate, expired certificate or hostname mismatch (librdkafka does not "
        "say which): check that its CA is the one in ssl.ca.location, that it is still valid "
        "and that it names the host you connect to"
    )


def _denied(error: str, resource: str, user: str | None, needs: Sequence[AclNeed]) -> str:
    principal = f"User:{user}" if user else "this client's principal"
    missing = [str(n) for n in needs if n.resource == resource]
    what = " or ".join(missing) if missing else f"an ACL on a {resource}"
    return f"not authorized: {principal} needs {what} (ACL denied: {error})"


def redis_in_words(error: str, url: str) -> str:
    """A Redis client's ``error`` (redis-py's text) as a sentence naming the cause and the fix.

    ``url`` is the Redis URL the client used: only its scheme, host and port are named, never
    its password. The original text follows in parentheses (redis-py never puts the password
    in it)."""
    where = _redis_where(url)
    lowered = error.lower()
    for phrases, words in _REDIS_FAILURES:
        if any(phrase in lowered for phrase in phrases):
            return f"Redis at {where}: {words} ({error})"
    return f"Redis at {where}: {error}"


_REDIS_FAILURES = (
    (
        ("wrongpass", "invalid username-password pair", "invalid password"),
        "authentication failed: check the password (and user) in REDIS_URL",
    ),
    (
        ("noauth", "authentication required", "must be called with the client already auth"),
        "Redis requires a password and REDIS_URL gives none (redis://:PASSWORD@host:port/0)",
    ),
    (
        ("hostname mismatch", "doesn't match", "ip address mismatch"),
        "TLS: Redis's certificate is not valid for this host name (hostname mismatch): connect "
        "to a name or address in its subject alternative names",
    ),
    (
        ("certificate has expired", "certificate expired"),
        "TLS: Redis's certificate has expired",
    ),
    (
        ("certificate verify failed",),
        "TLS: Redis's certificate is not signed by a CA this client trusts: name your CA's "
        "file in REDIS_URL (rediss://...?ssl_ca_certs=/path/ca.pem)",
    ),
    (
        ("wrong version number", "record layer failure", "packet length too long"),
        "TLS to a port that does not speak it: use redis:// there, or Redis's --tls-port",
    ),
    (
        ("connection reset by peer", "connection closed by server"),
        "Redis closed the connection: if it listens with TLS, use a rediss:// URL",
    ),
    (
        ("connection refused", "timeout connecting", "name or service not known"),
        "nothing answers there: is Redis running, and is REDIS_URL's host and port right?",
    ),
)


def _redis_where(url: str) -> str:
    scheme, _, rest = url.partition("://")
    hostport = rest.rpartition("@")[2].partition("/")[0].partition("?")[0]
    return f"{scheme}://{hostport or 'localhost'}"
