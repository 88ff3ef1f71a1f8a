"""The API's request and response shapes; django-ninja turns them into the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema

StatusName = Literal["queued", "running", "finished", "failed", "cancelled"]


class StartIn(Schema):
    operation: str = Field(..., max_length=100, description="An operation's name, as GET /api/operations lists.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The operation's parameters, checked strictly against its params_schema (GET /api/operations).",
    )
    notify: bool | None = Field(
        None,
        description=(
            "Email you when the batch ends (its outcome, figures, link and failures). Omitted or null: as the "
            "operation's notify_by_default (GET /api/operations). Applies to a new batch only: joining a "
            "running one changes nothing."
        ),
    )


class BatchLinks(Schema):
    self: str
    html: str | None = Field(..., description="The batch's page in the web UI (null where it is not installed).")
    failures: str
    report: str
    cancel: str | None = Field(None, description="Present while the batch is active.")
    retry_failed: str | None = Field(None, description="Present once it has ended with failed items.")


class ResultOut(Schema):
    url: str | None = Field(..., description="Where to download the file (410 once it has expired).")
    name: str = Field(..., description="The file's name, as a download saves it.")
    rows: int = Field(..., description="Data rows, the header not counted.")
    bytes: int
    sha256: str
    expires_at: datetime = Field(..., description="When the file is deleted.")
    expired: bool


class ConditionOut(Schema):
    code: Literal[
        "queued",
        "no_worker",
        "paused",
        "waiting",
        "running",
        "worker_lost",
        "stalled",
        "finished",
        "failed",
        "cancelled",
    ] = Field(..., description="What the batch is doing now, beyond its status: e.g. no_worker, paused, worker_lost.")
    message: str = Field(..., description="The same in words, as the web UI shows it.")
    since: datetime | None = Field(..., description="When the condition began, where that is known.")


class BatchOut(Schema):
    id: int
    operation: str
    scope: str
    scope_label: str
    params: dict[str, Any]
    status: StatusName
    active: bool
    total: int | None = Field(..., description="Known once the worker has planned the batch.")
    done: int
    failed: int
    skipped: int
    percent: int
    rate: float | None = Field(..., description="Items per second since the batch started.")
    eta_seconds: int | None
    condition: ConditionOut
    error: str
    created_by: str | None
    cancelled_by: str | None
    retry_of: int | None
    notify: bool = Field(..., description="Whoever started it is emailed when it ends.")
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    result: ResultOut | None = Field(
        ..., description="The file an export produced, once ready; null for other operations' batches."
    )
    links: BatchLinks


class ErrorDetail(Schema):
    code: str = Field(..., description="Stable, for programs: e.g. batch_active, invalid_params.")
    message: str = Field(..., description="For people.")
    fields: dict[str, list[str]] | None = Field(None, description="Per-field messages for bad input.")
    known_operations: list[str] | None = None


class ErrorOut(Schema):
    error: ErrorDetail


class ConflictOut(Schema):
    error: ErrorDetail
    batch: BatchOut = Field(..., description="The batch that holds the scope.")


class BatchPage(Schema):
    count: int
    next: str | None
    previous: str | None
    results: list[BatchOut]


class FailureOut(Schema):
    item_key: str
    error: str
    created_at: datetime


class FailurePage(Schema):
    count: int
    next: str | None
    previous: str | None
    results: list[FailureOut]


class OperationOut(Schema):
    name: str
    label: str
    params_schema: dict[str, Any] = Field(..., description="JSON Schema of the operation's params.")
    notify_by_default: bool = Field(..., description="A start that does not say asks for the email when it ends.")
    chunk_size: int
    item_time_limit: float
    max_failures: int | None
