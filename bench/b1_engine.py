"""B1: the decision engine over 10,000 corpus messages against 10,000 CRM records, data pre-loaded.

Measured: `decide_batch` on pages of 100 messages of one mailbox folder, each page's DecisionContext
loaded beforehand by `load_context` (untimed), messages parsed beforehand (untimed).
Baseline: `email.message_from_bytes` of the same 10,000 messages, the standard library's parser alone.
Both are the fastest of three passes. Target: engine time ≤ 1.5 × parse time.

    python bench/b1_engine.py [--messages 10000] [--records 10000]
"""

from __future__ import annotations

import argparse
import collections
import email
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

VENDOR = "sqlite"  # the engine is pure; the database only fills the contexts, untimed
DB = f"{common.DB_PREFIX}_b1"
# Track option per mailbox owner: every filter option the engine has is exercised
TRACK = {
    "phillip.allen@enron.com": 0,
    "john.arnold@enron.com": 1,
    "mike.grigsby@enron.com": 2,
    "tori.kuykendall@enron.com": 3,
    "john.lavorato@enron.com": 1,
    "hunter.shively@enron.com": 2,
    "jane.tholt@enron.com": 1,
    common.PONYMAIL_OWNER: 1,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile the engine (pyinstrument)")
    args = parser.parse_args()

    with common.fresh_db(VENDOR, DB) as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    common.setup_django(url)
    from tracking.actions import ProfileValues, check_add_profile, check_set_org_setting
    from tracking.context import load_context, mailbox_for_scan
    from tracking.decisions import decide_batch
    from tracking.messages import parse_message

    messages = common.corpus(args.messages)
    raws = [m.raw for m in messages]
    common.log(f"B1: {len(messages)} messages; CRM records: {args.records}")

    check_set_org_setting("AutoTrackSentFolderItems", "true", actor_label="bench")
    check_add_profile(
        ProfileValues(
            "bench-b1",
            "exchange_ews",
            endpoint="https://exchange.bench.invalid/EWS/Exchange.asmx",
            auth_method="basic",
            username="svc",
        ),
        secret="unused",
        actor_label="bench",
    )
    boxes = {
        owner: mailbox_for_scan(common.add_enabled_mailbox(owner, "bench-b1", track=track).pk)
        for owner, track in TRACK.items()
    }
    common.add_corpus_records(args.records, exclude=set(TRACK))

    # pages of up to 100 consecutive messages of one mailbox folder, as a scan hands them over
    pages: list[tuple[str, str, list[object]]] = []
    for m in messages:
        parsed = parse_message(m.raw)
        if pages and pages[-1][0] == m.owner and pages[-1][1] == m.folder and len(pages[-1][2]) < 100:
            pages[-1][2].append(parsed)
        else:
            pages.append((m.owner, m.folder, [parsed]))
    with common.stopwatch() as loading:
        contexts = [load_context(boxes[owner], folder, page) for owner, folder, page in pages]  # type: ignore[arg-type]
    common.log(f"B1: {len(pages)} pages, contexts loaded in {loading[0]:.1f} s")

    raw_pages: list[list[bytes]] = []
    position = 0
    for _, _, page in pages:
        raw_pages.append(raws[position : position + len(page)])
        position += len(page)
    outcomes: collections.Counter[str] = collections.Counter()

    def engine() -> None:
        for (_, _, page), ctx in zip(pages, contexts, strict=True):
            decide_batch(page, ctx)  # type: ignore[arg-type]

    # Page by page, parse then decide, each timed in CPU seconds: both are single-threaded computation,
    # and CPU time barely moves when other processes crowd the machine (wall time doubles). Each page's
    # best of `repeat` passes counts.
    engine_best = [float("inf")] * len(pages)
    parse_best = [float("inf")] * len(pages)
    wall_engine = wall_parse = 0.0
    for rnd in range(args.repeat):
        for i, ((_, _, page), ctx) in enumerate(zip(pages, contexts, strict=True)):
            w0, c0 = time.perf_counter(), time.process_time()
            for raw in raw_pages[i]:
                email.message_from_bytes(raw)
            w1, c1 = time.perf_counter(), time.process_time()
            results = decide_batch(page, ctx)  # type: ignore[arg-type]
            w2, c2 = time.perf_counter(), time.process_time()
            parse_best[i] = min(parse_best[i], c1 - c0)
            engine_best[i] = min(engine_best[i], c2 - c1)
            if rnd == 0:
                wall_parse += w1 - w0
                wall_engine += w2 - w1
                outcomes.update(f"{r.outcome.value}/{r.reason.value}" for r in results)
    engine_s, parse_s = sum(engine_best), sum(parse_best)
    if args.profile:
        common.profile("b1-engine", engine)
    c0 = time.process_time()
    for raw in raws:
        parse_message(raw)
    product_parse_s = time.process_time() - c0
    n = len(messages)
    figure = common.Figure(
        figure="B1",
        measure=f"decision engine vs stdlib parser, {n:,} corpus messages, {args.records:,} CRM records",
        measured=engine_s,
        baseline=parse_s,
        unit="CPU s",
        target="≤ 1.5× stdlib parse",
        met=engine_s <= 1.5 * parse_s,
        db=VENDOR,
        size=f"{n:,} messages, {args.records:,} CRM records",
        notes=[
            f"engine {n / engine_s:,.0f} msg/s; stdlib email parser {n / parse_s:,.0f} msg/s",
            f"for reference, tracking.messages.parse_message: {n / product_parse_s:,.0f} msg/s "
            f"({product_parse_s / parse_s:.2f}× the stdlib parser)",
        ],
        details={
            "engine_cpu_seconds": engine_s,
            "parse_cpu_seconds": parse_s,
            "first_pass_wall_seconds": {"engine": wall_engine, "parse": wall_parse},
            "product_parse_seconds": product_parse_s,
            "outcomes": dict(outcomes.most_common()),
            "pages": len(pages),
        },
    )
    common.write_result("b1", [figure])


if __name__ == "__main__":
    main()
