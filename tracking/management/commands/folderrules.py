from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracking.actions import ActionError, do_delete_folder_rule
from tracking.folders import add_folder_rule, rule_for_folder, rule_rows
from tracking.management.commands._common import get_regarding
from tracking.models import CrmRecord, FolderTrackingRule, Mailbox, OrgSettings


class Command(BaseCommand):
    help = (
        "List, add or remove a user's folder tracking rules: every message in a mapped folder under the "
        "Inbox is tracked (reason folder_rule), regarding the rule's record."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="the rules: path, state, regarding, messages, last scan")
        listing.add_argument("--json", action="store_true")
        add = sub.add_parser("add", help="map a folder (read from the server) to tracking")
        add.add_argument("path", metavar="PATH", help="e.g. Inbox/Projects/Contoso (any case)")
        add.add_argument("--regarding", metavar="KIND:NAME", help="the record its messages regard")
        remove = sub.add_parser("remove", help="delete a rule (its decisions stay)")
        remove.add_argument("path", metavar="PATH")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        mailbox = Mailbox.objects.select_related("profile").filter(user=user).first()
        if mailbox is None:
            raise CommandError(f"{user.get_username()} has no mailbox; add one with 'mailbox add'")
        action = options["action"]
        if action == "list":
            self._list(mailbox, as_json=options["json"])
        elif action == "add":
            regarding = None
            if options["regarding"]:
                ref = get_regarding(options["regarding"])
                regarding = CrmRecord.objects.get(pk=ref.id)
            try:
                rule = add_folder_rule(mailbox, options["path"], regarding=regarding, actor_label="cli")
            except ActionError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"added {rule.folder}"
                + (f" regarding {regarding.kind}:{regarding.name}" if regarding else "")
            )
        else:
            found = rule_for_folder(mailbox, options["path"])
            if found is None:
                raise CommandError(f"{user.get_username()} has no rule for the folder {options['path']!r}")
            path = found.folder
            do_delete_folder_rule(found, actor_label="cli")
            self.stdout.write(f"removed {path}")

    def _list(self, mailbox: Mailbox, *, as_json: bool) -> None:
        rules = list(
            FolderTrackingRule.objects.filter(mailbox=mailbox).select_related("regarding").order_by("folder")
        )
        for row in rule_rows(rules, OrgSettings.load()):
            r = row.rule.regarding
            if as_json:
                self.stdout.write(
                    json.dumps(
                        {
                            "path": row.rule.folder,
                            "folder_id": row.rule.folder_id,
                            "state": row.state,
                            "regarding": {"kind": r.kind, "name": r.name} if r else None,
                            "messages": row.tracked,
                            "last_scan": row.last_scan.isoformat() if row.last_scan else None,
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                when = (
                    timezone.localtime(row.last_scan).strftime("%Y-%m-%d %H:%M") if row.last_scan else "never"
                )
                self.stdout.write(
                    f"{row.rule.folder}\t{row.state}\t{f'{r.kind}:{r.name}' if r else '-'}\t"
                    f"{row.tracked} message(s)\tlast scan {when}"
                )
