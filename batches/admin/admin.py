"""Job review for operators: read-only, everything a batch did at a glance.

One rule with the app: a staff user sees (and acts on) only the batches selectors.visible_batches
gives them, and API tokens only their own; only a superuser sees all and may make tokens for others.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join

from batches import formats, results, selectors, tokens
from batches.engine import recovery, workers
from batches.engine.status import describe, with_liveness
from batches.models import ApiToken, Batch, Chunk, ItemFailure, Worker
from batches.services import cancel_batch, retry_failed

from .progress import ProgressPages
from .selection import CheckedSelection

FAILURES_INLINE = 20
DONE_INLINE = 20


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class BatchOperationFilter(admin.SimpleListFilter):
    """The operations of the batches the user may see, by their labels (the stock filter would
    list every batch's). The parameter is the lookup path to the batch's operation."""

    title = "operation"
    parameter_name = "operation"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return selectors.visible_operations(request.user)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class VisibleOperationFilter(BatchOperationFilter):
    """The same, for item failures: by their batch's operation."""

    parameter_name = "batch__operation"


@admin.register(Batch)
class BatchAdmin(ProgressPages, CheckedSelection, ReadOnlyAdmin):
    actions = ["cancel", "retry_failed_items", "resume_stale"]
    cancel_confirmation_template = "admin/batches/batch/cancel_selected_confirmation.html"
    list_display = [
        "id",
        "operation_label",
        "scope_label",
        "created_by",
        "status",
        "condition",
        "progress_percent",
        "done",
        "failed",
        "total_items",
        "created_at",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", BatchOperationFilter, ("created_by", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["scope_key", "scope_label", "operation", "created_by__username", "=id"]
    date_hierarchy = "created_at"
    fields = [
        "operation_label",
        "scope_key",
        "scope_label",
        "params",
        "status",
        "condition",
        "created_by",
        "progress_percent",
        "total_items",
        "done",
        "failed",
        "skipped",
        "error",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "done_items",
        "failed_items",
        "result_file",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        # The list, its filters, the change page and every action's queryset all come from here.
        visible = with_liveness(selectors.visible_batches(request.user))  # for the condition column
        ordering = self.get_ordering(request)
        return visible.order_by(*ordering) if ordering else visible

    # The actions get only visible batches and go through the same services as the web UI.
    @admin.action(description="Cancel selected batches")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Batch]) -> TemplateResponse | None:
        """Asks first, on a page of its own (as Django's delete action does); cancels once that
        page's form comes back with `post=yes`."""
        if request.POST.get("post") != "yes":
            return self._confirm_cancel(request, queryset)
        ended = 0
        for batch in queryset.active():
            try:
                ended += cancel_batch(batch.pk, user=request.user)[1]
            except Batch.DoesNotExist:
                continue
        self.message_user(request, f"Cancelled {ended} batch(es).", messages.SUCCESS)

    def _confirm_cancel(self, request: HttpRequest, queryset: QuerySet[Batch]) -> TemplateResponse | None:
        active = list(queryset.active())
        if not active:
            self.message_user(request, "None of the selected batches is running: nothing to cancel.", messages.INFO)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel these batches?",
            "subtitle": None,
            "opts": self.opts,
            "batches": [(batch, selectors.progress(batch)) for batch in active],
            "left_alone": queryset.count() - len(active),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.cancel_confirmation_template, context)

    @admin.action(description="Retry the failed items of selected batches")
    def retry_failed_items(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        for batch in queryset:
            try:
                result = retry_failed(batch.pk, user=request.user)
            except (Batch.DoesNotExist, ValidationError) as exc:
                reason = " ".join(exc.messages) if isinstance(exc, ValidationError) else "not visible to you"
                self.message_user(request, f"Batch #{batch.pk}: {reason}", messages.WARNING)
                continue
            verb = "started" if result.created else "joined the active"
            self.message_user(request, f"Batch #{batch.pk}: {verb} batch #{result.batch.pk}.", messages.SUCCESS)

    @admin.action(description="Resume selected batches if they are stale")
    def resume_stale(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        now = timezone.now()
        # `queryset` holds only batches visible to the user (see get_queryset).
        stale = queryset.active().filter(lease_expires_at__lt=now)
        done = [recovery.resume_by_id(batch.pk, now) for batch in stale]
        skipped = queryset.count() - len(done)
        summary = ", ".join(f"#{item.batch_id} {item.action}" for item in done if item) or "none"
        self.message_user(request, f"Recovered: {summary}. Not stale (left alone): {skipped}.", messages.INFO)

    @admin.display(description="now")
    def condition(self, batch: Batch) -> str:
        return describe(batch).message

    @admin.display(description="operation", ordering="operation")
    def operation_label(self, batch: Batch) -> str:
        return selectors.operation_label(batch.operation)

    @admin.display(description="worked")
    def progress_percent(self, batch: Batch) -> str:
        """Of the total, the share worked (done or failed); skipped items are said apart."""
        figures = selectors.progress(batch)
        skipped = f", {formats.number(figures.skipped)} skipped" if figures.skipped else ""
        return f"{figures.percent}%{skipped}"

    # The counts as the app writes them: "2,000", not "2000".
    @admin.display(description="done", ordering="done_count")
    def done(self, batch: Batch) -> str:
        return formats.number(batch.done_count)

    @admin.display(description="failed", ordering="failed_count")
    def failed(self, batch: Batch) -> str:
        return formats.number(batch.failed_count)

    @admin.display(description="skipped", ordering="skipped_count")
    def skipped(self, batch: Batch) -> str:
        return formats.number(batch.skipped_count)

    @admin.display(description="total", ordering="total")
    def total_items(self, batch: Batch) -> str:
        return formats.number(batch.total)

    @admin.display(description="done items")
    def done_items(self, batch: Batch) -> str:
        """The first items the batch did, as its checkpoints recorded them (not as its operation's
        items() lists them now), and the way to the report of every item."""
        first = selectors.first_done(batch, DONE_INLINE)
        if not first:
            return "—"
        rows = format_html_join(
            "", "<li><code>{}</code>{}</li>", ((key, f": {item}" if item else "") for key, item in first)
        )
        if selectors.operation_nouns(batch.operation) is None:
            return format_html("<ul>{}</ul>", rows)  # its report needs the operation (409)
        try:
            link = reverse("api:batch_report", args=[batch.pk])
        except NoReverseMatch:  # the JSON API is not mounted: no report to link
            return format_html("<ul>{}</ul>", rows)
        return format_html('<ul>{}</ul><a href="{}" download>The report of every item (CSV)</a>', rows, link)

    @admin.display(description="file")
    def result_file(self, batch: Batch) -> str:
        """An export's file: its download (the web UI's, else the API's), figures and expiry."""
        file = results.export_file(batch)
        if file is None:
            return "—"
        figures = f"{formats.number(file.rows)} rows, {file.bytes:,} bytes, sha256 {file.sha256}"
        until = f"{timezone.localtime(file.expires_at):%Y-%m-%d %H:%M}"
        if file.expired:
            return f"{file.download_name}: expired {until}, deleted ({figures})"
        for name in ("batches:download", "api:batch_file"):
            try:
                link = reverse(name, args=[batch.pk])
            except NoReverseMatch:
                continue
            return format_html(
                '<a href="{}" download>Download {}</a> ({}; kept until {})',
                link,
                file.download_name,
                figures,
                until,
            )
        return f"{file.download_name} ({figures})"

    @admin.display(description="failed items")
    def failed_items(self, batch: Batch) -> str:
        first = selectors.failures(batch)[:FAILURES_INLINE]
        if not first:
            return "—"
        rows = format_html_join("", "<li><code>{}</code>: {}</li>", ((f.item_key, f.error) for f in first))
        link = reverse("admin:batches_itemfailure_changelist") + f"?batch__id__exact={batch.pk}"
        nouns = selectors.operation_nouns(batch.operation)
        every = f"All {formats.number(batch.failed_count)} failed {formats.noun(nouns, batch.failed_count)}"
        return format_html('<ul>{}</ul><a href="{}">{}</a>', rows, link, every)


@admin.register(ItemFailure)
class ItemFailureAdmin(ReadOnlyAdmin):
    list_display = ["batch", "item_key", "error", "created_at"]
    ordering = ["-batch", "item_pk"]  # the newest batch first, each batch's items in their order
    list_filter = [VisibleOperationFilter, "created_at"]
    search_fields = ["item_key", "error", "=batch__id"]
    list_select_related = ["batch"]
    raw_id_fields = ["batch"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ItemFailure]:
        failures = super().get_queryset(request)
        if request.user.is_superuser:
            return failures
        return failures.filter(batch__in=selectors.visible_batches(request.user).values("pk"))

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The batch page links here filtered to its own failures.
        return lookup == "batch__id__exact" or super().lookup_allowed(lookup, value, request)


_SECRET_ATTR = "_secret_shown_once"


@admin.register(ApiToken)
class ApiTokenAdmin(CheckedSelection):
    """Tokens for API clients: the secret is shown once, in the page that answers the creation.

    A user manages only their own tokens; only a superuser may see all or make one for someone else.
    A password change or reset revokes the user's tokens (batches.accounts).
    """

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["name", "user__username", "prefix"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    actions = ["revoke"]
    created_template = "admin/batches/apitoken/created.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        every = super().get_queryset(request)
        return every if request.user.is_superuser else every.filter(user=request.user)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            # Not offered, so a forged `user` in the POST is never read: save_model makes it theirs.
            return ["user", "name"] if request.user.is_superuser else ["name"]
        return ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # revoke instead: the record of who had access stays

    def save_model(self, request: HttpRequest, obj: ApiToken, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        if not request.user.is_superuser:
            obj.user = request.user
        setattr(obj, _SECRET_ATTR, tokens.assign_secret(obj))
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        # The secret goes out in this page only: never in a message (a cookie), a redirect or a log.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API token created",
            "token": obj,
            "secret": getattr(obj, _SECRET_ATTR),
        }
        response = TemplateResponse(request, self.created_template, context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        self.message_user(request, f"Revoked {tokens.revoke(queryset)} token(s).", messages.SUCCESS)


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    """The worker processes: alive or gone, and what each is running now."""

    list_display = [
        "id", "host", "pid", "threads", "alive", "started_at", "heartbeat_at", "running_now", "rate", "gone_reason",
    ]  # fmt: skip
    list_filter = [("gone_at", admin.EmptyFieldListFilter), "host"]
    search_fields = ["host", "=pid"]
    fields = [*list_display, "queues", "version", "items_done", "gone_at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        held = Prefetch("claims", queryset=Chunk.objects.order_by("batch", "index"), to_attr="held")
        return super().get_queryset(request).order_by("gone_at", "-heartbeat_at").prefetch_related(held)

    @admin.display(boolean=True, description="alive")
    def alive(self, worker: Worker) -> bool:
        return workers.is_alive(worker, timezone.now())

    @admin.display(description="items per second", ordering="items_per_second")
    def rate(self, worker: Worker) -> str:
        return f"{worker.items_per_second:,.1f}"

    @admin.display(description="running now")
    def running_now(self, worker: Worker) -> str:
        return ", ".join(f"batch #{chunk.batch_id} chunk {chunk.index}" for chunk in worker.held) or "—"
