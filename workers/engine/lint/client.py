"""Guarantee lint of client configurations: a producer or consumer property set, in librdkafka
or Java property syntax, against the semantic it is meant to give. Pure.

``parse_properties`` reads ``key=value`` lines; ``lint_client`` returns the findings (the
catalogue entries are ``workers.engine.lint.topics.CLIENT_RULES``); ``workers.engine.lint.topics.verdict``
turns them into a verdict for a semantic. A setting left unset takes the client's own default,
which differs between librdkafka and Java (``DEFAULTS``), and a finding says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.engine.documents import SEMANTICS
from workers.engine.lint.topics import (
    CLIENT_DEFAULT,
    CLIENT_SET,
    ClusterFacts,
    Finding,
    Setting,
    verdict,
)
from workers.engine.profiles import JAVA_ONLY_KEYS, LIBRDKAFKA_ONLY_KEYS, Profile
from workers.engine.redact import MASK, is_secret_key

LIBRDKAFKA = "librdkafka"
JAVA = "java"
DIALECTS = (LIBRDKAFKA, JAVA)
PRODUCER = "producer"
CONSUMER = "consumer"
ROLES = (PRODUCER, CONSUMER)

# The clients' defaults for the settings the rules read (librdkafka 2.x, Java client 3.x+).
DEFAULTS = {
    LIBRDKAFKA: {
        "acks": "all",
        "enable.idempotence": "false",
        "retries": "2147483647",
        "max.in.flight.requests.per.connection": "1000000",
        "delivery.timeout.ms": "300000",
        "transaction.timeout.ms": "60000",
        "enable.auto.commit": "true",
        "auto.offset.reset": "latest",
        "isolation.level": "read_committed",
    },
    JAVA: {
        "acks": "all",
        "enable.idempotence": "true",
        "retries": "2147483647",
        "max.in.flight.requests.per.connection": "5",
        "delivery.timeout.ms": "120000",
        "transaction.timeout.ms": "60000",
        "enable.auto.commit": "true",
        "auto.offset.reset": "latest",
        "isolation.level": "read_uncommitted",
    },
}
# librdkafka's alternative names for the same settings.
ALIASES = {
    "request.required.acks": "acks",
    "message.send.max.retries": "retries",
    "message.timeout.ms": "delivery.timeout.ms",
    "max.in.flight": "max.in.flight.requests.per.connection",
}
DEFAULT_SESSION_TIMEOUT_MS = 9000  # broker.session.timeout.ms: how long a dead broker goes unseen
DEFAULT_TXN_MAX_TIMEOUT_MS = 900000


class ConfigSyntaxError(ValueError):
    """A malformed properties text; the message names the line."""


def parse_properties(text: str) -> dict[str, str]:
    """``key=value`` lines (Java ``key: value`` too); blank lines and ``#``/``!`` comments are
    ignored. Raises ``ConfigSyntaxError`` naming the first malformed line or repeated key."""
    props: dict[str, str] = {}
    seen: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        seps = [i for i in (line.find("="), line.find(":")) if i >= 0]
        if not seps:
            raise ConfigSyntaxError(f"line {n}: expected key=value, got {line[:60]!r}")
        key, value = line[: min(seps)].strip(), line[min(seps) + 1 :].strip()
        if not key or any(c.isspace() for c in key):
            raise ConfigSyntaxError(f"line {n}: {key!r} is not a property name")
        if key in seen:
            raise ConfigSyntaxError(f"line {n}: {key} is already set on line {seen[key]}")
        seen[key] = n
        props[key] = value
    return props


@dataclass(frozen=True)
class ClientConfig:
    role: str
    props: dict[str, str]
    dialect: str = LIBRDKAFKA

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {ROLES}")
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}; expected one of {DIALECTS}")

    def get(self, key: str) -> Setting:
        """The effective value of ``key`` (aliases resolved, ``acks=-1`` read as ``all``)."""
        for name, value in self.props.items():
            if name == key or ALIASES.get(name) == key:
                return Setting(_norm(key, str(value)), CLIENT_SET)
        default = DEFAULTS[self.dialect].get(key)
        if key == "enable.idempotence" and self.dialect == JAVA and default == "true":
            default = self._java_idempotence_default()
        if key == "enable.idempotence" and "transactional.id" in self.props:
            default = "true"  # transactions imply idempotence in both clients
        return Setting(default, CLIENT_DEFAULT)

    def _java_idempotence_default(self) -> str:
        # Java turns idempotence on by default only when nothing set contradicts it.
        acks = self.get("acks").value
        retries = _num(self.get("retries").value)
        in_flight = _num(self.get("max.in.flight.requests.per.connection").value)
        return "true" if acks == "all" and retries > 0 and in_flight <= 5 else "false"

    def is_set(self, key: str) -> bool:
        return self.get(key).source == CLIENT_SET


def _norm(key: str, value: str) -> str:
    value = value.strip()
    if key == "acks" and value == "-1":
        return "all"
    if key in ("enable.idempotence", "enable.auto.commit"):
        return value.lower()
    return value


def _num(value: str | None) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _finding(rule: str, cfg: ClientConfig, key: str, message: str) -> Finding:
    s = cfg.get(key) if key else Setting(None, "")
    value = MASK if is_secret_key(key) and s.value is not None else s.value
    return Finding(rule, cfg.role, message, key, value, s.source)


def _producer(cfg: ClientConfig, cluster: ClusterFacts | None) -> list[Finding]:
    out = []
    acks = cfg.get("acks").value
    retries = _num(cfg.get("retries").value)
    in_flight = _num(cfg.get("max.in.flight.requests.per.connection").value)
    idempotent = cfg.get("enable.idempotence").value == "true"
    if acks in ("0", "1"):
        out.append(_finding("producer.acks-weak", cfg, "acks", f"acks={acks}"))
    if cfg.is_set("enable.idempotence") and not idempotent and retries > 0 and in_flight > 1:
        out.append(
            _finding(
                "producer.idempotence-off",
                cfg,
                "enable.idempotence",
                f"enable.idempotence=false with retries={retries} and "
                f"{in_flight} requests in flight",
            )
        )
    if retries > 0:
        out.append(_finding("producer.retries-at-most-once", cfg, "retries", f"retries={retries}"))
    # librdkafka lowers its default (1000000) to 5 under idempotence; only a set value counts.
    if idempotent and in_flight > 5 and cfg.is_set("max.in.flight.requests.per.connection"):
        out.append(
            _finding(
                "producer.max-in-flight-above-5",
                cfg,
                "max.in.flight.requests.per.connection",
                f"max.in.flight.requests.per.connection={in_flight} with idempotence",
            )
        )
    if retries == 0:
        out.append(_finding("producer.no-retries", cfg, "retries", "retries=0"))
    timeout = _num(cfg.get("delivery.timeout.ms").value)
    floor, floor_name = _election_ms(cluster)
    if timeout < floor:
        out.append(
            _finding(
                "producer.delivery-timeout-short",
                cfg,
                "delivery.timeout.ms",
                f"delivery.timeout.ms={timeout} < {floor_name} {floor} ms",
            )
        )
    if "transactional.id" in cfg.props and cfg.is_set("enable.idempotence") and not idempotent:
        out.append(
            _finding(
                "producer.txn-without-idempotence",
                cfg,
                "enable.idempotence",
                "transactional.id with enable.idempotence=false",
            )
        )
    txn_timeout = _num(cfg.get("transaction.timeout.ms").value)
    txn_max = (
        cluster.broker_int("transaction.max.timeout.ms", DEFAULT_TXN_MAX_TIMEOUT_MS)
        if (cluster)
        else DEFAULT_TXN_MAX_TIMEOUT_MS
    )
    if txn_timeout > txn_max:
        out.append(
            _finding(
                "producer.txn-timeout-above-broker-max",
                cfg,
                "transaction.timeout.ms",
                f"transaction.timeout.ms={txn_timeout} > the brokers' "
                f"transaction.max.timeout.ms={txn_max}",
            )
        )
    return out


def _election_ms(cluster: ClusterFacts | None) -> tuple[int, str]:
    """How long a leader election can take: as observed when known, else the brokers' session
    timeout (a killed leader is noticed only after it)."""
    if cluster is not None and cluster.observed_election_ms:
        return cluster.observed_election_ms, "the observed leader election time"
    if cluster is not None:
        return (
            cluster.broker_int("broker.session.timeout.ms", DEFAULT_SESSION_TIMEOUT_MS),
            "the brokers' broker.session.timeout.ms",
        )
    return DEFAULT_SESSION_TIMEOUT_MS, "the default broker.session.timeout.ms"


def _consumer(cfg: ClientConfig) -> list[Finding]:
    out = []
    if cfg.get("enable.auto.commit").value == "true":
        out.append(
            _finding("consumer.auto-commit", cfg, "enable.auto.commit", "enable.auto.commit=true")
        )
    isolation = cfg.get("isolation.level").value
    if isolation != "read_committed":
        out.append(
            _finding(
                "consumer.read-uncommitted", cfg, "isolation.level", f"isolation.level={isolation}"
            )
        )
    reset = cfg.get("auto.offset.reset")
    # Only when set: both clients default to latest, and the user's own document leaves it
    # unset for at-least-once (its settings must lint clean).
    if reset.source == CLIENT_SET and reset.value in ("latest", "largest", "end"):
        out.append(
            _finding(
                "consumer.offset-reset-latest",
                cfg,
                "auto.offset.reset",
                f"auto.offset.reset={reset.value}",
            )
        )
    return out


def _foreign_keys(cfg: ClientConfig) -> list[Finding]:
    rule, table = (
        ("client.java-only-key", JAVA_ONLY_KEYS)
        if cfg.dialect == LIBRDKAFKA
        else ("client.librdkafka-only-key", LIBRDKAFKA_ONLY_KEYS)
    )
    return [_finding(rule, cfg, key, table[key]) for key in cfg.props if key in table]


def lint_client(cfg: ClientConfig, cluster: ClusterFacts | None = None) -> list[Finding]:
    """Every client rule that fires on ``cfg`` (``cluster`` supplies the brokers' limits when
    known), whatever the semantic: ``verdict(findings, semantic)`` picks those that apply."""
    role_rules = _producer(cfg, cluster) if cfg.role == PRODUCER else _consumer(cfg)
    return _foreign_keys(cfg) + role_rules


def lint_profile(profile: Profile, cluster: ClusterFacts | None = None) -> dict[str, Any]:
    """A semantic profile's verdict for its own semantic (librdkafka: the sentinels' client)."""
    findings = lint_client(ClientConfig(PRODUCER, _strs(profile.producer)), cluster)
    findings += lint_client(ClientConfig(CONSUMER, _strs(profile.consumer)), cluster)
    return {
        "profile": profile.name,
        "semantic": profile.semantic,
        **verdict(findings, profile.semantic),
    }


def check_text(
    text: str,
    role: str,
    semantic: str,
    dialect: str = LIBRDKAFKA,
    cluster: ClusterFacts | None = None,
) -> dict[str, Any]:
    """The "check a client config" answer for pasted properties. Raises ``ConfigSyntaxError``
    or ``ValueError`` (unknown role, dialect or semantic) with a message for the user."""
    if semantic not in SEMANTICS:
        raise ValueError(f"unknown semantic {semantic!r}; expected one of {SEMANTICS}")
    cfg = ClientConfig(role, parse_properties(text), dialect)
    return {
        "role": role,
        "semantic": semantic,
        "dialect": dialect,
        **verdict(lint_client(cfg, cluster), semantic),
    }


def _strs(props: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in props.items()}
