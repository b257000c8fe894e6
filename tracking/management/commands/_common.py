"""Argument helpers shared by the commands that take a mailbox, a folder and a regarding record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from tracking.choices import EntityKind, Folder, RecordKind
from tracking.context import load_rules, mailbox_for_scan
from tracking.dates import date_range_problem
from tracking.decisions import DecisionResult, RecordRef
from tracking.folders import folder_tracking_on, rule_for_folder
from tracking.models import CrmRecord, Mailbox, Queue
from tracking.timeline import Subject

FOLDER_HELP = "inbox, sentitems, or the path of a mapped folder such as Inbox/Projects/Contoso"

# A century, the most days a command takes: beyond it a date counted back from now leaves the calendar.
MAX_DAYS = 36_500
# Records an ambiguous KIND:NAME error lists at most.
AMBIGUOUS_LISTED = 20


def parse_when(raw: str) -> datetime:
    """An ISO date or date-time from the command line (UTC when it names no offset), in the sane range."""
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(
            f"{raw!r} is not an ISO date or date-time (e.g. 2026-01-31 or 2026-01-31T08:00+01:00)"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    problem = date_range_problem(when)
    if problem:
        raise CommandError(f"{raw!r}: {problem}")
    return when


def get_mailbox(address: str) -> Mailbox:
    mailbox = Mailbox.objects.filter(email_address=address.strip().lower()).first()
    if mailbox is None:
        raise CommandError(f"no mailbox {address!r}; add it with 'mailbox add'")
    return mailbox_for_scan(mailbox.pk)


def get_folder(mailbox: Mailbox, text: str) -> str:
    """inbox or sentitems, or a mapped folder's display path (any case): what decisions record as folder."""
    if text.strip().lower() in Folder.values:
        return text.strip().lower()
    rule = rule_for_folder(mailbox, text)
    if rule is None:
        raise CommandError(
            f"--folder {text!r}: use inbox, sentitems or the path of a folder {mailbox.email_address} has "
            "mapped (see 'folderrules USERNAME list')"
        )
    if rule.folder_deleted_at is not None or not rule.folder_id:
        raise CommandError(f"--folder {text!r}: the folder of this rule was deleted on the server")
    if not folder_tracking_on(mailbox, load_rules()):
        raise CommandError(f"--folder {text!r}: folder-based tracking is turned off for the organisation")
    return rule.folder


def find_record(
    spec: str, *, option: str = "--regarding", kinds: Sequence[str] = RecordKind.values
) -> Subject:
    """The one record KIND:NAME names (a user by username, a queue or CRM record by name); an error that
    lists the candidates when several have that name."""
    kind, sep, name = spec.partition(":")
    if not sep or kind not in kinds or not name:
        raise CommandError(f"{option} {spec!r}: use KIND:NAME with KIND one of {', '.join(kinds)}")
    matches: list[Subject]
    if kind == EntityKind.USER:
        matches = list(User.objects.filter(username=name))
    elif kind == EntityKind.QUEUE:
        matches = list(Queue.objects.filter(name=name))
    else:
        matches = list(CrmRecord.objects.filter(kind=kind, name=name).order_by("pk")[:AMBIGUOUS_LISTED])
    if not matches:
        raise CommandError(f"{option} {spec!r}: no {kind} named {name!r}")
    if len(matches) > 1:
        listed = "; ".join(
            f"id {m.pk}"
            + (f" ({', '.join(m.addresses)})" if isinstance(m, CrmRecord) and m.addresses else "")
            for m in matches
        )
        raise CommandError(f"{option} {spec!r}: several {kind} records are named {name!r}: {listed}")
    return matches[0]


def get_regarding(spec: str) -> RecordRef:
    record = find_record(spec)
    assert isinstance(record, CrmRecord)
    return RecordRef(record.pk, record.kind, record.name)


def check_port(option: str, value: int, *, any_free: bool = False) -> int:
    """A TCP port from an option, refused before anything starts (0 asks the system for a free one)."""
    lowest = 0 if any_free else 1
    if not lowest <= value <= 65535:
        raise CommandError(f"{option} {value}: use a port from {lowest} to 65535")
    return value


def trace_lines(res: DecisionResult) -> list[str]:
    lines = [f"{res.message_id}  {res.outcome.value}/{res.reason.value}"]
    lines += [f"  {s.check}: {s.result} — {s.detail}" for s in res.trace]
    return lines
