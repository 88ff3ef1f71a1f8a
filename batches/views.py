"""HTML pages and HTMX fragments. Thin: services write, selectors read."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget

from . import selectors
from .models import Batch
from .operations import Operation, UnknownOperation, get_operation
from .services import StartResult, cancel_batch, retry_failed, start_batch

FAILURES_SHOWN = 100


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: after a POST, the browser GETs the batch page (and a reload does not POST again)."""

    status_code = 303


PANEL_TEMPLATE = "batches/_panel.html"
LIVE_TEMPLATE = "batches/_live.html"


def panel_context(
    op: Operation, params: dict[str, Any], batch: Batch | None, *, notice: str = "", error: str = ""
) -> dict[str, Any]:
    """What `_panel.html` needs: the start form for (op, params) and the batch's progress."""
    return {
        "op": op,
        "params": params,
        "batch": batch,
        "progress": selectors.progress(batch) if batch else None,
        "notice": notice,
        "error": error,
    }


def start_notice(result: StartResult) -> str:
    batch = result.batch
    if result.created and batch.retry_of_id:
        return f"Started a retry of the failed items of #{batch.retry_of_id}."
    if result.created:
        return "Started."
    if result.resumed:
        return f"That run had stopped (its worker went away) at {batch.processed} items; it has been resumed."
    since = timezone.localtime(batch.started_at or batch.created_at).strftime("%H:%M")
    who = batch.created_by.get_username() if batch.created_by else "someone"
    return f"Already running since {since}, started by {who}. Showing that run; no new one was started."


def _answer_with_batch(request: HttpRequest, batch: Batch, notice: str, *, status: int = 200) -> HttpResponse:
    """HTMX: the batch's panel. A plain form: 303 to the batch page, the notice as a message."""
    if request.htmx:
        context = panel_context(_operation_of(batch), batch.params, batch, notice=notice)
        return render(request, PANEL_TEMPLATE, {**context, "fragment": True}, status=status)
    messages.info(request, notice)
    return HttpResponseSeeOther(reverse("batches:detail", args=[batch.pk]))


@login_required
@require_POST
def start(request: HttpRequest, operation: str) -> HttpResponse:
    try:
        op = get_operation(operation)
        result = start_batch(operation=operation, data=request.POST, user=request.user)
    except (UnknownOperation, PermissionDenied):
        raise Http404 from None
    except ValidationError as exc:
        message = " ".join(exc.messages)
        if request.htmx:
            context = panel_context(op, dict(request.POST.items()), None, error=message)
            context["params"].pop("csrfmiddlewaretoken", None)
            return render(request, PANEL_TEMPLATE, context, status=400)
        return render(request, "batches/bad_request.html", {"message": message}, status=400)

    return _answer_with_batch(request, result.batch, start_notice(result), status=202 if result.created else 200)


@login_required
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation page (the no-JavaScript path). POST: cancel."""
    if request.method == "GET":
        batch = _visible_batch_or_404(request, pk)
        return render(request, "batches/cancel_confirm.html", {"batch": batch, "op": _operation_of(batch)})
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        batch, ended = cancel_batch(pk, user=request.user)
    except Batch.DoesNotExist:
        raise Http404("No such batch.") from None
    notice = "Cancelled. Items not done yet are counted as skipped." if ended else "This batch had already ended."
    return _answer_with_batch(request, batch, notice)


@login_required
@require_POST
def retry(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        result = retry_failed(pk, user=request.user)
    except Batch.DoesNotExist:
        raise Http404("No such batch.") from None
    except ValidationError as exc:
        batch = _visible_batch_or_404(request, pk)
        if request.htmx:
            context = panel_context(_operation_of(batch), batch.params, batch, error=" ".join(exc.messages))
            return render(request, PANEL_TEMPLATE, {**context, "fragment": True}, status=400)
        return render(request, "batches/bad_request.html", {"message": " ".join(exc.messages)}, status=400)
    return _answer_with_batch(request, result.batch, start_notice(result), status=202 if result.created else 200)


def _visible_batch_or_404(request: HttpRequest, pk: int) -> Batch:
    batch = selectors.visible_batch(request.user, pk)
    if batch is None:
        raise Http404("No such batch.")
    return batch


def _operation_of(batch: Batch) -> Operation:
    try:
        return get_operation(batch.operation)
    except UnknownOperation:
        raise Http404("This batch's operation is no longer installed.") from None


@login_required
@require_GET
def batch_detail(request: HttpRequest, pk: int) -> HttpResponse:
    batch = _visible_batch_or_404(request, pk)
    context = panel_context(_operation_of(batch), batch.params, batch)
    if not batch.is_active:
        context["failure_list"] = selectors.failures(batch)[:FAILURES_SHOWN]
    return render(request, "batches/batch_detail.html", context)


@login_required
@require_GET
def batch_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled fragment: session, user and batch are its only queries.

    While the batch keeps the status the page shows (`?shown=`), only its live figures are
    rendered; once the status changed (queued, running, then an end) the whole panel is, and
    swapped in for the old one: a finished panel carries no polling, so polling stops.
    """
    batch = _visible_batch_or_404(request, pk)
    context = panel_context(_operation_of(batch), batch.params, batch)
    if batch.is_active and request.GET.get("shown") == batch.status:
        return render(request, LIVE_TEMPLATE, {**context, "live_only": True})
    response = render(request, PANEL_TEMPLATE, {**context, "fragment": True})
    return reswap(retarget(response, f"#panel-{batch.operation}"), "outerHTML")


@login_required
@require_GET
def batch_failures(request: HttpRequest, pk: int) -> HttpResponse:
    batch = _visible_batch_or_404(request, pk)
    return render(
        request,
        "batches/_failures.html",
        {"batch": batch, "failure_list": selectors.failures(batch)[:FAILURES_SHOWN]},
    )
