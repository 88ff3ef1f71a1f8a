"""The address a request came from, as the login lockout and the API token throttle count it.

By default the client is REMOTE_ADDR. Behind proxies (TRUSTED_PROXY_COUNT > 0) REMOTE_ADDR is the
nearest proxy, so the client is the address that our outermost proxy appended to
X-Forwarded-For: counted from the right, because everything left of it was sent by the client
and may be forged.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR") or "0.0.0.0"
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(hops) < proxies:
        return remote
    candidate = hops[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
