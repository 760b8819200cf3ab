"""Client secrets at rest: sealed with Fernet, or referenced, and opened only to build a client.

A client property whose key is secret by the one rule (``workers.engine.redact.is_secret_key``:
``sasl.password``, ``sasl.username``, ``ssl.key.password``, ``ssl.key.pem``,
``sasl.oauthbearer.client.secret``...) is stored in one of three forms, never in clear:

- ``fernet:<token>``: the value encrypted with the first key of ``DS_SECRETS_KEY`` (or the file
  ``DS_SECRETS_KEY_FILE`` names): one or more Fernet keys, comma separated. Every key opens a
  token; the first one seals. Rotating: put a new key first, run
  ``manage.py secrets rotate``, then drop the old key.
- ``env:NAME``: a reference to the environment variable ``NAME`` of the process that builds
  the client (the sentinel's worker), resolved when the client is built.
- ``file:/path``: a reference to a file (a Kubernetes or Docker secret mount), read then; one
  trailing newline is dropped.

:func:`seal` turns clear values into tokens (idempotent: tokens and references pass through),
:func:`unseal` gives the clear configuration a client needs. Neither ever puts a secret value
into an exception message. Settings that are not client properties (an on-call channel's
webhook URL or routing key) are sealed the same way, with their secret ``keys`` named.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from workers.engine.env import envsecret
from workers.engine.redact import is_secret_key

KEY_VAR = "DS_SECRETS_KEY"
SEALED = "fernet:"
ENV_REF = "env:"
FILE_REF = "file:"


class SecretError(ValueError):
    """A secret cannot be sealed or opened. The message names the property, never its value."""


def generate_key() -> str:
    """A new Fernet key (URL-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


def keyring() -> MultiFernet | None:
    """The keys of ``DS_SECRETS_KEY`` / ``DS_SECRETS_KEY_FILE``; None when neither is set."""
    raw = envsecret(KEY_VAR, None)
    if raw is None:
        return None
    keys = []
    for number, key in enumerate((k.strip() for k in raw.split(",") if k.strip()), start=1):
        try:
            keys.append(Fernet(key))
        except ValueError:
            raise SecretError(
                f"{KEY_VAR}: key {number} is not a Fernet key (32 url-safe base64-encoded "
                "bytes; make one with `manage.py secrets newkey`)"
            ) from None
    if not keys:
        raise SecretError(f"{KEY_VAR}: no key in it")
    return MultiFernet(keys)


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED)


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith((ENV_REF, FILE_REF))


def is_secret(key: str, keys: Collection[str] | None = None) -> bool:
    """Whether ``key`` names a secret: one of ``keys``, or by the one rule of client properties
    (``is_secret_key``) when ``keys`` is None."""
    return is_secret_key(key) if keys is None else key in keys


def needs_sealing(key: str, value: Any, keys: Collection[str] | None = None) -> bool:
    """Whether ``key=value`` is a secret (``is_secret``) held in clear."""
    return is_secret(key, keys) and not is_sealed(value) and not is_reference(value)


def seal(
    props: Mapping[str, Any] | None,
    ring: MultiFernet | None = None,
    *,
    keys: Collection[str] | None = None,
) -> dict[str, Any]:
    """``props`` with every secret (``is_secret``) in clear encrypted; sealed values and
    references kept.

    Raises SecretError when there is a secret to seal and no key is configured."""
    props = dict(props or {})
    clear = [key for key, value in props.items() if needs_sealing(key, value, keys)]
    if not clear:
        return props
    ring = ring or keyring()
    if ring is None:
        raise SecretError(
            f"{', '.join(clear)}: cannot be stored encrypted: {KEY_VAR} is not set (set "
            f"{KEY_VAR} or {KEY_VAR}_FILE, or give the value as env:NAME or file:/path)"
        )
    for key in clear:
        props[key] = SEALED + ring.encrypt(str(props[key]).encode()).decode()
    return props


def unseal(
    props: Mapping[str, Any] | None,
    ring: MultiFernet | None = None,
    *,
    references: bool = True,
    keys: Collection[str] | None = None,
) -> dict[str, Any]:
    """``props`` with every sealed value decrypted and, unless not ``references``, every
    reference of a secret (``is_secret``) resolved here."""
    props = dict(props or {})
    for key, value in props.items():
        if is_sealed(value):
            ring = ring or keyring()
            props[key] = _decrypt(key, value, ring)
        elif references and is_secret(key, keys) and is_reference(value):
            props[key] = _resolve(key, value)
    return props


def seal_counted(
    props: Mapping[str, Any] | None, keys: Collection[str] | None = None
) -> tuple[dict[str, Any], int]:
    """``seal(props, keys=keys)`` and the number of values it sealed."""
    count = sum(needs_sealing(k, v, keys) for k, v in (props or {}).items())
    return (seal(props, keys=keys) if count else dict(props or {})), count


def unseal_tokens(
    props: Mapping[str, Any] | None, keys: Collection[str] | None = None
) -> tuple[dict[str, Any], int]:
    """``props`` with tokens decrypted, references left as they are; the number decrypted
    (``keys``: unused, every token is opened; the signature of the other transforms)."""
    count = sum(is_sealed(v) for v in (props or {}).values())
    return (unseal(props, references=False) if count else dict(props or {})), count


def rotate(
    props: Mapping[str, Any] | None,
    ring: MultiFernet | None = None,
    keys: Collection[str] | None = None,
) -> tuple[dict[str, Any], int]:
    """``props`` with every token re-encrypted under the first key (and any clear secret
    sealed); the number of values rewritten."""
    ring = ring or keyring()
    if ring is None:
        raise SecretError(f"{KEY_VAR} is not set: nothing to rotate to")
    props = dict(props or {})
    changed = 0
    for key, value in props.items():
        if is_sealed(value):
            try:
                token = ring.rotate(value[len(SEALED) :].encode()).decode()
            except InvalidToken:
                raise _undecryptable(key) from None
            props[key], changed = SEALED + token, changed + 1
        elif needs_sealing(key, value, keys):
            props[key], changed = SEALED + ring.encrypt(str(value).encode()).decode(), changed + 1
    return props, changed


def _decrypt(key: str, value: str, ring: MultiFernet | None) -> str:
    if ring is None:
        raise SecretError(f"{key}: stored encrypted, and {KEY_VAR} is not set in this process")
    try:
        return ring.decrypt(value[len(SEALED) :].encode()).decode()
    except InvalidToken:
        raise _undecryptable(key) from None


def _undecryptable(key: str) -> SecretError:
    return SecretError(
        f"{key}: none of the keys in {KEY_VAR} opens its stored value (was the key "
        "changed without `manage.py secrets rotate`?)"
    )


def _resolve(key: str, value: str) -> str:
    if value.startswith(ENV_REF):
        name = value[len(ENV_REF) :].strip()
        resolved = os.environ.get(name)
        if not name or resolved is None:
            raise SecretError(f"{key}: environment variable {name!r} is not set in this process")
        return resolved
    path = value[len(FILE_REF) :].strip()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"{key}: cannot read {path!r}: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text
