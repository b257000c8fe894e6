from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tracking.actions import ActionError, check_set_org_setting
from tracking.models import OrgSettings
from tracking.orgsettings import ORG_SETTINGS, SettingError, spec_for


class Command(BaseCommand):
    help = "List, read and change organisation settings (the OrgDBOrgSettings of tracking-rules §11)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,get,set}")
        listing = sub.add_parser("list", help="every setting with its value, type and default")
        listing.add_argument("--json", action="store_true", help="print a JSON array")
        get = sub.add_parser("get", help="print one setting's value")
        get.add_argument("name")
        put = sub.add_parser("set", help="change one setting (validated; audited)")
        put.add_argument("name")
        put.add_argument("value")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "set":
            try:
                old, new = check_set_org_setting(options["name"], options["value"], actor_label="cli")
            except ActionError as exc:
                raise CommandError(str(exc)) from None
            spec = spec_for(options["name"])
            self.stdout.write(f"{spec.name}: {spec.format(old)} -> {spec.format(new)}")
            return
        if action == "get":
            try:
                spec = spec_for(options["name"])
            except SettingError as exc:
                raise CommandError(str(exc)) from None
            # Loaded only now: OrgSettings.load() creates the row, and a refused get changes nothing.
            self.stdout.write(spec.format(getattr(OrgSettings.load(), spec.field)))
            return
        org = OrgSettings.load()
        rows = [
            {
                "name": spec.name,
                "value": getattr(org, spec.field),
                "type": spec.type,
                "default": spec.default,
                "accepts": spec.accepts(),
                "description": str(spec.description),
            }
            for spec in ORG_SETTINGS
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        width = max(len(s.name) for s in ORG_SETTINGS)
        for spec, row in zip(ORG_SETTINGS, rows, strict=True):
            value = spec.format(row["value"])
            marker = "" if row["value"] == spec.default else f"   (default {spec.format(spec.default)})"
            self.stdout.write(f"{spec.name:<{width}}  {value}{marker}")
