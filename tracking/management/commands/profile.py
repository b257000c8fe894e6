from __future__ import annotations

import getpass
import os
from argparse import ArgumentParser, BooleanOptionalAction
from dataclasses import replace
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tracking.actions import (
    ActionError,
    ProfileValues,
    SecretRequired,
    check_add_profile,
    check_update_profile,
)
from tracking.choices import AuthMethod, ProfileKind
from tracking.management.commands._common import parse_when
from tracking.models import EmailServerProfile


class Command(BaseCommand):
    help = "Manage email server profiles (how SyncAdmin reaches a mail server)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{add,update,list}")
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
        update = sub.add_parser(
            "update",
            help="change a server profile; options not given stay as they are. Changing the endpoint, "
            "authority, tenant, user name, authentication or CA bundle needs --secret-env or --secret-prompt",
        )
        update.add_argument("name")
        update.add_argument("--endpoint")
        update.add_argument("--auth", dest="auth_method", choices=AuthMethod.values)
        update.add_argument("--username")
        update.add_argument("--tenant-id")
        update.add_argument("--client-id")
        update.add_argument("--authority")
        update.add_argument("--ca-bundle")
        update.add_argument("--impersonation", action=BooleanOptionalAction, default=None)
        update.add_argument("--max-connections", type=int)
        secret = update.add_mutually_exclusive_group()
        secret.add_argument("--secret-env", metavar="VAR", help="the new password or client secret")
        secret.add_argument("--secret-prompt", action="store_true", help="ask for the new secret")
        secret.add_argument("--clear-secret", action="store_true", help="remove the stored secret")
        sub.add_parser("list", help="list profiles (secrets are shown only as set / not set)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for p in EmailServerProfile.objects.order_by("name"):
                secret = "set" if p.has_secret else "not set"
                self.stdout.write(
                    f"{p.name}\t{p.kind}\t{p.endpoint or '-'}\tauth={p.auth_method}\tsecret {secret}"
                )
            return
        secret = read_secret(options)
        if options["action"] == "update":
            self.update(options, secret)
            return
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

    def update(self, options: dict[str, Any], secret: str) -> None:
        profile = EmailServerProfile.objects.filter(name=options["name"]).first()
        if profile is None:
            raise CommandError(f"no server profile named {options['name']!r}")
        given = {
            "endpoint": options["endpoint"],
            "auth_method": options["auth_method"],
            "username": options["username"],
            "tenant_id": options["tenant_id"],
            "client_id": options["client_id"],
            "authority": options["authority"],
            "ca_bundle": options["ca_bundle"],
            "use_impersonation": options["impersonation"],
            "max_concurrent_connections": options["max_connections"],
        }
        values = replace(
            ProfileValues.of(profile), **{field: value for field, value in given.items() if value is not None}
        )
        try:
            changed = check_update_profile(
                profile, values, secret=secret or None, clear_secret=options["clear_secret"]
            )
        except SecretRequired as exc:
            raise CommandError(f"{exc} (--secret-env VAR or --secret-prompt)") from None
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        said = ", ".join(changed) if changed else "nothing"
        self.stdout.write(f"updated profile {profile.name}: changed {said}")


def read_secret(options: dict[str, Any]) -> str:
    """The secret from --secret-env or --secret-prompt; "" when neither was given."""
    if options.get("secret_env"):
        if options["secret_env"] not in os.environ:
            raise CommandError(f"environment variable {options['secret_env']} is not set")
        return str(os.environ[options["secret_env"]])
    if options.get("secret_prompt"):
        return getpass.getpass("Secret: ")
    return ""
