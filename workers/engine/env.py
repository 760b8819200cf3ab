"""Typed environment helpers for settings (framework-free, no Django imports).

Every helper reads one variable and either returns a value of the promised type or raises
:class:`EnvError` with a message that starts with the variable's name, so a misconfigured
process dies at start-up saying what to fix instead of misbehaving later.

Contracts shared by all helpers:

- An unset variable *or an empty string* means "use the default" (``FOO=`` in a compose file or
  an env file is how people usually leave something unset).
- Error messages never echo secret material: URL passwords are masked and secret files are
  named by path, never by content.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "EnvError",
    "envbool",
    "envbootstrap",
    "envchoice",
    "envint",
    "envlist",
    "envnetworks",
    "envredisurl",
    "envsecret",
    "envstr",
    "mask_url",
    "redis_tls_options",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_REDIS_SCHEMES = ("redis", "rediss", "unix")
# TLS options a rediss:// URL may carry in its query (redis-py's names, which Celery and kombu
# take too); the files must be readable by every process that opens the URL.
_REDIS_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_REDIS_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
# host:port where host is a name, an IPv4 address or a bracketed IPv6 address.
_HOSTPORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]+)$")


class EnvError(ValueError):
    """An environment variable is missing or malformed. The message names the variable."""


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value


def envstr(name: str, default: str | None) -> str | None:
    """Return the variable as a string (surrounding whitespace stripped), else ``default``."""
    value = _raw(name)
    return default if value is None else value.strip()


def envbool(name: str, default: bool) -> bool:
    """Return 1/0, true/false, yes/no, on/off (any case) as a bool, else ``default``."""
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise EnvError(f"{name}: expected a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def envint(name: str, default: int, *, min: int | None = None, max: int | None = None) -> int:
    """Return the variable as an int within ``[min, max]`` (bounds inclusive), else ``default``."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value.strip(), 10)
    except ValueError:
        raise EnvError(f"{name}: expected an integer, got {value!r}") from None
    if min is not None and number < min:
        raise EnvError(f"{name}: must be >= {min}, got {number}")
    if max is not None and number > max:
        raise EnvError(f"{name}: must be <= {max}, got {number}")
    return number


def envchoice(name: str, default: str, choices: Sequence[str]) -> str:
    """Return the variable if it is one of ``choices`` (case-insensitive), else ``default``."""
    value = _raw(name)
    if value is None:
        return default
    by_lower = {choice.lower(): choice for choice in choices}
    try:
        return by_lower[value.strip().lower()]
    except KeyError:
        raise EnvError(f"{name}: expected one of {', '.join(choices)}, got {value!r}") from None


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def envlist(name: str, default: str | Sequence[str]) -> list[str]:
    """Return a comma separated variable as a list (items stripped, empty items dropped).

    ``default`` may be given the same way (a comma separated string) or as a sequence.
    """
    value = _raw(name)
    if value is not None:
        return _split(value)
    return _split(default) if isinstance(default, str) else list(default)


def envsecret(name: str, default: str | None) -> str | None:
    """Return a secret from ``NAME`` or from the file named by ``NAME_FILE`` (stripped).

    ``NAME_FILE`` is how container platforms hand out secrets (Docker/Kubernetes secret
    mounts). Setting both is ambiguous and therefore an error; so is an unreadable or empty file.
    """
    file_var = f"{name}_FILE"
    direct = _raw(name)
    path = _raw(file_var)
    if path is None:
        return default if direct is None else direct.strip()
    if direct is not None:
        raise EnvError(f"{name}: set either {name} or {file_var}, not both")
    try:
        content = Path(path.strip()).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise EnvError(f"{file_var}: cannot read {path.strip()!r}: {exc.strerror}") from None
    if not content:
        raise EnvError(f"{file_var}: file {path.strip()!r} is empty")
    return content


def mask_url(url: str) -> str:
    """Return ``url`` with any password in its userinfo replaced by ``******``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]*@", r"\1******@", url)


def envredisurl(name: str, default: str) -> str:
    """Return a Redis URL (``redis://``, ``rediss://`` or ``unix://``); ``NAME_FILE`` works too.

    URLs usually carry the Redis password, hence the ``_FILE`` support and masked errors.
    """
    value = envsecret(name, default)
    assert value is not None  # a str default guarantees a str
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise EnvError(f"{name}: not a valid URL ({exc}): {mask_url(value)!r}") from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise EnvError(
            f"{name}: expected a redis://, rediss:// or unix:// URL, got {mask_url(value)!r}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise EnvError(f"{name}: unix:// URL needs a socket path, got {mask_url(value)!r}")
    elif not parts.hostname:
        raise EnvError(f"{name}: URL has no host: {mask_url(value)!r}")
    elif port == 0:
        raise EnvError(f"{name}: port must be 1-65535, got {mask_url(value)!r}")
    _check_redis_tls(name, parts.scheme, parse_qs(parts.query))
    return value


def _check_redis_tls(name: str, scheme: str, query: dict[str, list[str]]) -> None:
    tls = [key for key in (*_REDIS_TLS_FILES, "ssl_cert_reqs") if key in query]
    if tls and scheme != "rediss":
        raise EnvError(f"{name}: {', '.join(tls)} need a rediss:// URL (TLS), not {scheme}://")
    for key in _REDIS_TLS_FILES:
        path = query.get(key, [""])[0]
        if key in query and not os.access(path, os.R_OK):
            raise EnvError(f"{name}: {key}={path!r} is not a readable file")
    reqs = query.get("ssl_cert_reqs", ["required"])[0]
    if reqs not in _REDIS_CERT_REQS:  # redis-py reads the query too, and only these
        raise EnvError(f"{name}: ssl_cert_reqs must be one of {', '.join(_REDIS_CERT_REQS)}")


def redis_tls_options(url: str) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` and ``redis_backend_use_ssl`` for the Redis ``url``.

    ``None`` unless ``url`` is ``rediss://``. Then the files its query names (``ssl_ca_certs``,
    ``ssl_certfile``, ``ssl_keyfile``) and ``ssl_cert_reqs`` (``required`` unless the query
    says otherwise): without them kombu connects with ``CERT_NONE``, trusting any certificate,
    and Celery's result backend refuses to start. redis-py and channels-redis read the same
    query themselves, so the URL is the one place TLS is configured.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = parse_qs(parts.query)
    options: dict[str, Any] = {key: query[key][0] for key in _REDIS_TLS_FILES if key in query}
    reqs = query.get("ssl_cert_reqs", ["required"])[0]
    options["ssl_cert_reqs"] = _REDIS_CERT_REQS.get(reqs, ssl.CERT_REQUIRED)
    return options


def envbootstrap(name: str, default: str) -> str:
    """Return a Kafka bootstrap list as librdkafka wants it: ``host:port,host:port``.

    Every entry must be ``host:port`` (IPv6 hosts in brackets) with a port in 1-65535; the
    error names the variable and the offending entry.
    """
    value = envstr(name, default)
    assert value is not None
    entries = _split(value)
    if not entries:
        raise EnvError(f"{name}: expected a comma separated host:port list, got {value!r}")
    for entry in entries:
        match = _HOSTPORT.match(entry)
        if match is None:
            raise EnvError(f"{name}: entry {entry!r} is not host:port")
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise EnvError(f"{name}: entry {entry!r} has port {port}, expected 1-65535")
    return ",".join(entries)


def envnetworks(name: str, default: str | Sequence[str]) -> list[str]:
    """Return a comma separated list of IP addresses or networks (``10.0.0.0/8``), each
    checked; the error names the variable and the offending entry."""
    entries = envlist(name, default)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise EnvError(f"{name}: entry {entry!r} is not an IP address or network") from None
    return entries
