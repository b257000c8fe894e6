"""B6: peak RSS of one worker process scanning 50,000 messages, against the same process idle.

A fresh process does what an RQ worker's work horse does before its first job (Django set up, the job,
scanning and source modules imported, a database connection open) and records its peak RSS (VmHWM): the
idle worker, the baseline. It then scans one mailbox folder of 50,000 corpus messages through the
mailbox's server profile (`scan_folder`, PostgreSQL) and records the peak again, sampling RSS as it goes.
Target: peak while scanning ≤ idle + 150 MB.

The mailbox is on a `local` profile (an mbox file), not the EWS simulator: exchangelib fetches ~200
messages/s here, so 50,000 through EWS alone would take longer than all the benchmarks together.

    python bench/b6_worker_memory.py [--messages 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

VENDOR = "postgresql"
DB = f"{common.DB_PREFIX}_b6"
ADDRESS = "b6@bench.example"
BUDGET_MB = 150
_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)


def write_mbox(path: Path, count: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with path.open("wb") as out:
        for m in common.corpus(count, tag="b6"):
            body = _FROM_LINE.sub(b">From ", m.raw.replace(b"\r\n", b"\n")).rstrip(b"\n")
            chunk = b"From bench@bench.example Sat Jan  1 00:00:00 2000\n" + body + b"\n\n"
            out.write(chunk)
            size += len(chunk)
    return size


def child() -> None:
    common.setup_django(os.environ["DATABASE_URL"])
    import exchangelib  # noqa: F401  (a worker has every source's library loaded)
    from django.db import connection

    import tracking.jobs
    import tracking.sources.ews
    import tracking.sources.graph
    import tracking.sources.imap
    import tracking.sources.local  # noqa: F401
    from tracking.models import Mailbox
    from tracking.scanning import scan_folder

    box = Mailbox.objects.get(email_address=ADDRESS)
    connection.ensure_connection()
    idle = common.peak_rss_mb()
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append((time.perf_counter() - started, common.rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run = scan_folder(box.pk, "inbox")
    done.set()
    sampler.join()
    print(
        json.dumps(
            {
                "idle_peak_mb": idle,
                "peak_mb": common.peak_rss_mb(),
                "items": run.items_done,
                "seconds": time.perf_counter() - started,
                "samples": samples,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=50000)
    args = parser.parse_args()
    if args.child:
        child()
        return

    url = common.create_db(VENDOR, DB)
    mail_root = common.BUILD / "b6-mail"
    try:
        with common.stopwatch() as wrote:
            size = write_mbox(mail_root / ADDRESS / "inbox.mbox", args.messages)
        common.log(f"B6: {args.messages:,} messages ({size / 2**20:.0f} MiB) written in {wrote[0]:.0f} s")
        common.setup_django(url)
        from tracking.actions import ProfileValues, check_add_profile

        check_add_profile(ProfileValues("bench-local", "local", endpoint=str(mail_root)), actor_label="bench")
        common.add_corpus_records(10000)
        common.add_enabled_mailbox(ADDRESS, "bench-local", track=2)
        from django.db import connections

        connections.close_all()
        found = common.run_child(Path(__file__), database_url=url, timeout=3600)
    finally:
        common.drop_db(VENDOR, DB)
        shutil.rmtree(mail_root, ignore_errors=True)

    growth = found["peak_mb"] - found["idle_peak_mb"]
    samples = found.pop("samples")
    total = found["seconds"]
    tenths = [max((rss for t, rss in samples if t <= total * k / 10), default=0.0) for k in (1, 5, 10)]
    figure = common.Figure(
        figure="B6",
        measure=f"worker peak RSS scanning {args.messages:,} messages vs idle",
        measured=found["peak_mb"],
        baseline=found["idle_peak_mb"],
        unit="MB",
        target=f"≤ +{BUDGET_MB} MB",
        met=growth <= BUDGET_MB,
        db=VENDOR,
        size=f"{args.messages:,} messages in one folder, local mbox source "
        f"({found['items']:,} distinct Message-IDs)",
        notes=[
            f"peak {found['peak_mb']:.0f} MB vs idle {found['idle_peak_mb']:.0f} MB ({growth:+.0f} MB); "
            f"RSS after 10 % / 50 % / 100 % of the scan: {' / '.join(f'{r:.0f}' for r in tenths)} MB",
            f"scan {found['items'] / found['seconds']:,.0f} msg/s",
        ],
        details={**found, "rss_samples": samples[:: max(1, len(samples) // 100)]},
    )
    common.write_result("b6", [figure])


if __name__ == "__main__":
    main()
