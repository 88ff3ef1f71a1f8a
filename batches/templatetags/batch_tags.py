from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A short human duration: 45s, 3m 05s, 2h 04m."""
    if value is None:
        return "—"
    seconds = max(0, round(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


@register.filter
def code_spans(text: str) -> str:
    """`command` in a message becomes <code>command</code>; everything else is escaped."""
    parts = str(text).split("`")
    return mark_safe(
        "".join(f"<code>{escape(part)}</code>" if index % 2 else escape(part) for index, part in enumerate(parts))
    )


@register.filter
def thousands(value: int | None) -> str:
    """2000 -> "2,000"; None (not counted yet) -> "?"."""
    return "?" if value is None else f"{value:,}"


@register.filter
def clock(moment: datetime | None) -> str:
    """A time of day as <time>: the server's zone as text, localised in the browser by app.js."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return format_html('<time datetime="{}" data-local="time">{}</time>', local.isoformat(), local.strftime("%H:%M %Z"))


@register.filter
def when(moment: datetime | None) -> str:
    """A date and time as <time>, localised in the browser by app.js."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    text = local.strftime("%-d %b %Y, %H:%M %Z")
    return format_html('<time datetime="{}" data-local="datetime">{}</time>', local.isoformat(), text)


@register.simple_tag(takes_context=True)
def page_path(context: template.Context) -> str:
    """The path of the page being shown: for an htmx fragment, the page it is swapped into."""
    request = context["request"]
    current = getattr(request, "htmx", None) and request.htmx.current_url_abs_path
    return (current or request.path).split("?", 1)[0]
