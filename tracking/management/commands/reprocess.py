"""`reprocess ADDRESS... --since ISO-DATETIME [--folder F]... [--json] [--enqueue]` (tracking-rules §3.6)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from tracking.actions import ActionError, do_start_round, round_status
from tracking.jobs import enqueue_round
from tracking.management.commands._common import get_mailbox, parse_when
from tracking.models import Decision, ScanRun
from tracking.pipeline import decision_as_json, with_json_relations
from tracking.reprocessing import check_round, run_round_folder
from tracking.runs import this_process
from tracking.sources.base import SourceError


class Command(BaseCommand):
    help = (
        "Decide the mail of mailboxes received after a date again, under today's settings and Track options: "
        "a reprocessing round. Each message gets a new decision naming the one it supersedes; nothing is "
        "tracked twice and nothing is untracked."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("addresses", nargs="+", metavar="ADDRESS", help="mailbox email address(es)")
        parser.add_argument(
            "--since", required=True, metavar="ISO-DATETIME", help="reprocess mail after this"
        )
        parser.add_argument(
            "--folder",
            action="append",
            default=[],
            metavar="F",
            help="only this folder (repeatable): inbox, sentitems or a mapped folder's path; default: all",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object per decision (JSON Lines)")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="queue the round for the workers instead of running it here",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = parse_when(options["since"])
        mailboxes = [get_mailbox(address) for address in dict.fromkeys(options["addresses"])]
        try:
            request = check_round(mailboxes, since, options["folder"], now=timezone.now())
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        if options["enqueue"]:
            try:
                with transaction.atomic():
                    round = do_start_round(request, acting_user=None, via="cli")
                    enqueue_round(round)
            except RedisError as exc:
                raise CommandError(f"could not queue the round: Redis is not reachable ({exc})") from None
            self.stdout.write(f"round {round.pk} queued: {round.runs.count()} folder run(s)")
            return
        round = do_start_round(request, acting_user=None, via="cli")
        failures = []
        for run in ScanRun.objects.filter(round=round).select_related("mailbox").order_by("pk"):
            try:
                # the process's tag: a killed command's run is closed by the next dispatch (tracking.runs)
                run_round_folder(run.pk, job_id=this_process())
            except SourceError as exc:
                failures.append(f"{run.mailbox.email_address}/{run.folder}: {exc}")
        if options["json"]:
            decisions = with_json_relations(Decision.objects.filter(round=round).order_by("pk"))
            for decision in decisions.iterator(chunk_size=500):
                self.stdout.write(json.dumps(decision_as_json(decision, new=True), ensure_ascii=False))
        else:
            status = round_status(round)
            self.stdout.write(
                f"round {round.pk}: {status.items_done} message(s) decided again — tracked {status.tracked}, "
                f"already tracked {status.already_tracked}, not tracked {status.not_tracked}, "
                f"failed {status.failed}"
            )
        if failures:
            raise CommandError("; ".join(failures))
