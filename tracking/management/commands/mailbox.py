from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tracking.actions import (
    ActionError,
    check_add_mailbox,
    check_add_mailbox_for_new_user,
    do_approve_mailbox,
)
from tracking.invitations import send_invitation, site_url
from tracking.management.commands._common import get_mailbox
from tracking.models import Mailbox
from tracking.scanning import run_test_and_enable


def parse_track(raw: str) -> int:
    if raw not in {"0", "1", "2", "3", "4"}:
        raise CommandError(f"--track {raw!r}: use 0–4")
    return int(raw)


class Command(BaseCommand):
    help = "Manage mailboxes (one per user or per queue)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{add,list,approve,reject,test}")
        add = sub.add_parser("add", help="add a mailbox for a user or a queue")
        add.add_argument("address")
        owner = add.add_mutually_exclusive_group(required=True)
        owner.add_argument("--user", metavar="USERNAME")
        owner.add_argument("--queue", metavar="NAME", help="the queue is created when it does not exist yet")
        owner.add_argument(
            "--invite",
            action="store_true",
            help="for a new user (role user, the address as email), invited there to choose a password",
        )
        add.add_argument("--create-user", action="store_true", help="create the user when it does not exist")
        add.add_argument("--profile", metavar="NAME", help="server profile (default: the default profile)")
        add.add_argument("--approve", action="store_true", help="approve the mailbox's email address now")
        add.add_argument("--track", help="the owner's Track option, 0–4")
        sub.add_parser("list", help="list mailboxes")
        for action, words in (
            ("approve", "approve a mailbox's email address"),
            ("reject", "reject a mailbox's email address"),
            ("test", "Test & Enable: connect, check the folders can be read, enable the mailbox"),
        ):
            sub.add_parser(action, help=words).add_argument("address")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] in ("approve", "reject"):
            mailbox = get_mailbox(options["address"])
            do_approve_mailbox(mailbox, approve=options["action"] == "approve")
            self.stdout.write(f"{mailbox.email_address}: approval {mailbox.approval}")
            return
        if options["action"] == "test":
            mailbox = get_mailbox(options["address"])
            ok, message = run_test_and_enable(mailbox.pk)
            if not ok:
                raise CommandError(f"Test & Enable failed for {mailbox.email_address}: {message}")
            self.stdout.write(f"{mailbox.email_address}: enabled; {message}")
            return
        if options["action"] == "list":
            for m in Mailbox.objects.select_related("user", "queue", "profile").order_by("email_address"):
                owner = f"user {m.user.get_username()}" if m.user else f"queue {m.queue}"
                self.stdout.write(
                    f"{m.email_address}\t{owner}\t{m.profile.name}\tapproval={m.approval}\t"
                    f"enabled={'yes' if m.enabled else 'no'}\tincoming={m.incoming_status}"
                )
            return
        if options["create_user"] and not options["user"]:
            raise CommandError("--create-user goes with --user")
        if options["invite"]:
            self.add_for_new_user(options)
            return
        try:
            mailbox = check_add_mailbox(
                options["address"],
                profile_name=options["profile"],
                username=options["user"],
                create_user=options["create_user"],
                queue_name=options["queue"],
                approve=options["approve"],
                track=parse_track(options["track"]) if options["track"] is not None else None,
            )
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"added mailbox {mailbox.email_address} (approval: {mailbox.approval})")

    def add_for_new_user(self, options: dict[str, Any]) -> None:
        """`mailbox add ADDRESS --invite`: a new user and their mailbox, then the invitation (as `users
        invite`)."""
        try:
            mailbox = check_add_mailbox_for_new_user(
                options["address"],
                profile_name=options["profile"],
                approve=options["approve"],
                track=parse_track(options["track"]) if options["track"] is not None else None,
            )
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        user = mailbox.user
        assert user is not None
        link, mailed = send_invitation(user, site_url())
        self.stdout.write(
            f"added mailbox {mailbox.email_address} (approval: {mailbox.approval}) "
            f"for the new user {user.get_username()}"
        )
        if mailed:
            self.stdout.write(f"the set-password link was mailed to {user.email}")
        else:
            self.stdout.write(f"email is not configured: give the person this link (once, 72 hours): {link}")
