"""B4: SQL queries per page of 100 messages, with 1,000 and with 100,000 CRM records.

`tracking.pipeline.process_page` of the same corpus pages (Pony Mail threads that correlate with each
other, then Enron Inbox and Sent Items pages with long recipient lists), given the rules loaded once as
`scan_folder` does, runs on a fresh database with
1,000 CRM records and on one with 100,000, each with CaptureQueriesContext around every page; on SQLite
and on PostgreSQL. Target: the same count in both, at most 15 per page.

    python bench/b4_queries.py [--small 1000] [--large 100000] [--vendors sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

MAX_QUERIES = 15
PONYMAIL_PAGES = 5
ENRON_OWNER = "john.lavorato@enron.com"


def child(records: int) -> None:
    """Runs in a process of its own, on the database given by DATABASE_URL."""
    common.setup_django(os.environ["DATABASE_URL"])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from tracking.actions import ProfileValues, check_add_profile, check_set_org_setting, do_start_scan_run
    from tracking.context import load_scan_rules, mailbox_for_scan
    from tracking.messages import parse_message
    from tracking.pipeline import process_page

    check_set_org_setting("AutoTrackSentFolderItems", "true", actor_label="bench")
    check_add_profile(
        ProfileValues(
            "bench-b4",
            "exchange_ews",
            endpoint="https://exchange.bench.invalid/EWS/Exchange.asmx",
            auth_method="basic",
            username="svc",
        ),
        secret="unused",
        actor_label="bench",
    )
    pony = mailbox_for_scan(common.add_enabled_mailbox(common.PONYMAIL_OWNER, "bench-b4", track=1).pk)
    enron = mailbox_for_scan(common.add_enabled_mailbox(ENRON_OWNER, "bench-b4", track=2).pk)
    common.add_corpus_records(records)

    originals = common.corpus_originals()
    pony_msgs = [m for m in originals if m.owner == common.PONYMAIL_OWNER]
    enron_inbox = [m for m in originals if m.owner == ENRON_OWNER and m.folder == "inbox"]
    enron_sent = [m for m in originals if m.owner == ENRON_OWNER and m.folder == "sentitems"]
    pages = [(pony, "inbox", pony_msgs[i * 100 : (i + 1) * 100]) for i in range(PONYMAIL_PAGES)]
    pages += [(enron, "inbox", enron_inbox[:100]), (enron, "inbox", enron_inbox[100:200])]
    pages += [(enron, "sentitems", enron_sent[:100]), (enron, "sentitems", enron_sent[100:200])]

    counts, recipients, outcomes, listing = [], [], [], []
    kinds: dict[str, int] = {}
    rules = load_scan_rules()  # scan_folder loads them once per scan, before its first page
    for box, folder, page in pages:
        items = [parse_message(m.raw, provider_item_id=f"b4-{i}") for i, m in enumerate(page)]
        run = do_start_scan_run(box, folder, now=timezone.now())
        with CaptureQueriesContext(connection) as queries:
            processed = process_page(
                box, folder, items, scan_run=run, now=timezone.now(), sync_state="s", rules=rules
            )
        counts.append(len(queries.captured_queries))
        listing.append([q["sql"][:160] for q in queries.captured_queries])
        recipients.append(sum(len(getattr(i, "recipients", ())) for i in items))
        outcomes.append(sum(1 for p in processed if p.decision.outcome == "tracked"))
        for q in queries.captured_queries:
            word = q["sql"].split(None, 1)[0].upper()
            kinds[word] = kinds.get(word, 0) + 1
    result = {"vendor": connection.vendor, "counts": counts, "recipients": recipients, "tracked": outcomes}
    print(json.dumps({**result, "kinds": kinds, "queries": listing}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100000)
    parser.add_argument("--vendors", default="sqlite,postgresql")
    args = parser.parse_args()
    if args.child:
        child(args.records)
        return

    figures = []
    for vendor in args.vendors.split(","):
        found = {}
        for size in (args.small, args.large):
            name = f"{common.DB_PREFIX}_b4_{size}"
            url = common.create_db(vendor, name)
            try:
                with common.stopwatch() as took:
                    found[size] = common.run_child(Path(__file__), "--records", str(size), database_url=url)
                common.log(f"B4 {vendor} {size:,} records: {found[size]['counts']} ({took[0]:.0f} s)")
            finally:
                common.drop_db(vendor, name)
        small, large = found[args.small]["counts"], found[args.large]["counts"]
        heaviest = large.index(max(large))
        listing = found[args.large].pop("queries")
        found[args.small].pop("queries")
        control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
        without = [sum(1 for q in page if not q.upper().startswith(control)) for page in listing]
        figures.append(
            common.Figure(
                figure="B4",
                measure=f"SQL queries per page of 100 ({vendor})",
                measured=max(large),
                baseline=max(small),
                unit="queries",
                target=f"same at {args.small:,} and {args.large:,} records, ≤ {MAX_QUERIES}",
                met=small == large and max(large) <= MAX_QUERIES,
                db=vendor,
                size=f"{len(large)} pages; {args.small:,} vs {args.large:,} CRM records",
                notes=[
                    f"per page at {args.small:,} records: {small}; at {args.large:,}: {large}",
                    f"without BEGIN/COMMIT/SAVEPOINT/RELEASE: {without} (max {max(without)})",
                    f"statements of all pages, by kind: {found[args.large]['kinds']}",
                ],
                details={
                    "small": found[args.small],
                    "large": found[args.large],
                    "heaviest_page": listing[heaviest],
                },
            )
        )
    common.write_result("b4", figures)


if __name__ == "__main__":
    main()
