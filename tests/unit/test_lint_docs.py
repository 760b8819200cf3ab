"""docs/lint.md lists every rule exactly as the catalogue defines it."""

from __future__ import annotations

from workers.engine.lint.rules import RULES, catalogue_markdown
from workers.system import PROJECT_ROOT


def test_it_keeps_the_rule_table_of_the_docs_in_step_with_the_code() -> None:
    doc = (PROJECT_ROOT / "docs" / "lint.md").read_text()
    assert catalogue_markdown() in doc, (
        "docs/lint.md is out of date: regenerate its table with "
        "`.venv/bin/python -m workers.engine.lint.rules`"
    )
    for rule_id in RULES:
        assert f"`{rule_id}`" in doc
