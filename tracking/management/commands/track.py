"""`track --mailbox ADDRESS --message-id ID [--folder F] (--track [--regarding KIND:NAME] | --regarding
KIND:NAME | --clear-regarding | --untrack) [--as USERNAME] [--json]`: manual tracking (tracking-rules §7a)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracking.actions import current_decision, do_set_regarding_by_hand, do_untrack
from tracking.management.commands._common import get_folder, get_mailbox, get_regarding
from tracking.models import CrmRecord, Decision, Mailbox
from tracking.pipeline import decision_as_json, track_decision_manually, tracked_email_of
from tracking.roles import is_admin


class Command(BaseCommand):
    help = (
        "Track a message by hand (optionally regarding a record), set or clear the regarding of a tracked "
        "email, or untrack it; as the mailbox's owner or an admin. Each is a new decision and an audit event."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--mailbox", required=True, metavar="ADDRESS")
        parser.add_argument("--message-id", required=True, metavar="ID", help="the Internet Message-ID")
        parser.add_argument("--folder", metavar="F", help="needed when the message was decided in several")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--track", action="store_true", help="track the message (it is not tracked)")
        action.add_argument(
            "--clear-regarding", action="store_true", help="clear a tracked email's regarding"
        )
        action.add_argument("--untrack", action="store_true", help="untrack a tracked email")
        parser.add_argument(
            "--regarding",
            metavar="KIND:NAME",
            help="with --track, the record it is regarding; alone, set or change a tracked email's regarding",
        )
        parser.add_argument("--as", dest="as_user", metavar="USERNAME", help="the person acting (audited)")
        parser.add_argument("--json", action="store_true", help="the new decision as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        mailbox = get_mailbox(options["mailbox"])
        acting = _acting_user(options["as_user"], mailbox)
        decision = _decision(mailbox, options["message_id"].strip(), options["folder"])
        regarding = get_regarding(options["regarding"]) if options["regarding"] else None
        if regarding is not None and (options["clear_regarding"] or options["untrack"]):
            raise CommandError("--regarding goes with --track, or alone")
        if not (options["track"] or options["clear_regarding"] or options["untrack"] or regarding):
            raise CommandError(
                "say what to do: --track, --regarding KIND:NAME, --clear-regarding or --untrack"
            )
        email = tracked_email_of(decision)
        tracked = email is not None and email.untracked_at is None
        now = timezone.now()
        label = acting.get_username() if acting is not None else "cli"
        if options["track"] or (regarding is not None and not tracked):
            if tracked:
                raise CommandError(
                    "the message is tracked already; use --regarding KIND:NAME to change its regarding"
                )
            made = track_decision_manually(
                decision, regarding, now=now, acting_user=acting, actor_label=label
            )
            result = made.decision
        else:
            if email is None or not tracked:
                raise CommandError("the message is not tracked; use --track")
            if options["untrack"]:
                result = do_untrack(decision, email, now=now, acting_user=acting, actor_label=label)
            else:
                record = CrmRecord.objects.get(pk=regarding.id) if regarding is not None else None
                result = do_set_regarding_by_hand(
                    decision, email, record, now=now, acting_user=acting, actor_label=label
                )
        result = Decision.objects.select_related("regarding").get(pk=result.pk)
        if options["json"]:
            self.stdout.write(json.dumps(decision_as_json(result, new=True), ensure_ascii=False))
        else:
            self.stdout.write(f"decision {result.pk}: {result.outcome}/{result.reason}")


def _acting_user(username: str | None, mailbox: Mailbox) -> User | None:
    if username is None:
        return None
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"--as {username!r}: no active user of that name")
    if not (is_admin(user) or mailbox.user_id == user.pk):
        raise CommandError(f"--as {username!r}: only the mailbox's owner or an admin may track its mail")
    return user


def _decision(mailbox: Mailbox, message_id: str, folder: str | None) -> Decision:
    decisions = Decision.objects.filter(mailbox=mailbox, message_id=message_id)
    if folder is not None:
        decisions = decisions.filter(folder=get_folder(mailbox, folder))
    folders = sorted(set(decisions.values_list("folder", flat=True)))
    if not folders:
        raise CommandError(f"{mailbox.email_address} has no decision for {message_id!r}")
    if len(folders) > 1:
        raise CommandError(f"{message_id!r} was decided in {', '.join(folders)}: say which with --folder")
    first = decisions.order_by("pk").first()
    assert first is not None
    return current_decision(first)
