"""The operation registry: how a bulk operation is declared.

@register
class ReissueTickets(Operation):
    name = "reissue_tickets"
    label = "Reissue tickets"

    def clean_params(self, data): ...          # -> dict, or raise ValidationError
    def scope(self, params): ...               # -> "event:42": one active batch per scope
    def may_act(self, user, params): ...       # who may start it and see its batches
    def items(self, params): ...               # -> a queryset; walked in primary-key order
    def handle(self, item, ctx): ...           # one item; raise to record it as failed
    def handle_many(self, items, ctx): ...     # optional: a whole page in one statement
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model, QuerySet


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
    # Fail the whole batch early once more items than this have failed (None: never).
    max_failures: ClassVar[int | None] = None
    # JSON Schema of the params, for API clients (GET /api/operations).
    params_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def clean_params(self, data: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def scope(self, params: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def scope_label(self, params: Mapping[str, Any]) -> str:
        return self.scope(params)

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def may_see_all(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        """Whether `user` may see every batch of this operation (lists show them all)."""
        return False

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


def all_operations() -> list[Operation]:
    return sorted(_registry.values(), key=lambda op: op.name)
