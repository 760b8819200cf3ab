"""``{{ items|at:index }}``: the item at ``index`` (``None`` when absent), for rows whose
columns come in parallel lists (the overview's sentinel cells and lint verdicts)."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def at(items: Any, index: int) -> Any:
    try:
        return items[index]
    except (IndexError, KeyError, TypeError):
        return None
