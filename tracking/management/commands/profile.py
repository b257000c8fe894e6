from __future__ import annotations

import getpass
import os
from argparse import ArgumentParser, BooleanOptionalAction
from dataclasses import replace
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tracking.actions import (
    ActionError,
    ProfileValues,
    SecretRequired,
    check_add_profile,
    check_update_profile,
    do_set_default_profile,
)
from tracking.actions.profiles import MAX_POLL_MINUTES
from tracking.choices import AuthMethod, ProfileKind
from tracking.management.commands._common import parse_when
from tracking.messages import normalize_address
from tracking.models import EmailServerProfile
from tracking.scanning import test_profile_connection

MIN_POLL_HELP = (
    f"scan the profile's mailboxes at most every N minutes (1–{MAX_POLL_MINUTES}); "
    "without it the org's MailboxPollIntervalMinutes applies"
)


class Command(BaseCommand):
    help = "Manage email server profiles (how SyncAdmin reaches a mail server)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{add,update,list,default,test}")
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
        add.add_argument("--min-poll-minutes", type=int, help=MIN_POLL_HELP)
        add.add_argument(
            "--default", action="store_true", help="make it the default profile of new mailboxes"
        )
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
        poll = update.add_mutually_exclusive_group()
        poll.add_argument("--min-poll-minutes", type=int, help=MIN_POLL_HELP)
        poll.add_argument(
            "--no-min-poll", action="store_true", help="remove the minimum poll interval (the org's applies)"
        )
        secret = update.add_mutually_exclusive_group()
        secret.add_argument("--secret-env", metavar="VAR", help="the new password or client secret")
        secret.add_argument("--secret-prompt", action="store_true", help="ask for the new secret")
        secret.add_argument("--clear-secret", action="store_true", help="remove the stored secret")
        sub.add_parser("list", help="list profiles (secrets are shown only as set / not set)")
        sub.add_parser("default", help="make a profile the default of new mailboxes").add_argument("name")
        test = sub.add_parser(
            "test",
            help="Test connection: sign in through the profile and read one inbox; stores nothing, "
            "needs no mailbox",
        )
        test.add_argument("name")
        test.add_argument("address", help="any mailbox address on the profile's server")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for p in EmailServerProfile.objects.order_by("name"):
                secret = "set" if p.has_secret else "not set"
                default = "yes" if p.is_default else "no"
                self.stdout.write(
                    f"{p.name}\t{p.kind}\t{p.endpoint or '-'}\tauth={p.auth_method}\tsecret {secret}\t"
                    f"min_poll={p.minimum_poll_interval_minutes or '-'}\tdefault={default}"
                )
            return
        if options["action"] == "default":
            profile = get_profile(options["name"])
            if do_set_default_profile(profile):
                self.stdout.write(f"{profile.name} is now the default profile of new mailboxes")
            else:
                self.stdout.write(f"{profile.name} is already the default profile of new mailboxes")
            return
        if options["action"] == "test":
            profile = get_profile(options["name"])
            address = normalize_address(options["address"])
            if address is None:
                raise CommandError(f"{options['address']!r} is not an email address")
            ok, words = test_profile_connection(profile, address)
            if not ok:
                raise CommandError(f"Test connection of {profile.name} failed: {words}")
            self.stdout.write(f"{profile.name}: {words}")
            return
        secret = read_secret(options)
        if options["action"] == "update":
            self.update(options, secret)
            return
        try:
            # one transaction: a profile that cannot become the default is not added either
            with transaction.atomic():
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
                        minimum_poll_interval_minutes=options["min_poll_minutes"],
                    ),
                    secret=secret,
                )
                if options["default"]:
                    do_set_default_profile(profile)
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        said = "; the default profile of new mailboxes" if options["default"] else ""
        self.stdout.write(f"added profile {profile.name} ({profile.kind}){said}")

    def update(self, options: dict[str, Any], secret: str) -> None:
        profile = get_profile(options["name"])
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
            "minimum_poll_interval_minutes": options["min_poll_minutes"],
        }
        values = replace(
            ProfileValues.of(profile), **{field: value for field, value in given.items() if value is not None}
        )
        if options["no_min_poll"]:
            values = replace(values, minimum_poll_interval_minutes=None)
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


def get_profile(name: str) -> EmailServerProfile:
    profile = EmailServerProfile.objects.filter(name=name).first()
    if profile is None:
        raise CommandError(f"no server profile named {name!r}")
    return profile


def read_secret(options: dict[str, Any]) -> str:
    """The secret from --secret-env or --secret-prompt; "" when neither was given."""
    if options.get("secret_env"):
        if options["secret_env"] not in os.environ:
            raise CommandError(f"environment variable {options['secret_env']} is not set")
        return str(os.environ[options["secret_env"]])
    if options.get("secret_prompt"):
        return getpass.getpass("Secret: ")
    return ""
