from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracking.health import check_health


class Command(BaseCommand):
    help = (
        "Queue depth, workers, scheduler, failed jobs, running scans, failing and overdue mailboxes; "
        "exits 1 when something needs attention."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        health = check_health(timezone.now())
        if options["json"]:
            self.stdout.write(json.dumps(health.as_json(), indent=2))
        else:
            queue = (
                f"{health.queued_jobs} queued, {health.running_jobs} running, {health.failed_jobs} failed; "
                f"{health.workers} worker(s), {health.cron_schedulers} scheduler(s)"
                if health.queue_available
                else f"unavailable ({health.queue_error})"
            )
            self.stdout.write(f"queue: {queue}")
            self.stdout.write(f"scans running: {health.scans_running}")
            self.stdout.write(
                f"mailboxes: {health.mailboxes_enabled} enabled, {len(health.mailboxes_failing)} failing, "
                f"{len(health.mailboxes_overdue)} overdue"
            )
            for address in health.mailboxes_overdue:
                self.stdout.write(f"  overdue: {address}")
        if health.problems:
            raise CommandError("; ".join(health.problems))
