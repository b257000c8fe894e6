"""`emails show MESSAGE-ID [--direction D] [--json]`: a tracked email as a CRM user reads it (tracking-rules
§2); `emails backfill-parties`: the parties of emails tracked before they were recorded (§6)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import BooleanField, ExpressionWrapper, Q

from tracking.actions import do_backfill_parties
from tracking.choices import Direction
from tracking.models import Decision, TrackedAttachment, TrackedEmail


def email_as_json(email: TrackedEmail) -> dict[str, object]:
    """The public shape of `emails show --json` (README): keys never renamed, only added."""
    attachments = (
        TrackedAttachment.objects.filter(tracked_email=email)
        .defer("content")
        .annotate(stored=ExpressionWrapper(Q(content__isnull=False), output_field=BooleanField()))
    )
    return {
        "message_id": email.message_id,
        "state": "untracked" if email.untracked_at is not None else "tracked",
        "direction": email.direction,
        "subject": email.subject,
        "sender": email.sender,
        "recipients": [
            {"role": str(pair[0]), "address": str(pair[1])}
            for pair in email.recipients or []
            if isinstance(pair, list) and len(pair) == 2
        ],
        "body_text": email.body_text,
        "body_html": email.body_html,
        "attachments": [
            {"name": a.name, "content_type": a.content_type, "size": a.size, "stored": a.stored}
            for a in attachments
        ],
        "regarding": f"{email.regarding.kind}:{email.regarding.name}" if email.regarding else None,
        "owner": email.owner.get_username() if email.owner else None,
        "queue_items": [
            {"queue": item.queue.name, "state": item.state}
            for item in email.queue_items.select_related("queue").order_by("queue__name", "pk")
        ],
    }


def find_emails(message_id: str, direction: str | None) -> list[TrackedEmail]:
    """The tracked emails of a Message-ID (angle brackets optional): one, or two for internal mail tracked
    once per direction (TrackEmailsBetweenUsersAsTwoActivities), incoming first."""
    wanted = message_id.strip()
    candidates = [wanted] if wanted.startswith("<") else [wanted, f"<{wanted}>"]
    emails = TrackedEmail.objects.select_related("regarding", "owner").filter(message_id__in=candidates)
    if direction is not None:
        emails = emails.filter(direction=direction)
    found = sorted(emails, key=lambda e: (e.direction != Direction.INCOMING, e.pk))
    if found:
        return found
    decided = Decision.objects.filter(message_id__in=candidates).exists()
    of = f" {direction}" if direction else ""
    if decided:
        raise CommandError(
            f"{message_id!r} was decided but no{of} tracked email has this Message-ID (see the decision log)"
        )
    raise CommandError(f"no{of} tracked email and no decision has the Message-ID {message_id!r}")


class Command(BaseCommand):
    help = (
        "Show a tracked email (headers, body, attachments, regarding, owner, queue items); backfill parties."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{show,backfill-parties}")
        show = sub.add_parser("show", help="a tracked email by its Message-ID")
        show.add_argument("message_id", metavar="MESSAGE-ID", help="the Internet Message-ID (<> optional)")
        show.add_argument(
            "--direction",
            choices=Direction.values,
            help="only the email tracked in this direction (internal mail may be tracked in both)",
        )
        show.add_argument(
            "--json",
            action="store_true",
            help="one JSON object; a JSON array of two when the Message-ID was tracked in both directions",
        )
        backfill = sub.add_parser(
            "backfill-parties", help="record the parties of emails tracked before parties were recorded"
        )
        backfill.add_argument("--json", action="store_true", help="the count as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "backfill-parties":
            count = do_backfill_parties()
            if options["json"]:
                self.stdout.write(json.dumps({"emails": count}))
            else:
                self.stdout.write(f"recorded the parties of {count} tracked email(s)")
            return
        emails = find_emails(options["message_id"], options["direction"])
        shown = [email_as_json(e) for e in emails]
        if options["json"]:
            self.stdout.write(
                json.dumps(shown[0] if len(shown) == 1 else shown, indent=2, ensure_ascii=False)
            )
            return
        for position, row in enumerate(shown):
            if position:
                self.stdout.write("")
            self._text(row)

    def _text(self, row: dict[str, Any]) -> None:
        lines = [
            f"Message-ID:  {row['message_id']}",
            f"State:       {row['state']}",
            f"Direction:   {row['direction']}",
            f"Subject:     {row['subject']}",
            f"From:        {row['sender'] or '-'}",
        ]
        for role in ("to", "cc", "bcc"):
            addresses = [r["address"] for r in row["recipients"] if r["role"] == role]
            if addresses:
                lines.append(f"{role.capitalize() + ':':<12} {', '.join(addresses)}")
        lines += [
            f"Regarding:   {row['regarding'] or '-'}",
            f"Owner:       {row['owner'] or '-'}",
            "Queue items: " + (", ".join(f"{q['queue']} ({q['state']})" for q in row["queue_items"]) or "-"),
        ]
        for a in row["attachments"]:
            kept = "" if a["stored"] else ", content not stored"
            lines.append(f"Attachment:  {a['name']} ({a['content_type']}, {a['size']} bytes{kept})")
        if row["body_text"]:
            lines += ["", row["body_text"].rstrip()]
        elif row["body_html"]:
            lines += ["", f"(HTML body only, {len(row['body_html'])} characters: see --json or the web page)"]
        else:
            lines += ["", "(no body stored)"]
        self.stdout.write("\n".join(lines))
