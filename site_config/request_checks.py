"""Refuse requests that no view could handle safely.

A NUL character in a filter, a form field or a header reaches Postgres, which refuses it in text
("A string literal cannot contain NUL"): a 500. No field of ours takes one, so such requests end
here with a 400: the API's JSON error shape under /api/, a short plain page elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict

from batches.api.errors import ApiError, error_response
from batches.api.mount import is_api_request

NUL = "\x00"
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
MESSAGE = "The request contains a NUL character (%00), which no address, filter, header or form field here accepts."


class RejectNulBytes:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _carries_nul(request):
            if is_api_request(request):
                return error_response(ApiError(400, "nul_character", MESSAGE))
            return HttpResponseBadRequest(f"Bad request. {MESSAGE}\n", content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _carries_nul(request: HttpRequest) -> bool:
    if NUL in request.path_info or _has_nul(request.GET):
        return True
    # Headers reach the database too: the session cookie, the Idempotency-Key.
    if any(NUL in str(value) for name, value in request.META.items() if name.startswith("HTTP_")):
        return True
    # Form posts of the web UI and the admin. The API reads JSON only: its params are checked
    # field by field (batches.operations), and its body is not read before its size is checked.
    is_form = request.content_type in FORM_TYPES
    return request.method == "POST" and is_form and not is_api_request(request) and _has_nul(request.POST)


def _has_nul(data: QueryDict) -> bool:
    return any(NUL in key or any(NUL in value for value in values) for key, values in data.lists())
