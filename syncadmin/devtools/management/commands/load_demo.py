from __future__ import annotations

import os
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tracking.actions import (
    ActionError,
    ProfileValues,
    check_add_mailbox,
    check_add_profile,
    check_import_records,
    check_set_org_setting,
    do_set_personal_options,
)
from tracking.models import EmailServerProfile, Mailbox
from tracking.scanning import run_test_and_enable, scan_folder
from tracking.sources.base import SourceError

ADMINS_GROUP = "syncadmin-admins"
AUDITORS_GROUP = "syncadmin-auditors"
EWS_PROFILE = "Contoso Exchange Server (EWS, simulated)"
GRAPH_PROFILE = "Contoso Exchange Online (Graph, simulated)"
# address, user name, the user's own address, Track option, auto-create, profile
USERS = [
    ("k..allen@enron.com", "pallen", "phillip.allen@enron.com", 2, "contact", EWS_PROFILE),
    ("mike.grigsby@enron.com", "mgrigsby", "mike.grigsby@enron.com", 3, "off", GRAPH_PROFILE),
]
QUEUE = ("users@httpd.apache.org", "Apache httpd users", EWS_PROFILE)
CRM_FILES = (("contact", "contacts"), ("account", "accounts"), ("lead", "leads"), ("other", "other"))


class Command(BaseCommand):
    help = (
        "Load the demo organisation: users, a queue, a CRM directory, and mailboxes read through the "
        "Exchange simulator (EWS for some, Graph for others), then Test & Enable and scan them. Idempotent."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--demo-dir", default=str(Path(settings.BASE_DIR) / "demo"))
        parser.add_argument("--simulator-url", required=True, help="e.g. https://127.0.0.1:8765")
        parser.add_argument("--ca-file", required=True, help="the simulator's CA (simulator-ca.pem)")

    def handle(self, *args: Any, **options: Any) -> None:
        demo = Path(options["demo_dir"])
        url = options["simulator_url"].rstrip("/")
        ca_file = str(Path(options["ca_file"]).resolve())
        if not Path(ca_file).is_file():
            raise CommandError(f"--ca-file {ca_file}: no such file")
        password = os.environ.get("DEMO_PASSWORD", "demo")
        missing = [f"{name}.csv" for _, name in CRM_FILES if not (demo / f"{name}.csv").is_file()]
        if missing:
            raise CommandError(f"--demo-dir {demo}: no {', '.join(missing)}")
        # The organisation is set up whole or not at all; the scans after it need no transaction.
        try:
            with transaction.atomic():
                self._people(password)
                self._profiles(url, ca_file)
                for address, username, own_address, track, auto_create, profile in USERS:
                    if Mailbox.objects.filter(email_address=address).exists():
                        continue
                    mailbox = check_add_mailbox(
                        address,
                        profile_name=profile,
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
                queue_address, queue_name, queue_profile = QUEUE
                if not Mailbox.objects.filter(email_address=queue_address).exists():
                    check_add_mailbox(
                        queue_address,
                        profile_name=queue_profile,
                        queue_name=queue_name,
                        approve=True,
                        actor_label="demo",
                    )
                for kind, name in CRM_FILES:
                    report = check_import_records(kind, (demo / f"{name}.csv").read_text())
                    self.stdout.write(f"{kind} records: created {report.created}, updated {report.updated}")
        except ActionError as exc:
            raise CommandError(f"the demo was not loaded: {exc}") from None

        for mailbox in Mailbox.objects.select_related("profile").order_by("pk"):
            if not mailbox.enabled:
                ok, message = run_test_and_enable(mailbox.pk)
                self.stdout.write(
                    f"{mailbox.email_address}: Test & Enable {'passed' if ok else 'failed'}: {message}"
                )
                if not ok:
                    continue
            for folder in ("inbox", "sentitems"):
                try:
                    run = scan_folder(mailbox.pk, folder)
                except SourceError as exc:
                    self.stdout.write(f"{mailbox.email_address}/{folder}: scan failed: {exc}")
                    continue
                what = run.note or f"{run.items_done} new message(s), {run.tracked} tracked"
                self.stdout.write(f"{mailbox.email_address}/{folder} via {mailbox.profile.kind}: {what}")
        self.stdout.write(f"demo loaded; sign in as admin / {password} (or auditor / {password})")

    def _people(self, password: str) -> None:
        admins, _ = Group.objects.get_or_create(name=ADMINS_GROUP)
        auditors, _ = Group.objects.get_or_create(name=AUDITORS_GROUP)
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@contoso.example", password).groups.add(admins)
        if not User.objects.filter(username="auditor").exists():
            auditor = User.objects.create_user("auditor", "auditor@contoso.example", password, is_staff=True)
            auditor.groups.add(auditors)

    def _profiles(self, url: str, ca_file: str) -> None:
        if not EmailServerProfile.objects.filter(name=EWS_PROFILE).exists():
            check_add_profile(
                ProfileValues(
                    EWS_PROFILE,
                    "exchange_ews",
                    endpoint=f"{url}/EWS/Exchange.asmx",
                    auth_method="basic",
                    username="svc-syncadmin",
                    ca_bundle=ca_file,
                    use_impersonation=True,
                ),
                secret="demo",
                actor_label="demo",
            )
            check_set_org_setting("AutoTrackSentFolderItems", "true", actor_label="demo")
        if not EmailServerProfile.objects.filter(name=GRAPH_PROFILE).exists():
            check_add_profile(
                ProfileValues(
                    GRAPH_PROFILE,
                    "exchange_graph",
                    endpoint=url,
                    auth_method="oauth2",
                    tenant_id="contoso.example",
                    client_id="syncadmin-demo",
                    authority=url,
                    ca_bundle=ca_file,
                ),
                secret="demo",
                actor_label="demo",
            )
        # The simulator makes a new CA each time it starts, maybe on another port: follow it.
        EmailServerProfile.objects.filter(name=EWS_PROFILE).update(
            endpoint=f"{url}/EWS/Exchange.asmx", ca_bundle=ca_file
        )
        EmailServerProfile.objects.filter(name=GRAPH_PROFILE).update(
            endpoint=url, authority=url, ca_bundle=ca_file
        )
