"""System checks (`manage.py check`, and every command that runs them): what would otherwise fail
silently, each with the line to add.

- batches.E001: django_dramatiq is not installed (it builds the broker and runs the workers).
- batches.E002: the worker middleware is not on Dramatiq's broker: no worker joins the registry, so
  every panel says "no worker" forever and no stale batch is ever recovered.
- batches.E003: a database the start guard does not support (Postgres; SQLite to try it out).
- batches.E004: SQLite without `transaction_mode` IMMEDIATE: SQLite ignores SELECT ... FOR UPDATE, so
  two starts on one scope could both create a batch.
- batches.E005: a BATCHES_* setting of the wrong kind (batches/conf.py says what each one takes).
- batches.E006: a worker declared dead between two of its own heartbeats.
- batches.W001: an operation whose items() filters on columns with no index that serves the
  primary-key walk (`WHERE <filter> AND pk > cursor ORDER BY pk`): every page scans the whole scope.
- batches.W002: a BATCHES_* setting the engine does not have (a typo keeps the default).
- batches.W003 (--deploy): SQLite in production.
"""

from __future__ import annotations

import contextlib
import difflib
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import dramatiq
import pydantic
from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet, UniqueConstraint
from django.db.models.lookups import Exact, IsNull
from django.db.models.sql.where import AND, WhereNode

from .conf import all_settings, batches_settings, unknown_settings
from .engine.middleware import WorkerLifecycle
from .models import Batch
from .operations import Operation, all_operations

TAG = "batches"
WORKER_MIDDLEWARE = "batches.engine.middleware.WorkerLifecycle"
SERIALISING_SQLITE_MODES = {"IMMEDIATE", "EXCLUSIVE"}


@register(TAG)
def check_dramatiq(app_configs: list[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if not apps.is_installed("django_dramatiq"):
        return [
            Error(
                "django_dramatiq is not in INSTALLED_APPS: nothing builds the broker or runs the workers.",
                hint='Add "django_dramatiq" to INSTALLED_APPS, after "batches".',
                id="batches.E001",
            )
        ]
    broker = dramatiq.get_broker()
    if not any(isinstance(middleware, WorkerLifecycle) for middleware in broker.middleware):
        return [
            Error(
                "The engine's worker middleware is not on Dramatiq's broker: workers will not join the "
                'registry, every panel will say "no worker" and stale batches will not be recovered.',
                hint=f'Add "{WORKER_MIDDLEWARE}" to DRAMATIQ_BROKER["MIDDLEWARE"] in your settings.',
                id="batches.E002",
            )
        ]
    return []


def engine_connection() -> BaseDatabaseWrapper:
    """The connection the engine writes its batches with."""
    return connections[router.db_for_write(Batch)]


@register(TAG)
def check_database(app_configs: list[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """From the configuration alone: no connection is opened."""
    connection = engine_connection()
    where = f'DATABASES["{connection.alias}"]'
    if connection.vendor == "postgresql":
        return []
    if connection.vendor == "sqlite":
        mode = (connection.settings_dict.get("OPTIONS") or {}).get("transaction_mode") or ""
        if mode.upper() in SERIALISING_SQLITE_MODES:
            return []
        return [
            Error(
                "SQLite in its default transaction mode ignores SELECT ... FOR UPDATE, so two starts on "
                "one scope could both create a batch.",
                hint=f'Set {where}["OPTIONS"]["transaction_mode"] = "IMMEDIATE" in your settings.',
                id="batches.E004",
            )
        ]
    return [
        Error(
            f"{where} is {connection.vendor}: the engine's start guard and claims need PostgreSQL "
            "(partial unique constraints, SELECT ... FOR UPDATE SKIP LOCKED), or SQLite to try it out.",
            hint=f'Set {where}["ENGINE"] = "django.db.backends.postgresql" in your settings.',
            id="batches.E003",
        )
    ]


@register(TAG, deploy=True)
def check_database_for_production(app_configs: list[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    connection = engine_connection()
    if connection.vendor != "sqlite":
        return []
    return [
        Warning(
            "The engine runs on SQLite: one writer at a time, so one worker thread, and batches slow the "
            "web server's writes down. It is there to try the app out.",
            hint=f'Set DATABASES["{connection.alias}"]["ENGINE"] = "django.db.backends.postgresql" in production.',
            id="batches.W003",
        )
    ]


@register(TAG)
def check_settings(app_configs: list[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for setting in all_settings():
        if not setting.is_set:
            continue
        value = setting.value
        problem = setting.problem(value)
        if problem is not None:
            messages.append(
                Error(
                    f"{setting.name} is {value!r}: it must be {problem}.",
                    hint=f"Set {setting.name} = {setting.default_value()!r} (its default) in your settings, "
                    "or leave it out.",
                    id="batches.E005",
                )
            )
    if messages:
        return messages
    heartbeat, silence = batches_settings.WORKER_HEARTBEAT_SECONDS, batches_settings.WORKER_SILENCE_SECONDS
    if silence <= heartbeat:
        messages.append(
            Error(
                f"BATCHES_WORKER_SILENCE_SECONDS ({silence:g}) is not longer than BATCHES_WORKER_HEARTBEAT_SECONDS "
                f"({heartbeat:g}): live workers would be declared dead between two heartbeats.",
                hint=f"Set BATCHES_WORKER_SILENCE_SECONDS = {heartbeat * 5:g} in your settings.",
                id="batches.E006",
            )
        )
    known = [setting.name for setting in all_settings()]
    for name in unknown_settings():
        close = difflib.get_close_matches(name, known, n=1)
        messages.append(
            Warning(
                f"{name} is not a setting of the engine, which ignores it.",
                hint=(f"Did you mean {close[0]}? " if close else "") + "batches/conf.py lists every setting.",
                id="batches.W002",
            )
        )
    return messages


# --- The keyset walk ------------------------------------------------------------------------------


@register(TAG)
def check_keyset_indexes(app_configs: list[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """Only where it can be seen without the database: items() is called with stand-in params (each
    required field a plain sample value), and an operation whose items() needs a query, or params the
    samples do not pass, is not checked."""
    messages: list[CheckMessage] = []
    for op in all_operations():
        items = _sample_items(op)
        if items is None:
            continue
        model = items.model
        if app_configs is not None and model._meta.app_config not in app_configs:
            continue
        fields = _equality_fields(items)
        if fields and not _keyset_index(model, fields):
            messages.append(_missing_keyset_index(op, model, fields))
    return messages


class _NoQueries(Exception):
    pass


def _refuse_query(*args: Any) -> None:
    raise _NoQueries


@contextlib.contextmanager
def _without_queries() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for alias in connections:
            stack.enter_context(connections[alias].execute_wrapper(_refuse_query))
        yield


def _sample(annotation: Any) -> Any:
    """A plain value of the annotated type, or None when there is none to give."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _sample(get_args(annotation)[0])
    if origin is Literal:
        return get_args(annotation)[0]
    if origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            if arg is not type(None) and (value := _sample(arg)) is not None:
                return value
        return None
    return {bool: True, int: 1, float: 1.0, str: "1"}.get(annotation)


def _sample_params(op: Operation) -> dict[str, Any] | None:
    values = {}
    for name, field in op.Params.model_fields.items():
        if not field.is_required():
            continue
        value = _sample(field.annotation)
        if value is None:
            return None
        values[name] = value
    try:
        return op.Params.model_validate(values).model_dump(mode="json")
    except pydantic.ValidationError:
        return None


def _sample_items(op: Operation) -> QuerySet[Any] | None:
    params = _sample_params(op)
    if params is None:
        return None
    try:
        with _without_queries():
            items = op.items(params)
    except Exception:  # it needs the database, or more than sample params: not something to see here
        return None
    return items if isinstance(items, QuerySet) else None


def _equality_fields(items: QuerySet[Any]) -> list[str]:
    """The model's own fields that items() pins to one value (`field = value`, `field IS NULL`),
    in the order they are filtered on."""
    fields: list[str] = []

    def walk(node: WhereNode) -> None:
        if node.negated or (node.connector != AND and len(node.children) > 1):
            return
        for child in node.children:
            if isinstance(child, WhereNode):
                walk(child)
            elif (name := _pinned_field(child, items)) is not None and name not in fields:
                fields.append(name)

    walk(items.query.where)
    return fields


def _pinned_field(lookup: Any, items: QuerySet[Any]) -> str | None:
    if not isinstance(lookup, Exact | IsNull) or hasattr(lookup.rhs, "resolve_expression"):
        return None
    target = getattr(lookup.lhs, "target", None)
    if getattr(lookup.lhs, "alias", None) != items.query.base_table or target is None:
        return None
    if target.model is not items.model or target.primary_key:
        return None
    return target.name


def _indexes(model: type[Model]) -> Iterator[tuple[list[str], bool]]:
    """The field names of every index on the model's table, in index order, and whether it is unique."""
    meta = model._meta
    for field in meta.local_fields:
        if field.db_index or field.unique:
            yield [field.name], field.unique
    for index in meta.indexes:
        if index.fields:
            yield [name.lstrip("-") for name in index.fields], False
    for constraint in meta.constraints:
        if getattr(constraint, "fields", None):
            yield list(constraint.fields), isinstance(constraint, UniqueConstraint)
    for together in meta.unique_together:
        yield list(together), True


def _keyset_index(model: type[Model], pinned: list[str]) -> bool:
    """Whether an index starts with some of the pinned fields and goes on with the primary key (each
    page is then one short range scan), or a unique one is all pinned (the scope is one row)."""
    pk = model._meta.pk.name
    for fields, unique in _indexes(model):
        names = [model._meta.get_field(field).name for field in fields]
        if unique and all(name in pinned for name in names):
            return True
        at = names.index(pk) if pk in names else -1
        if at > 0 and all(name in pinned for name in names[:at]):
            return True
    return False


def _missing_keyset_index(op: Operation, model: type[Model], fields: list[str]) -> CheckMessage:
    meta = model._meta
    index_name = f"{meta.model_name}_{'_'.join(fields)}_keyset"[:30]
    line = f'models.Index(fields={[*fields, meta.pk.name]!r}, name="{index_name}")'.replace("'", '"')
    return Warning(
        f"Operation {op.name!r} walks {meta.label} by primary key within {', '.join(fields)} "
        f"(WHERE {' AND '.join(f'{field} = ...' for field in fields)} AND {meta.pk.name} > cursor "
        f"ORDER BY {meta.pk.name}), and no index serves that: every page scans the whole scope.",
        hint=f"Add {line} to {meta.object_name}.Meta.indexes, then makemigrations.",
        obj=type(op),
        id="batches.W001",
    )
