from __future__ import annotations

import os
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand

from tracking.actions import (
    check_add_mailbox,
    check_add_profile,
    check_import_records,
    check_set_org_setting,
    do_set_personal_options,
)
from tracking.models import EmailServerProfile, Mailbox

ADMINS_GROUP = "syncadmin-admins"
AUDITORS_GROUP = "syncadmin-auditors"
PROFILE = "Contoso Exchange (demo)"
MAILBOXES = [
    # address, username, user's own address, track, auto-create, mail folder
    ("k..allen@enron.com", "pallen", "phillip.allen@enron.com", 2, "contact", "allen"),
    ("mike.grigsby@enron.com", "mgrigsby", "mike.grigsby@enron.com", 3, "off", "grigsby"),
]
QUEUE = ("users@httpd.apache.org", "Apache httpd users", "httpd")


class Command(BaseCommand):
    help = "Load the demo organisation from real mail in demo/ (idempotent: running it again adds nothing)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--demo-dir", default=str(Path(settings.BASE_DIR) / "demo"))

    def handle(self, *args: Any, **options: Any) -> None:
        demo = Path(options["demo_dir"])
        admins, _ = Group.objects.get_or_create(name=ADMINS_GROUP)
        auditors, _ = Group.objects.get_or_create(name=AUDITORS_GROUP)
        password = os.environ.get("DEMO_PASSWORD", "demo")
        if not User.objects.filter(username="admin").exists():
            admin = User.objects.create_superuser("admin", "admin@contoso.example", password)
            admin.groups.add(admins)
        if not User.objects.filter(username="auditor").exists():
            auditor = User.objects.create_user("auditor", "auditor@contoso.example", password, is_staff=True)
            auditor.groups.add(auditors)

        if not EmailServerProfile.objects.filter(name=PROFILE).exists():
            check_add_profile(
                PROFILE,
                "exchange_ews",
                endpoint="https://exchange.contoso.example/EWS/Exchange.asmx",
                actor_label="demo",
            )
            check_set_org_setting("AutoTrackSentFolderItems", "true", actor_label="demo")

        for address, username, own_address, track, auto_create, _ in MAILBOXES:
            if not Mailbox.objects.filter(email_address=address).exists():
                mailbox = check_add_mailbox(
                    address,
                    profile_name=PROFILE,
                    username=username,
                    create_user=True,
                    approve=True,
                    actor_label="demo",
                )
                user = mailbox.user
                assert user is not None
                user.email = own_address
                user.set_password(password)
                user.save(update_fields=["email", "password"])
                do_set_personal_options(user, track=track, auto_create=auto_create, actor_label="demo")
        queue_address, queue_name, _ = QUEUE
        if not Mailbox.objects.filter(email_address=queue_address).exists():
            check_add_mailbox(
                queue_address, profile_name=PROFILE, queue_name=queue_name, approve=True, actor_label="demo"
            )

        for kind, csv_name in (
            ("contact", "contacts"),
            ("account", "accounts"),
            ("lead", "leads"),
            ("other", "other"),
        ):
            report = check_import_records(kind, (demo / f"{csv_name}.csv").read_text())
            self.stdout.write(f"{kind} records: created {report.created}, updated {report.updated}")

        mail = demo / "mail"
        feeds = [(a, f) for a, *_, f in MAILBOXES] + [(queue_address, QUEUE[2])]
        for address, folder_dir in feeds:
            for folder in ("inbox", "sentitems"):
                path = mail / folder_dir / f"{folder}.mbox"
                if path.exists():
                    call_command(
                        "ingest", "--mailbox", address, "--folder", folder, str(path), stdout=self.stdout
                    )
        self.stdout.write(f"demo loaded; sign in at /admin/ as admin / {password} (or auditor / {password})")
