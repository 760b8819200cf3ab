"""A real TLS server for tests: redis-server on a TLS port only (Debian's is built with TLS),
with a certificate from the project's generator (``workers.localkafka.security``).

It serves the Redis tests (``rediss://``) and, since a client verifies the certificate before
it speaks any protocol, the Kafka clients' certificate failures too (expired, hostname
mismatch, untrusted CA) without a second secured Kafka cluster.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.waiting import wait_until
from workers.localkafka.security import TlsFiles, write_tls_files
from workers.system import terminate


@dataclass(frozen=True)
class TlsServer:
    port: int
    files: TlsFiles
    password: str

    def url(self, password: str | None = None, ca: Path | None = None) -> str:
        """Its ``rediss://`` URL (its own password and CA unless others are given)."""
        secret = self.password if password is None else password
        return f"rediss://:{secret}@127.0.0.1:{self.port}/0?ssl_ca_certs={ca or self.files.ca}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def tls_server(work: Path, password: str, *, expired: bool = False) -> Iterator[TlsServer]:
    """A redis-server listening with TLS only on a free port, requiring ``password``; its
    certificate (for ``IP:127.0.0.1`` only) expired yesterday when ``expired``."""
    server = TlsServer(free_port(), write_tls_files(work, expired=expired), password)
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(server.port)]
    argv += ["--tls-cert-file", str(server.files.cert), "--tls-key-file", str(server.files.key)]
    argv += ["--tls-ca-cert-file", str(server.files.ca), "--tls-auth-clients", "no"]
    argv += ["--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(work)]
    with (work / "redis.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _listening(server.port), 20, f"TLS redis-server on {server.port}")
        if not expired:  # a client can verify it: wait until it answers as Redis too
            client = redis.Redis.from_url(server.url(), socket_timeout=2)
            wait_until(lambda: _pings(client), 20, "TLS redis-server answering")
        yield server
    finally:
        terminate(proc, 10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
