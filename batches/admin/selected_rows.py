"""A selection's rows listed again, as the admin list it was made in lists them for its maker.

Installed as the engine's resolver (batches.selection.set_resolver) when the app is ready: the
web server and the workers then list a selection the same way. The changelist is rebuilt from the
recorded query (filters and search) for that person, with their admin's own get_queryset, filters,
search and lookup checks, and without its count or its page: nothing but the queryset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.admin import ModelAdmin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.sites import all_sites
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, QueryDict

# What a changelist's address holds besides its filters and search: they change how the rows are
# shown, not which rows are listed.
SHOWING_ONLY = frozenset({"p", "o", "e", "all", "_popup", "_to_field", "_facets", "_changelist_filters"})


def query_of(request: HttpRequest) -> dict[str, list[str]]:
    """The list's filters and search, as its address has them, in one order."""
    return {key: values for key, values in sorted(request.GET.lists()) if key not in SHOWING_ONLY}


def model_admin_for(site_name: str, model: type[Model]) -> ModelAdmin:
    for site in all_sites:
        if site.name == site_name and site.is_registered(model):
            return site.get_model_admin(model)
    raise ValidationError(f"The admin site {site_name!r} has no list of {model._meta.verbose_name_plural}.")


def resolve(params: Mapping[str, Any], model: type[Model]) -> QuerySet[Any]:
    """The rows the selection's list matches now, as its maker's admin lists them."""
    model_admin = model_admin_for(params.get("site", "admin"), model)
    user = get_user_model()._default_manager.filter(pk=params["by"], is_active=True).first()
    if user is None:
        raise PermissionDenied("The person who made this selection no longer has an account.")
    request = HttpRequest()
    request.method = "GET"
    request.user = user
    query = QueryDict(mutable=True)
    for key, values in params.get("filters", {}).items():
        query.setlist(key, values)
    request.GET = query
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied("The person who made this selection may no longer see that list.")
    try:
        return _listed(model_admin, request)
    except (IncorrectLookupParameters, SuspiciousOperation) as exc:
        raise ValidationError(f"The list's filters are not valid: {exc}") from None


def _listed(model_admin: ModelAdmin, request: HttpRequest) -> QuerySet[Any]:
    changelist = model_admin.get_changelist(request)
    rows_only = type("RowsOnly", (changelist,), {"get_results": lambda self, request: None})
    listed = rows_only(
        request,
        model_admin.model,
        model_admin.get_list_display(request),
        model_admin.get_list_display_links(request, model_admin.get_list_display(request)),
        model_admin.get_list_filter(request),
        model_admin.date_hierarchy,
        model_admin.get_search_fields(request),
        model_admin.get_list_select_related(request),
        model_admin.list_per_page,
        model_admin.list_max_show_all,
        model_admin.list_editable,
        model_admin,
        model_admin.get_sortable_by(request),
        model_admin.search_help_text,
    )
    return listed.queryset.order_by()
