"""Times in the viewer's time zone: the browser names its zone in a cookie (the panel's script (batches.js) sets
it), and every request renders in that zone. The server writes every time (batches/formats.py),
so a first render, an htmx swap and an announcement say the same; without the cookie (no
JavaScript, a first visit), times are in settings.TIME_ZONE, named as such."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "tz"
# An IANA zone name ("Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"): checked
# before the zone database is asked, so a forged cookie never becomes a path.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")


@functools.lru_cache(maxsize=256)
def zone_named(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone of that IANA name, or None when it is not one."""
    if len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        return None
    try:
        return zoneinfo.ZoneInfo(name)  # cached by zoneinfo after the first load
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


class ViewerTimeZone:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = zone_named(request.COOKIES.get(COOKIE, ""))
        if zone is None:
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)
