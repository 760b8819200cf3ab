"""Secret redaction for logs and config displays (framework-free, stdlib only).

Passwords, tokens and keys must never reach logs or the browser. Two entry points:

- :func:`redact_config` masks the values of secret-looking keys in a (nested) mapping, e.g. a
  librdkafka config before it is shown or logged.
- :func:`redact_text` masks secrets inside free text: ``key=value`` / ``"key": "value"`` pairs
  with a secret-looking key, passwords in URLs and ``Bearer``/``Basic`` credentials.

:class:`RedactingFilter` applies :func:`redact_text` to every log record (message, arguments,
traceback). Attach it to *handlers*, not loggers: a logger's filters do not see records that
propagate up from child loggers, a handler's filters see everything it emits.

Redaction errs on the side of masking too much (``token_count=5`` is masked too).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "******"

_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "apikey",
    "api_key",
    "api-key",
    "private_key",
    "private-key",
    "ssl.key.pem",
    "authorization",
    "cookie",
    "sessionid",
)
# SASL mechanism names are needed to debug authentication and are not secret.
_SASL_PUBLIC = frozenset({"sasl.mechanism", "sasl.mechanisms"})

_KEY = r"[\w.\-]*(?:" + "|".join(re.escape(w) for w in _SECRET_WORDS) + r")[\w.\-]*|sasl\.[\w.\-]+"
_PAIR = re.compile(
    r"(?P<key>" + _KEY + r")(?P<sep>['\"]?\s*[:=]\s*)"
    r"(?:(?P<q>['\"])(?P<qval>.*?)(?P=q)|(?P<val>[^\s,;&)}\]'\"]+))",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.\-]*://[^:/@\s]*:)[^@/\s]+@")
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """True if a config/field name looks like it holds a secret (``sasl.*``, ``*password*``...)."""
    lowered = key.lower()
    if lowered.startswith("sasl."):
        return lowered not in _SASL_PUBLIC
    return any(word in lowered for word in _SECRET_WORDS)


def redact_config(value: Any) -> Any:
    """Return a copy of ``value`` with secret-keyed entries masked, recursing into containers."""
    if isinstance(value, Mapping):
        return {
            key: MASK if isinstance(key, str) and is_secret_key(key) else redact_config(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_config(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def _mask_pair(match: re.Match[str]) -> str:
    key = match["key"]
    if not is_secret_key(key):
        return match[0]
    if match["q"] is not None:
        return f"{key}{match['sep']}{match['q']}{MASK}{match['q']}"
    return f"{key}{match['sep']}{MASK}"


def redact_text(text: str) -> str:
    """Return ``text`` with URL passwords, auth credentials and secret key/value pairs masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)
    return _PAIR.sub(_mask_pair, text)


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the rendered message, traceback and stack of each record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        # A formatter that renders exc_info itself (the JSON one) would print it unredacted:
        # every formatter prints exc_text when exc_info is gone.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True
