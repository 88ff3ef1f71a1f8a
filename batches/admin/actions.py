"""An operation as an admin action, in one line: `actions = [batch_action(ReissueSelectedTickets)]`.

The operation is a `batches.selection.SelectedRows`. The action records the selection (the ticked
rows, or the list's filters and search with "Select all"), starts the operation on it behind the
guard (the same selection while it runs joins its run) and goes to the run's progress page in the
admin. It answers at once whatever the selection's size: no row of it is read in the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Max, Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from batches import formats
from batches.operations import get_operation
from batches.selection import MOST_TICKED, SelectedRows, model_label
from batches.services import start_batch

from .selected_rows import query_of

AdminAction = Callable[[ModelAdmin, HttpRequest, QuerySet[Any]], HttpResponse | None]


def batch_action(
    operation: type[SelectedRows],
    *,
    name: str | None = None,
    description: str | None = None,
    permissions: Iterable[str] | None = None,
) -> AdminAction:
    """The admin action that runs `operation` over the selection, as a batch.

    `name`: the action's name (the operation's by default); `description`: its label in the
    actions menu (the operation's label); `permissions`: as `@admin.action(permissions=...)`, each
    checked by the model admin's `has_<permission>_permission(request)` (by default the model's
    view permission).
    """

    def action(model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return run_selection(model_admin, request, operation.name)

    action.__name__ = action.__qualname__ = name or operation.name
    action.short_description = description or operation.label  # type: ignore[attr-defined]
    action.allowed_permissions = tuple(permissions or ("view",))  # type: ignore[attr-defined]
    return action


def run_selection(model_admin: ModelAdmin, request: HttpRequest, operation: str) -> HttpResponse | None:
    """Start (or join) `operation` over what the person selected in `model_admin`'s list; the
    redirect to its progress page, or None (back to the list) with a message saying why not."""
    op = get_operation(operation)
    try:
        params = selection_params(model_admin, request)
        result = start_batch(operation=op.name, data=params, user=request.user)
    except ValidationError as exc:
        model_admin.message_user(request, f"Nothing was started: {' '.join(exc.messages)}", messages.ERROR)
        return None
    except PermissionDenied:
        model_admin.message_user(request, f"You may not run “{op.label}” on this list.", messages.ERROR)
        return None
    batch = result.batch
    if result.created:
        text = f"Started: {op.label}, {batch.scope_label}."
    else:
        who = batch.created_by.get_username() if batch.created_by else "someone"
        text = f"Already running since {formats.clock(batch.created_at)}, started by {who}: you are shown that run."
    model_admin.message_user(request, text, messages.SUCCESS if result.created else messages.INFO)
    return HttpResponseRedirect(reverse("admin:batches_batch_progress", args=[batch.pk]))


def selection_params(model_admin: ModelAdmin, request: HttpRequest) -> dict[str, Any]:
    """The selection as params: the list's query, the ticked rows (unless "Select all"), who, and
    the largest primary key now. One indexed query (the bound), whatever the selection's size."""
    model = model_admin.model
    filters = query_of(request)
    params: dict[str, Any] = {
        "site": model_admin.admin_site.name,
        "model": model_label(model),
        "filters": filters,
        "by": request.user.pk,
    }
    if request.POST.get("select_across") == "1":
        params["max_pk"] = model._base_manager.aggregate(top=Max("pk"))["top"]
        params["title"] = describe(model, filters)
    else:
        ticked = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if len(ticked) > MOST_TICKED:
            raise ValidationError(f"Tick at most {MOST_TICKED:,} rows, or use “Select all”.")
        if not all(value.isascii() and value.isdigit() for value in ticked):
            raise ValidationError("the selection holds something that is not a row of this list.")
        params["pks"] = sorted({int(value) for value in ticked})
    return params


def describe(model: type[Model], filters: dict[str, list[str]]) -> str:
    """The selection for people: "Tickets where event is Autumn Conference matching “Ada”". A
    filter on a relation names the related row (one query for each such filter)."""
    opts = model._meta
    said = []
    for key, values in filters.items():
        if key == "q":
            continue
        field_name, _, lookup = key.partition("__")
        try:
            field = opts.get_field(field_name)
        except FieldDoesNotExist:
            said.append(f"{key} is {', '.join(values)}")
            continue
        shown = values
        related = field.related_model if field.is_relation else None
        if related is not None and lookup in {"id__exact", "pk__exact", "exact", "id", "pk", ""}:
            names = related._base_manager.filter(pk__in=[v for v in values if v.isdigit()])
            shown = [str(row) for row in names] or values
        said.append(f"{field.verbose_name} is {', '.join(shown)}")
    search = " ".join(filters.get("q", []))
    plural = str(opts.verbose_name_plural)
    text = (
        plural.capitalize()
        + (f" where {', '.join(said)}" if said else "")
        + (f" matching “{search}”" if search else "")
    )
    if not said and not search:
        text = f"All {plural}"
    return text[:200]
