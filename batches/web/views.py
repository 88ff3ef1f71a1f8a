"""HTML pages and HTMX fragments. Thin: services write, selectors read."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    QueryDict,
)
from django.shortcuts import render
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget, trigger_client_event

from batches import formats, results, selectors
from batches.models import Batch
from batches.operations import UnknownOperation, get_operation
from batches.services import StartLimitReached, StartResult, cancel_batch, retry_failed, start_batch

from . import live_cache, problems
from .htmx import htmx_of
from .panel import PANEL_TEMPLATE, failure_rows, operation_of, panel_context
from .templatetags.batch_tags import clock

HISTORY_PAGE_SIZE = 25
# Without JavaScript, a batch page the person asked to keep live reloads itself this often (an
# HTTP Refresh header: they turn it on and off with a link, so it never traps them).
NO_JS_REFRESH_SECONDS = 5
# Fired on the page (HX-Trigger) when a batch's panel shows it ended: pages that show what the
# batch changed listen for it (hx-trigger="batch-ended from:body") and refresh themselves.
BATCH_ENDED_EVENT = "batch-ended"


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: after a POST, the browser GETs the batch page (and a reload does not POST again)."""

    status_code = 303


LIVE_TEMPLATE = "batches/_live.html"


def _with_ended_event(response: HttpResponse, batch: Batch) -> HttpResponse:
    if not batch.is_active:
        details = {"batch": batch.pk, "operation": batch.operation, "status": batch.status}
        trigger_client_event(response, BATCH_ENDED_EVENT, details)
    return response


def start_notice(result: StartResult) -> str | SafeString:
    batch = result.batch
    op = operation_of(batch)
    if result.created and batch.retry_of_id:
        return f"Started a retry of the failed {op.items_name} of #{batch.retry_of_id}."
    if result.created:
        return "Started."
    if result.resumed:
        done = formats.items(batch.processed, op)
        return f"That run had stopped (its worker went away) at {done}; it has been resumed."
    who = batch.created_by.get_username() if batch.created_by else "someone"
    return format_html(
        "Already running since {}, started by {}. Showing that run; no new one was started.",
        clock(batch.started_at or batch.created_at),
        who,
    )


def _answer_with_batch(request: HttpRequest, batch: Batch, notice: str, *, status: int = 200) -> HttpResponse:
    """HTMX: the batch's panel, or, asked from the page of another batch (a retry, a new run from
    an ended one's page), that batch's page in its place. A plain form: 303 to the batch page, the
    notice as a message."""
    if htmx_of(request) and _on_another_batchs_page(request, batch):
        messages.info(request, notice, extra_tags="batches")  # the batch page shows it
        return _go_to_batch_page(batch)
    if htmx_of(request):
        batch = selectors.fresh(batch)  # with what the workers say
        context = panel_context(operation_of(batch), batch.params, batch, notice=notice)
        response = render(request, PANEL_TEMPLATE, {**context, "fragment": True}, status=status)
        return _with_ended_event(response, batch)
    messages.info(request, notice, extra_tags="batches")  # the batch page shows it
    # The person just started (or joined) it without JavaScript: the page keeps itself live.
    live = "?live=1" if batch.is_active else ""
    return HttpResponseSeeOther(reverse("batches:detail", args=[batch.pk]) + live)


def _on_another_batchs_page(request: HttpRequest, batch: Batch) -> bool:
    page = htmx_of(request).current_url_abs_path or ""
    try:
        match = resolve(urlsplit(page).path)
    except Resolver404:
        return False
    return match.view_name == "batches:detail" and match.kwargs.get("pk") != batch.pk


def _go_to_batch_page(batch: Batch) -> HttpResponse:
    """htmx loads the batch's page content (its notice, heading, panel and CSV link) in place of
    this one's and puts its address in the bar; the rest of the page, its live region and scripts
    stay."""
    response = HttpResponse(status=200)
    page = "#batches-page"
    target = {"path": reverse("batches:detail", args=[batch.pk]), "target": page, "select": page}
    response["HX-Location"] = json.dumps({**target, "swap": "outerHTML"})
    return response


def _describe(exc: ValidationError) -> str:
    """A refusal's messages for people, each field's prefixed with the field's name."""
    if not hasattr(exc, "error_dict"):
        return " ".join(exc.messages)
    return " ".join(
        message if field == NON_FIELD_ERRORS else f"{field}: {message}"
        for field, messages in exc.message_dict.items()
        for message in messages
    )


def _refused(
    request: HttpRequest, exc: ValidationError, panel: dict[str, Any], *, title: str, fragment: bool
) -> HttpResponse:
    """A refused start or retry: 429 for a per-user limit (with Retry-After), else 400. HTMX: the
    panel with the message; a plain form: a page with it."""
    message = _describe(exc)
    status = 429 if isinstance(exc, StartLimitReached) else 400
    if htmx_of(request):
        response = render(request, PANEL_TEMPLATE, {**panel, "error": message, "fragment": fragment}, status=status)
    else:
        response = problems.answer(request, problems.Problem("refused", status, title, message, message))
    if isinstance(exc, StartLimitReached):
        response["Retry-After"] = str(exc.retry_after)
    return response


@login_required
def start(request: HttpRequest, operation: str) -> HttpResponse:
    """GET: the operation's confirmation page (the no-JavaScript path). POST: start."""
    if request.method == "GET":
        return _start_confirmation(request, operation)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    posted = _params_posted(request.POST)
    try:
        op = get_operation(operation)
        result = start_batch(
            operation=operation,
            data=posted,
            user=request.user,
            from_form=True,
            notify=notify_choice(request.POST),
            site_url=request.build_absolute_uri("/"),
        )
    except (UnknownOperation, PermissionDenied):
        raise Http404 from None
    except ValidationError as exc:
        # The form again, and the message: with the params as checked when they were valid (a
        # per-user limit, a missing event), so that the next start still asks its question first;
        # else with what was posted for the operation's own fields.
        try:
            params = op.parse_params(posted, from_form=True)
        except ValidationError:
            params = {name: value for name, value in posted.items() if name in op.Params.model_fields}
        return _refused(request, exc, panel_context(op, params, None), title="Could not start", fragment=False)

    return _answer_with_batch(request, result.batch, start_notice(result), status=202 if result.created else 200)


# The start form's "Email me when it ends" checkbox, and a field saying the form offered it (an
# unticked checkbox sends nothing; a form without it, e.g. a host's own, gets the operation's
# default). Their leading underscore keeps them apart from params: a Params field cannot have one.
NOTIFY_FIELD = "_notify"
NOTIFY_OFFERED_FIELD = "_notify_offered"
_NOT_PARAMS = {"csrfmiddlewaretoken", NOTIFY_FIELD, NOTIFY_OFFERED_FIELD}


def _params_posted(data: QueryDict) -> dict[str, str]:
    return {name: value for name, value in data.items() if name not in _NOT_PARAMS}


def notify_choice(data: QueryDict) -> bool | None:
    """The form's choice: True (ticked), False (offered, not ticked), None (not offered)."""
    if NOTIFY_FIELD in data:
        return True
    return False if NOTIFY_OFFERED_FIELD in data else None


def _start_confirmation(request: HttpRequest, operation: str) -> HttpResponse:
    try:
        op = get_operation(operation)
    except UnknownOperation:
        raise Http404 from None
    try:
        params = op.parse_params(_params_posted(request.GET), from_form=True)
    except ValidationError as exc:
        message = _describe(exc)
        return problems.answer(request, problems.Problem("refused", 400, "Could not start", message, message))
    if not op.may_act(request.user, params):
        raise Http404
    context = {
        "op": op,
        "params": params,
        "question": op.confirmation(params) or f"{op.label}: {op.scope_label(params)}?",
        "back_url": op.scope_url(params) or "/",
        "notify": notify_choice(request.GET),
    }
    return render(request, "batches/start_confirm.html", context)


@login_required
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation page (the no-JavaScript path). POST: cancel."""
    if request.method == "GET":
        batch = _visible_batch_or_404(request, pk)
        context = {"batch": batch, "op": operation_of(batch), "worked": selectors.progress(batch).worked}
        return render(request, "batches/cancel_confirm.html", context)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        batch, ended = cancel_batch(pk, user=request.user)
    except Batch.DoesNotExist:
        raise Http404("No such batch.") from None
    not_done = operation_of(batch).items_name.capitalize()
    notice = f"Cancelled. {not_done} not done yet are counted as skipped." if ended else "This batch had already ended."
    return _answer_with_batch(request, batch, notice)


@login_required
@require_POST
def retry(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        result = retry_failed(pk, user=request.user, site_url=request.build_absolute_uri("/"))
    except Batch.DoesNotExist:
        raise Http404("No such batch.") from None
    except ValidationError as exc:
        batch = _visible_batch_or_404(request, pk)
        panel = panel_context(operation_of(batch), batch.params, batch)
        return _refused(request, exc, panel, title="Could not retry", fragment=True)
    return _answer_with_batch(request, result.batch, start_notice(result), status=202 if result.created else 200)


def _visible_batch_or_404(request: HttpRequest, pk: int) -> Batch:
    batch = selectors.visible_batch(request.user, pk)
    if batch is None:
        raise Http404("No such batch.")
    return batch


@login_required
@require_GET
def batch_detail(request: HttpRequest, pk: int) -> HttpResponse:
    batch = _visible_batch_or_404(request, pk)
    op = operation_of(batch)
    context = panel_context(op, batch.params, batch)
    if not batch.is_active:
        context["failure_list"] = failure_rows(op, batch)
    live = batch.is_active and request.GET.get("live") == "1"
    context.update(
        live=live,
        refresh_seconds=NO_JS_REFRESH_SECONDS,
        scope_url=op.scope_url(batch.params),
        report_url=_report_url(batch),
    )
    response = render(request, "batches/batch_detail.html", context)
    if live:
        response["Refresh"] = str(NO_JS_REFRESH_SECONDS)
    return response


def _report_url(batch: Batch) -> str | None:
    """The batch's CSV report is the JSON API's: linked where the API is mounted."""
    try:
        return reverse("api:batch_report", args=[batch.pk])
    except NoReverseMatch:
        return None


@login_required
@require_GET
def download(request: HttpRequest, pk: int) -> HttpResponse:
    """The file an export produced: for those who may see the batch (else 404), streamed from the
    storage; 410 with a page saying so once it has expired."""
    batch = _visible_batch_or_404(request, pk)
    file = results.export_file(batch)
    if file is None:
        raise Http404("This batch has no file.")
    if file.expired:
        back = (reverse("batches:detail", args=[batch.pk]), "Back to the batch")
        problem = problems.Problem(
            code="file_expired",
            status=410,
            title="This file has expired",
            message=results.expired_message(file),
            sentence=results.expired_message(file),
            links=(back,),
        )
        return problems.answer(request, problem)
    return results.file_response(file)


@login_required
@require_GET
def batch_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled fragment: session, user and batch are its only queries.

    While the batch keeps the status the page shows (`?shown=`), only its live figures are
    rendered; once the status changed (queued, running, then an end) the whole panel is, and
    swapped in for the old one: a finished panel carries no polling, so polling stops.
    """
    batch = _visible_batch_or_404(request, pk)
    context = panel_context(operation_of(batch), batch.params, batch)
    if batch.is_active and request.GET.get("shown") == batch.status:
        return HttpResponse(live_cache.render(request, LIVE_TEMPLATE, {**context, "live_only": True}))
    response = render(request, PANEL_TEMPLATE, {**context, "fragment": True})
    return _with_ended_event(reswap(retarget(response, f"#panel-{batch.operation}"), "outerHTML"), batch)


@login_required
@require_GET
def batch_failures(request: HttpRequest, pk: int) -> HttpResponse:
    batch = _visible_batch_or_404(request, pk)
    op = operation_of(batch)
    context = {"batch": batch, "op": op, "failure_list": failure_rows(op, batch)}
    return render(request, "batches/_failures.html", context)


@login_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    """The batches the user may see, newest first, filtered by status, operation and (for those who
    may see others' batches) who started them, paginated."""
    status = request.GET.get("status", "")
    operation = request.GET.get("operation", "")
    sees_others = selectors.sees_others_batches(request.user)
    mine = sees_others and request.GET.get("mine") == "1"
    batches = selectors.history(request.user, status=status, operation=operation, mine=mine)
    page = Paginator(batches, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    files = results.files_of([batch.pk for batch in page.object_list])
    rows = [(batch, selectors.progress(batch), operation_of(batch), files.get(batch.pk)) for batch in page.object_list]
    chosen = (("status", status), ("operation", operation), ("mine", "1" if mine else ""))
    filters = {name: value for name, value in chosen if value}
    context = {
        "page": page,
        "rows": rows,
        "status": status,
        "operation": operation,
        "sees_others": sees_others,
        "mine": mine,
        "statuses": Batch._meta.get_field("status").choices,
        "operations": selectors.visible_operations(request.user),
        "filter_query": urlencode(filters),
    }
    return render(request, "batches/history.html", context)
