"""django-htmx's view of a request, whether or not the host installed its middleware.

`HtmxMiddleware` sets `request.htmx`; a host may not have it (the page contract asks only for the
app). Without this, reading `request.htmx` after a start raised AttributeError: a 500 answered a
start whose batch was already committed and running.
"""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


def htmx_of(request: HttpRequest) -> HtmxDetails:
    details = getattr(request, "htmx", None)
    return details if isinstance(details, HtmxDetails) else HtmxDetails(request)
