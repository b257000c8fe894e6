from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from redis.exceptions import RedisError

from tracking.choices import Folder
from tracking.context import load_rules
from tracking.folders import folders_after_hierarchy_sync
from tracking.jobs import enqueue_scan
from tracking.management.commands._common import get_mailbox
from tracking.models import ScanRun
from tracking.scanning import scan_folder
from tracking.sources.base import SourceError


def run_as_json(run: ScanRun) -> dict[str, object]:
    duration = (
        (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
    )
    return {
        "mailbox": run.mailbox.email_address,
        "folder": run.folder,
        "status": run.status,
        "tracked": run.tracked,
        "already_tracked": run.already_tracked,
        "not_tracked": run.not_tracked,
        "failed": run.failed,
        "items": run.items_done,
        "note": run.note or None,
        "error": run.error or None,
        "duration_seconds": duration,
    }


class Command(BaseCommand):
    help = (
        "Scan a mailbox now, in the foreground, through its server profile (writes ScanRuns and Decisions)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("address")
        parser.add_argument(
            "--folder",
            choices=[*Folder.values, "all"],
            default="all",
            help="one folder, or all (Inbox, Sent Items when AutoTrackSentFolderItems is on, mapped folders)",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object per folder scanned")
        parser.add_argument(
            "--enqueue", action="store_true", help="queue the scan for a worker instead of running it here"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        mailbox = get_mailbox(options["address"])
        if options["enqueue"]:
            folder = None if options["folder"] == "all" else options["folder"]
            try:
                job = enqueue_scan(mailbox.pk, folder)
            except RedisError as exc:
                raise CommandError(
                    f"the job queue is unavailable ({exc}); is Redis running at REDIS_URL?"
                ) from None
            assert job is not None
            if options["json"]:
                self.stdout.write(
                    json.dumps({"mailbox": mailbox.email_address, "folder": folder, "job_id": job.id})
                )
            else:
                self.stdout.write(
                    f"queued scan of {mailbox.email_address} ({folder or 'all folders'}): job {job.id}"
                )
            return
        folders = [options["folder"]] if options["folder"] != "all" else list(Folder.values)
        if options["folder"] == "all" and not load_rules().auto_track_sent_folder_items:
            folders = [Folder.INBOX.value]
        show_progress = not options["json"] and sys.stderr.isatty()
        failures = []
        if options["folder"] == "all":
            try:
                folders += folders_after_hierarchy_sync(mailbox, load_rules(), now=timezone.now())
            except SourceError as exc:
                failures.append(f"folders under the Inbox: {exc}")
        for folder in folders:

            def progress(run: ScanRun, folder: str = folder) -> None:
                total = f"/{run.items_total}" if run.items_total else ""
                self.stderr.write(
                    f"\r{mailbox.email_address} {folder}: {run.items_done}{total} messages", ending=""
                )

            try:
                run = scan_folder(mailbox.pk, folder, on_page=progress if show_progress else None)
            except SourceError as exc:
                run = ScanRun.objects.filter(mailbox=mailbox, folder=folder).order_by("-pk").first()  # type: ignore[assignment]
                failures.append(f"{folder}: {exc}")
            if show_progress:
                self.stderr.write("")
            if options["json"]:
                self.stdout.write(json.dumps(run_as_json(run)))
            else:
                self.stdout.write(_summary(run))
        if failures:
            raise CommandError("; ".join(failures))


def _summary(run: ScanRun) -> str:
    where = f"{run.mailbox.email_address}/{run.folder}"
    if run.note:
        return f"{where}: {run.status} ({run.note})"
    counts = (
        f"tracked {run.tracked}, already_tracked {run.already_tracked}, "
        f"not_tracked {run.not_tracked}, failed {run.failed}"
    )
    return f"{where}: {run.status}: {run.items_done} message(s): {counts}" + (
        f" — {run.error}" if run.error else ""
    )
