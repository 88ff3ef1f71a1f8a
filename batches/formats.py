"""How figures, item counts, times and user-supplied text are written for people: one rule each,
used by the templates (templatetags/batch_tags.py), the admin (through the date formats in
site_config/formats too), the status lines (status.py) and the terminal client (terminal.py).

Times are in the active time zone, the viewer's (viewer_zone.py), and always carry its name, so
that one moment reads the same on a first render, after a swap and in an announcement.
No model imports: site_config/formats reads the date formats while Django starts.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Protocol

from django.utils import dateformat, timezone

# Django date format strings (https://docs.djangoproject.com/en/5.2/ref/templates/builtins/#date):
# 24-hour times with the zone's name, "22:53 UTC" and "2 Dec 2026, 22:53 CET".
TIME = "H:i T"
TIME_SECONDS = "H:i:s T"
DATE = "j M Y"
DATETIME = f"{DATE}, {TIME}"
FULL = "l j F Y, H:i:s T"  # a <time>'s tooltip


class Nouns(Protocol):
    """What an operation calls its items: item_name "ticket", items_name "tickets"."""

    item_name: str
    items_name: str


def number(value: int | None) -> str:
    """2000 -> "2,000"; None (not counted yet) -> "?"."""
    return "?" if value is None else f"{value:,}"


def noun(op: Nouns | None, value: int | None) -> str:
    """The operation's word for `value` items: "ticket" for 1, "tickets" otherwise."""
    if op is None:
        return "item" if value == 1 else "items"
    return op.item_name if value == 1 else op.items_name


def items(value: int | None, op: Nouns | None) -> str:
    """2000 -> "2,000 tickets"; 1 -> "1 ticket"."""
    return f"{number(value)} {noun(op, value)}"


def rate(value: float | None) -> str:
    """Items a second, to one decimal: "12.3/s"; "—" when there is none yet."""
    return f"{value:,.1f}/s" if value else "—"


def duration(value: timedelta | None) -> str:
    """A short human duration: 45s, 3m 05s, 2h 04m."""
    if value is None:
        return "—"
    seconds = max(0, round(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours:,}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _local(moment: datetime, fmt: str) -> str:
    return dateformat.format(timezone.localtime(moment), fmt)


def clock(moment: datetime | None, *, seconds: bool = False) -> str:
    """A time of day in the viewer's zone, with its name: "22:53 UTC" (or "22:53:07 UTC")."""
    return _local(moment, TIME_SECONDS if seconds else TIME) if moment else ""


def date_time(moment: datetime | None) -> str:
    """A date and time in the viewer's zone: "2 Dec 2026, 22:53 UTC"."""
    return _local(moment, DATETIME) if moment else ""


def full(moment: datetime | None) -> str:
    """Everything of a moment, for a tooltip: "Wednesday 2 December 2026, 22:53:07 UTC"."""
    return _local(moment, FULL) if moment else ""


def iso(moment: datetime) -> str:
    """The machine-readable form of a <time>: ISO 8601 with the viewer's offset."""
    return timezone.localtime(moment).isoformat()


# C0 controls (ESC among them), DEL, C1 controls (CSI, OSC as single bytes), and Unicode's
# bidirectional overrides and isolates (text shown in an order other than the order it is read).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: object, *, newlines: bool = False) -> str:
    """`text` safe for a terminal: every control character and escape sequence shown as its code
    ("\\x1b[2J"), never acted on. Newlines too, unless `newlines` (output we wrote ourselves)."""
    return (_CONTROLS_BUT_NEWLINE if newlines else _CONTROLS).sub(_visible, str(text))
