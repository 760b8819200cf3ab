"""Client configuration lint: every client rule fires on a config that breaks it and stays quiet
on one that does not; the default profiles and the seed's settings are clean for their semantic."""

from __future__ import annotations

import pytest

from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SEMANTICS
from workers.engine.lint.client import (
    CLIENT_DEFAULT,
    CLIENT_SET,
    JAVA,
    LIBRDKAFKA,
    ClientConfig,
    ConfigSyntaxError,
    check_text,
    lint_client,
    lint_profile,
    parse_properties,
)
from workers.engine.lint.rules import CLIENT_RULES, RULES
from workers.engine.lint.topics import (
    CAN_HOLD,
    CANNOT_HOLD,
    ONE_FAILURE_AWAY,
    ClusterFacts,
    Setting,
)
from workers.engine.profiles import DEFAULT_PROFILES

CLUSTER = ClusterFacts(
    "c",
    (1, 2, 3),
    {
        "transaction.max.timeout.ms": Setting("60000", "dynamic broker"),
        "broker.session.timeout.ms": Setting("9000", "default"),
    },
)

# rule id -> (role, semantic, dialect, triggering properties, clean properties)
CASES = {
    "producer.acks-weak": ("producer", AT_LEAST_ONCE, LIBRDKAFKA, "acks=1", "acks=all"),
    "producer.idempotence-off": (
        "producer",
        EXACTLY_ONCE,
        LIBRDKAFKA,
        "enable.idempotence=false\nmax.in.flight.requests.per.connection=5",
        "enable.idempotence=false\nmax.in.flight.requests.per.connection=1",
    ),
    "producer.retries-at-most-once": (
        "producer",
        AT_MOST_ONCE,
        LIBRDKAFKA,
        "acks=0\nenable.idempotence=false",
        "acks=0\nretries=0\nenable.idempotence=false",
    ),
    "producer.max-in-flight-above-5": (
        "producer",
        AT_LEAST_ONCE,
        LIBRDKAFKA,
        "enable.idempotence=true\nmax.in.flight.requests.per.connection=10",
        "enable.idempotence=true\nmax.in.flight.requests.per.connection=5",
    ),
    "producer.no-retries": ("producer", AT_LEAST_ONCE, LIBRDKAFKA, "retries=0", "retries=10"),
    "producer.delivery-timeout-short": (
        "producer",
        AT_LEAST_ONCE,
        LIBRDKAFKA,
        "delivery.timeout.ms=5000",
        "delivery.timeout.ms=30000",
    ),
    "producer.txn-without-idempotence": (
        "producer",
        EXACTLY_ONCE,
        LIBRDKAFKA,
        "transactional.id=t\nenable.idempotence=false",
        "transactional.id=t",
    ),
    "producer.txn-timeout-above-broker-max": (
        "producer",
        EXACTLY_ONCE,
        LIBRDKAFKA,
        "transaction.timeout.ms=120000",
        "transaction.timeout.ms=30000",
    ),
    "consumer.auto-commit": (
        "consumer",
        AT_LEAST_ONCE,
        LIBRDKAFKA,
        "auto.offset.reset=earliest",
        "enable.auto.commit=false",
    ),
    "consumer.read-uncommitted": (
        "consumer",
        EXACTLY_ONCE,
        JAVA,
        "enable.auto.commit=false",
        "enable.auto.commit=false\nisolation.level=read_committed",
    ),
    "consumer.offset-reset-latest": (
        "consumer",
        AT_LEAST_ONCE,
        LIBRDKAFKA,
        "enable.auto.commit=false\nauto.offset.reset=latest",
        "enable.auto.commit=false\nauto.offset.reset=earliest",
    ),
    "client.java-only-key": (
        "consumer",
        AT_MOST_ONCE,
        LIBRDKAFKA,
        "enable.auto.commit=false\nmax.poll.records=10",
        "enable.auto.commit=false",
    ),
    "client.librdkafka-only-key": (
        "producer",
        AT_LEAST_ONCE,
        JAVA,
        "message.timeout.ms=60000",
        "delivery.timeout.ms=60000",
    ),
}


def rules_of(role: str, semantic: str, dialect: str, text: str) -> list[str]:
    answer = check_text(text, role, semantic, dialect, cluster=CLUSTER)
    return [f["rule"] for f in answer["findings"]]


def test_it_has_a_case_for_every_client_rule() -> None:
    """What ``check_text`` reports for the cases' breaking configs is the catalogue's client
    rules, every one and no other, each finding carrying its rule's catalogued words."""
    reported: set[str] = set()
    for role, semantic, dialect, bad, _good in CASES.values():
        answer = check_text(bad, role, semantic, dialect, cluster=CLUSTER)
        for finding in answer["findings"]:
            rule = RULES[finding["rule"]]
            assert finding["severity"] == rule.severity[semantic], finding
            assert (finding["why"], finding["fix"]) == (rule.why, rule.fix), finding
            reported.add(finding["rule"])
    catalogued = {r.id for r in CLIENT_RULES}
    assert reported == catalogued, (
        f"catalogued but never reported: {sorted(catalogued - reported)}; "
        f"reported but not client rules: {sorted(reported - catalogued)}"
    )


@pytest.mark.parametrize("rule", sorted(CASES))
def test_it_flags_a_config_that_breaks_the_rule_and_not_one_that_keeps_it(rule: str) -> None:
    role, semantic, dialect, bad, good = CASES[rule]
    assert rule in rules_of(role, semantic, dialect, bad)
    assert rule not in rules_of(role, semantic, dialect, good)


@pytest.mark.parametrize("semantic", SEMANTICS)
def test_it_finds_the_default_profiles_clean_for_their_own_semantic(semantic: str) -> None:
    result = lint_profile(DEFAULT_PROFILES[semantic], CLUSTER)
    assert result["verdict"] == CAN_HOLD, result["findings"]


# The settings /work/shared/seed/delivery-semantics.txt gives for each semantic it covers (it
# stops before exactly-once's settings). delivery.timeout.ms: "an upper bound", here 2 minutes.
SEED = {
    AT_MOST_ONCE: {
        "producer": "retries=0\nacks=0\nenable.idempotence=false",
        "consumer": "enable.auto.commit=false",
    },
    AT_LEAST_ONCE: {
        "producer": "delivery.timeout.ms=120000\nacks=all\nenable.idempotence=true",
        "consumer": "enable.auto.commit=false",
    },
}


@pytest.mark.parametrize("semantic", sorted(SEED))
@pytest.mark.parametrize("dialect", [LIBRDKAFKA, JAVA])
def test_it_finds_the_seeds_settings_clean_for_their_semantic(semantic: str, dialect: str) -> None:
    for role, text in SEED[semantic].items():
        answer = check_text(text, role, semantic, dialect, cluster=CLUSTER)
        assert answer["verdict"] == CAN_HOLD, (role, answer["findings"])


def test_it_grades_auto_commit_by_semantic_as_the_seed_does() -> None:
    findings = lint_client(ClientConfig("consumer", {"enable.auto.commit": "true"}))
    from workers.engine.lint.topics import verdict

    assert verdict(findings, AT_MOST_ONCE)["verdict"] == ONE_FAILURE_AWAY
    assert verdict(findings, AT_LEAST_ONCE)["verdict"] == CANNOT_HOLD


def test_it_says_whether_a_setting_was_set_or_defaulted() -> None:
    answer = check_text("acks=1", "producer", AT_LEAST_ONCE)
    assert answer["first"]["source"] == CLIENT_SET
    answer = check_text("enable.auto.commit=false", "consumer", EXACTLY_ONCE, JAVA)
    first = answer["first"]
    assert (first["rule"], first["source"], first["value"]) == (
        "consumer.read-uncommitted",
        CLIENT_DEFAULT,
        "read_uncommitted",
    )


def test_it_names_the_counterpart_of_a_foreign_key() -> None:
    answer = check_text("sasl.jaas.config=secret-stuff", "producer", AT_LEAST_ONCE)
    first = answer["first"]
    assert first["rule"] == "client.java-only-key"
    assert "sasl.username" in first["message"]
    assert "secret-stuff" not in str(answer)


def test_it_reads_librdkafka_aliases_and_acks_minus_one() -> None:
    assert "producer.acks-weak" not in rules_of("producer", AT_LEAST_ONCE, LIBRDKAFKA, "acks=-1")
    assert "producer.acks-weak" in rules_of(
        "producer", AT_LEAST_ONCE, LIBRDKAFKA, "request.required.acks=0"
    )


def test_it_parses_properties_ignoring_comments_and_blanks() -> None:
    text = "# producer\n\n! java comment\nacks = all\nclient.id: app-1\nsasl.password=a=b\n"
    assert parse_properties(text) == {"acks": "all", "client.id": "app-1", "sasl.password": "a=b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acks all", "line 1: expected key=value"),
        ("acks=all\n=1", "line 2: '' is not a property name"),
        ("acks=all\nacks=1", "line 2: acks is already set on line 1"),
    ],
)
def test_it_names_the_malformed_line(text: str, message: str) -> None:
    with pytest.raises(ConfigSyntaxError, match=message):
        parse_properties(text)


def test_it_refuses_an_unknown_semantic_role_or_dialect() -> None:
    for args in (("producer", "twice"), ("writer", AT_LEAST_ONCE)):
        with pytest.raises(ValueError, match="unknown"):
            check_text("acks=all", *args)
    with pytest.raises(ValueError, match="unknown dialect"):
        check_text("acks=all", "producer", AT_LEAST_ONCE, "go")


def test_it_knows_every_rule_it_reports() -> None:
    for rule in CASES:
        assert rule in RULES
