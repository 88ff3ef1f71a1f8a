"""Operations over the rows a person selected in a list: the admin's ticked rows, or "Select all"
across pages with the list's filters and search.

@register
class ReissueSelectedTickets(SelectedRows, ReissueTickets):   # the selection's items, its handling
    name = "reissue_selected"
    label = "Reissue selected tickets"
    model = Ticket

A selection is recorded, not materialised: its params are the list's query (filters and search),
or the ticked primary keys when rows were ticked, the person who made it, and the largest primary
key at the click. So the click costs the same for 10 rows or 1,000,000. The rows are listed again
when the batch is planned, as that person's list would list them, bounded by that key: rows created
later are left out (primary keys grow), and rows deleted or no longer matching by the time their
turn comes are skipped and counted.

The list is the admin's: batches.admin registers the resolver that rebuilds a changelist's
queryset (`set_resolver`), in the web server and in the workers alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import Model, QuerySet
from django.urls import NoReverseMatch, reverse
from pydantic import Field

from .operations import BIGINT_MAX, ObjectId, Operation, Params

# The most rows a selection may tick one by one: a changelist page holds far fewer.
MOST_TICKED = 10_000

# The resolver: (the selection's params, the operation's model) -> the queryset the list showed.
Resolver = Callable[[Mapping[str, Any], type[Model]], QuerySet[Any]]
_resolver: Resolver | None = None


class Selection(Params):
    """A selection's params, as an admin action records them (batches.admin.actions)."""

    site: str = Field("admin", max_length=100, description="The admin site whose list it was.")
    model: str = Field(max_length=200, description='The model, "app_label.model_name".')
    filters: dict[str, list[str]] = Field(
        default_factory=dict, description="The list's query: its filters and search (`q`), as its address had them."
    )
    pks: list[ObjectId] | None = Field(
        None, max_length=MOST_TICKED, description="The ticked rows; none: every row the query matches."
    )
    max_pk: int | None = Field(
        None, ge=0, le=BIGINT_MAX, description="The largest primary key at the click: rows made later are left out."
    )
    by: ObjectId = Field(description="Who selected: the rows are those their list showed.")
    title: str = Field("", max_length=200, description="The selection as the list said it, for people.")


def set_resolver(resolver: Resolver) -> None:
    """Install what turns a selection back into its rows (batches.admin does, when it is ready)."""
    global _resolver
    _resolver = resolver


def model_label(model: type[Model]) -> str:
    return model._meta.label_lower


def identity(params: Mapping[str, Any]) -> str:
    """The selection's identity: the same rows picked the same way give the same, whoever picks
    them and whenever (its bound left out), so that a second click joins the first's run."""
    what = {"pks": sorted(params["pks"])} if params.get("pks") is not None else {"filters": params.get("filters", {})}
    text = json.dumps({"model": params["model"], **what}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class SelectedRows(Operation):
    """An operation over the rows someone selected of `model` (put it first among the bases, so
    that its params, scope and items are the selection's while the handling is the other base's).

    `scope_per`: "selection" (one run per selection at a time: the same selection joins it),
    or "model" (one run over the model at a time). Override `scope(params)` for any other rule
    (one per tenant: read it from the params' filters).
    """

    model: ClassVar[type[Model]]
    Params: ClassVar[type[Params]] = Selection
    scope_per: ClassVar[Literal["selection", "model"]] = "selection"

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["model"] != model_label(self.model):
            raise ValidationError({"model": f"This operation works on {self.model._meta.verbose_name_plural} only."})
        return params

    def scope(self, params: Mapping[str, Any]) -> str:
        if self.scope_per == "model":
            return params["model"]
        return f"{params['model']}:{identity(params)}"

    def scope_label(self, params: Mapping[str, Any]) -> str:
        """ "3 selected tickets", "Tickets where event is Gala matching “Ada”", or "All tickets"."""
        if params.get("title"):
            return params["title"][:255]
        plural = str(self.model._meta.verbose_name_plural)
        if params.get("pks") is not None:
            count = len(params["pks"])
            noun = plural if count != 1 else str(self.model._meta.verbose_name)
            return f"{count:,} selected {noun}"[:255]
        filters = dict(params.get("filters", {}))
        search = " ".join(filters.pop("q", []))
        said = [f"{key.removesuffix('__exact').replace('__', ' ')} is {', '.join(v)}" for key, v in filters.items()]
        text = (
            plural.capitalize()
            + (f" where {', '.join(said)}" if said else "")
            + (f" matching “{search}”" if search else "")
        )
        return (text if said or search else f"All {plural}")[:255]

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        """Staff who may view the model, starting their own selection (the admin checks the
        action's own permission before it gets here)."""
        opts = self.model._meta
        return bool(
            user.is_authenticated
            and user.is_staff
            and params.get("by") == user.pk
            and (
                user.has_perm(f"{opts.app_label}.view_{opts.model_name}")
                or user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
            )
        )

    def items(self, params: Mapping[str, Any]) -> QuerySet[Any]:
        if _resolver is None:
            raise ImproperlyConfigured("Selections need batches.admin in INSTALLED_APPS (it lists them again).")
        rows = _resolver(params, self.model)
        if params.get("pks") is not None:
            return rows.filter(pk__in=params["pks"])
        if params.get("max_pk") is None:
            return rows.none()  # the table was empty at the click
        return rows.filter(pk__lte=params["max_pk"])

    def confirmation(self, params: Mapping[str, Any]) -> str | None:
        return None

    def scope_url(self, params: Mapping[str, Any]) -> str | None:
        """The list the selection was made in, filtered as it was."""
        app_label, model_name = params["model"].split(".", 1)
        try:
            url = reverse(f"{params.get('site', 'admin')}:{app_label}_{model_name}_changelist")
        except NoReverseMatch:
            return None
        query = urlencode([(key, value) for key, values in params.get("filters", {}).items() for value in values])
        return f"{url}?{query}" if query else url
