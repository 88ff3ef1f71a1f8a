"""Answers meant for one person are not kept by shared caches nor on the browser's disk.

Signed-in pages and every API answer get `Cache-Control: private, no-store`; API answers also
`Vary: Authorization`, since the same URL answers differently for each token.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers

from batches.api.mount import is_api_request


class PrivateAnswers:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        is_api = is_api_request(request)
        if is_api:
            patch_vary_headers(response, ["Authorization"])
        user = getattr(request, "user", None)
        if is_api or (user is not None and user.is_authenticated):
            patch_cache_control(response, private=True, no_store=True)
        return response
