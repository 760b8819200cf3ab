"""Client failures in words, and the ACLs each semantic's sentinel needs (pure)."""

from __future__ import annotations

import pytest

from workers.engine.acls import GROUP, TOPIC, TRANSACTIONAL_ID, role_acls, sentinel_acls
from workers.engine.failures import in_words, redis_in_words

SCRAM_FAILURE = (
    "_AUTHENTICATION: SASL authentication error: Authentication failed during authentication "
    "due to invalid credentials with SASL mechanism SCRAM-SHA-512"
)


def test_it_names_the_user_and_mechanism_of_a_failed_login_and_keeps_librdkafkas_words():
    said = in_words(SCRAM_FAILURE, user="ops", mechanism="SCRAM-SHA-512")
    assert said.startswith("authentication failed for user 'ops' (SCRAM-SHA-512)")
    assert SCRAM_FAILURE in said
    assert in_words(said, user="ops") == said  # already in words: left alone


def test_it_names_the_missing_operation_and_resource_of_a_denial():
    needs = role_acls("copier", "exactly-once", 7, "orders")
    said = in_words("Broker: Transactional Id authorization failed", user="s", needs=needs)
    assert said.startswith(
        "not authorized: User:s needs Write on transactional id 'delivery-sentinel.7.copier'"
    )
    said = in_words("GROUP_AUTHORIZATION_FAILED: Broker: Group authorization failed", needs=needs)
    assert "needs Read on group 'delivery-sentinel.7.copier'" in said


def test_it_explains_tls_failures_and_leaves_other_errors_as_they_are():
    assert in_words("ssl: error:0A000086:SSL routines::certificate verify failed").startswith(
        "TLS: the broker's certificate could not be verified"
    )
    plaintext = "Disconnected: might be caused by incorrect security.protocol configuration"
    assert "does security.protocol match the listener" in in_words(plaintext)
    assert in_words("_TRANSPORT: Connection refused") == "_TRANSPORT: Connection refused"


def test_each_semantic_needs_its_acls_and_exactly_once_its_transactional_ids():
    alo = {(n.resource, n.name, n.operation) for n in sentinel_acls("at-least-once", 3, "t")}
    assert (TOPIC, "t", "Write") in alo and (GROUP, "delivery-sentinel.3", "Read") in alo
    assert not any(r == TRANSACTIONAL_ID for r, _, _ in alo)
    eos = {(n.resource, n.name, n.operation) for n in sentinel_acls("exactly-once", 3, "t")}
    assert {
        (TRANSACTIONAL_ID, "delivery-sentinel.3.producer", "Write"),
        (TRANSACTIONAL_ID, "delivery-sentinel.3.copier", "Write"),
        (TOPIC, "t.out", "Write"),
        (GROUP, "delivery-sentinel.3.verifier", "Read"),
    } <= eos
    wildcard = sentinel_acls("exactly-once", "*", "*")
    assert len(wildcard) == len({(n.resource, n.name, n.operation) for n in wildcard})


# redis-py 8.1's words, captured from a real redis-server 7.0 with --tls-port and --requirepass.
REDIS_SAID = {
    "wrong password": "invalid username-password pair or user is disabled.",
    "no password": "HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and select the "
    "RESP protocol version at the same time",
    "untrusted": "Error 1 connecting to 127.0.0.1:6380. [SSL: CERTIFICATE_VERIFY_FAILED] "
    "certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006).",
    "hostname": "Error 1 connecting to localhost:6380. [SSL: CERTIFICATE_VERIFY_FAILED] "
    "certificate verify failed: Hostname mismatch, certificate is not valid for 'localhost'. "
    "(_ssl.c:1006).",
    "expired": "Error 1 connecting to 127.0.0.1:6380. [SSL: CERTIFICATE_VERIFY_FAILED] "
    "certificate verify failed: certificate has expired (_ssl.c:1006).",
    "plaintext on tls": "Error while reading from 127.0.0.1:6380 : (104, 'Connection reset by "
    "peer')",
}


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("wrong password", "authentication failed: check the password"),
        ("no password", "Redis requires a password and REDIS_URL gives none"),
        ("untrusted", "not signed by a CA this client trusts"),
        ("hostname", "not valid for this host name (hostname mismatch)"),
        ("expired", "TLS: Redis's certificate has expired"),
        ("plaintext on tls", "if it listens with TLS, use a rediss:// URL"),
    ],
)
def test_it_says_what_is_wrong_with_redis_without_its_password(case, words):
    said = redis_in_words(REDIS_SAID[case], "rediss://:hunter2@127.0.0.1:6380/0?ssl_ca_certs=/ca")
    assert said.startswith("Redis at rediss://127.0.0.1:6380: ") and words in said
    assert REDIS_SAID[case] in said and "hunter2" not in said


# librdkafka 2.16's words for an expired certificate, an untrusted CA and a hostname mismatch
# alike (captured from real handshakes); OpenSSL's reasons as Python's ssl gives them.
UNVERIFIED = (
    "_SSL: ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified, verify that "
    "ssl.ca.location is correctly configured or root CA certificates are installed (install "
    "ca-certificates package) (after 3ms in state SSL_HANDSHAKE)"
)


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("certificate has expired", "it has expired (certificate expired, OpenSSL: certificate"),
        (
            "Hostname mismatch, certificate is not valid for 'localhost'.",
            "not valid for the host name connected to (hostname mismatch, OpenSSL: Hostname",
        ),
        (
            "IP address mismatch, certificate is not valid for '10.0.0.1'.",
            "(hostname mismatch, OpenSSL: IP address mismatch",
        ),
        ("self-signed certificate in certificate chain", "not signed by a CA this client trusts"),
        (None, "untrusted certificate, expired certificate or hostname mismatch (librdkafka"),
    ],
)
def test_it_names_why_a_brokers_certificate_failed_when_openssl_said_it(reason, words):
    said = in_words(UNVERIFIED, tls=reason)
    assert said.startswith("TLS: the broker's certificate could not be verified: ")
    assert words in said and said.endswith(f"({UNVERIFIED})")
