"""A broker certificate that expired, that does not name the host connected to, or that a CA
the client does not trust signed: each in its own words, and a sentinel STALLED, never a loss.

librdkafka says "certificate verify failed" for all three (``workers.clients.tlsprobe``). A TLS
client verifies the certificate before it speaks any protocol, so the "broker" here is a real
TLS server with such a certificate (``tests.integration.tlsserver``), not a second secured Kafka cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka import KafkaException

from tests.integration.tlsserver import TlsServer, tls_server
from tests.support.sentinels import SentinelProcesses, make_spec
from workers.clients.kafka import list_topics_in_words
from workers.engine.profiles import AT_LEAST_ONCE
from workers.localkafka.security import write_ca

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def expired(tmp_path_factory) -> Iterator[TlsServer]:
    with tls_server(tmp_path_factory.mktemp("expired"), "unused", expired=True) as server:
        yield server


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Iterator[TlsServer]:
    with tls_server(tmp_path_factory.mktemp("valid"), "unused") as server:
        yield server


def tls_client(server: TlsServer, host: str = "127.0.0.1", **extra: str) -> dict[str, str]:
    return {
        "bootstrap.servers": f"{host}:{server.port}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(server.files.ca),
        **extra,
    }


def test_it_stalls_a_sentinel_saying_the_brokers_certificate_expired(expired, tmp_path):
    conf = tls_client(expired)
    spec = make_spec(AT_LEAST_ONCE, bootstrap_servers=conf.pop("bootstrap.servers"))
    procs = SentinelProcesses(replace(spec, client=conf), tmp_path)
    try:
        procs.start("all")

        def stalled_saying_expired(doc: dict) -> bool:
            return doc["verdict"] == "STALLED" and any(
                "could not be verified: it has expired (certificate expired" in e
                for e in doc["errors"]
            )

        doc = procs.wait_status(stalled_saying_expired, 30, "STALLED: certificate expired")
        assert doc["totals"]["lost"] == 0, doc["totals"]
    finally:
        procs.stop_all()


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("expired", "it has expired (certificate expired, OpenSSL: certificate has expired)"),
        ("hostname", "(hostname mismatch, OpenSSL: Hostname mismatch"),
        ("untrusted", "it is not signed by a CA this client trusts (untrusted certificate"),
    ],
)
def test_it_tells_the_certificate_failures_apart_when_a_cluster_is_checked(
    case, words, expired, valid, tmp_path
):
    conf = {
        "expired": tls_client(expired),
        # The certificate names IP:127.0.0.1 only; librdkafka checks the host by default.
        "hostname": tls_client(valid, host="localhost"),
        "untrusted": tls_client(valid, **{"ssl.ca.location": str(write_ca(tmp_path / "ca.pem"))}),
    }[case]
    with pytest.raises(KafkaException) as raised:
        list_topics_in_words(conf, timeout=2)
    said = str(raised.value)
    assert "TLS: the broker's certificate could not be verified: " in said and words in said
