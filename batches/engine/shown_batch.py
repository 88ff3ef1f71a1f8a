"""One batch as every page shows it, read by its primary key in one statement: its row, who
started and cancelled it, and what the workers are doing about it (batches.engine.status).

The progress poll reads this every second for every open page, so it should cost what the
session's own read costs. The ORM's way (a queryset with six annotations and two joins) spent
1.3 ms building and compiling the query and 0.6 ms of Postgres planning its subqueries, against
0.3 ms running them. So the SQL is written once per backend, and on Postgres it is prepared once
per connection, in the same round trip as its first execution.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field
from django.db.models.expressions import RawSQL
from django.utils import timezone

from batches.conf import batches_settings
from batches.models import Batch

from .status import LIVENESS_SQL

# The statement's name on each connection (DB-API object) it has been prepared on: it lives as long
# as the connection does. A name is never tried twice, so that a first execution that failed after
# its PREPARE (which no rollback undoes) cannot make every later one fail with "already exists".
_prepared_as: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_names = itertools.count(1)
_LARGEST_KEY = 2**63 - 1  # a BigAutoField's


@dataclass(frozen=True)
class _Statement:
    sql: str  # with a %s for each moment-of-liveness parameter, then one for the primary key
    alive_params: int
    prepared: str  # the same with $1 (the moment) and $2 (the primary key)
    converters: list[tuple[int, list[Any], Any]]  # (column, converters, expression), as the ORM applies them


def _columns(model: type, alias: str) -> list[str]:
    return [f'{alias}."{field.column}"' for field in model._meta.concrete_fields]


@cache
def _statement(vendor: str) -> _Statement:
    user = get_user_model()
    table, user_table = Batch._meta.db_table, user._meta.db_table
    created_by, cancelled_by = (Batch._meta.get_field(name).column for name in ("created_by", "cancelled_by"))
    liveness = [f"({sql})" for sql, _ in LIVENESS_SQL.values()]
    columns = [*_columns(Batch, table), *_columns(user, "cu"), *_columns(user, "xu"), *liveness]
    sql = (
        f"SELECT {', '.join(columns)} FROM {table}"
        f' LEFT OUTER JOIN {user_table} cu ON cu.id = {table}."{created_by}"'
        f' LEFT OUTER JOIN {user_table} xu ON xu.id = {table}."{cancelled_by}"'
        f" WHERE {table}.id = %s"
    )
    alive_params = sum(sql.count("%s") for sql, _ in LIVENESS_SQL.values())
    prepared = sql.replace("%s", "$1", alive_params).replace("%s", "$2")
    return _Statement(sql, alive_params, prepared, _converters(user, vendor))


def _converters(user: type, vendor: str) -> list[tuple[int, list[Any], Any]]:
    connection = connections[DEFAULT_DB_ALIAS]
    assert connection.vendor == vendor
    expressions: list[Any] = [field.get_col(Batch._meta.db_table) for field in Batch._meta.concrete_fields]
    for alias in ("cu", "xu"):
        expressions += [field.get_col(alias) for field in user._meta.concrete_fields]
    expressions += [RawSQL("", [], output_field=output) for _, output in LIVENESS_SQL.values()]
    found = []
    for index, expression in enumerate(expressions):
        converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        if converters:
            found.append((index, converters, expression))
    return found


def load(pk: int, now: datetime | None = None) -> Batch | None:
    """The batch with `created_by` and `cancelled_by` loaded and the liveness figures that
    status.describe reads; None when there is no such batch. One query."""
    if not 0 < pk <= _LARGEST_KEY:
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    alive_since = (now or timezone.now()) - timedelta(seconds=batches_settings.WORKER_SILENCE_SECONDS)
    statement = _statement(connection.vendor)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = connection.connection
            name = _prepared_as.get(raw)
            if name:
                cursor.execute(f"EXECUTE {name} (%s, %s)", [alive_since, pk])
            else:
                # Prepared and run in one round trip (and one query, as the poll's budget counts them).
                name = f"batches_shown_batch_{next(_names)}"
                cursor.execute(f"PREPARE {name} AS {statement.prepared}; EXECUTE {name} (%s, %s)", [alive_since, pk])
                _prepared_as[raw] = name
        else:
            cursor.execute(statement.sql, [*[alive_since] * statement.alive_params, pk])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, converters, expression in statement.converters:
        for converter in converters:
            values[index] = converter(values[index], expression, connection)
    return _build(values)


def _build(values: list[Any]) -> Batch:
    user = get_user_model()
    batch_fields, user_fields = Batch._meta.concrete_fields, user._meta.concrete_fields
    end = len(batch_fields)
    batch = Batch.from_db(DEFAULT_DB_ALIAS, [field.attname for field in batch_fields], values[:end])
    for name in ("created_by", "cancelled_by"):
        row = values[end : end + len(user_fields)]
        end += len(user_fields)
        related = user.from_db(DEFAULT_DB_ALIAS, [f.attname for f in user_fields], row) if row[0] is not None else None
        field: Field = Batch._meta.get_field(name)
        field.set_cached_value(batch, related)
    for name, value in zip(LIVENESS_SQL, values[end:], strict=True):
        setattr(batch, name, value)
    return batch
