"""Sentinels on the local cluster's secured listener (SASL_SSL, SCRAM-SHA-512, TLS from the
cluster's own CA, ACLs enforced): bin/test starts its cluster ``--secure``.

The client properties go through the cluster form (sealed at rest, librdkafka's validation and
a metadata request over TLS), and the sentinel processes open them from their spec file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace

import pytest

from dashboard.forms import ClusterForm, format_properties
from tests.support.sentinels import SentinelProcesses, make_spec, stop_together
from workers.clients.kafka import read_to_end
from workers.clients.lintfacts import FactsError, gather
from workers.clientsecrets import is_sealed, seal
from workers.engine import codec
from workers.engine.acls import TOPIC, sentinel_acls
from workers.engine.profiles import AT_LEAST_ONCE, SEMANTICS
from workers.localkafka.cluster import LocalCluster
from workers.localkafka.security import write_ca

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ZERO_COUNTERS = ("lost", "duplicated", "reordered", "late", "phantom", "aborted_read", "foreign")


@pytest.fixture(scope="module")
def secured() -> LocalCluster:
    cluster = LocalCluster(
        os.environ["LOCAL_KAFKA_NAME"], broker_base_port=int(os.environ["LOCAL_KAFKA_PORT"])
    )
    if not cluster.secure:
        pytest.fail(
            f"cluster {cluster.name!r} has no secured listener: bin/test starts it with "
            "`python -m workers.localkafka start --secure`",
            pytrace=False,
        )
    cluster.wait_ready(timeout=60)
    return cluster


def secured_cluster_row(secured: LocalCluster, name: str, **overrides: str):
    """A Cluster saved through the form, with the secured listener's client properties."""
    conf = {**secured.secure_client_config(), **overrides}
    bootstrap = conf.pop("bootstrap.servers")
    form = ClusterForm(
        {"name": name, "bootstrap_servers": bootstrap, "client_properties": _lines(conf)}
    )
    assert form.is_valid(), form.errors
    return form.save()


def _lines(props: dict[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in props.items())


def truth(bootstrap: str, topic: str) -> Counter:
    seen: Counter = Counter()
    for msg in read_to_end(
        {"bootstrap.servers": bootstrap}, topic, isolation="read_committed", timeout=120
    ):
        record = codec.decode(msg.value())
        if isinstance(record, codec.Record):
            seen[(record.run_id, record.partition, record.seq)] += 1
    return seen


@pytest.mark.django_db
def test_it_holds_every_semantic_with_exact_counts_over_sasl_ssl(secured, tmp_path):
    row = secured_cluster_row(secured, "secured")
    stored = row.client_properties
    assert is_sealed(stored["sasl.password"]) and is_sealed(stored["sasl.username"])
    assert "sasl.password=******" in format_properties(stored)
    sentinels = {
        s: SentinelProcesses(
            # The SLO is not under test: a loaded 2-core machine may take seconds per record.
            make_spec(
                s,
                bootstrap_servers=row.bootstrap_servers,
                client=dict(stored),
                slo_p99_ms=60_000.0,
            ),
            tmp_path,
        )
        for s in SEMANTICS
    }
    password = secured.secure_client_config()["sasl.password"]
    assert all(password not in p.path.read_text() for p in sentinels.values())
    try:
        for procs in sentinels.values():
            procs.start("producer")
            procs.start("copier,verifier" if procs.spec.eos else "consumer")
            procs.start("checker")
        for semantic, procs in sentinels.items():
            procs.wait_status(
                lambda d: d["verdict"] == "HOLDING" and d["totals"]["processed"] > 30,
                90,
                f"{semantic} HOLDING over SASL_SSL",
            )
        for procs in sentinels.values():
            assert procs.stop("producer") == 0
        for semantic, procs in sentinels.items():
            totals = procs.wait_settled(60)["totals"]
            for name in ZERO_COUNTERS:
                assert totals[name] == 0, (semantic, name, totals)
            assert totals["failed"] == 0 and totals["produced"] == totals["acked"], totals
            assert totals["processed"] == totals["acked"], (semantic, totals)
            seen = truth(secured.bootstrap_servers, procs.spec.verified_topic)
            assert sum(seen.values()) == totals["processed"], (semantic, len(seen), totals)
            assert max(seen.values()) == 1, semantic
    finally:
        for procs in sentinels.values():
            procs.stop_all()


def stalled_saying(phrase: str):
    def check(doc: dict) -> bool:
        return doc["verdict"] == "STALLED" and any(phrase in e for e in doc["errors"])

    return check


def healthy(doc: dict) -> bool:
    t = doc["totals"]
    return doc["verdict"] == "HOLDING" and not doc["errors"] and t["processed"] > 0


def test_a_wrong_password_an_untrusted_ca_and_a_missing_acl_stall_in_words_and_recover(
    secured, tmp_path
):
    good = secured.secure_client_config()
    bootstrap = good.pop("bootstrap.servers")
    untrusted = write_ca(tmp_path / "untrusted-ca.pem")
    limited = make_spec(AT_LEAST_ONCE, bootstrap_servers=bootstrap)
    user = f"limited-{limited.id}"
    secured.add_user(user, "limited-password-1")
    needs = sentinel_acls(AT_LEAST_ONCE, limited.id, limited.topic)
    # Read on the topic withheld: the consumer's fetches are denied (the producer's writes are
    # not, so records wait as pending, never lost).
    topic_read = [n for n in needs if n.resource == TOPIC and n.operation == "Read"]
    secured.grant(f"User:{user}", [n for n in needs if n not in topic_read])
    cases = {
        "password": (
            {**good, "sasl.password": "not-the-password"},
            f"authentication failed for user '{good['sasl.username']}' (SCRAM-SHA-512)",
        ),
        "ca": ({**good, "ssl.ca.location": str(untrusted)}, "TLS: the broker's certificate"),
        "acl": (
            {**good, "sasl.username": user, "sasl.password": "limited-password-1"},
            f"not authorized: User:{user} needs Read on topic '{limited.topic}'",
        ),
    }
    running = {}
    try:
        for case, (client, _) in cases.items():
            spec = (
                limited if case == "acl" else make_spec(AT_LEAST_ONCE, bootstrap_servers=bootstrap)
            )
            running[case] = SentinelProcesses(replace(spec, client=seal(client)), tmp_path)
            running[case].start("all")
        for case, (_, phrase) in cases.items():
            running[case].wait_status(stalled_saying(phrase), 30, f"{case}: STALLED, in words")
        # Fixed: a cluster edit restarts the sentinel (its worker does); an ACL needs nothing.
        secured.grant(f"User:{user}", topic_read)
        # Both stopped at once: each stuck producer's last flush waits out its own timeout.
        stop_together(running[case] for case in ("password", "ca"))
        for case in ("password", "ca"):
            spec = replace(running[case].spec, client=seal(good))
            running[case] = SentinelProcesses(spec, tmp_path)
            running[case].start("all")
        # A restarted sentinel (password, CA) starts afresh; the consumer refused Read keeps
        # running, and librdkafka fetches again only 46-57 s after the grant (measured on a
        # quiet machine; its back-off after TOPIC_AUTHORIZATION_FAILED, librdkafka#3072): a
        # minute was its whole wait, so under load it could time out.
        for case, procs in running.items():
            doc = procs.wait_status(healthy, 120 if case == "acl" else 60, f"{case}: recovered")
            assert doc["totals"]["lost"] == 0, (case, doc)
    finally:
        stop_together(running.values())


@pytest.mark.django_db
def test_the_cluster_form_and_the_lint_say_why_a_secured_cluster_refuses_them(secured, tmp_path):
    good = secured.secure_client_config()
    bootstrap = good.pop("bootstrap.servers")
    form = ClusterForm(
        {
            "name": "wrong-password",
            "bootstrap_servers": bootstrap,
            "client_properties": _lines({**good, "sasl.password": "not-the-password"}),
        }
    )
    assert not form.is_valid()
    assert (
        "authentication failed for user 'sentinel' (SCRAM-SHA-512)"
        in (form.errors["bootstrap_servers"][0])
    )
    untrusted = {**good, "ssl.ca.location": str(write_ca(tmp_path / "other-ca.pem"))}
    with pytest.raises(FactsError, match="not signed by a CA this client trusts"):
        gather(bootstrap, untrusted, timeout=3)
    # The brokers' certificate names IP:127.0.0.1 only: "localhost" is a hostname mismatch.
    with pytest.raises(FactsError, match=r"not valid for the host name connected to \(hostname"):
        gather(bootstrap.replace("127.0.0.1", "localhost"), good, timeout=3)
