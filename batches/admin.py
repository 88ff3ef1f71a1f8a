"""Job review for operators: read-only, everything a batch did at a glance."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import recovery, selectors
from .api import tokens
from .models import ApiToken, Batch, ItemFailure
from .services import cancel_batch, retry_failed

FAILURES_INLINE = 20


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    actions = ["cancel", "retry_failed_items", "resume_stale"]
    list_display = [
        "id",
        "operation",
        "scope_label",
        "created_by",
        "status",
        "progress_percent",
        "done_count",
        "failed_count",
        "total",
        "created_at",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "operation", "created_by", "created_at"]
    search_fields = ["scope_key", "scope_label", "operation", "created_by__username", "=id"]
    list_select_related = ["created_by"]
    date_hierarchy = "created_at"
    fields = [
        "operation",
        "scope_key",
        "scope_label",
        "params",
        "status",
        "created_by",
        "progress_percent",
        "total",
        "done_count",
        "failed_count",
        "skipped_count",
        "error",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "failed_items",
    ]
    readonly_fields = fields

    # The actions go through the same services as the web UI, with the same visibility rules.
    @admin.action(description="Cancel selected batches")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        ended = 0
        for batch in queryset.active():
            try:
                ended += cancel_batch(batch.pk, user=request.user)[1]
            except Batch.DoesNotExist:
                continue
        self.message_user(request, f"Cancelled {ended} batch(es).", messages.SUCCESS)

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
        stale = queryset.active().filter(lease_expires_at__lt=now)
        done = [recovery.resume_by_id(batch.pk, now) for batch in stale]
        skipped = queryset.count() - len(done)
        summary = ", ".join(f"#{item.batch_id} {item.action}" for item in done if item) or "none"
        self.message_user(request, f"Recovered: {summary}. Not stale (left alone): {skipped}.", messages.INFO)

    @admin.display(description="progress")
    def progress_percent(self, batch: Batch) -> str:
        return f"{selectors.progress(batch).percent}%"

    @admin.display(description="failed items")
    def failed_items(self, batch: Batch) -> str:
        first = selectors.failures(batch)[:FAILURES_INLINE]
        if not first:
            return "—"
        rows = format_html_join("", "<li><code>{}</code>: {}</li>", ((f.item_key, f.error) for f in first))
        link = reverse("admin:batches_itemfailure_changelist") + f"?batch__id__exact={batch.pk}"
        return format_html('<ul>{}</ul><a href="{}">All {} failed items</a>', rows, link, batch.failed_count)


@admin.register(ItemFailure)
class ItemFailureAdmin(ReadOnlyAdmin):
    list_display = ["batch", "item_key", "error", "created_at"]
    list_filter = ["batch__operation", "created_at"]
    search_fields = ["item_key", "error", "=batch__id"]
    list_select_related = ["batch"]
    raw_id_fields = ["batch"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The batch page links here filtered to its own failures.
        return lookup == "batch__id__exact" or super().lookup_allowed(lookup, value, request)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens for API clients: the secret is shown once, when the token is created."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["name", "user__username", "prefix"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["user", "name"]
        return ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # revoke instead: the record of who had access stays

    def save_model(self, request: HttpRequest, obj: ApiToken, form: object, change: bool) -> None:
        raw = None if change else tokens.assign_secret(obj)
        super().save_model(request, obj, form, change)
        if raw:
            self.message_user(
                request,
                f"Token for {obj.user}: {raw} — copy it now, it will not be shown again.",
                messages.WARNING,
            )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        self.message_user(request, f"Revoked {tokens.revoke(queryset)} token(s).", messages.SUCCESS)
