"""B12: a reprocessing round over an already decided mailbox folder, against its first scan (issue 11).

A simulated Exchange mailbox holds MESSAGES corpus messages in its Inbox. Baseline: the first scan of the
Inbox (`scan_folder`, from an empty sync state). Measured: a reprocessing round of the same folder from
before the oldest message (`run_round_folder`): it reads the folder afresh from the server and decides
every message again, appending one superseding decision each. Target: ≤ 1.3× the first scan's time, and
statements per page constant (the pages between the first and the last take the same number).

    python bench/b12_reprocess.py [--messages 10000] [--vendor postgresql]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DB = f"{common.DB_PREFIX}_b12"
ADDRESS = "b12@bench.example"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--vendor", default="postgresql", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    with common.fresh_db(args.vendor, DB) as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    common.setup_django(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from tracking import reprocessing
    from tracking.actions import do_start_round
    from tracking.models import Decision, ScanRun
    from tracking.reprocessing import check_round, run_round_folder
    from tracking.scanning import scan_folder, source_for

    statements: list[int] = []
    original = reprocessing.process_round_page

    def counted(*a: object, **kw: object) -> object:
        with CaptureQueriesContext(connection) as queries:
            result = original(*a, **kw)  # type: ignore[arg-type]
        statements.append(len(queries))
        return result

    reprocessing.process_round_page = counted  # type: ignore[assignment]

    spec: list[dict[str, object]] = [
        {"address": ADDRESS, "count": args.messages, "tag": "b12", "folders": "inbox"}
    ]
    with common.SimProcess(spec, common.BUILD / "sim-b12") as sim:
        common.log(f"B12: simulator with {sim.messages} messages, loaded in {sim.load_seconds} s")
        common.add_sim_profile(sim)
        common.add_corpus_records(10000)
        box = common.add_enabled_mailbox(ADDRESS, "bench-ews", track=2)

        started = time.perf_counter()
        first = scan_folder(box.pk, "inbox", source=source_for(box))
        first_seconds = time.perf_counter() - started
        common.log(f"B12: first scan: {first.items_done} messages in {first_seconds:.1f} s")

        request = check_round([box], datetime(1970, 1, 1, tzinfo=UTC), ["inbox"], now=timezone.now())
        round = do_start_round(request, acting_user=None, via="bench")
        (run,) = ScanRun.objects.filter(round=round)
        started = time.perf_counter()
        done = run_round_folder(run.pk, source=source_for(box))
        round_seconds = time.perf_counter() - started
        common.log(f"B12: round: {done.items_done} messages in {round_seconds:.1f} s")
        superseding = Decision.objects.filter(round=round, supersedes__isnull=False).count()

    middle = statements[1:-1] or statements
    constant = max(middle) == min(middle)
    ratio = round_seconds / first_seconds
    figure = common.Figure(
        figure="B12",
        measure="reprocessing round of an already decided folder vs its first scan",
        measured=round_seconds,
        baseline=first_seconds,
        unit="s",
        target="≤ 1.3×, statements per page constant",
        met=ratio <= 1.3 and constant,
        ratio=ratio,
        db=args.vendor,
        size=f"{args.messages:,} messages; {first.items_done:,} decided by the first scan",
        notes=[
            f"round decided {done.items_done:,} messages again, {superseding:,} superseding a decision",
            f"statements per page: first {statements[0] if statements else 0}, then "
            f"{min(middle, default=0)}–{max(middle, default=0)} over {len(statements)} pages",
        ],
        details={"statements_per_page": statements},
    )
    common.write_result("b12", [figure])


if __name__ == "__main__":
    main()
