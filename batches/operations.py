"""The operation registry: how a bulk operation is declared.

@register
class ReissueTickets(Operation):
    name = "reissue_tickets"
    label = "Reissue tickets"

    class Params(Operation.Params):            # the params' shape, checked strictly (1st)
        event_id: ObjectId

    def may_act(self, user, params): ...       # who may start it on that scope (2nd)
    def may_see(self, user): ...               # which of its batches they see: True, False or a Q
    def clean_params(self, params): ...        # the domain's checks -> params, or ValidationError (3rd)
    def scope(self, params): ...               # -> "event:42": one active batch per scope
    def items(self, params): ...               # -> a queryset; walked in primary-key order
    def handle(self, item, ctx): ...           # one item; raise to record it as failed
    def handle_many(self, items, ctx): ...     # optional: a whole page in one statement

For people (all optional): `items_name` ("tickets") and `item_name` ("ticket"), `item_label(item)` ("Seat 97 (Ada)"),
`expected_errors` (exception classes whose message alone is the failure's sentence),
`confirmation(params)` (the question asked before a start) and `scope_url(params)` (the page
of the scope, linked from the batch page).

A start checks the params in that order, so a user who may not act gets 404 before learning
anything about the scope ("There is no event 999" is only for those who may act).

Who sees which batch is one rule (batches.selectors.visible_batches), the same for the batch
page, the lists, the API, the CLI, the reports and the admin: a superuser sees every batch; anyone
else the batches they started, and those their operation's `may_see(user)` admits; a batch of an
operation no longer installed, only its starter and superusers. `may_see` is a filter the lists
run in the database, never a call per batch: True (all its batches; by default when
`may_see_all(user)` says so), False (none but their own, the default), or a Q over Batch:
`Q(scope_key__in=...)`, `Q(params__event_id__in=[1, 2])`, `Q(created_by__in=<a user queryset>)`.
When `may_act` depends on the scope, `may_see` should admit the scopes it allows: someone who
starts on a busy scope joins the batch running there.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import pydantic
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import Model, Q, QuerySet

# Postgres' bigint: the widest integer a query may compare a column with.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

ObjectId = Annotated[int, pydantic.Field(ge=1, le=BIGINT_MAX)]
"""A primary key in params: a whole number from 1 to the largest bigint."""


class Params(pydantic.BaseModel):
    """The base of every operation's params.

    Strict: a JSON integer is an integer (not 1.5, 1.0, true or "1"); no unknown keys; no NaN or
    Infinity. Declare fields with types and bounds (`ObjectId` for primary keys); the JSON Schema
    that GET /api/operations and the OpenAPI document show is derived from it.
    """

    model_config = pydantic.ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class UnknownOperation(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown operation {name!r}. Known: {', '.join(sorted(_registry)) or 'none'}.")
        self.name = name


@dataclass(frozen=True)
class ItemContext:
    batch_id: int
    item_key: str

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries: pass it on to anything outside the database."""
        return f"{self.batch_id}:{self.item_key}"


@dataclass(frozen=True)
class BatchContext:
    """What a bulk handler gets: the keys to pass on for each of its items."""

    batch_id: int

    def idempotency_key(self, item_key: str) -> str:
        return f"{self.batch_id}:{item_key}"


class Operation:
    name: ClassVar[str]
    label: ClassVar[str]
    # Items per chunk: the unit one message works through, from its cursor, checkpoint by checkpoint.
    chunk_size: ClassVar[int] = 500
    # Seconds one item may take before it is failed as timed out.
    item_time_limit: ClassVar[float] = 60
    # Chunks of one batch that run at once, at most, each on a worker thread of its own.
    max_parallel: ClassVar[int] = 4
    # Fail the whole batch early once more items than this have failed (None: never).
    max_failures: ClassVar[int | None] = None
    # Long runs: the start form's "Email me when it ends" is ticked by default, as is a start by
    # the API that does not say.
    notify_by_default: ClassVar[bool] = False
    # The params' shape. The base takes none: subclass it (`class Params(Operation.Params)`).
    Params: ClassVar[type[Params]] = Params
    # What its items are called, for people: "939 of 2,000 tickets", "1 failed ticket". Without an
    # `item_name`, the singular is `items_name` less its final "s".
    items_name: ClassVar[str] = "items"
    item_name: ClassVar[str] = "item"
    # Exceptions a handler raises for a failure the domain expects: recorded as their message
    # alone, a sentence for people. Any other exception keeps its type ("KeyError: 'x'").
    expected_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "items_name" in cls.__dict__ and "item_name" not in cls.__dict__:
            cls.item_name = cls.items_name.removesuffix("s")

    @property
    def params_schema(self) -> dict[str, Any]:
        """JSON Schema of the params, for API clients (GET /api/operations, the OpenAPI document)."""
        schema = self.Params.model_json_schema()
        schema["title"] = f"{self.name} params"
        return schema

    def parse_params(self, data: Mapping[str, Any], *, from_form: bool = False) -> dict[str, Any]:
        """Check `data` against `Params` strictly: the params as a JSON-ready dict, or ValidationError.

        JSON (the API, stored params): values must already have their declared types. A form (the
        web UI posts strings): an integer field takes only a plain ASCII decimal string ("42").
        """
        values = _ints_from_form(self.Params, data) if from_form else data
        try:
            params = self.Params.model_validate(values).model_dump(mode="json")
        except pydantic.ValidationError as exc:
            raise _as_django_error(exc, from_form=from_form) from None
        _check_storable(params)
        return params

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The domain's checks, run only for users who may act: e.g. that the scope's object exists.

        Gets the shape-checked params; returns them (or a normalised copy), or raises
        ValidationError({"field": "message"}) for a 400.
        """
        return params

    def scope(self, params: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def scope_label(self, params: Mapping[str, Any]) -> str:
        return self.scope(params)

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        """Whether `user` may start this operation on the scope of `params` (see `may_see` for
        which of its batches they see).

        Runs before `clean_params`: the scope's object may not exist, answer False then.
        """
        raise NotImplementedError

    def fairness(self, params: Mapping[str, Any], user: AbstractBaseUser | None) -> tuple[str, float]:
        """The key whose batches share one fair share of the worker pool, and the key's weight.

        Default: every batch is a key of its own. ("user:<id>", 1.0) makes one person's ten batches
        share what one batch of someone else gets; a weight of 2 gets a key twice the share.
        """
        return "", 1.0

    def may_see_all(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        """Whether `user` may see every batch of this operation: the default of `may_see`."""
        return False

    def may_see(self, user: AbstractBaseUser) -> Q | bool:
        """Which batches of this operation a signed-in user who is not a superuser sees, besides
        those they started: True (all), False (none), or a Q over Batch (e.g. on `scope_key`,
        `params__<key>` or `created_by`), which lists run as one query. Span a to-many relation
        through a subquery (`created_by__in=User.objects.filter(groups__in=...)`), not a join,
        or a list shows a batch once per joined row.
        """
        return self.may_see_all(user)

    def items(self, params: Mapping[str, Any]) -> QuerySet[Any]:
        raise NotImplementedError

    def handle(self, item: Any, ctx: ItemContext) -> None:
        raise NotImplementedError

    # Optional: handle a whole page of items at once. Declare it as a method
    # `def handle_many(self, items: QuerySet, ctx: BatchContext)`: `items` is the page as a
    # queryset (a primary-key range of `items()`), so one `items.update(...)` does the page in one
    # statement; iterate it for the instances when each needs its own value. If it raises, the page
    # is redone item by item with `handle`, so failures stay per item.
    handle_many: Callable[[QuerySet[Any], BatchContext], None] | None = None

    def item_key(self, item: Model) -> str:
        return str(item.pk)

    def item_label(self, item: Any) -> str:
        """How people name one item ("Seat 97 (Ada Lovelace)"); by default its key."""
        return self.item_key(item)

    def item_labels(self, params: Mapping[str, Any], pks: list[int]) -> dict[int, str]:
        """Labels of the items with these primary keys, in one query; {} when labels are keys."""
        if type(self).item_label is Operation.item_label or not pks:
            return {}
        return {item.pk: self.item_label(item) for item in self.items(params).filter(pk__in=pks)}

    def confirmation(self, params: Mapping[str, Any]) -> str | None:
        """The question to ask before a start ("Reissue all 2,000 tickets of Gala?"), or None to
        start at once. Asked in a dialog with JavaScript, on a page of its own without."""
        return None

    def scope_url(self, params: Mapping[str, Any]) -> str | None:
        """The page of the scope the batch works on, linked from the batch page; None if none."""
        return None

    def param_choices(self) -> dict[str, dict[str, str]]:
        """Params the start form lets people choose ({"format": {"csv": "CSV", ...}}): a select
        each, the rest of the panel's params hidden."""
        return {}


class Export(Operation):
    """An operation whose result is a file: each of its items is a row of a CSV or XLSX file.

    @register
    class ExportInvoices(Export):
        name, label = "export_invoices", "Export invoices"

        class Params(Export.Params):           # `format`: "csv" (the default) or "xlsx"
            customer_id: ObjectId

        def columns(self, params): return [("Invoice", "id"), ("Customer", "customer__name"), ("Paid", "paid")]
        def download_name(self, params, created_at): return f"invoices-{params['customer_id']}"

    The engine writes each checkpoint's rows (the items' `columns`, in key order) as a part in the
    export storage (BATCHES_EXPORT_STORAGE), in one SQL statement on Postgres (COPY), and once the batch
    has finished assembles the parts into the file, which people download from the batch's panel,
    page, the history, the admin and the API for BATCHES_EXPORT_EXPIRY_SECONDS. Cells that a
    spreadsheet would run as a formula get a leading `'`.
    """

    # Large chunks: a row costs far less than a checkpoint, and each chunk's checkpoint writes a part.
    chunk_size: ClassVar[int] = 50_000
    formats: ClassVar[dict[str, str]] = {"csv": "CSV", "xlsx": "Excel (XLSX)"}

    class Params(Params):
        format: Literal["csv", "xlsx"] = pydantic.Field(default="csv", description="The file's format.")

    def columns(self, params: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """(header, value) per column: a lookup of the items' model ("event__name") or an expression."""
        raise NotImplementedError

    def file_format(self, params: Mapping[str, Any]) -> str:
        return str(params.get("format") or "csv")

    def download_name(self, params: Mapping[str, Any], created_at: datetime) -> str:
        """The file's name for people, without its extension ("tickets-gala-2026-12-01")."""
        return f"{self.name}-{created_at:%Y-%m-%d}"

    def param_choices(self) -> dict[str, dict[str, str]]:
        return {"format": dict(self.formats)}

    def handle(self, item: Any, ctx: ItemContext) -> None:
        """Nothing per item: its row is written with its checkpoint's part."""

    def handle_many(self, items: QuerySet[Any], ctx: BatchContext) -> None:  # type: ignore[override]
        """Nothing per page: the checkpoint's rows are written in one statement when it commits."""


# ASCII digits only: no other scripts' or full-width digits, spaces, "+" or "_". At most 100 of
# them (far past bigint, which the field's bounds then refuse): int() never gets a huge string.
_DECIMAL = re.compile(r"-?[0-9]{1,100}")


def _takes_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    return get_origin(annotation) in (Union, types.UnionType) and int in get_args(annotation)


def _ints_from_form(model: type[Params], data: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(data.items())
    for name, field in model.model_fields.items():
        value = values.get(name)
        if isinstance(value, str) and _takes_int(field.annotation) and _DECIMAL.fullmatch(value):
            values[name] = int(value)
    return values


def _as_django_error(exc: pydantic.ValidationError, *, from_form: bool) -> ValidationError:
    fields: dict[str, list[str]] = {}
    for problem in exc.errors():
        where = ".".join(str(part) for part in problem["loc"]) or NON_FIELD_ERRORS
        fields.setdefault(where, []).append(_message(problem, from_form=from_form))
    return ValidationError(fields)


def _message(problem: Mapping[str, Any], *, from_form: bool) -> str:
    kind, ctx = problem["type"], problem.get("ctx") or {}
    if kind == "missing":
        return "This field is required."
    if kind == "extra_forbidden":
        return "Unknown parameter: this operation does not take it."
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        if from_form:
            return "Must be a whole number written with the digits 0-9, e.g. 42."
        return "Must be a JSON integer, e.g. 42 (not a string, a fraction or a boolean)."
    if kind == "model_type":
        return "Must be a JSON object."
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("more than", "gt"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"Must be {words} {ctx.get(key)}."
    return f"{problem['msg']}."


def _check_storable(params: Any) -> None:
    """What Postgres would refuse in a query or a jsonb column: NUL characters, unpaired
    surrogates, integers beyond bigint. Any operation's params are checked, whatever it declares."""
    problems: dict[str, list[str]] = {}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, str):
            if "\x00" in value:
                problems.setdefault(where, []).append("Must not contain NUL characters.")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                problems.setdefault(where, []).append("Must be valid Unicode text.")
        elif isinstance(value, int) and not isinstance(value, bool):
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                problems.setdefault(where, []).append(f"Must be between {BIGINT_MIN} and {BIGINT_MAX}.")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key, where)
                walk(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}.{index}")

    walk(params, "")
    if problems:
        raise ValidationError({where or NON_FIELD_ERRORS: messages for where, messages in problems.items()})


_registry: dict[str, Operation] = {}


def register(cls: type[Operation]) -> type[Operation]:
    if cls.name in _registry and type(_registry[cls.name]) is not cls:
        raise ValueError(f"Operation {cls.name!r} is registered twice.")
    _registry[cls.name] = cls()
    return cls


def get_operation(name: str) -> Operation:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownOperation(name) from None


def label_of(name: str) -> str:
    """The operation's label for people, also for batches of one no longer installed."""
    try:
        return get_operation(name).label
    except UnknownOperation:
        return f"{name} (no longer installed)"


def all_operations() -> list[Operation]:
    return sorted(_registry.values(), key=lambda op: op.name)
