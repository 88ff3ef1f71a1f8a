"""What django-ninja cannot know on its own: each operation's params, the links that lead from a
started batch to its other endpoints (clients and schemathesis follow them), the error shape for
what no view answers (405 on another method, 404 on an unknown path), 429 on the limits, and
strict JSON."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, re_path
from ninja import NinjaAPI
from ninja.operation import Operation as NinjaOperation
from ninja.parser import Parser

from batches.operations import all_operations

from .errors import method_not_allowed, no_such_endpoint
from .parser import StrictJsonParser

_FOLLOW_BATCH = {
    "get_batch": "GetBatch",
    "cancel": "CancelBatch",
    "failures": "ListFailures",
    "report": "GetReport",
    "retry_failed_items": "RetryFailedItems",
}
# The operations that may start a batch, and so meet the per-user limits.
_STARTS = {"create_batch", "retry_failed_items"}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_LIMITED = {
    "description": "A per-user limit: too many active batches, or too many starts in a minute.",
    "headers": {
        "Retry-After": {
            "description": "Seconds until a slot frees.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": _ERROR_CONTENT,
}
_OTHER_METHOD = {
    "description": "A method this path does not take.",
    "headers": {"Allow": {"description": "The methods it takes.", "required": True, "schema": {"type": "string"}}},
    "content": _ERROR_CONTENT,
}


class BatchesAPI(NinjaAPI):
    def __init__(self, *args: Any, parser: Parser | None = None, **kwargs: Any) -> None:
        super().__init__(*args, parser=parser or StrictJsonParser(), **kwargs)

    def get_openapi_operation_id(self, operation: NinjaOperation) -> str:
        return operation.view_func.__name__

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super()._get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern):
                pattern.callback = _json_method_not_allowed(pattern.callback)
        return [*urls, re_path(r"^(?P<path>.*)$", no_such_endpoint)]

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(**kwargs)
        schema["components"]["schemas"]["StartIn"]["oneOf"] = [
            {
                "type": "object",
                "properties": {"operation": {"const": op.name}, "params": op.params_schema},
                "required": ["operation", "params"],
            }
            for op in all_operations()
        ]
        links = {
            link: {"operationId": operation_id, "parameters": {"batch_id": "$response.body#/id"}}
            for operation_id, link in _FOLLOW_BATCH.items()
        }
        for path in schema["paths"].values():
            for operation in path.values():
                responses = operation["responses"]
                if operation.get("operationId") in _STARTS:
                    responses[202]["links"] = links
                    responses[429] = _LIMITED
                responses[405] = _OTHER_METHOD
        return schema


def _json_method_not_allowed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """django-ninja answers a method no route takes with a plain-text 405: give it the API's shape."""

    @functools.wraps(view)  # keeps csrf_exempt and the rest of the view's attributes
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            return method_not_allowed(request, [method.strip() for method in response["Allow"].split(",")])
        return response

    return wrapped
