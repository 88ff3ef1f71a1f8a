"""What a batch panel shows: the start form for an operation on a scope, and the scope's batch.

Views render it for their fragments; the `batch_panel` template tag (templatetags/batches.py)
renders it on a host's page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from batches import results, selectors
from batches.engine.status import describe
from batches.models import Batch
from batches.operations import Operation, UnknownOperation, get_operation

PANEL_TEMPLATE = "batches/_panel.html"
FAILURES_SHOWN = 100


@dataclass(frozen=True)
class UninstalledOperation:
    """Stands in for an operation that is no longer installed, so that its batches' pages still
    render: their figures and failures, without a start form or a retry button."""

    name: str
    uninstalled: bool = True
    items_name: str = "items"
    item_name: str = "item"

    @property
    def label(self) -> str:
        return selectors.operation_label(self.name)

    def scope_url(self, params: dict[str, Any]) -> None:
        return None

    def confirmation(self, params: dict[str, Any]) -> None:
        return None

    def item_labels(self, params: dict[str, Any], pks: list[int]) -> dict[int, str]:
        return {}


def panel_context(
    op: Operation | UninstalledOperation,
    params: dict[str, Any],
    batch: Batch | None,
    *,
    notice: str = "",
    error: str = "",
) -> dict[str, Any]:
    """What `_panel.html` needs: the start form for (op, params) and the batch's progress.

    The start's confirmation question is asked (it may cost the operation a query) only when the
    start button is offered: never while a batch runs, so polls stay cheap.
    """
    offer_start = batch is None or not batch.is_active
    condition = describe(batch) if batch else None
    makes_a_file = batch is not None and results.makes_a_file(batch)
    file = results.export_file(batch) if makes_a_file and batch is not None and not batch.is_active else None
    return {
        "choices": getattr(op, "param_choices", dict)(),
        "file": file,
        # A finished export whose file is still being put together: the panel polls until it is there.
        "file_pending": makes_a_file and file is None and batch is not None and batch.status == "finished",
        "op": op,
        "params": params,
        "batch": batch,
        "progress": selectors.progress(batch, moving=condition.moving) if batch and condition else None,
        "condition": condition,
        "confirmation": op.confirmation(params) if offer_start else None,
        "notice": notice,
        "error": error,
    }


@dataclass(frozen=True)
class FailureRow:
    item: str
    error: str


def failure_rows(op: Operation | UninstalledOperation, batch: Batch) -> list[FailureRow]:
    """The first failed items, each named as the operation names it for people."""
    failures = list(selectors.failures(batch)[:FAILURES_SHOWN])
    labels = op.item_labels(batch.params, [failure.item_pk for failure in failures if failure.item_pk])
    return [FailureRow(labels.get(failure.item_pk) or failure.item_key, failure.error) for failure in failures]


def operation_of(batch: Batch) -> Operation | UninstalledOperation:
    try:
        return get_operation(batch.operation)
    except UnknownOperation:
        return UninstalledOperation(batch.operation)


def page_panel(request: HttpRequest, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The panel of `operation` on the scope `params` name, as a page shows it (its batch's
    failures listed once it ended); None for someone who may not act there. Worked out once per
    request and scope: a page's title and its panel ask for the same."""
    op = get_operation(operation)
    if not op.may_act(request.user, params):
        return None
    scope = op.scope(params)
    shown: dict[tuple[str, str], dict[str, Any]] = request.__dict__.setdefault("_batches_panels", {})
    if (operation, scope) not in shown:
        batch = selectors.latest_batch(op.name, scope)
        context = panel_context(op, params, batch)
        if batch and not batch.is_active:
            context["failure_list"] = failure_rows(op, batch)
        context["scope_label"] = batch.scope_label if batch else op.scope_label(params)
        shown[(operation, scope)] = context
    return shown[(operation, scope)]
