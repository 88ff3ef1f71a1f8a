"""Refuse API request bodies over BATCHES_API_MAX_BODY_BYTES before anything reads them."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from batches.conf import batches_settings

from .errors import ApiError, error_response
from .mount import is_api_request


class ApiBodyLimit:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_request(request):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return self._refuse(400, "invalid_content_length", "The Content-Length header is not a number.")
            if length > batches_settings.API_MAX_BODY_BYTES:
                return self._refuse(
                    413, "body_too_large", f"Request bodies are limited to {batches_settings.API_MAX_BODY_BYTES} bytes."
                )
        return self.get_response(request)

    @staticmethod
    def _refuse(status: int, code: str, message: str) -> HttpResponse:
        return error_response(ApiError(status, code, message))
