from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tracking.management.commands._common import FOLDER_HELP, get_folder, get_mailbox, trace_lines
from tracking.pipeline import explain_message, result_as_json
from tracking.sources.local import UnreadablePath, check_paths, read_paths


class Command(BaseCommand):
    help = "Show the decision and trace a scan would make for one message, writing nothing."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--mailbox", required=True, metavar="ADDRESS")
        parser.add_argument("--folder", required=True, metavar="FOLDER", help=FOLDER_HELP)
        parser.add_argument("file", metavar="FILE", help=".eml file (or mbox: its first message)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        mailbox = get_mailbox(options["mailbox"])
        folder = get_folder(mailbox, options["folder"])
        try:
            item = next(read_paths(check_paths([options["file"]])), None)
        except UnreadablePath as exc:
            raise CommandError(str(exc)) from None
        if item is None:
            raise CommandError(f"{options['file']}: holds no message")
        res = explain_message(mailbox, folder, item)
        if options["json"]:
            self.stdout.write(json.dumps(result_as_json(res), ensure_ascii=False))
        else:
            self.stdout.write("\n".join(trace_lines(res)))
