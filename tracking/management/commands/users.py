"""People: list them, invite one by email, change a role, deactivate one (every change audited)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from tracking.actions import (
    ActionError,
    check_deactivate_user,
    check_invite_user,
    check_set_role,
    parse_role,
    user_rows,
)
from tracking.choices import Role
from tracking.invitations import send_invitation, site_url


def get_user(username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}; see 'users list'")
    return user


class Command(BaseCommand):
    help = "Manage the people who use SyncAdmin: list, invite, role, deactivate."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,invite,role,deactivate}")
        listing = sub.add_parser("list", help="list users with role, mailbox, last sign-in and source")
        listing.add_argument("--json", action="store_true", help="one JSON array of objects")
        invite = sub.add_parser("invite", help="invite a person by email (a one-time set-password link)")
        invite.add_argument("email")
        invite.add_argument("--role", default="user", choices=Role.values)
        role = sub.add_parser("role", help="give a user a role")
        role.add_argument("username")
        role.add_argument("role", choices=Role.values)
        sub.add_parser("deactivate", help="deactivate a user").add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except ActionError as exc:
            raise CommandError(str(exc)) from None

    def _list(self, options: dict[str, Any]) -> None:
        rows = user_rows()
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            self.stdout.write(
                "\t".join(
                    [
                        str(r["username"]),
                        str(r["email"] or "-"),
                        str(r["role"]),
                        "active" if r["active"] else "inactive",
                        f"mailbox={r['mailbox'] or '-'}",
                        f"last_sign_in={r['last_sign_in'] or 'never'}",
                        f"source={r['source']}",
                    ]
                )
            )

    def _invite(self, options: dict[str, Any]) -> None:
        user = check_invite_user(options["email"], parse_role(options["role"]))
        link, mailed = send_invitation(user, site_url())
        self.stdout.write(f"invited {user.email} as {user.get_username()} ({options['role']})")
        if mailed:
            self.stdout.write(f"the set-password link was mailed to {user.email}")
        else:
            self.stdout.write(f"email is not configured: give the person this link (once, 72 hours): {link}")

    def _role(self, options: dict[str, Any]) -> None:
        user = get_user(options["username"])
        changed = check_set_role(user, parse_role(options["role"]))
        self.stdout.write(f"{user.get_username()}: {options['role']}{'' if changed else ' (unchanged)'}")

    def _deactivate(self, options: dict[str, Any]) -> None:
        user = get_user(options["username"])
        changed = check_deactivate_user(user)
        self.stdout.write(f"{user.get_username()}: {'deactivated' if changed else 'inactive already'}")
