"""The decision log's CSV export: decisions of a filtered queryset as CSV, in chunks, in constant memory.

On PostgreSQL the database writes the rows: `COPY (SELECT one CSV line per decision) TO STDOUT` streams
while Python only passes the bytes on; row by row in Python the export cannot keep up with a large
table. Elsewhere (SQLite) the rows go through Python's csv module. Both write the same bytes: the
columns below, the cells as `safe_cell` makes them, quoted as `csv.writer` quotes, CRLF line ends.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime, tzinfo

from django.db import DatabaseError, connections, transaction
from django.db.models import QuerySet

from tracking.models import Decision

EXPORT_CHUNK = 2000  # rows per database fetch and per response chunk (behind gunicorn, each chunk is a write)
TIME_COLUMNS = ("decided_at", "received_at")
# Column name → the field it is read from.
TEXT_COLUMNS = {
    "mailbox": "mailbox__email_address",
    "folder": "folder",
    "message_id": "message_id",
    "sender": "sender",
    "subject": "subject",
    "outcome": "outcome",
    "reason": "reason",
    "correlation_method": "correlation_method",
    "correlated_message_id": "correlated_message_id",
    "accepting_kind": "accepting_kind",
    "accepting_name": "accepting_name",
}
EXPORT_COLUMNS = (*TIME_COLUMNS, *TEXT_COLUMNS, "regarding", "manual")
# "regarding" is written as kind:name from two fields.
EXPORT_FIELDS = (*TIME_COLUMNS, *TEXT_COLUMNS.values(), "regarding__kind", "regarding__name", "manual")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object, tz: tzinfo) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_chunks(queryset: QuerySet[Decision], tz: tzinfo) -> Iterator[bytes]:
    """The export, newest decision first, as UTF-8 chunks of EXPORT_CHUNK rows (the header first)."""
    zone = _zone_name(tz)
    if connections[queryset.db].vendor == "postgresql" and zone and _postgresql_knows(queryset.db, zone):
        return _copied_chunks(queryset, zone)
    return _written_chunks(queryset, tz)


def _postgresql_knows(using: str, zone: str) -> bool:
    """Whether the server's time zone database has `zone` (Python's may be newer)."""
    try:
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute("SELECT now() AT TIME ZONE %s", [zone])
    except DatabaseError:
        return False
    return True


def _zone_name(tz: tzinfo) -> str:
    """The IANA name PostgreSQL knows the zone by; "" for a zone without one (a fixed offset)."""
    return str(getattr(tz, "key", ""))


def _header() -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(EXPORT_COLUMNS)
    return out.getvalue().encode()


def _written_chunks(queryset: QuerySet[Decision], tz: tzinfo) -> Iterator[bytes]:
    rows = queryset.order_by("-id").values_list(*EXPORT_FIELDS).iterator(chunk_size=EXPORT_CHUNK)
    out = io.StringIO()
    writer = csv.writer(out)
    yield _header()
    for count, row in enumerate(rows, start=1):
        *head, regarding_kind, regarding_name, manual = row
        regarding = f"{regarding_kind}:{regarding_name}" if regarding_name is not None else None
        writer.writerow([safe_cell(v, tz) for v in (*head, regarding, manual)])
        if count % EXPORT_CHUNK == 0:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue().encode()


# -- PostgreSQL: the same cells, written by the database ---------------------------------------------------


def _text_cell(column: str) -> str:
    """SQL for safe_cell of a text column, quoted as csv.writer quotes (QUOTE_MINIMAL); NULL is ""."""
    defused = (
        rf"CASE WHEN left({column}, 1) IN ('=', '+', '-', '@', E'\t', E'\r') "
        f"THEN '''' || {column} ELSE {column} END"
    )
    return (
        rf"""COALESCE(CASE WHEN {column} ~ E'[,"\r\n]' THEN '"' || replace({defused}, '"', '""') || '"' """
        f"ELSE {defused} END, '')"
    )


def _time_cell(column: str) -> str:
    """SQL for datetime.isoformat() in the session's time zone: microseconds only when they are not 0."""
    return (
        f"""COALESCE(CASE WHEN date_trunc('second', {column}) = {column} """
        f"""THEN to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM') """
        f"""ELSE to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM') END, '')"""
    )


_REGARDING = (
    "CASE WHEN d.regarding_name IS NULL THEN NULL ELSE d.regarding_kind || ':' || d.regarding_name END"
)
_LINE = " || ',' || ".join(
    [
        _time_cell("d.decided_at"),
        _time_cell("d.received_at"),
        *(_text_cell(f"d.{name}") for name in TEXT_COLUMNS),
        _text_cell(_REGARDING),
        "CASE WHEN d.manual THEN 'true' ELSE 'false' END",
    ]
)
# The subquery's columns: the id to order by, then EXPORT_FIELDS.
_ALIASES = ", ".join(["id", *TIME_COLUMNS, *TEXT_COLUMNS, "regarding_kind", "regarding_name", "manual"])

# COPY's text format escapes these in a value; row ends are bare newlines.
_COPY_ESCAPE = re.compile(rb"\\(.)")
_COPY_UNESCAPED = {b"\\": b"\\", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _from_copy_text(data: bytes) -> bytes:
    # Row ends first: an escaped newline inside a value is two bytes until it is unescaped.
    data = data.replace(b"\n", b"\r\n")
    if b"\\" in data:
        data = _COPY_ESCAPE.sub(lambda m: _COPY_UNESCAPED[m[1]], data)
    return data


def _copied_chunks(queryset: QuerySet[Decision], zone: str) -> Iterator[bytes]:
    inner = queryset.order_by().values_list("id", *EXPORT_FIELDS)
    # elide_empty=False: a user without a mailbox sees no decision, which compiles to WHERE 0 = 1 here
    # rather than to an EmptyResultSet raised after the header has gone out.
    sql, params = inner.query.get_compiler(using=queryset.db, elide_empty=False).as_sql()
    statement = f"COPY (SELECT {_LINE} FROM ({sql}) AS d({_ALIASES}) ORDER BY d.id DESC) TO STDOUT"
    database = connections[queryset.db]
    yield _header()
    # The times are written in the session's time zone, set for this transaction only and set back
    # before it ends (it may be part of a larger one): Django reads timestamps in the zone it set.
    with transaction.atomic(using=queryset.db), database.cursor() as cursor:
        cursor.execute("SELECT set_config('TimeZone', %s, true)", [zone])
        with cursor.cursor.copy(statement, params) as copy:
            rows: list[bytes] = []
            for row in copy:
                rows.append(bytes(row))
                if len(rows) == EXPORT_CHUNK:
                    yield _from_copy_text(b"".join(rows))
                    rows.clear()
            if rows:
                yield _from_copy_text(b"".join(rows))
        cursor.execute("SELECT set_config('TimeZone', %s, true)", [database.timezone_name])
