"""Template filters that write as ``dashboard.formatting`` does.

``{{ name|dotwrap }}``: a topic name (escaped) with a line-break opportunity after each dot,
so a long name wraps between its parts ("sentinel.<wbr>at-least-once"), never mid-word.
``{{ ms|latency }}``: a latency in ms, in seconds from 10 s.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dashboard import formatting

register = template.Library()


@register.filter
def dotwrap(name: Any) -> SafeString:
    return mark_safe(escape(str(name)).replace(".", ".<wbr>"))  # noqa: S308 (escaped above)


@register.filter
def latency(ms: Any) -> str:
    return formatting.latency_ms(ms)
