from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from argparse import ArgumentParser
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run the whole product on this machine: the Exchange simulator with the demo mailboxes, the demo "
        "organisation, and the web server. Ctrl-C stops everything."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--simulator-port", type=int, default=8765)
        parser.add_argument(
            "--no-demo", action="store_true", help="start the services without loading the demo"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base = Path(settings.BASE_DIR)
        var = base / "var"
        var.mkdir(exist_ok=True)
        manage = [sys.executable, str(base / "manage.py")]
        children: list[subprocess.Popen[bytes]] = []

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            cert_dir = var / "simulator"
            ca_file = cert_dir / "simulator-ca.pem"
            ca_file.unlink(missing_ok=True)
            port = options["simulator_port"]
            children.append(
                subprocess.Popen(
                    [
                        *manage,
                        "exchange_simulator",
                        "--port",
                        str(port),
                        "--data",
                        str(base / "demo" / "mail"),
                        "--cert-dir",
                        str(cert_dir),
                    ]
                )
            )
            _wait_for_port("127.0.0.1", port, children[-1], ca_file)
            if not options["no_demo"]:
                call_command(
                    "load_demo",
                    simulator_url=f"https://127.0.0.1:{port}",
                    ca_file=str(ca_file),
                    stdout=self.stdout,
                )
            children.append(
                subprocess.Popen([*manage, "runserver", f"{options['host']}:{options['port']}", "--noreload"])
            )
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


def _wait_for_port(host: str, port: int, child: subprocess.Popen[bytes], ready_file: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise CommandError(f"{child.args!r} exited with status {child.returncode}")
        if ready_file.exists():
            try:
                with socket.create_connection((host, port), timeout=1):
                    return
            except OSError:
                pass
        time.sleep(0.2)
    raise CommandError(f"nothing answers on {host}:{port} after 60 s")


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
