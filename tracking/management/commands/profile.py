from __future__ import annotations

import getpass
import os
from argparse import ArgumentParser
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tracking.actions import ActionError, ProfileValues, check_add_profile
from tracking.choices import AuthMethod, ProfileKind
from tracking.dates import date_range_problem
from tracking.models import EmailServerProfile


def parse_when(raw: str) -> datetime:
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


class Command(BaseCommand):
    help = "Manage email server profiles (how SyncAdmin reaches a mail server)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{add,list}")
        add = sub.add_parser("add", help="add a server profile; credentials may be added later")
        add.add_argument("name")
        add.add_argument("--kind", required=True, choices=ProfileKind.values)
        add.add_argument(
            "--endpoint", default="", help="EWS/Graph URL, imap(s)://host:port, or a directory for 'local'"
        )
        add.add_argument("--auth", dest="auth_method", default=AuthMethod.NONE, choices=AuthMethod.values)
        add.add_argument("--username", default="")
        add.add_argument("--tenant-id", default="")
        add.add_argument("--client-id", default="")
        add.add_argument(
            "--authority", default="", help="OAuth authority host (default https://login.microsoftonline.com)"
        )
        add.add_argument(
            "--secret-env",
            metavar="VAR",
            help="read the password or client secret from this environment variable (not from shell history)",
        )
        add.add_argument("--secret-prompt", action="store_true", help="ask for the password or client secret")
        add.add_argument("--ca-bundle", default="", help="CA file for a server with an internal CA")
        add.add_argument("--impersonation", action="store_true", help="EWS: use impersonation")
        add.add_argument("--process-after", help="process emails received after this ISO date-time")
        add.add_argument("--max-connections", type=int, default=10, help="1–300 (default 10)")
        sub.add_parser("list", help="list profiles (secrets are shown only as set / not set)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for p in EmailServerProfile.objects.order_by("name"):
                secret = "set" if p.has_secret else "not set"
                self.stdout.write(
                    f"{p.name}\t{p.kind}\t{p.endpoint or '-'}\tauth={p.auth_method}\tsecret {secret}"
                )
            return
        secret = ""
        if options["secret_env"]:
            if options["secret_env"] not in os.environ:
                raise CommandError(f"environment variable {options['secret_env']} is not set")
            secret = os.environ[options["secret_env"]]
        elif options["secret_prompt"]:
            secret = getpass.getpass("Secret: ")
        try:
            profile = check_add_profile(
                ProfileValues(
                    options["name"],
                    options["kind"],
                    endpoint=options["endpoint"],
                    auth_method=options["auth_method"],
                    username=options["username"],
                    tenant_id=options["tenant_id"],
                    client_id=options["client_id"],
                    authority=options["authority"],
                    ca_bundle=options["ca_bundle"],
                    use_impersonation=options["impersonation"],
                    process_emails_received_after=parse_when(options["process_after"])
                    if options["process_after"]
                    else None,
                    max_concurrent_connections=options["max_connections"],
                ),
                secret=secret,
            )
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"added profile {profile.name} ({profile.kind})")
