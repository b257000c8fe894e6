"""B11: the CRM import (issue 17): N CSV rows in ≥ 20,000 rows/s, at most 2× a plain bulk insert of them.

In a fresh database of each vendor: `tracking.actions.check_import_records` of an N-row contact CSV (name,
two addresses, an owner, active; every row valid and new) — parsing, checking every row, looking up
existing records and writing in batches — against the baseline, a plain bulk insert of the same rows,
already prepared, in the same batches (`tracking.bulk.insert_rows`, one transaction per batch). Each is
timed best of `--repeat`, the table emptied between runs. Targets: ≥ 20,000 rows/s; ratio ≤ 2.

    python bench/b11_import.py [--rows 197008] [--repeat 3] [--vendors postgresql,sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

MIN_ROWS_PER_S = 20_000
MAX_RATIO = 2.0


def child(rows: int, repeat: int) -> None:
    common.setup_django(os.environ["DATABASE_URL"])
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.utils import timezone

    from tracking.actions.directory import BATCH_ROWS, COLUMNS_WRITTEN, check_import_records
    from tracking.bulk import insert_rows, prepared_datetime
    from tracking.models import CrmRecord

    owner = User.objects.create_user("bench-owner")
    lines = ["name,email,email2,owner,active"]
    prepared = []
    # prepared as the database takes it (naive UTC text on SQLite), as the import prepares it once a batch
    now = prepared_datetime(CrmRecord, timezone.now())
    for i in range(rows):
        name, first, second = f"Contact {i}", f"contact{i}@example.com", f"c{i}@mail.example.net"
        lines.append(f"{name},{first},{second},bench-owner,{'false' if i % 10 == 0 else 'true'}")
        prepared.append(("contact", name, first, second, "", owner.pk, i % 10 != 0, "", now))
    text = "\n".join(lines) + "\n"
    columns = ("kind", "name", *COLUMNS_WRITTEN, "created_at")

    def empty() -> None:
        CrmRecord.objects.all().delete()

    def plain() -> None:
        for start in range(0, rows, BATCH_ROWS):
            with transaction.atomic():
                insert_rows(CrmRecord, columns, prepared[start : start + BATCH_ROWS])

    def imported() -> None:
        report = check_import_records("contact", text)
        assert report.created == rows and not report.rejected, (report.created, report.rejected[:3])

    baseline: list[float] = []
    measured: list[float] = []
    for _ in range(repeat):
        for fn, times in ((plain, baseline), (imported, measured)):
            empty()
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
            assert CrmRecord.objects.count() == rows
    print(
        json.dumps(
            {
                "vendor": connection.vendor,
                "bytes": len(text.encode()),
                "baseline": min(baseline),
                "measured": min(measured),
                "all_baseline": baseline,
                "all_measured": measured,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=197_008)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--vendors", default="postgresql,sqlite")
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.repeat)
        return
    figures = []
    for vendor in args.vendors.split(","):
        with common.fresh_db(vendor, f"{common.DB_PREFIX}_b11") as url:
            found = common.run_child(
                Path(__file__), "--rows", str(args.rows), "--repeat", str(args.repeat), database_url=url
            )
        rate = args.rows / found["measured"]
        ratio = found["measured"] / found["baseline"]
        common.log(f"B11 {vendor}: {rate:,.0f} rows/s, {ratio:.2f}× the plain bulk insert")
        figures.append(
            common.Figure(
                figure="B11",
                measure=f"CRM import of {args.rows:,} CSV rows vs a plain bulk insert of them ({vendor})",
                measured=found["measured"],
                baseline=found["baseline"],
                unit="s",
                target=f"≥ {MIN_ROWS_PER_S:,} rows/s, ≤ {MAX_RATIO:g}×",
                met=rate >= MIN_ROWS_PER_S and ratio <= MAX_RATIO,
                db=vendor,
                size=f"{args.rows:,} rows, {found['bytes'] / 1024 / 1024:.1f} MB",
                notes=[f"{rate:,.0f} rows/s; plain insert {args.rows / found['baseline']:,.0f} rows/s"],
                details=found,
            )
        )
    common.write_result("b11", figures)


if __name__ == "__main__":
    main()
