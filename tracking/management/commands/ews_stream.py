from __future__ import annotations

import logging
import signal
import threading
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tracking.ews_stream import EwsStreamRunner, StreamOptions

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Hold EWS streaming notifications for every enabled Exchange Server mailbox and queue a folder's "
        "sync as soon as the server reports a change in it (outbound connections only). SIGTERM stops it."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--max-streams",
            type=int,
            default=settings.EWS_STREAM_MAX_MAILBOXES,
            help="mailboxes streamed at once; the others are polled only (default: EWS_STREAM_MAX_MAILBOXES)",
        )
        parser.add_argument(
            "--connection-timeout",
            type=int,
            default=30,
            metavar="MINUTES",
            help="how long the server keeps a GetStreamingEvents connection open before closing it (1-30)",
        )
        parser.add_argument(
            "--read-timeout",
            type=float,
            default=180.0,
            metavar="SECONDS",
            help="reconnect after this long without a byte from the server, heartbeats included",
        )
        parser.add_argument(
            "--reload-seconds",
            type=float,
            default=60.0,
            help="how often mailboxes enabled, disabled or changed meanwhile are picked up",
        )
        parser.add_argument("--backoff-max", type=float, default=300.0, metavar="SECONDS")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["max_streams"] < 1:
            raise CommandError("--max-streams must be at least 1")
        if not 1 <= options["connection_timeout"] <= 30:
            raise CommandError("--connection-timeout must be 1 to 30 minutes (what Exchange accepts)")
        for name in ("read_timeout", "reload_seconds", "backoff_max"):
            if options[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be more than 0")
        runner = EwsStreamRunner(
            StreamOptions(
                max_streams=options["max_streams"],
                connection_timeout=options["connection_timeout"],
                read_timeout=options["read_timeout"],
                backoff_max=options["backoff_max"],
                reload_seconds=options["reload_seconds"],
            )
        )
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write("ews_stream: streaming notifications of the enabled Exchange Server mailboxes")
        self.stdout.flush()
        runner.run(stop)
        self.stdout.write("ews_stream: stopped")
