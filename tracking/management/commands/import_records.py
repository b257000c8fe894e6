from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tracking.actions import ActionError, check_import_records
from tracking.choices import RecordKind


class Command(BaseCommand):
    help = (
        "Import CRM records from CSV: header name,email plus optional email2,email3,owner,kind,active. "
        "The file is checked first (nothing is written when it cannot be read), then written in batches."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("kind", choices=RecordKind.values)
        parser.add_argument("file", metavar="FILE.csv")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path}: not UTF-8 text") from None
        try:
            report = check_import_records(options["kind"], text)
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        for line, reason in report.rejected:
            self.stderr.write(f"line {line}: rejected: {reason}")
        self.stdout.write(
            f"created {report.created}, updated {report.updated}, rejected {len(report.rejected)}"
        )
