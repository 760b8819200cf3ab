"""Side-by-side configuration diffs (dashboard.compare): pure, no database."""

from __future__ import annotations

import pytest

from dashboard.compare import (
    CHANGED,
    NOT_SET,
    UNCHANGED,
    compare_specs,
    diff,
    effective_config,
    masked,
)
from workers.engine.profiles import DEFAULT_PROFILES
from workers.engine.spec import SentinelSpec


def spec(semantic: str, sid: int = 1, **profile_changes) -> SentinelSpec:
    profile = DEFAULT_PROFILES[semantic]
    if profile_changes:
        profile = profile.variant(f"{semantic}-variant", producer=profile_changes)
    return SentinelSpec(
        id=sid, name=f"s{sid}", profile=profile, bootstrap_servers="k:9092", topic=f"t{sid}"
    )


def test_it_marks_only_the_differing_properties():
    result = diff([{"acks": "1", "linger.ms": "5"}, {"acks": "all", "linger.ms": "5"}])
    assert result.differing_keys == ["acks"]
    acks = result.differing[0]
    assert [c.text for c in acks.cells] == ["1", "all"]
    assert [c.differs for c in acks.cells] == [False, True]


def test_it_shows_properties_set_on_one_side_only_as_not_set():
    result = diff([{"retries": "0"}, {}])
    row = result.rows[0]
    assert row.differs
    assert [c.text for c in row.cells] == ["0", NOT_SET]
    assert row.cells[1].unset


def test_it_treats_booleans_and_case_as_kafka_does():
    result = diff([{"enable.idempotence": True}, {"enable.idempotence": "TRUE"}])
    assert result.differing_keys == []


def test_it_never_shows_a_secret_only_changed_or_unchanged():
    configs = [
        {"sasl.password": "hunter2", "sasl.username": "svc"},
        {"sasl.password": "hunter2", "sasl.username": "svc"},
        {"sasl.password": "swordfish", "sasl.username": "svc"},
    ]
    result = diff(configs)
    password = next(r for r in result.rows if r.key == "sasl.password")
    assert password.secret and password.differs
    assert [c.text for c in password.cells] == ["******", UNCHANGED, CHANGED]
    rendered = repr(result)
    assert "hunter2" not in rendered and "swordfish" not in rendered


def test_it_compares_two_to_four_configurations_only():
    for n in (0, 1, 5):
        with pytest.raises(ValueError, match="2 to 4"):
            diff([{}] * n)
    assert len(diff([{"a": 1}] * 4).rows) == 1


def test_it_diffs_acks_1_against_acks_all_between_two_sentinels():
    result = compare_specs([spec("at-least-once", 1, acks="1"), spec("at-least-once", 2)])
    keys = {f"{row.section}.{row.key}" for row in result.differing}
    assert keys == {"producer.acks", "sentinel.profile"}


def test_it_leaves_the_per_sentinel_identity_keys_out_of_the_comparison():
    result = compare_specs([spec("at-least-once", 1), spec("at-least-once", 2)])
    assert "group.id" not in {row.key for row in result.rows}
    assert result.differing_keys == []


def test_it_describes_the_exactly_once_clients_with_their_transactional_settings():
    config = effective_config(spec("exactly-once", 7))
    assert set(config) == {"producer", "copier producer", "copier consumer", "verifier consumer"}
    assert config["copier producer"]["transactional.id"] == "delivery-sentinel.7.copier"
    assert config["verifier consumer"]["isolation.level"] == "read_committed"
    assert set(effective_config(spec("at-most-once"))) == {"producer", "consumer"}


def test_it_masks_secrets_for_display():
    assert masked({"ssl.key.password": "x", "acks": 1}) == {
        "ssl.key.password": "******",
        "acks": "1",
    }
