"""Semantic profiles: the seed document's settings, and validation with librdkafka's words."""

from __future__ import annotations

import pytest

from workers.clients.validation import validate_profile, validate_properties
from workers.engine.profiles import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    COMMIT_BEFORE_PROCESS,
    DEFAULT_PROFILES,
    EXACTLY_ONCE,
    PROCESS_BEFORE_COMMIT,
    TRANSACTIONAL,
    Profile,
    mask_secrets,
)


def test_it_configures_at_most_once_as_the_seed_document_says():
    p = DEFAULT_PROFILES[AT_MOST_ONCE]
    assert p.producer == {"acks": "0", "retries": "0", "enable.idempotence": "false"}
    assert p.consumer["enable.auto.commit"] == "false"
    assert p.commit_strategy == COMMIT_BEFORE_PROCESS


def test_it_configures_at_least_once_with_acks_all_and_bounded_delivery():
    p = DEFAULT_PROFILES[AT_LEAST_ONCE]
    assert p.producer["acks"] == "all"
    assert "retries" not in p.producer  # left at librdkafka's default
    assert int(p.producer["delivery.timeout.ms"]) > 0
    assert p.consumer["enable.auto.commit"] == "false"
    assert p.commit_strategy == PROCESS_BEFORE_COMMIT


def test_it_configures_exactly_once_transactional_and_read_committed():
    p = DEFAULT_PROFILES[EXACTLY_ONCE]
    assert p.producer["enable.idempotence"] == "true"
    assert p.consumer["isolation.level"] == "read_committed"
    assert p.commit_strategy == TRANSACTIONAL


@pytest.mark.parametrize("profile", list(DEFAULT_PROFILES.values()), ids=list(DEFAULT_PROFILES))
def test_it_validates_every_default_profile(profile):
    assert validate_profile(profile) == {}


def test_it_reports_librdkafkas_message_for_an_unknown_property():
    errors = validate_properties("producer", {"acks": "all", "no.such.thing": "1"})
    assert errors == {"no.such.thing": 'No such configuration property: "no.such.thing"'}


def test_it_reports_an_impossible_combination_on_the_offending_property():
    errors = validate_properties("producer", {"acks": "0", "enable.idempotence": "true"})
    assert list(errors) == ["acks"]
    assert "`acks` must be set to `all` when `enable.idempotence` is true" in errors["acks"]


def test_it_reports_an_invalid_consumer_value():
    errors = validate_properties("consumer", {"isolation.level": "sometimes"})
    assert "isolation.level" in errors and "Invalid value" in errors["isolation.level"]


@pytest.mark.parametrize(
    ("key", "hint"),
    [("sasl.jaas.config", "sasl.username"), ("ssl.truststore.location", "ssl.ca.location")],
)
def test_it_says_what_to_use_instead_of_java_only_keys(key, hint):
    errors = validate_properties("consumer", {key: "x"})
    assert hint in errors[key]


def test_it_refuses_properties_the_sentinel_sets_itself():
    assert "transactional.id" in validate_properties("producer", {"transactional.id": "x"})


def test_it_builds_variants_without_touching_the_original():
    base = DEFAULT_PROFILES[AT_LEAST_ONCE]
    variant = base.variant("alo-acks1", producer={"acks": "1", "enable.idempotence": "false"})
    assert variant.producer["acks"] == "1" and base.producer["acks"] == "all"
    assert Profile.from_dict(variant.to_dict()) == variant


def test_it_masks_secret_values():
    props = {"sasl.password": "hunter2", "sasl.username": "bob", "ssl.key.password": "k"}
    assert mask_secrets(props) == {
        "sasl.password": "******",
        "sasl.username": "******",  # Confluent Cloud's API key: masked like every sasl.* value
        "ssl.key.password": "******",
    }


def test_it_refuses_an_unknown_semantic():
    with pytest.raises(ValueError, match="unknown semantic"):
        Profile(name="x", semantic="twice-or-so")
