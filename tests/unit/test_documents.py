"""The engine's one owner of shared facts (workers.engine.documents)."""

from __future__ import annotations

from workers.engine.documents import CHECKER_COUNTERS, COUNTER_MEANINGS


def test_every_counter_says_what_it_means():
    """The pages' tooltips and docs/status.md read each counter's meaning from here."""
    missing = set(CHECKER_COUNTERS) - set(COUNTER_MEANINGS)
    assert not missing, missing
