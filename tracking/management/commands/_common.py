"""Argument helpers shared by the commands that take a mailbox, a folder and a regarding record."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import CommandError

from tracking.choices import Folder, RecordKind
from tracking.context import load_rules, mailbox_for_scan
from tracking.dates import date_range_problem
from tracking.decisions import DecisionResult, RecordRef
from tracking.folders import folder_tracking_on, rule_for_folder
from tracking.models import CrmRecord, Mailbox

FOLDER_HELP = "inbox, sentitems, or the path of a mapped folder such as Inbox/Projects/Contoso"

# A century, the most days a command takes: beyond it a date counted back from now leaves the calendar.
MAX_DAYS = 36_500


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


def get_regarding(spec: str) -> RecordRef:
    kind, sep, name = spec.partition(":")
    if not sep or kind not in RecordKind.values or not name:
        raise CommandError(
            f"--regarding {spec!r}: use KIND:NAME with KIND one of {', '.join(RecordKind.values)}"
        )
    matches = list(CrmRecord.objects.filter(kind=kind, name=name)[:2])
    if not matches:
        raise CommandError(f"--regarding {spec!r}: no {kind} named {name!r}")
    if len(matches) > 1:
        raise CommandError(f"--regarding {spec!r}: several {kind} records are named {name!r}")
    return RecordRef(matches[0].pk, kind, name)


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
