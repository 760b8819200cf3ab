"""Side-by-side diff of two to four client configurations (pure: no Django, no Kafka).

Each configuration is a flat ``{property: value}`` dict. The diff has one row per property
that any of them sets, in a stable order, and says whether the values differ. Secret values
never leave this module: a secret row shows ``******`` in the first (baseline) column and
``changed`` / ``unchanged`` (compared with the baseline) in the others, so two sentinels that
use different passwords are visibly different without revealing either password.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.engine.redact import MASK, is_secret_key
from workers.engine.spec import SentinelSpec

MIN_COLUMNS = 2
MAX_COLUMNS = 4
NOT_SET = "(not set)"
CHANGED = "changed"
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Cell:
    """One column of a row: the text to show, and whether it differs from the baseline."""

    text: str
    differs: bool
    unset: bool = False


@dataclass(frozen=True)
class Row:
    key: str
    cells: list[Cell]
    differs: bool
    secret: bool = False
    section: str = ""


@dataclass(frozen=True)
class Diff:
    rows: list[Row] = field(default_factory=list)

    @property
    def differing(self) -> list[Row]:
        return [row for row in self.rows if row.differs]

    @property
    def differing_keys(self) -> list[str]:
        return [row.key for row in self.differing]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    """Kafka properties are strings in the end: ``True``, ``"true"`` and ``"True"`` agree."""
    if a is None or b is None:
        return a is None and b is None
    return _text(a).strip().lower() == _text(b).strip().lower()


def _row(key: str, values: list[Any], section: str) -> Row:
    baseline = values[0]
    differs = any(not _same(v, baseline) for v in values[1:])
    if is_secret_key(key):
        cells = [Cell(MASK if baseline is not None else NOT_SET, False, baseline is None)]
        for value in values[1:]:
            changed = not _same(value, baseline)
            cells.append(Cell(CHANGED if changed else UNCHANGED, changed, value is None))
        return Row(key, cells, differs, secret=True, section=section)
    cells = [
        Cell(NOT_SET if v is None else _text(v), not _same(v, baseline) and i > 0, v is None)
        for i, v in enumerate(values)
    ]
    return Row(key, cells, differs, section=section)


def diff(configs: Sequence[Mapping[str, Any]], section: str = "", *, sort: bool = True) -> Diff:
    """Rows for every property of ``configs`` (2 to 4 dicts), sorted by property name (or in
    order of first appearance with ``sort=False``).

    Raises ValueError for fewer than two or more than four configurations.
    """
    if not MIN_COLUMNS <= len(configs) <= MAX_COLUMNS:
        raise ValueError(
            f"compare {MIN_COLUMNS} to {MAX_COLUMNS} configurations, not {len(configs)}"
        )
    keys = list(dict.fromkeys(str(k) for config in configs for k in config))
    if sort:
        keys.sort()
    return Diff([_row(k, [config.get(k) for config in configs], section) for k in keys])


def diff_sections(
    sections: Mapping[str, Sequence[Mapping[str, Any]]], *, unsorted: Sequence[str] = ()
) -> Diff:
    """One diff over several named sections (e.g. "producer", "consumer"), in the given order;
    sections named in ``unsorted`` keep their keys' order."""
    rows: list[Row] = []
    for name, configs in sections.items():
        rows.extend(diff(configs, section=name, sort=name not in unsorted).rows)
    return Diff(rows)


# Set by the sentinel per instance: always different between two sentinels, so not compared.
IDENTITY_KEYS = frozenset({"group.id", "transactional.id"})


def effective_config(spec: SentinelSpec) -> dict[str, dict[str, Any]]:
    """The client configurations a sentinel's processes really use, by client.

    Mirrors the roles in ``workers.roles``: the producer; under exactly-once the
    transactional copier (consumer + producer) and the read_committed verifier, otherwise
    the consumer.
    """
    sections = {"producer": spec.producer_conf()}
    if spec.eos:
        sections["copier producer"] = spec.producer_conf(
            **{"transactional.id": spec.transactional_id}
        )
        sections["copier consumer"] = spec.consumer_conf(
            **{"group.id": spec.group_id + ".copier", "isolation.level": "read_committed"}
        )
        sections["verifier consumer"] = spec.consumer_conf(
            **{"group.id": spec.group_id + ".verifier", "enable.auto.commit": "false"}
        )
    else:
        sections["consumer"] = spec.consumer_conf()
    return sections


def masked(props: Mapping[str, Any]) -> dict[str, str]:
    """``props`` for display: secrets as ``******``, every value as text."""
    return {key: MASK if is_secret_key(key) else _text(value) for key, value in props.items()}


def sentinel_settings(spec: SentinelSpec) -> dict[str, Any]:
    """The non-client settings that shape a sentinel's results."""
    return {
        "semantic": spec.semantic,
        "commit strategy": spec.profile.commit_strategy,
        "profile": spec.profile.name,
        "cluster": spec.cluster,
        "partitions": spec.partitions,
        "replication factor": spec.replication_factor,
        "rate per partition (records/s)": spec.rate_per_partition,
        "record size (bytes)": spec.record_size,
        "grace (s)": spec.grace_seconds,
        "SLO p99 (ms)": spec.slo_p99_ms,
    }


def compare_specs(specs: Sequence[SentinelSpec]) -> Diff:
    """Settings, producer and consumer properties of 2 to 4 sentinels, side by side."""

    def client(conf: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in conf.items() if k not in IDENTITY_KEYS}

    return diff_sections(
        {
            "sentinel": [sentinel_settings(s) for s in specs],
            "producer": [client(s.producer_conf()) for s in specs],
            "consumer": [client(s.consumer_conf()) for s in specs],
        },
        unsorted=["sentinel"],
    )
