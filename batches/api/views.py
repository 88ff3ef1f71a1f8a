"""The JSON API: asynchronous request-reply over the same services and selectors as the web UI.

POST /api/batches answers 202 Accepted with Location (poll it) and Retry-After, or 409 Conflict
with the batch that already holds the scope. Errors are always {"error": {"code", "message", …}}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from ninja import Header, Query, Router, Status

from batches import idempotency, results, selectors
from batches.csv_export import csv_lines
from batches.engine.status import with_liveness
from batches.models import Batch
from batches.operations import UnknownOperation, all_operations
from batches.report import COLUMNS as REPORT_COLUMNS
from batches.representation import batch_body
from batches.services import StartLimitReached, StartResult, cancel_batch, retry_failed, start_batch

from .errors import ApiError, conflict, not_found, too_many
from .schemas import (
    BatchOut,
    BatchPage,
    ConflictOut,
    ErrorOut,
    FailurePage,
    OperationOut,
    StartIn,
    StatusName,
)

router = Router(tags=["batches"])

POLL_SECONDS = "1"
ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut}
IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    max_length=255,
    description="Retry safely: the same key and body replay the first answer (keys expire after 24 hours).",
)


def _visible(request: HttpRequest, batch_id: int) -> Batch:
    batch = selectors.visible_batch(request.auth, batch_id)
    if batch is None:
        raise not_found("batch")
    return batch


def _accepted_or_conflict(result: StartResult, response: HttpResponse) -> Status:
    batch = selectors.fresh(result.batch)
    response["Location"] = reverse("api:batch", args=[batch.pk])
    if result.created:
        response["Retry-After"] = POLL_SECONDS
        return Status(202, batch_body(batch))
    message = (
        f"The scope's batch {batch.pk} had stopped and has been resumed; no new batch was started."
        if result.resumed
        else f"Batch {batch.pk} is already {batch.status} on this scope; no new batch was started."
    )
    raise conflict("batch_active", message, batch_body(batch))


def _idempotent(
    request: HttpRequest, key: str | None, payload: Any, response: HttpResponse, produce: Callable[[], Status]
) -> Status | HttpResponse:
    """Run `produce` once per Idempotency-Key; replay its answer to retries."""
    if key is None:
        return produce()
    key = key.strip().strip('"')  # the draft sends it as a quoted structured-field string
    if not key:
        raise ApiError(400, "invalid_idempotency_key", "The Idempotency-Key header is empty.")
    if not key.isascii() or not key.isprintable():
        raise ApiError(400, "invalid_idempotency_key", "The Idempotency-Key must be printable ASCII text.")
    fingerprint = idempotency.fingerprint(request.method, request.path, payload)
    claim = idempotency.claim(request.auth, key, fingerprint)
    if claim.outcome is idempotency.Outcome.MISMATCH:
        raise ApiError(422, "idempotency_key_reused", "This Idempotency-Key was used with a different request.")
    if claim.outcome is idempotency.Outcome.IN_FLIGHT:
        raise ApiError(409, "idempotency_key_in_flight", "A request with this Idempotency-Key is still in progress.")
    if claim.outcome is idempotency.Outcome.REPLAY:
        record = claim.record
        replay = HttpResponse(
            content=_json(record.response_body), status=record.response_status, content_type="application/json"
        )
        for name, value in {**record.response_headers, "Idempotent-Replayed": "true"}.items():
            replay[name] = value
        return replay
    try:
        answer = produce()
    except BaseException:
        idempotency.release(claim.record)
        raise
    headers = {name: response[name] for name in ("Location", "Retry-After") if response.has_header(name)}
    idempotency.complete(claim.record, answer.status_code, _jsonable(answer.value), headers)
    return answer


def _json(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder)


def _jsonable(value: Any) -> Any:
    return json.loads(_json(value))


@router.post(
    "/batches",
    url_name="batches",
    response={202: BatchOut, 409: ConflictOut, 413: ErrorOut, 422: ErrorOut, **ERRORS},
    summary="Start an operation, or find the batch already running on its scope",
)
def create_batch(
    request: HttpRequest, payload: StartIn, response: HttpResponse, idempotency_key: str | None = IdempotencyKey
):
    def produce() -> Status:
        try:
            result = start_batch(
                operation=payload.operation,
                data=payload.params,
                user=request.auth,
                notify=payload.notify,
                site_url=request.build_absolute_uri("/"),
            )
        except UnknownOperation as exc:
            known = sorted(op.name for op in all_operations())
            raise ApiError(400, "unknown_operation", str(exc), known_operations=known) from None
        except StartLimitReached as exc:
            raise too_many(exc.code, exc.message, exc.retry_after) from None
        except ValidationError as exc:
            raise ApiError(400, "invalid_params", "The params are not valid.", fields=_fields(exc)) from None
        except PermissionDenied:
            raise not_found("scope") from None
        return _accepted_or_conflict(result, response)

    return _idempotent(request, idempotency_key, _start_fingerprinted(payload), response, produce)


def _start_fingerprinted(payload: StartIn) -> dict[str, Any]:
    """What an Idempotency-Key's request is told apart by: a `notify` left out is the body it was
    before the field existed (and the same as null)."""
    body = payload.dict()
    if body.get("notify") is None:
        body.pop("notify", None)
    return body


def _fields(exc: ValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            "params" if name == NON_FIELD_ERRORS else f"params.{name}": messages
            for name, messages in exc.message_dict.items()
        }
    return {"params": exc.messages}


@router.get("/batches", url_name="batch_list", response={200: BatchPage, 401: ErrorOut, 400: ErrorOut})
def list_batches(
    request: HttpRequest,
    status: StatusName | None = None,
    operation: str | None = Query(None, max_length=100),
    page: int = Query(1, ge=1, le=1_000_000),
    page_size: int = Query(50, ge=1, le=200),
):
    batches = with_liveness(selectors.history(request.auth, status=status or "", operation=operation or ""))
    return _page(request, batches, page, page_size, batch_body)


def _page(request: HttpRequest, items: Any, page: int, page_size: int, body: Callable[[Any], Any]) -> dict[str, Any]:
    paginator = Paginator(items, page_size)
    number = min(page, max(paginator.num_pages, 1))
    current = paginator.page(number) if paginator.count else None

    def link(to: int) -> str:
        query = request.GET.copy()
        query["page"] = str(to)
        query["page_size"] = str(page_size)
        return f"{request.path}?{query.urlencode()}"

    return {
        "count": paginator.count,
        "next": link(page + 1) if current and page < paginator.num_pages else None,
        "previous": link(page - 1) if 1 < page <= paginator.num_pages else None,
        "results": [body(item) for item in current.object_list] if current and page == number else [],
    }


@router.get("/batches/{batch_id}", url_name="batch", response={200: BatchOut, **ERRORS})
def get_batch(request: HttpRequest, batch_id: int, response: HttpResponse):
    batch = _visible(request, batch_id)
    if batch.is_active:
        response["Retry-After"] = POLL_SECONDS
    return batch_body(batch)


@router.post(
    "/batches/{batch_id}/cancel", url_name="batch_cancel", response={200: BatchOut, 409: ConflictOut, **ERRORS}
)
def cancel(request: HttpRequest, batch_id: int):
    try:
        batch, ended = cancel_batch(batch_id, user=request.auth)
    except Batch.DoesNotExist:
        raise not_found("batch") from None
    batch = selectors.fresh(batch)
    if not ended:
        raise conflict("batch_ended", f"Batch {batch.pk} had already ended ({batch.status}).", batch_body(batch))
    return batch_body(batch)


@router.post(
    "/batches/{batch_id}/retry-failed",
    url_name="batch_retry_failed",
    response={202: BatchOut, 409: ConflictOut, 422: ErrorOut, **ERRORS},
    summary="Start a batch over only the failed items of an ended one",
    description=(
        "409 when the batch is still active, or when its failed items cannot be retried any more "
        "(its operation is no longer installed, or its scope is gone): the body names the batch."
    ),
)
def retry_failed_items(
    request: HttpRequest, batch_id: int, response: HttpResponse, idempotency_key: str | None = IdempotencyKey
):
    def produce() -> Status:
        try:
            result = retry_failed(batch_id, user=request.auth, site_url=request.build_absolute_uri("/"))
        except Batch.DoesNotExist:
            raise not_found("batch") from None
        except StartLimitReached as exc:
            raise too_many(exc.code, exc.message, exc.retry_after) from None
        except ValidationError as exc:
            code, message = getattr(exc, "code", None) or "cannot_retry", " ".join(exc.messages)
            if code == "no_failed_items":
                raise ApiError(400, code, message) from None
            raise conflict(code, message, batch_body(_visible(request, batch_id))) from None
        return _accepted_or_conflict(result, response)

    return _idempotent(request, idempotency_key, {"retry_of": batch_id}, response, produce)


@router.get("/batches/{batch_id}/failures", url_name="batch_failures", response={200: FailurePage, **ERRORS})
def failures(
    request: HttpRequest,
    batch_id: int,
    page: int = Query(1, ge=1, le=1_000_000),
    page_size: int = Query(100, ge=1, le=500),
):
    batch = _visible(request, batch_id)
    return _page(
        request,
        selectors.failures(batch),
        page,
        page_size,
        lambda f: {"item_key": f.item_key, "error": f.error, "created_at": f.created_at},
    )


@router.get(
    "/batches/{batch_id}/report.csv",
    url_name="batch_report",
    response={200: None, 409: ConflictOut, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": (
                    "What the batch did to each item (done, failed with its error, or skipped) and how "
                    "people name the item, streamed as CSV; from what its checkpoints recorded, so an item "
                    "the batch took out of its operation's items, or deleted since, is still listed."
                ),
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    },
)
def report(request: HttpRequest, batch_id: int):
    batch = _visible(request, batch_id)
    try:
        outcomes = selectors.item_outcomes(batch)  # decided here, before the first byte goes out
    except UnknownOperation:
        message = (
            f"Batch {batch.pk}'s operation {batch.operation!r} is no longer installed, so its items cannot be "
            "listed. Its failures are still at its failures link."
        )
        raise conflict("operation_not_installed", message, batch_body(batch)) from None
    rows = csv_lines(REPORT_COLUMNS, outcomes)
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.csv"'
    return response


@router.get(
    "/batches/{batch_id}/file",
    url_name="batch_file",
    response={200: None, 410: ErrorOut, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "The file an export produced (its `result`), streamed, as an attachment.",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def batch_file(request: HttpRequest, batch_id: int):
    file = results.export_file(_visible(request, batch_id))
    if file is None:
        raise ApiError(404, "not_found", f"Batch {batch_id} has no file (yet): only a finished export has one.")
    if file.expired:
        raise ApiError(410, "file_expired", results.expired_message(file))
    return results.file_response(file)


operations_router = Router(tags=["operations"])


@operations_router.get("/operations", url_name="operations", response={200: list[OperationOut], 401: ErrorOut})
def operations(request: HttpRequest):
    return [
        {
            "name": op.name,
            "label": op.label,
            "params_schema": op.params_schema,
            "chunk_size": op.chunk_size,
            "item_time_limit": op.item_time_limit,
            "max_failures": op.max_failures,
            "notify_by_default": op.notify_by_default,
        }
        for op in all_operations()
    ]
