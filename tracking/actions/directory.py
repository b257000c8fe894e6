"""The CRM directory: CSV import of accounts, contacts, leads and other records, checked, then in bulk.

`check_import_records` checks the whole file first (ActionError, nothing written), then writes it in
batches of BATCH_ROWS rows, each batch one short transaction of a few bulk statements, so that a
200,000-row file takes seconds and never holds the database (SQLite's one write lock) for long. The web
page runs it as a job (tracking/imports.py); `manage.py import_records` in the foreground.

A row is matched to an existing record of the same kind by name and primary email and updates it; a bad
row is rejected with its line number and reason, and the good rows are still imported.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from tracking.actions.audit import audit
from tracking.actions.errors import ActionError, too_long
from tracking.bulk import insert_rows, prepared_datetime, update_rows
from tracking.choices import FALSE_WORDS, TRUE_WORDS, AuditAction, RecordKind
from tracking.messages import has_unstorable_characters, normalize_address
from tracking.models import CrmRecord


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


BATCH_ROWS = 5000
COLUMNS = ("name", "email", "email2", "email3", "owner", "kind", "active")
# The active column: empty means active; the words of a setting, and active / inactive.
ACTIVE_WORDS = TRUE_WORDS | {"", "active"}
INACTIVE_WORDS = FALSE_WORDS | {"inactive"}


def _reader(text: str) -> tuple[Iterator[list[str]], list[str], Any]:
    """The rows after the header, the header's column names, and the reader (for its line_num)."""
    reader = csv.reader(io.StringIO(text))
    try:
        names = next(reader, [])
    except csv.Error as exc:
        raise ActionError(f"line 1: {_csv_problem(exc)}") from None
    header = [h.strip().lower() for h in names]
    missing = {"name", "email"} - set(header)
    if missing:
        raise ActionError(
            gettext("the CSV header must have name and email (missing: %(columns)s)")
            % {"columns": ", ".join(sorted(missing))}
        )
    unknown = set(header) - set(COLUMNS)
    if unknown:
        raise ActionError(
            gettext("unknown CSV column(s): %(columns)s") % {"columns": ", ".join(sorted(unknown))}
        )
    return reader, header, reader


def _csv_problem(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a field is longer than {csv.field_size_limit():,} characters, which no column may be"
    return f"not valid CSV ({exc})"


def check_csv(kind: str, text: str) -> int:
    """Refuse, changing nothing, a file that cannot be imported at all; returns its number of rows.

    One pass over the whole file (a fraction of a second for 5 MB), so that an error the CSV reader
    raises part-way (such as an over-long field) refuses the file instead of half-importing it.
    """
    if kind not in RecordKind.values:
        raise ActionError(
            gettext("unknown record kind %(kind)s; use one of %(kinds)s")
            % {"kind": repr(kind), "kinds": ", ".join(RecordKind.values)}
        )
    rows_of, _, reader = _reader(text)
    rows = 0
    try:
        for row in rows_of:
            if row:  # csv.DictReader's reading, as before: blank lines are no rows
                rows += 1
    except csv.Error as exc:
        raise ActionError(f"line {reader.line_num}: {_csv_problem(exc)}") from None
    return rows


def _row_values(
    kind: str,
    values: dict[str, str],
    owners: dict[str, int],
    *,
    may_hold_nul: bool = True,
    clean: bool = True,
) -> Row | str:
    """((name, primary email), the record's other fields in COLUMNS_WRITTEN's order), or why the row is
    rejected.

    `may_hold_nul` False: the file was checked for NUL characters as a whole (a row has none then).
    `clean` False: the file holds nothing that clean_text would drop (checked as a whole, too).
    """
    if may_hold_nul and any("\x00" in v for v in values.values()):
        return "a value holds a NUL character"  # PostgreSQL refuses NUL in text
    name = values.get("name", "")
    if not name:
        return "name is empty"
    emails = []
    for col in ("email", "email2", "email3"):
        raw = values.get(col, "")
        if not raw:
            continue
        addr = normalize_address(raw, clean=clean)
        if addr is None:
            return f"{col} {raw!r} is not an email address"
        emails.append(addr)
    if not emails:
        return "email is empty"
    owner_id = None
    if values.get("owner"):
        owner_id = owners.get(values["owner"])
        if owner_id is None:
            return f"owner {values['owner']!r} is not a user"
    active_word = values.get("active", "").lower()
    if active_word not in ACTIVE_WORDS | INACTIVE_WORDS:
        return f"active {values['active']!r} is not true/false"
    other_kind = values.get("kind", "")
    if other_kind and kind != RecordKind.OTHER:
        return "the kind column is only for 'other' records"
    if len(name) > NAME_MAX or len(other_kind) > OTHER_KIND_MAX:  # the usual row: no lookup, no message
        length_problem = too_long(CrmRecord, "name", name) or too_long(
            CrmRecord, "other_kind", other_kind, label="kind"
        )
        if length_problem:
            return length_problem
    fields = (
        emails[0],
        emails[1] if len(emails) > 1 else "",
        emails[2] if len(emails) > 2 else "",
        owner_id,
        active_word not in INACTIVE_WORDS,
        other_kind,
    )
    return (name, emails[0]), fields


COLUMNS_WRITTEN = ("email1", "email2", "email3", "owner_id", "active", "other_kind")
Row = tuple[tuple[str, str], tuple[object, ...]]  # (name, primary email), values of COLUMNS_WRITTEN
NAME_MAX = CrmRecord._meta.get_field("name").max_length or 0
OTHER_KIND_MAX = CrmRecord._meta.get_field("other_kind").max_length or 0


def _batches(text: str, kind: str, report: ImportReport) -> Iterator[tuple[int, list[Row]]]:
    owners = dict(get_user_model().objects.values_list("username", "pk"))
    may_hold_nul = "\x00" in text
    clean = has_unstorable_characters(text)
    rows_of, header, reader = _reader(text)
    columns = list(enumerate(header))
    batch: list[Row] = []
    seen = 0
    for row in rows_of:
        if not row:
            continue
        seen += 1
        if len(row) == len(header):  # the usual row: every column, nothing more
            values = dict(zip(header, map(str.strip, row), strict=True))
        else:
            width = len(row)
            values = {name: row[i].strip() if i < width else "" for i, name in columns}
        checked = _row_values(kind, values, owners, may_hold_nul=may_hold_nul, clean=clean)
        if isinstance(checked, str):
            report.rejected.append((reader.line_num, checked))
        else:
            batch.append(checked)
        if seen % BATCH_ROWS == 0:
            yield seen, batch
            batch = []
    if batch or seen % BATCH_ROWS:
        yield seen, batch


def _write_batch(
    kind: str, rows: list[Row], now: datetime, *, imported: set[tuple[str, str]] | None = None
) -> tuple[int, int]:
    """Create or update one batch's records in a few bulk statements; returns (created, updated).

    `imported`, when the directory held no record of this kind as the import began: the keys this import
    created so far, the only ones a row can update, so that a fresh import looks nothing up (and the set
    grows by this batch's new keys).
    """
    existing: dict[tuple[str, str], int] = {}
    keys = {key for key, _ in rows}
    emails = sorted({key[1] for key in (keys if imported is None else keys & imported)})
    if emails:
        found = CrmRecord.objects.filter(kind=kind, email1__in=emails).order_by("pk")
        for pk, name, email in found.values_list("pk", "name", "email1"):
            existing.setdefault((name, email), pk)
    new: dict[tuple[str, str], tuple[object, ...]] = {}
    changed: dict[int, tuple[object, ...]] = {}
    created = updated = 0
    for key, values in rows:
        if key in new:  # the same record twice in the batch: the later row wins, as an update
            new[key] = values
            updated += 1
        elif key in existing:
            changed[existing[key]] = values
            updated += 1
        else:
            new[key] = values
            created += 1
    created_at = prepared_datetime(CrmRecord, now)  # once for the batch, not once a row
    insert_rows(
        CrmRecord,
        ("kind", "name", *COLUMNS_WRITTEN, "created_at"),
        [(kind, key[0], *v, created_at) for key, v in new.items()],
    )
    update_rows(CrmRecord, COLUMNS_WRITTEN, [(pk, *v) for pk, v in changed.items()])
    if imported is not None:
        imported.update(new)
    return created, updated


def check_import_records(
    kind: str,
    text: str,
    *,
    progress: Callable[[int, ImportReport], None] | None = None,
    file_name: str = "",
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> ImportReport:
    """Check the file (ActionError, nothing written), then import it batch by batch.

    `progress(rows read, report so far)` runs inside each batch's transaction. The import ends with one
    audit event: the file's name, the kind and the counts.
    """
    check_csv(kind, text)
    report = ImportReport()
    # Into an empty directory (of this kind) nothing needs looking up but what this import made itself.
    imported: set[tuple[str, str]] | None = None if CrmRecord.objects.filter(kind=kind).exists() else set()
    for done, rows in _batches(text, kind, report):
        with transaction.atomic():
            created, updated = _write_batch(kind, rows, timezone.now(), imported=imported)
            report.created += created
            report.updated += updated
            if progress is not None:
                progress(done, report)
    audit(
        AuditAction.RECORDS_IMPORTED,
        file_name or "(CSV)",
        None,
        f"{kind}: created {report.created}, updated {report.updated}, rejected {len(report.rejected)}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return report
