from __future__ import annotations

import json
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracking.actions import content_purgeable, do_purge_content, do_purge_decisions
from tracking.actions.audit import cli_label
from tracking.management.commands._common import MAX_DAYS, get_mailbox
from tracking.models import AuditEvent, Decision
from tracking.roles import is_admin


def parse_days(raw: str, option: str = "--older-than") -> int:
    try:
        days = int(raw.strip())
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise CommandError(f"{option} {raw!r}: give a whole number of days from 1 to {MAX_DAYS}")
    return days


def actor_of(name: str | None) -> str:
    """The audit label of who purges: `cli:` + an admin's user name (--actor), else the OS user.

    --actor is checked against the users, so the audit trail never names someone who does not exist.
    """
    if name is None:
        label = cli_label()
    else:
        user = User.objects.filter(username=name.strip()).first()
        if user is None or not is_admin(user):
            raise CommandError(f"--actor {name!r}: not the user name of an active admin")
        label = cli_label(user.get_username())
    limit = AuditEvent._meta.get_field("actor_label").max_length or 0
    if len(label) > limit:
        raise CommandError(f"--actor: give a name of 1 to {limit - len('cli:')} characters")
    return label


class Command(BaseCommand):
    help = (
        "Delete the decisions made more than DAYS days ago (all mailboxes, or one), in one transaction, "
        "with an audit event naming who purged what. The only way decisions are ever deleted. With "
        "--content-older-than, also (or only) clear the stored bodies and attachment contents of the emails "
        "tracked more than DAYS days ago, keeping their metadata."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--older-than", metavar="DAYS", help="decisions: age in whole days, ≥ 1")
        parser.add_argument(
            "--content-older-than",
            metavar="DAYS",
            help="clear bodies and attachment contents of emails tracked more than DAYS days ago "
            "(all mailboxes; --mailbox does not apply)",
        )
        parser.add_argument("--mailbox", metavar="ADDRESS", help="only this mailbox's decisions")
        parser.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
        parser.add_argument(
            "--actor",
            metavar="USERNAME",
            help="the admin purging, for the audit event (default: the operating-system user)",
        )
        parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"] is None and options["content_older_than"] is None:
            raise CommandError("say what to purge: --older-than DAYS, --content-older-than DAYS, or both")
        days = parse_days(options["older_than"]) if options["older_than"] is not None else None
        content_days = (
            parse_days(options["content_older_than"], "--content-older-than")
            if options["content_older_than"] is not None
            else None
        )
        mailbox = get_mailbox(options["mailbox"]) if options["mailbox"] else None
        label = actor_of(options["actor"])
        now = timezone.now()
        summary: dict[str, object] = {}
        lines: list[str] = []
        verb = "would delete" if options["dry_run"] else "deleted"
        if days is not None:
            cutoff = now - timedelta(days=days)
            if options["dry_run"]:
                matched = Decision.objects.purgeable(cutoff, mailbox).count()
                deleted = 0
            else:
                matched = deleted = do_purge_decisions(cutoff, mailbox=mailbox, actor_label=label)
            scope = mailbox.email_address if mailbox is not None else None
            summary.update(
                {
                    "cutoff": cutoff.isoformat(),
                    "mailbox": scope,
                    "dry_run": options["dry_run"],
                    "matched": matched,
                    "deleted": deleted,
                    "actor": label,
                }
            )
            of = f" of {scope}" if scope else ""
            when = f"{cutoff:%Y-%m-%d %H:%M:%S %Z}"
            lines.append(f"{verb} {matched} decision(s){of} made before {when} (older than {days} days)")
        if content_days is not None:
            content_cutoff = now - timedelta(days=content_days)
            if options["dry_run"]:
                content_matched = content_purgeable(content_cutoff).count()
                cleared = 0
            else:
                content_matched = cleared = do_purge_content(content_cutoff, now=now, actor_label=label)
            summary.update(
                {
                    "content_cutoff": content_cutoff.isoformat(),
                    "content_matched": content_matched,
                    "content_cleared": cleared,
                    "dry_run": options["dry_run"],
                    "actor": label,
                }
            )
            when = f"{content_cutoff:%Y-%m-%d %H:%M:%S %Z}"
            clear = "would clear" if options["dry_run"] else "cleared"
            lines.append(
                f"{clear} the content of {content_matched} tracked email(s) tracked before {when} "
                f"(older than {content_days} days)"
            )
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        self.stdout.write("\n".join(lines))
