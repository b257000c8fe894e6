"""The CRM directory: accounts, contacts, leads and other email-enabled records, imported from CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext

from tracking.actions.audit import audit
from tracking.actions.errors import ActionError, too_long
from tracking.choices import FALSE_WORDS, TRUE_WORDS, AuditAction, RecordKind
from tracking.messages import normalize_address
from tracking.models import CrmRecord


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


# The active column: empty means active; the words of a setting, and active / inactive.
ACTIVE_WORDS = TRUE_WORDS | {"", "active"}
INACTIVE_WORDS = FALSE_WORDS | {"inactive"}


@transaction.atomic
def check_import_records(
    kind: str,
    text: str,
    *,
    file_name: str = "",
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> ImportReport:
    """Create or update CRM records from CSV (header name,email[,email2,email3,owner,kind,active]).

    A row is matched to an existing record of the same kind by name and primary email; a bad row
    is rejected with its line number and reason, and the good rows are still imported. The import
    is one audit event: the file's name, the kind and the counts.
    """
    report = _import_rows(kind, text)
    audit(
        AuditAction.RECORDS_IMPORTED,
        file_name or "(CSV)",
        None,
        f"{kind}: created {report.created}, updated {report.updated}, rejected {len(report.rejected)}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return report


def _import_rows(kind: str, text: str) -> ImportReport:
    if kind not in RecordKind.values:
        raise ActionError(
            gettext("unknown record kind %(kind)s; use one of %(kinds)s")
            % {"kind": repr(kind), "kinds": ", ".join(RecordKind.values)}
        )
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = {"name", "email"} - set(header)
    if missing:
        raise ActionError(
            gettext("the CSV header must have name and email (missing: %(columns)s)")
            % {"columns": ", ".join(sorted(missing))}
        )
    unknown = set(header) - {"name", "email", "email2", "email3", "owner", "kind", "active"}
    if unknown:
        raise ActionError(
            gettext("unknown CSV column(s): %(columns)s") % {"columns": ", ".join(sorted(unknown))}
        )
    reader.fieldnames = header
    owners = {u.get_username(): u for u in get_user_model().objects.all()}
    report = ImportReport()
    for row in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if any("\x00" in v for v in values.values()):
            # PostgreSQL refuses NUL in text: an error mid-import, after the rows before it were saved
            report.rejected.append((line, "a value holds a NUL character"))
            continue
        name = values.get("name", "")
        if not name:
            report.rejected.append((line, "name is empty"))
            continue
        emails = []
        bad = None
        for col in ("email", "email2", "email3"):
            raw = values.get(col, "")
            if not raw:
                continue
            addr = normalize_address(raw)
            if addr is None:
                bad = f"{col} {raw!r} is not an email address"
                break
            emails.append(addr)
        if bad:
            report.rejected.append((line, bad))
            continue
        if not emails:
            report.rejected.append((line, "email is empty"))
            continue
        owner = None
        if values.get("owner"):
            owner = owners.get(values["owner"])
            if owner is None:
                report.rejected.append((line, f"owner {values['owner']!r} is not a user"))
                continue
        active_word = values.get("active", "").lower()
        if active_word not in ACTIVE_WORDS | INACTIVE_WORDS:
            report.rejected.append((line, f"active {values['active']!r} is not true/false"))
            continue
        other_kind = values.get("kind", "")
        if other_kind and kind != RecordKind.OTHER:
            report.rejected.append((line, "the kind column is only for 'other' records"))
            continue
        length_problem = too_long(CrmRecord, "name", name) or too_long(
            CrmRecord, "other_kind", other_kind, label="kind"
        )
        if length_problem:
            report.rejected.append((line, length_problem))
            continue
        fields = {
            "email1": emails[0],
            "email2": emails[1] if len(emails) > 1 else "",
            "email3": emails[2] if len(emails) > 2 else "",
            "owner": owner,
            "active": active_word not in INACTIVE_WORDS,
            "other_kind": other_kind,
        }
        existing = CrmRecord.objects.filter(kind=kind, name=name, email1=emails[0]).first()
        if existing is None:
            CrmRecord.objects.create(kind=kind, name=name, **fields)
            report.created += 1
        else:
            for attr, value in fields.items():
                setattr(existing, attr, value)
            existing.save(update_fields=list(fields))
            report.updated += 1
    return report
