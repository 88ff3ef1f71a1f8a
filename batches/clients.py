"""The address a request came from, as the API's bad-token throttle and /metrics' allow-list see it.

REMOTE_ADDR by default. Behind proxies only the site knows which hops to trust: it names its own
function in BATCHES_CLIENT_ADDRESS (a dotted path to a callable taking the request), as
site_config does with the one its login lockout uses too.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import batches_settings


def _remote_addr(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "0.0.0.0"


def _configured() -> Callable[[HttpRequest], str]:
    path = batches_settings.CLIENT_ADDRESS
    return import_string(path) if path else _remote_addr


def client_address(request: HttpRequest) -> str:
    return _configured()(request)
