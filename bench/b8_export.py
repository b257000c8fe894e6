"""B8: the decision log's CSV export of N decisions: it streams (constant memory) at ≥ 50,000 rows/s.

Each export runs in a fresh process: Django's test Client signed in as a superuser asks for
/decisions/export.csv (no filter: every decision) and reads the streamed response chunk by chunk,
keeping nothing. Measured: rows/s at N; the process's peak RSS (VmHWM) during the export at N against
the same export of a 10,000-decision database (baseline). Targets: ≥ 50,000 rows/s; peak RSS at N no more
than 16 MB above the small export's (it streams: memory does not grow with the row count).

    python bench/b8_export.py [--decisions 1000000] [--reuse] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, decisions_data

VENDOR = "postgresql"
SMALL = 10000
EXPORT = "/decisions/export.csv"
CONSTANT_MB = 16


def child() -> None:
    common.setup_django(os.environ["DATABASE_URL"])
    client = decisions_data.signed_in_client()
    client.get("/decisions/")  # type: ignore[attr-defined]  # imports and first-request work, not the export's
    before = common.peak_rss_mb()
    started = time.perf_counter()
    cpu = time.process_time()
    response = client.get(EXPORT)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.status_code
    lines = size = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
    response.close()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": lines - 1,
                "bytes": size,
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu,
                "peak_before_mb": before,
                "peak_mb": common.peak_rss_mb(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--reuse", action="store_true", help="use databases kept by an earlier run (B5)")
    args = parser.parse_args()
    if args.child:
        child()
        return

    big_url, big_info = decisions_data.prepare(VENDOR, args.decisions, reuse=args.reuse)
    small_url, _ = decisions_data.prepare(VENDOR, SMALL, reuse=args.reuse)
    try:
        small = common.run_child(Path(__file__), database_url=small_url)
        big = common.run_child(Path(__file__), database_url=big_url)
    finally:
        if not args.keep:
            decisions_data.drop(VENDOR, args.decisions)
            decisions_data.drop(VENDOR, SMALL)
    assert big["rows"] == args.decisions and small["rows"] == SMALL, (big["rows"], small["rows"])
    rate = big["rows"] / big["seconds"]
    growth = big["peak_mb"] - small["peak_mb"]
    size = f"{args.decisions:,} decisions"
    figures = [
        common.Figure(
            figure="B8",
            measure=f"CSV export rows/s, {args.decisions:,} decisions",
            measured=rate,
            baseline=None,
            unit="rows/s",
            target="≥ 50,000 rows/s",
            met=rate >= 50000,
            db=VENDOR,
            size=size,
            notes=[
                f"{big['rows']:,} rows ({big['bytes'] / 2**20:,.0f} MiB) in {big['seconds']:.1f} s, "
                f"{big['cpu_seconds']:.1f} CPU s in the Django process; "
                f"{SMALL:,} rows: {small['rows'] / small['seconds']:,.0f} rows/s"
            ],
            details={"big": big, "small": small, "generate_load": big_info},
        ),
        common.Figure(
            figure="B8",
            measure=f"CSV export peak RSS, {args.decisions:,} vs {SMALL:,} decisions",
            measured=big["peak_mb"],
            baseline=small["peak_mb"],
            unit="MB",
            target=f"streams: ≤ +{CONSTANT_MB} MB",
            met=growth <= CONSTANT_MB,
            db=VENDOR,
            size=size,
            notes=[
                f"peak RSS {big['peak_mb']:.0f} MB vs {small['peak_mb']:.0f} MB ({growth:+.1f} MB); "
                f"before the export: {big['peak_before_mb']:.0f} MB"
            ],
        ),
    ]
    common.write_result("b8", figures)


if __name__ == "__main__":
    main()
