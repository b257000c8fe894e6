from __future__ import annotations

import signal
from argparse import ArgumentParser
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from tracking.management.commands._common import check_port


class Command(BaseCommand):
    help = (
        "Serve EWS (/EWS/Exchange.asmx), Microsoft Graph (/v1.0/) and an OAuth token endpoint (/{tenant}/) "
        "over HTTPS on loopback from DIR/<mailbox address>/<folder>.mbox or <folder>/ "
        "(for tests, benchmarks and the demo)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--data", required=True, metavar="DIR")
        parser.add_argument(
            "--cert-dir", default="var/simulator", help="where the simulator writes its CA (simulator-ca.pem)"
        )
        parser.add_argument(
            "--credential",
            action="append",
            default=[],
            metavar="NAME:SECRET",
            help="accept only these user names / client ids (repeatable); default: accept any",
        )
        parser.add_argument(
            "--streaming-timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="close EWS GetStreamingEvents connections after this long, whatever ConnectionTimeout asks",
        )
        parser.add_argument(
            "--streaming-heartbeat",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help="seconds between the StatusEvent heartbeats of a quiet streaming connection (default 30)",
        )
        parser.add_argument(
            "--fault",
            action="append",
            default=[],
            metavar="KIND[,key=value...]",
            help="inject a fault, e.g. server_busy,protocol=ews,operation=SyncFolderItems,times=2",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        check_port("--port", options["port"], any_free=True)
        data = Path(options["data"])
        if not data.is_dir():
            raise CommandError(f"--data {data}: not a directory")
        credentials = None
        if options["credential"]:
            credentials = {}
            for pair in options["credential"]:
                name, sep, secret = pair.partition(":")
                if not sep or not name:
                    raise CommandError(f"--credential {pair!r}: use NAME:SECRET")
                credentials[name] = secret
        for name in ("streaming_timeout", "streaming_heartbeat"):
            if options[name] is not None and options[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be more than 0 seconds")
        try:
            faults = [Fault.parse(text) for text in options["fault"]]
        except (TypeError, ValueError) as exc:
            raise CommandError(f"--fault: {exc}") from None
        sim = Simulator.from_directory(
            data,
            host=options["host"],
            port=options["port"],
            cert_dir=Path(options["cert_dir"]),
            credentials=credentials,
        )
        for fault in faults:
            sim.faults.add(fault)
        sim.ews_streaming.connection_timeout = options["streaming_timeout"]
        sim.ews_streaming.heartbeat = options["streaming_heartbeat"]
        mailboxes = ", ".join(sorted(sim.store.mailboxes)) or "none"
        self.stdout.write(f"Exchange simulator on {sim.url} (CA: {sim.ca_file}); mailboxes: {mailboxes}")

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            sim.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()
