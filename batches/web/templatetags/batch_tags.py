from datetime import datetime, timedelta

from django import template
from django.utils.html import format_html

from batches import formats

from ..htmx import htmx_of

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A short human duration: 45s, 3m 05s, 2h 04m."""
    return formats.duration(value)


@register.filter
def thousands(value: int | None) -> str:
    """2000 -> "2,000"; None (not counted yet) -> "?"."""
    return formats.number(value)


@register.filter
def items(value: int | None, op: formats.Nouns | None) -> str:
    """{{ total|items:op }} -> "2,000 tickets", in the operation's own word."""
    return formats.items(value, op)


@register.filter
def noun(op: formats.Nouns | None, value: int | None) -> str:
    """{{ op|noun:failed }} -> "ticket" or "tickets", for "6 failed tickets"."""
    return formats.noun(op, value)


@register.filter
def rate(value: float | None) -> str:
    """{{ p.rate|rate }} -> "12.3/s"."""
    return formats.rate(value)


def _time(moment: datetime, text: str) -> str:
    return format_html('<time datetime="{}" title="{}">{}</time>', formats.iso(moment), formats.full(moment), text)


@register.filter
def clock(moment: datetime | None) -> str:
    """A time of day as <time>, in the viewer's zone with its name: "22:53 UTC"."""
    return _time(moment, formats.clock(moment)) if moment else ""


@register.filter
def when(moment: datetime | None) -> str:
    """A date and time as <time>, in the viewer's zone with its name: "2 Dec 2026, 22:53 UTC"."""
    return _time(moment, formats.date_time(moment)) if moment else ""


@register.simple_tag(takes_context=True)
def page_path(context: template.Context) -> str:
    """The path of the page being shown: for an htmx fragment, the page it is swapped into."""
    request = context["request"]
    current = htmx_of(request).current_url_abs_path
    return (current or request.path).split("?", 1)[0]


@register.filter
def get_param(params: dict, key: str) -> object:
    """A param's value by a name held in a variable (the start form's selects)."""
    return params.get(key) if isinstance(params, dict) else None
