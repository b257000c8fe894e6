from __future__ import annotations

import json
from argparse import ArgumentParser
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracking.actions import do_finish_scan_run, do_start_scan_run
from tracking.choices import Outcome, ScanSource
from tracking.decisions import ManualTracking
from tracking.management.commands._common import FOLDER_HELP, get_folder, get_mailbox, get_regarding
from tracking.pipeline import decision_as_json, load_json_relations, pages, process_page
from tracking.runs import this_process
from tracking.sources.local import UnreadablePath, check_paths, read_paths


def _failure(trace: object) -> str:
    """Why a message failed: the detail of its trace's failed step (parse or fetch)."""
    steps = trace if isinstance(trace, list) else []
    for step in steps:
        if isinstance(step, dict) and step.get("result") == "failed":
            return str(step.get("detail", ""))
    return "failed"


class Command(BaseCommand):
    help = (
        "Process .eml files, mbox files or Maildir folders as if found in a mailbox folder: the same "
        "engine and writes as a scan. Re-running creates nothing new."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--mailbox", required=True, metavar="ADDRESS")
        parser.add_argument("--folder", required=True, metavar="FOLDER", help=FOLDER_HELP)
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument(
            "--regarding",
            metavar="KIND:NAME",
            help="track manually (reason 'manual') regarding this CRM record",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object per message (JSON Lines)")

    def handle(self, *args: Any, **options: Any) -> None:
        mailbox = get_mailbox(options["mailbox"])
        folder = get_folder(mailbox, options["folder"])
        manual = ManualTracking(get_regarding(options["regarding"])) if options["regarding"] else None
        try:
            paths = check_paths(options["paths"])
        except UnreadablePath as exc:
            raise CommandError(str(exc)) from None

        start_date = mailbox.configured_start_date()
        run = do_start_scan_run(
            mailbox, folder, source=ScanSource.INGEST, now=timezone.now(), job_id=this_process()
        )
        counts: Counter[str] = Counter()
        new = 0
        try:
            for page in pages(read_paths(paths)):
                processed = process_page(
                    mailbox,
                    folder,
                    page,
                    scan_run=run,
                    now=timezone.now(),
                    manual=manual,
                    start_date=start_date,
                )
                if options["json"]:
                    load_json_relations([p.decision for p in processed])
                for p in processed:
                    counts[p.decision.outcome] += 1
                    new += p.new
                    if options["json"]:
                        self.stdout.write(
                            json.dumps(decision_as_json(p.decision, new=p.new), ensure_ascii=False)
                        )
                    elif p.decision.outcome == Outcome.FAILED:
                        self.stderr.write(f"{p.decision.provider_item_id}: {_failure(p.decision.trace)}")
        except UnreadablePath as exc:
            do_finish_scan_run(run, now=timezone.now(), error=str(exc), error_kind=exc.kind)
            raise CommandError(str(exc)) from None
        except BaseException as exc:
            do_finish_scan_run(run, now=timezone.now(), error=f"{type(exc).__name__}: {exc}")
            raise
        do_finish_scan_run(run, now=timezone.now())
        if not options["json"]:
            total = sum(counts.values())
            summary = ", ".join(
                f"{k} {counts[k]}" for k in ("tracked", "already_tracked", "not_tracked", "failed")
            )
            self.stdout.write(
                f"{total} message(s) into {mailbox.email_address}/{folder}: {summary}; {new} new decision(s)"
            )
