"""A secured local cluster: a ``SASL_SSL`` listener with SCRAM-SHA-512 users, TLS from a CA of
its own, inter-broker traffic on that listener, and ACLs enforced (``--secure``).

Layout of a secured cluster (``PORT`` is ``--port``; the plaintext and controller listeners are
those of every local cluster):

============================  ====================  =======================================
listener                      ports                 who uses it
============================  ====================  =======================================
``PLAINTEXT``                 PORT .. PORT+2        the default sentinels, the tests, the lab
                                                    (principal ``ANONYMOUS``, a super user)
``SECURE`` (``SASL_SSL``)     PORT+10 .. PORT+12    secured clients; brokers among themselves
``CONTROLLER`` (plaintext)    PORT+100 .. PORT+102  KRaft (SCRAM cannot secure it in KRaft)
============================  ====================  =======================================

Everything lives in ``.local/kafka/<name>/security`` (mode 0700): ``ca.pem`` (the CA clients
trust: ``ssl.ca.location``), ``broker.pem`` (the brokers' key and certificate, signed by the CA,
for ``IP:127.0.0.1`` only, so ``localhost`` is a hostname mismatch), and ``users.json`` (the
SCRAM users created at format time with ``kafka-storage format --add-scram``: ``admin``, the
brokers' own and a super user, and ``sentinel``, an ordinary user with the ACLs of
``workers.engine.acls``). Certificates come from ``cryptography`` (no openssl, no keytool):
Kafka reads PEM key and trust stores itself.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from workers.engine.acls import GROUP, TOPIC, TRANSACTIONAL_ID, AclNeed

MECHANISM = "SCRAM-SHA-512"
LISTENER = "SECURE"
SECURE_PORT_OFFSET = 10
ADMIN_USER = "admin"  # the brokers' inter-broker user, a super user
SENTINEL_USER = "sentinel"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
CERT_DAYS = 3650


@dataclass(frozen=True)
class Security:
    """The secured listener's files and users of one cluster (``<cluster dir>/security``)."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def broker_pem(self) -> Path:
        return self.dir / "broker.pem"

    @property
    def users_file(self) -> Path:
        return self.dir / "users.json"

    @property
    def port_file(self) -> Path:
        return self.dir / "secure-port"

    def saved_port(self) -> int | None:
        """The first secured port chosen at the first start, None before it."""
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def exists(self) -> bool:
        return self.users_file.is_file() and self.broker_pem.is_file() and self.ca.is_file()

    def users(self) -> dict[str, str]:
        """SCRAM user name -> password."""
        return json.loads(self.users_file.read_text())

    def create(self, first_port: int) -> None:
        """Generate the CA, the broker certificate and the users' passwords, and remember the
        first secured port (once: a secured cluster keeps all of them)."""
        if self.exists:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        ca_key, ca_cert = make_ca("Delivery Sentinel local CA")
        key, cert = make_certificate(ca_key, ca_cert, "127.0.0.1")
        _write(self.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
        _write(self.broker_pem, _pkcs8(key) + cert.public_bytes(serialization.Encoding.PEM))
        users = {name: secrets.token_urlsafe(18) for name in (ADMIN_USER, SENTINEL_USER)}
        _write(self.port_file, f"{first_port}\n".encode())
        _write(self.users_file, json.dumps(users, indent=2).encode())

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments creating every user."""
        out = []
        for name, password in self.users().items():
            out += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return out

    def broker_properties(self) -> dict[str, Any]:
        """What a node's ``server.properties`` adds for the secured listener (besides the
        listener itself: ``Node.write_properties``)."""
        admin = self.users()[ADMIN_USER]
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{admin}";'
        )
        return {
            "inter.broker.listener.name": LISTENER,
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.{LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.broker_pem,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.ca,
            "ssl.endpoint.identification.algorithm": "https",
            "authorizer.class.name": AUTHORIZER,
            # The plaintext and controller listeners authenticate nobody: their ANONYMOUS
            # principal stays all-powerful, so the default stack works as without --secure.
            "super.users": f"User:{ADMIN_USER};User:ANONYMOUS",
        }

    def client_config(self, bootstrap: str, user: str = SENTINEL_USER) -> dict[str, str]:
        """librdkafka properties of a client of the secured listener, as ``user``."""
        return {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.users()[user],
            "ssl.ca.location": str(self.ca),
        }


_RESOURCE_TYPES = {
    TOPIC: ResourceType.TOPIC,
    GROUP: ResourceType.GROUP,
    TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
}


def acl_binding(principal: str, need: AclNeed) -> AclBinding:
    """The ALLOW binding (any host, literal name) of ``need`` for ``principal``."""
    return AclBinding(
        _RESOURCE_TYPES[need.resource],
        need.name,
        ResourcePatternType.LITERAL,
        principal,
        "*",
        AclOperation[need.operation.upper()],
        AclPermissionType.ALLOW,
    )


def acl_filter(principal: str, need: AclNeed) -> AclBindingFilter:
    """The filter matching exactly ``acl_binding(principal, need)`` (to delete it)."""
    binding = acl_binding(principal, need)
    return AclBindingFilter(
        binding.restype,
        binding.name,
        binding.resource_pattern_type,
        binding.principal,
        binding.host,
        binding.operation,
        binding.permission_type,
    )


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA key and certificate (also how a test makes a CA nobody trusts)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ip: str,
    *,
    expired: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server key and certificate for ``ip`` (its only subject alternative name);
    ``expired``: one that expired yesterday (how a test makes an expired certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), expired=expired)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server: the CA that signed it, its certificate and its key."""

    ca: Path
    cert: Path
    key: Path


def write_tls_files(directory: Path, ip: str = "127.0.0.1", *, expired: bool = False) -> TlsFiles:
    """A fresh CA, and a server certificate for ``ip`` signed by it, as ``ca.pem``,
    ``cert.pem`` and ``key.pem`` (mode 0600) in ``directory`` (a TLS Redis, say)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca("Delivery Sentinel test CA")
    key, cert = make_certificate(ca_key, ca_cert, ip, expired=expired)
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(files.key, _pkcs8(key))
    return files


def write_ca(path: Path, name: str = "an untrusted CA") -> Path:
    """Write a fresh CA certificate (PEM) to ``path``; returns ``path``."""
    _, cert = make_ca(name)
    _write(path, cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, *, expired: bool = False
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        now -= datetime.timedelta(days=CERT_DAYS + 1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
    )


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8: Kafka's PEM key store reads it without ssl.key.password; the file
    # is mode 0600 in a 0700 directory.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)
