"""Where the API is mounted, read from the URLconf (its root, `api:api-root`), not assumed: the
middlewares that treat API requests apart (body limit, bad-token throttle, and the site's own)
ask `is_api_request`."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import NoReverseMatch, URLResolver, get_resolver, get_urlconf, reverse

# The prefix of the last URLconf asked about: a reverse() costs ~50 µs, and several middlewares ask
# on every request. A URLconf changed in a test is a new resolver, so the prefix is read again.
_last: tuple[URLResolver, str | None] | None = None


def api_prefix() -> str | None:
    """The path every API URL starts with ("/api/"), or None where the API is not mounted."""
    global _last
    resolver = get_resolver(get_urlconf())
    last = _last
    if last is None or last[0] is not resolver:
        try:
            prefix = reverse("api:api-root", urlconf=resolver.urlconf_name)
        except NoReverseMatch:
            prefix = None
        last = _last = (resolver, prefix)
    return last[1]


def is_api_request(request: HttpRequest) -> bool:
    prefix = api_prefix()
    return prefix is not None and request.path.startswith(prefix)
