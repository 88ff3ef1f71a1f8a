"""One error shape for the whole API: {"error": {"code", "message", "fields"?, …}}, plus the batch
that caused a conflict."""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as RequestValidationError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        batch: dict | None = None,
        headers: dict[str, str] | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.batch, self.detail = status, code, message, batch, detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message, **self.detail}}
        if self.batch is not None:
            body["batch"] = self.batch
        return body


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"No such {what}, or it is not yours to see.")


def conflict(code: str, message: str, batch: dict) -> ApiError:
    return ApiError(409, code, message, batch=batch, headers={"Location": batch["links"]["self"]})


def too_many(code: str, message: str, retry_after: int) -> ApiError:
    return ApiError(429, code, message, headers={"Retry-After": str(retry_after)})


def method_not_allowed(request: HttpRequest, allowed: list[str]) -> HttpResponse:
    """405 in the API's shape, with Allow: django-ninja answers it in plain text by itself."""
    methods = ", ".join(sorted(allowed))
    message = f"{request.method} is not allowed here; use {methods}."
    return error_response(ApiError(405, "method_not_allowed", message, headers={"Allow": methods}))


@csrf_exempt  # a 404 whatever the method; CSRF would answer a POST with an HTML 403 first
def no_such_endpoint(request: HttpRequest, path: str = "") -> HttpResponse:
    """Every path under /api/ that no route takes: 404 in the API's shape, not Django's page."""
    message = f"No such API endpoint: {request.path}. The schema is at /api/openapi.json."
    return error_response(ApiError(404, "not_found", message))


def error_response(error: ApiError) -> JsonResponse:
    """The error as a response outside django-ninja's views (the middleware, the URLconf's
    fallbacks); its views answer through `install`'s handlers, with the same body and headers."""
    return JsonResponse(error.body(), status=error.status, headers=error.headers)


# What django-ninja raises itself: bodies it cannot parse, CSRF failures of session requests.
_HTTP_ERROR_CODES = {400: "invalid_request", 403: "forbidden", 405: "method_not_allowed"}


def install(api: NinjaAPI) -> None:
    def respond(request: HttpRequest, error: ApiError) -> HttpResponse:
        response = api.create_response(request, error.body(), status=error.status)
        for name, value in error.headers.items():
            response[name] = value
        return response

    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        message = "Send 'Authorization: Bearer <token>' or log in."
        headers = {"WWW-Authenticate": 'Bearer realm="api"'}
        return respond(request, ApiError(401, "not_authenticated", message, headers=headers))

    def bad_request(request: HttpRequest, exc: RequestValidationError) -> HttpResponse:
        fields: dict[str, list[str]] = {}
        for problem in exc.errors:
            where = ".".join(str(part) for part in problem.get("loc", ()) if part != "payload") or "request"
            fields.setdefault(where, []).append(problem.get("msg", "Invalid value."))
        return respond(request, ApiError(400, "invalid_request", "The request is not valid.", fields=fields))

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        code = _HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):  # the body did not parse
            return respond(request, ApiError(400, code, f"The request body is not valid JSON: {exc.__cause__}"))
        return respond(request, ApiError(exc.status_code, code, f"{exc}."))

    def missing(request: HttpRequest, exc: Http404) -> HttpResponse:
        return respond(request, not_found("resource"))

    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("Unexpected error in %s %s", request.method, request.path)
        return respond(request, ApiError(500, "server_error", "Something went wrong on our side; nothing was lost."))

    api.add_exception_handler(ApiError, respond)
    api.add_exception_handler(AuthenticationError, unauthenticated)
    api.add_exception_handler(RequestValidationError, bad_request)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(Http404, missing)
    api.add_exception_handler(Exception, unexpected)
