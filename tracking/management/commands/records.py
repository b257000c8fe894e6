"""`records show KIND:NAME [--json] [--limit N]`: a record and its timeline (tracking-rules §2).

KIND is account, contact, lead, other, user (NAME its username) or queue. The timeline is every tracked
email the record is regarding or a party of, newest first; the command reads as an admin does.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from tracking.choices import EntityKind
from tracking.management.commands._common import find_record
from tracking.models import CrmRecord, Queue, TrackedEmail
from tracking.timeline import FIRST_STRETCH, WINDOW, Subject, TimelineEntry, timeline_page

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


def record_as_json(subject: Subject) -> dict[str, Any]:
    if isinstance(subject, CrmRecord):
        return {
            "kind": subject.kind,
            "other_kind": subject.other_kind,
            "name": subject.name,
            "addresses": subject.addresses,
            "owner": subject.owner.get_username() if subject.owner else None,
            "active": subject.active,
        }
    if isinstance(subject, Queue):
        return {
            "kind": EntityKind.QUEUE.value,
            "name": subject.name,
            "addresses": [subject.email] if subject.email else [],
            "owner": subject.owner.get_username() if subject.owner else None,
            "active": subject.active,
        }
    return {
        "kind": EntityKind.USER.value,
        "name": subject.get_username(),
        "addresses": [subject.email] if subject.email else [],
        "owner": None,
        "active": subject.is_active,
    }


def entry_as_json(entry: TimelineEntry) -> dict[str, Any]:
    email = entry.email
    return {
        "message_id": email.message_id,
        "subject": email.subject,
        "received_at": email.timeline_at.isoformat(),
        "direction": email.direction,
    }


class Command(BaseCommand):
    help = "Show a record (account, contact, lead, other, user or queue) and its timeline of tracked emails."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("show", help="the record and its tracked emails, newest first")
        show.add_argument(
            "record",
            metavar="KIND:NAME",
            help="e.g. contact:'Dana Smith', account:Contoso, user:alice, queue:Support",
        )
        show.add_argument("--json", action="store_true")
        show.add_argument(
            "--limit", type=int, default=DEFAULT_LIMIT, help=f"newest emails shown (default {DEFAULT_LIMIT})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["limit"]
        if not 1 <= limit <= MAX_LIMIT:
            raise CommandError(f"--limit {limit}: use 1 to {MAX_LIMIT:,}")
        subject = find_record(options["record"], option="records show", kinds=EntityKind.values)
        if isinstance(subject, CrmRecord | Queue):
            subject = type(subject).objects.select_related("owner").get(pk=subject.pk)
        # every row passes (the command reads everything): a window as long as the page never cuts it
        page = timeline_page(
            subject,
            visible=TrackedEmail.objects.all(),
            size=limit,
            window=max(WINDOW, FIRST_STRETCH * (limit + 1)),
        )
        if options["json"]:
            out = {"record": record_as_json(subject), "timeline": [entry_as_json(e) for e in page.entries]}
            self.stdout.write(json.dumps(out, ensure_ascii=False, indent=2))
            return
        self.stdout.write(_heading(subject))
        if not page.entries:
            self.stdout.write("no tracked emails")
        for entry in page.entries:
            email = entry.email
            self.stdout.write(
                f"{email.timeline_at.isoformat(timespec='minutes')}  {email.direction:<8}  "
                f"{email.subject or '(no subject)'}  {email.message_id}  [{', '.join(entry.standings)}]"
            )
        if page.next is not None:
            self.stdout.write(f"(the {limit} newest; --limit N shows more)")


def _heading(subject: Subject) -> str:
    facts = record_as_json(subject)
    label = facts.get("other_kind") or facts["kind"]
    parts = [", ".join(facts["addresses"]) or "no address"]
    if facts["owner"]:
        parts.append(f"owner {facts['owner']}")
    parts.append("active" if facts["active"] else "inactive")
    name = facts["name"]
    if isinstance(subject, User) and subject.get_full_name():
        name = f"{subject.get_full_name()} ({name})"
    return f"{label}: {name} ({'; '.join(parts)})"
