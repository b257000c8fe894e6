"""B2: a full first scan of 5,000 messages: simulator → exchangelib (EwsSource) → engine → PostgreSQL.

Measured: `tracking.scanning.scan_folder` of the Inbox from an empty sync state (wall time).
Baseline: `EwsSource.sync` of the same folder from the same simulator, items fetched and nothing else.
Target: scan ≤ 1.15 × the fetch alone (issue 19; 1.3 × in issue 6).

The 5,000 messages are split over 5 mailboxes of 1,000, and each mailbox is fetched alone, scanned, and
fetched alone again, in turn; its baseline is the mean of its two fetches: when the machine's other load
changes during the run, both sides see the change.
Each of the three starts on an open connection (`warm`, untimed): the fetch-ahead child takes the
scan's connection with it, and the next request of this process opens a new one.

The simulator runs in its own process (bench/simulator.py), as a server would. The mailbox owner tracks
mail from CRM parties (option 2), with 10,000 CRM records of which 6,000 are the corpus's correspondents,
so that the scan writes TrackedEmails and hashes as well as decisions.

    python bench/b2_first_scan.py [--messages 5000] [--profile] [--phases]

`--phases` adds, for the timed scans, the wall and CPU time spent in the source's page fetches, in
`process_page`, in `do_commit_page`, in the database's statements and in its COMMITs (timers wrapped
around those functions; their cost is in the scan's figure). With fetch-ahead (SYNCADMIN_FETCH_AHEAD, on by
default) "source pages" is each scan's first page only: the others are fetched in a child process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

VENDOR = "postgresql"
DB = f"{common.DB_PREFIX}_b2"
ADDRESS = "b2@bench.example"


def cpu() -> float:
    """This process's CPU and that of its children once they ended: a scan's fetch-ahead child is waited
    for before the scan returns (the simulator, a child too, ends only after the last figure)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Phases:
    """Wall and CPU seconds, and calls, inside some functions while `on` (the timed scans only)."""

    def __init__(self) -> None:
        self.on = False
        self.totals: dict[str, list[float]] = {}

    def add(self, label: str, wall: float, cpu_s: float) -> None:
        total = self.totals.setdefault(label, [0.0, 0.0, 0])
        total[0] += wall
        total[1] += cpu_s
        total[2] += 1

    def wrap(self, owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return fn(*args, **kwargs)
            w, c = time.perf_counter(), cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - w, cpu() - c)

        setattr(owner, name, timed)

    def wrap_pages(self, owner: Any, name: str, label: str) -> None:
        """Time each step of a generator method (a source's pages), not the consumer's work between."""
        fn: Callable[..., Iterator[Any]] = getattr(owner, name)
        phases = self

        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            pages = fn(*args, **kwargs)
            while True:
                w, c = time.perf_counter(), cpu()
                try:
                    page = next(pages)
                except StopIteration:
                    return
                finally:
                    if phases.on:
                        phases.add(label, time.perf_counter() - w, cpu() - c)
                yield page

        setattr(owner, name, timed)

    def notes(self) -> list[str]:
        return [
            f"phases of the scans: {label} {wall:.2f} s wall, {cpu_s:.2f} s CPU, {int(calls):,} calls"
            for label, (wall, cpu_s, calls) in self.totals.items()
        ]


def warm(box: Any) -> None:
    """One GetFolder, untimed, so that what is timed next starts on an open connection, as every fetch did
    before fetch-ahead handed the scan's connection to its child (the scanning process opens a new one at
    its next request, after the scan)."""
    from tracking.scanning import source_for

    source_for(box).test_connection(["inbox"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5, help="mailboxes the messages are split over")
    parser.add_argument("--profile", action="store_true", help="profile the scan (pyinstrument), untimed")
    parser.add_argument("--phases", action="store_true", help="time the phases of the scans (see above)")
    args = parser.parse_args()
    with common.fresh_db(VENDOR, DB) as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    common.setup_django(url)
    from django.db.models import Sum

    from tracking.models import ScanRun
    from tracking.scanning import scan_folder, source_for

    phases = Phases()
    if args.phases:
        from django.db.backends.postgresql.base import DatabaseWrapper
        from django.db.backends.utils import CursorWrapper

        import tracking.pipeline
        import tracking.scanning
        from tracking.sources.ews import EwsSource

        phases.wrap_pages(EwsSource, "sync", "source pages")
        phases.wrap(EwsSource, "fetch_attachments", "attachments")
        phases.wrap(tracking.scanning, "process_page", "process_page")
        phases.wrap(tracking.pipeline, "do_commit_page", "do_commit_page")
        phases.wrap(CursorWrapper, "_execute", "statements")
        phases.wrap(DatabaseWrapper, "_commit", "COMMIT")

    per_round = args.messages // args.rounds
    addresses = [f"b2-{n}@bench.example" for n in range(args.rounds)]
    # the same 5,000 messages as one mailbox would hold, cut into one slice per round
    mailboxes: list[dict[str, object]] = [
        {"address": a, "count": per_round, "start": n * per_round, "tag": "b2", "folders": "inbox"}
        for n, a in enumerate(addresses)
    ]
    # imports, TLS and exchangelib's protocol cache are set up by a scan of this one first, untimed
    mailboxes.append({"address": "b2-warmup@bench.example", "count": 50, "tag": "b2w", "folders": "inbox"})
    if args.profile:
        extra = {"address": "b2-profile@bench.example", "count": 1000, "tag": "b2p", "folders": "inbox"}
        mailboxes.append(extra)
    fetches: list[tuple[float, float, int]] = []
    scans: list[tuple[float, float, int]] = []
    requests = 0
    with common.SimProcess(mailboxes, common.BUILD / "sim-b2") as sim:
        common.log(f"B2: simulator with {sim.messages} messages, loaded in {sim.load_seconds} s")
        common.add_sim_profile(sim)
        common.add_corpus_records(args.records)
        warmup = common.add_enabled_mailbox("b2-warmup@bench.example", "bench-ews", track=2)
        list(source_for(warmup).sync("inbox", ""))
        scan_folder(warmup.pk, "inbox")
        for address in addresses:
            box = common.add_enabled_mailbox(address, "bench-ews", track=2)

            def fetch_alone(box: Any = box) -> tuple[float, float, int]:
                w, c, n = time.perf_counter(), cpu(), 0
                for page in source_for(box).sync("inbox", ""):
                    n += len(page.items)
                return time.perf_counter() - w, cpu() - c, n

            warm(box)
            before = fetch_alone()
            warm(box)
            sim.clear_requests()
            w, c = time.perf_counter(), cpu()
            phases.on = True
            scan = scan_folder(box.pk, "inbox")
            phases.on = False
            scans.append((time.perf_counter() - w, cpu() - c, scan.items_done))
            requests += sim.count()
            # fetched alone before and after the scan, the mean as its baseline: a change of the machine's
            # load during the round weighs on both sides alike
            warm(box)
            after = fetch_alone()
            fetches.append(((before[0] + after[0]) / 2, (before[1] + after[1]) / 2, before[2]))
            common.log(f"B2: {address}: fetch alone {fetches[-1][0]:.1f} s, scan {scans[-1][0]:.1f} s")
        if args.profile:
            box = common.add_enabled_mailbox("b2-profile@bench.example", "bench-ews", track=2)
            common.profile("b2-scan", lambda: scan_folder(box.pk, "inbox"))

    fetch_wall, fetch_cpu, fetched = (sum(x) for x in zip(*fetches, strict=True))
    scan_wall, scan_cpu, scanned = (sum(x) for x in zip(*scans, strict=True))
    totals = ScanRun.objects.filter(mailbox__email_address__in=addresses).aggregate(
        tracked=Sum("tracked"), not_tracked=Sum("not_tracked"), failed=Sum("failed")
    )
    figure = common.Figure(
        figure="B2",
        measure="first scan via EWS to PostgreSQL vs exchangelib fetch alone",
        measured=scan_wall,
        baseline=fetch_wall,
        unit="s",
        target="≤ 1.15×",
        met=scan_wall <= 1.15 * fetch_wall,
        db=VENDOR,
        size=f"{fetched:,} messages ({args.rounds} × {per_round:,}, fetch, scan, fetch in turn)",
        notes=[
            f"scan {scanned / scan_wall:,.0f} msg/s, fetch alone {fetched / fetch_wall:,.0f} msg/s; "
            f"CPU of this process: scan {scan_cpu:.1f} s, fetch alone {fetch_cpu:.1f} s "
            f"({scan_cpu / fetch_cpu:.2f}×)",
            f"outcomes: tracked {totals['tracked']}, not_tracked {totals['not_tracked']}, "
            f"failed {totals['failed']}; {requests} EWS requests",
            *phases.notes(),
        ],
        details={"fetches": fetches, "scans": scans, "simulator_load_seconds": sim.load_seconds},
    )
    common.write_result("b2", [figure])


if __name__ == "__main__":
    main()
