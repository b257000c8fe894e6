"""B5: the decision log page with filters on, at N decisions on PostgreSQL: server time p50/p95.

Requests go through Django's test Client in the benchmark's process, signed in as a superuser, so
"server time" is the whole of Django's work for one request (middleware, queries, template) without a
network. The filter is Outcome = not tracked, Reason = not in response to a tracked email, Folder = Inbox.

Measured: /decisions/?outcome=…&reason=…&folder=… at N decisions, 50 requests (after 3 warm-up ones).
Baselines, in the same run: the same page at 10,000 decisions; the Django admin changelist of Decision
with the same filter (/admin/tracking/decision/?outcome__exact=…) at N, its requests alternating with the
page's. Targets: p95 at N ≤ 1.5 × p95 at 10,000; p95 ≤ 0.2 × the admin changelist's.

    python bench/b5_decision_log.py [--decisions 1000000] [--keep] [--reuse]
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
FILTER = {"outcome": "not_tracked", "reason": "no_correlation", "folder": "inbox"}
PAGE = "/decisions/?" + "&".join(f"{k}={v}" for k, v in FILTER.items())
ADMIN_PAGE = "/admin/tracking/decision/?" + "&".join(f"{k}__exact={v}" for k, v in FILTER.items())
WARMUP = 3


def child(requests: int, with_admin: bool) -> None:
    common.setup_django(os.environ["DATABASE_URL"])
    client = decisions_data.signed_in_client()

    def timed(url: str) -> tuple[float, int]:
        started = time.perf_counter()
        response = client.get(url)  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (url, response.status_code)
        return elapsed, len(response.content)

    for _ in range(WARMUP):
        timed(PAGE)
        if with_admin:
            timed(ADMIN_PAGE)
    page, admin, size = [], [], 0
    for _ in range(requests):
        elapsed, size = timed(PAGE)
        page.append(elapsed)
        if with_admin:
            admin.append(timed(ADMIN_PAGE)[0])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as page_queries:
        timed(PAGE)
    admin_queries: list[str] = []
    if with_admin:
        with CaptureQueriesContext(connection) as captured:
            timed(ADMIN_PAGE)
        admin_queries = [q["sql"] for q in captured.captured_queries]
    print(
        json.dumps(
            {
                "page": page,
                "admin": admin,
                "bytes": size,
                "page_queries": [q["sql"] for q in page_queries.captured_queries],
                "admin_queries": admin_queries,
            }
        )
    )


def summary(times: list[float]) -> dict[str, float]:
    return {"p50": common.percentile(times, 50), "p95": common.percentile(times, 95), "n": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--admin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the databases (for B8)")
    parser.add_argument("--reuse", action="store_true", help="use databases kept by an earlier run")
    args = parser.parse_args()
    if args.child:
        child(args.requests, args.admin)
        return

    big_url, big_info = decisions_data.prepare(VENDOR, args.decisions, reuse=args.reuse)
    small_url, _ = decisions_data.prepare(VENDOR, SMALL, reuse=args.reuse)
    try:
        # two rounds, small and large in turn, so that a noisy minute hits both
        half = [args.requests // 2, args.requests - args.requests // 2]
        small: dict[str, list[float]] = {"page": []}
        big: dict[str, list[float]] = {"page": [], "admin": []}
        last: dict[str, dict[str, object]] = {}
        for n in half:
            found = common.run_child(Path(__file__), "--requests", str(n), database_url=small_url)
            small["page"] += found["page"]
            found_big = common.run_child(
                Path(__file__), "--requests", str(n), "--admin", database_url=big_url
            )
            big["page"] += found_big["page"]
            big["admin"] += found_big["admin"]
            last = {"small": found, "big": found_big}
    finally:
        if not args.keep:
            decisions_data.drop(VENDOR, args.decisions)
            decisions_data.drop(VENDOR, SMALL)

    page_n, page_small, admin_n = summary(big["page"]), summary(small["page"]), summary(big["admin"])
    size = f"{args.decisions:,} decisions (generate_load {big_info['rate']:,.0f}/s)"
    vs_small = page_n["p95"] / page_small["p95"]
    vs_admin = page_n["p95"] / admin_n["p95"]
    ms = 1000
    common_notes = [
        f"decision log at {args.decisions:,}: p50 {page_n['p50'] * ms:.0f} ms, "
        f"p95 {page_n['p95'] * ms:.0f} ms; "
        f"at {SMALL:,}: p50 {page_small['p50'] * ms:.0f} ms, p95 {page_small['p95'] * ms:.0f} ms",
        f"admin changelist at {args.decisions:,}: p50 {admin_n['p50'] * ms:.0f} ms, "
        f"p95 {admin_n['p95'] * ms:.0f} ms",
        f"queries: decision log {len(last['big']['page_queries'])}, "  # type: ignore[arg-type]
        f"admin changelist {len(last['big']['admin_queries'])}",  # type: ignore[arg-type]
    ]
    details = {
        "page_n": page_n,
        "page_small": page_small,
        "admin_n": admin_n,
        "generate_load": big_info,
        "page_queries": last["big"]["page_queries"],
        "admin_queries": last["big"]["admin_queries"],
    }
    figures = [
        common.Figure(
            figure="B5",
            measure=f"decision log p95 (filters on), {args.decisions:,} vs {SMALL:,} decisions",
            measured=page_n["p95"] * ms,
            baseline=page_small["p95"] * ms,
            unit="ms",
            target="≤ 1.5×",
            met=vs_small <= 1.5,
            db=VENDOR,
            size=size,
            notes=common_notes,
            details=details,
        ),
        common.Figure(
            figure="B5",
            measure=f"decision log p95 vs admin changelist, same filter, {args.decisions:,} decisions",
            measured=page_n["p95"] * ms,
            baseline=admin_n["p95"] * ms,
            unit="ms",
            target="≤ 0.2×",
            met=vs_admin <= 0.2,
            db=VENDOR,
            size=size,
        ),
    ]
    common.write_result("b5", figures)


if __name__ == "__main__":
    main()
