"""Why a broker's certificate fails verification, in OpenSSL's words.

librdkafka (2.x with OpenSSL 3) says only ``error:0A000086:SSL routines::certificate verify
failed`` whether the broker's certificate expired, is signed by a CA the client does not
trust, or does not name the host connected to (``ssl.endpoint.identification.algorithm=https``,
librdkafka's default). :func:`verify_reason` asks the broker once more, with Python's ``ssl``
and the client's own trust settings, and returns OpenSSL's verify message
(``SSLCertVerificationError.verify_message``): ``certificate has expired``, ``Hostname
mismatch, certificate is not valid for 'localhost'.``, ``IP address mismatch, ...``,
``self-signed certificate in certificate chain``... which ``workers.engine.failures.in_words``
turns into a sentence.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any

# A failing client repeats its error every few seconds: one handshake per broker per this.
CACHE_S = 30.0
# librdkafka names the broker first: "sasl_ssl://127.0.0.1:29102/1: SSL handshake failed: ..."
_ADDRESS = re.compile(r"\b(?:sasl_)?ssl://(?P<host>\[[^\]/]+\]|[^:/\s\[]+):(?P<port>\d+)/", re.I)
_cache: dict[tuple[Any, ...], tuple[float, str | None]] = {}
_lock = threading.Lock()


def verify_reason(error: str, conf: Mapping[str, Any], timeout: float = 3.0) -> str | None:
    """OpenSSL's reason why the broker named in librdkafka's ``error`` fails verification
    under ``conf``'s trust settings (``ssl.ca.location``, ``ssl.ca.pem``,
    ``ssl.endpoint.identification.algorithm``).

    None when ``error`` is no verification failure or names no broker, and when the broker
    verifies or does not answer now. Cached for ``CACHE_S`` per broker and settings."""
    if "certificate verify failed" not in error.lower():
        return None
    match = _ADDRESS.search(error)
    if match is None:
        return None
    host, port = match["host"].strip("[]"), int(match["port"])
    algorithm = str(conf.get("ssl.endpoint.identification.algorithm", "https")).lower()
    key = (host, port, conf.get("ssl.ca.location"), conf.get("ssl.ca.pem"), algorithm)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
    reason = _handshake(host, port, conf, algorithm == "https", timeout)
    with _lock:
        _cache[key] = (now, reason)
    return reason


def _context(conf: Mapping[str, Any], check_hostname: bool) -> ssl.SSLContext:
    """The trust librdkafka has: ``ssl.ca.pem``, else ``ssl.ca.location`` (a file or a
    directory), else the system's store (also for ``probe``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = check_hostname
    pem, location = conf.get("ssl.ca.pem"), conf.get("ssl.ca.location")
    if pem:
        context.load_verify_locations(cadata=str(pem))
    elif location and location != "probe":
        if os.path.isdir(location):
            context.load_verify_locations(capath=location)
        else:
            context.load_verify_locations(cafile=location)
    else:
        context.load_default_certs()
    return context


def _handshake(
    host: str, port: int, conf: Mapping[str, Any], check_hostname: bool, timeout: float
) -> str | None:
    try:
        context = _context(conf, check_hostname)
        with (
            socket.create_connection((host, port), timeout) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message or None
    except (OSError, ValueError):  # unreachable now, or a CA file librdkafka read differently
        return None
