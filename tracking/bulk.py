"""Bulk inserts for the page commit.

On PostgreSQL Django 5.2 bulk-inserts through `UNNEST(%s::text[], …)`, and psycopg turns each of those
arrays into an array literal in Python, one regex substitution per double quote: for a page of decisions
(each with its JSON trace) that quoting was a third of a scan's CPU outside the fetch. Here the rows go
as one JSON document, which the json module writes in C, and PostgreSQL unpacks with
`jsonb_to_recordset`. Elsewhere (SQLite) it is `bulk_create`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import connections, models, router

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.options import Options

M = TypeVar("M", bound=models.Model)


def bulk_insert(objs: Sequence[M]) -> None:
    """Insert new instances of one model and set their primary keys, as `bulk_create` does (no signals)."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs)
        return
    quote = connection.ops.quote_name
    meta = model._meta
    assert meta.pk is not None and meta.pk.column is not None
    # A generated column (GeneratedField) is the database's to fill: PostgreSQL refuses a value for it.
    fields = [
        (f, f.column)
        for f in meta.concrete_fields
        if f is not meta.pk and f.column is not None and not f.generated
    ]
    columns = ", ".join(quote(column) for _, column in fields)
    # Without their length, as Django's UNNEST does: the INSERT checks lengths; a cast would truncate.
    types = ", ".join(
        f"{quote(column)} {(f.db_type(connection) or '').split('(')[0]}" for f, column in fields
    )
    rows = [{column: _json_value(f.pre_save(obj, add=True)) for f, column in fields} for obj in objs]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {columns} "
        f"FROM jsonb_to_recordset(%s::jsonb) AS r({types}) RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows, ensure_ascii=False)])
        # RETURNING gives the rows in the order they were inserted, which is the document's order.
        for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias


def prepared_datetime(model: type[models.Model], value: datetime) -> object:
    """`value` as `insert_rows` writes it (naive UTC text on SQLite, the JSON document's text on
    PostgreSQL), for a column that holds the same time in many rows: prepared once, not once a row."""
    connection = connections[router.db_for_write(model)]
    if connection.vendor == "postgresql":
        return _json_value(value)
    return connection.ops.adapt_datetimefield_value(value)


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def insert_rows(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Insert plain rows (values in `columns` order, no primary key) without building model instances.

    For imports of hundreds of thousands of rows, where Django's per-object preparation in bulk_create
    costs more than the database's work: one statement per call on PostgreSQL (a JSON document, as
    above), executemany on SQLite.
    """
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    meta = model._meta
    names = ", ".join(quote(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = (
                f"INSERT INTO {quote(meta.db_table)} ({names}) SELECT {names} "
                f"FROM jsonb_to_recordset(%s::jsonb) AS r({_pg_types(model, columns)})"
            )
            document = [dict(zip(columns, (_json_value(v) for v in row), strict=True)) for row in rows]
            cursor.execute(sql, [json.dumps(document, ensure_ascii=False)])
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES ({marks})",
                _sqlite_rows(connection, meta, columns, rows),  # type: ignore[arg-type]
            )


def _sqlite_rows(
    connection: BaseDatabaseWrapper,
    meta: Options[Any],
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
) -> Sequence[Sequence[object]]:
    """The rows with their datetimes as Django writes them to SQLite (naive UTC text). Handed to the driver
    as they are, they would be stored with a "+00:00" the ORM's own values lack, and SQLite compares text:
    `timeline_at = %s` and `<= %s` would miss them."""
    stamped = [i for i, c in enumerate(columns) if isinstance(meta.get_field(c), models.DateTimeField)]
    if not any(isinstance(row[i], datetime) for row in rows for i in stamped):
        return rows  # none, or prepared already (prepared_datetime)
    adapt = connection.ops.adapt_datetimefield_value

    def prepared(row: Sequence[object]) -> list[object]:
        values = list(row)
        for i in stamped:
            value = values[i]
            if isinstance(value, datetime):
                values[i] = adapt(value)
        return values

    return [prepared(row) for row in rows]


def update_rows(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Set `columns` of existing rows; each row is (primary key, *values in `columns` order)."""
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    meta = model._meta
    assert meta.pk is not None and meta.pk.column is not None
    pk = quote(meta.pk.column)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sets = ", ".join(f"{quote(c)} = r.{quote(c)}" for c in columns)
            sql = (
                f"UPDATE {quote(meta.db_table)} AS t SET {sets} "
                f"FROM jsonb_to_recordset(%s::jsonb) AS r({pk} bigint, {_pg_types(model, columns)}) "
                f"WHERE t.{pk} = r.{pk}"
            )
            keys = [meta.pk.column, *columns]
            document = [dict(zip(keys, (_json_value(v) for v in row), strict=True)) for row in rows]
            cursor.execute(sql, [json.dumps(document, ensure_ascii=False)])
        else:
            sets = ", ".join(f"{quote(c)} = %s" for c in columns)
            cursor.executemany(
                f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {pk} = %s",
                [(*r[1:], r[0]) for r in rows],  # type: ignore[arg-type]
            )


def _pg_types(model: type[models.Model], columns: Sequence[str]) -> str:
    connection = connections[router.db_for_write(model)]
    by_column = {f.column: f for f in model._meta.concrete_fields}
    return ", ".join(
        f"{connection.ops.quote_name(c)} {(by_column[c].db_type(connection) or '').split('(')[0]}"
        for c in columns
    )
