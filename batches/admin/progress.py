"""A batch's progress page inside the admin, in the admin's look: live (htmx polls a fragment of
its own every second while the batch runs), with cancel (asked first), the failed items and retry.

Where an admin action over a selection (batches.admin.actions) takes the person. The same
visibility rule as everything else: a batch the person may not see is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers

from batches import formats, selectors
from batches.engine.status import describe, with_liveness
from batches.models import Batch
from batches.operations import UnknownOperation, get_operation
from batches.services import StartLimitReached, cancel_batch, retry_failed

FAILURES_SHOWN = 100
PAGE_TEMPLATE = "admin/batches/batch/progress.html"
LIVE_TEMPLATE = "admin/batches/batch/_progress_live.html"
CANCEL_TEMPLATE = "admin/batches/batch/progress_cancel.html"


class ProgressPages(ModelAdmin):
    """Adds `<id>/progress/` (and its live fragment, cancel and retry) to the batches' admin."""

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path("<int:batch_id>/progress/", wrap(self.progress_view), name="batches_batch_progress"),
            path("<int:batch_id>/progress/live/", wrap(self.progress_live_view), name="batches_batch_progress_live"),
            path(
                "<int:batch_id>/progress/cancel/", wrap(self.progress_cancel_view), name="batches_batch_progress_cancel"
            ),
            path("<int:batch_id>/progress/retry/", wrap(self.progress_retry_view), name="batches_batch_progress_retry"),
        ]
        return own + super().get_urls()

    def _visible(self, request: HttpRequest, batch_id: int) -> Batch:
        # Staff only (admin_view), and then the one visibility rule: whoever started it, or whom its
        # operation lets see it; not the batches' own view permission, which a ticket clerk lacks.
        visible = with_liveness(selectors.visible_batches(request.user))  # for what it is doing, in words
        batch = visible.select_related("created_by").filter(pk=batch_id).first()
        if batch is None:
            raise Http404("There is no batch with that number you may see.")
        return batch

    def progress_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        batch = self._visible(request, batch_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(batch),
            "subtitle": None,
            **live_context(batch),
        }
        request.current_app = self.admin_site.name
        return _never_cached(TemplateResponse(request, PAGE_TEMPLATE, context))

    def progress_live_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        batch = self._visible(request, batch_id)
        return _never_cached(TemplateResponse(request, LIVE_TEMPLATE, live_context(batch)))

    def progress_cancel_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        """GET asks ("Stop this run?"), POST cancels: the admin's way, as its delete does."""
        batch = self._visible(request, batch_id)
        here = reverse("admin:batches_batch_progress", args=[batch.pk])
        if request.method != "POST":
            if not batch.is_active:
                return HttpResponseRedirect(here)
            context = {**self.admin_site.each_context(request), "opts": self.opts, "title": "Stop this run?"}
            context.update(live_context(batch))
            request.current_app = self.admin_site.name
            return TemplateResponse(request, CANCEL_TEMPLATE, context)
        try:
            _, ended = cancel_batch(batch.pk, user=request.user)
        except Batch.DoesNotExist:
            raise Http404 from None
        if ended:
            self.message_user(request, "Cancelled: items not done yet are counted as skipped.", messages.SUCCESS)
        else:
            self.message_user(request, "This run had already ended: nothing to cancel.", messages.INFO)
        return HttpResponseRedirect(here)

    def progress_retry_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        batch = self._visible(request, batch_id)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:batches_batch_progress", args=[batch.pk]))
        try:
            result = retry_failed(batch.pk, user=request.user)
        except Batch.DoesNotExist:
            raise Http404 from None
        except (ValidationError, StartLimitReached) as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:batches_batch_progress", args=[batch.pk]))
        verb = "Started" if result.created else "Joined the running"
        self.message_user(request, f"{verb} retry of the failed items: batch #{result.batch.pk}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:batches_batch_progress", args=[result.batch.pk]))


def live_context(batch: Batch) -> dict[str, Any]:
    """What the page and its live fragment show: the figures as the app writes them, the state in
    a sentence, and once the batch has ended its first failed items, named for people."""
    condition = describe(batch)
    figures = selectors.progress(batch, moving=condition.moving)
    nouns = selectors.operation_nouns(batch.operation)
    try:
        op = get_operation(batch.operation)
    except UnknownOperation:
        op = None
    failures: list[tuple[str, str]] = []
    if figures.failed and not batch.is_active:
        first = list(selectors.failures(batch)[:FAILURES_SHOWN])
        labels = op.item_labels(batch.params, [f.item_pk for f in first if f.item_pk]) if op else {}
        failures = [(labels.get(f.item_pk) or f.item_key, f.error) for f in first]
    return {
        "batch": batch,
        "p": figures,
        "condition": condition,
        "operation_label": selectors.operation_label(batch.operation),
        "items_name": nouns.items_name if nouns else "items",
        "figures": {
            "done": formats.number(figures.done),
            "failed": formats.number(figures.failed),
            "skipped": formats.number(figures.skipped),
            "total": formats.number(figures.total) if figures.total is not None else "…",
            "rate": formats.rate(figures.rate) if figures.rate else "",
            "eta": formats.duration(figures.eta) if figures.eta is not None else "",
            "elapsed": formats.duration(figures.elapsed) if figures.elapsed is not None else "",
            "started": formats.clock(batch.created_at),
        },
        "failures": failures,
        "failed_noun": formats.noun(nouns, figures.failed),
        "may_retry": op is not None and not batch.is_active and figures.failed > 0,
        "scope_url": op.scope_url(batch.params) if op else None,
    }


def _never_cached(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)
    return response
