"""B13: a record's timeline page at N tracked emails (PostgreSQL) against the same at 10,000 (issue 18).

Each database holds N tracked emails with their parties (three per email), written with bulk SQL
(generate_series) and then vacuumed and analysed, and 1,000 contacts. The measured contact is the
regarding record of one email in 20 and a party (to) of one in five, those among them, and cc as well on
one in 40, so that an email holds it twice: 20 % of the store (200,000 emails at 1,000,000). A quarter of
the emails fall on the same timeline_at as another, so that pages meet ties.

Requests go through Django's test Client in a process of its own (as B5's do): /records/contact/<pk>/,
alternately the first page and a page from the middle of the timeline (?after=), 50 rows a page. Measured:
p95 at N (of --requests; 100 in `make bench`), signed in as a superuser (reads everything); baseline: the
same at 10,000 in the same run, the two measured in turn in two rounds. A second figure does the same
signed in as a plain user who owns two thirds of the emails and whose mailbox tracked one in five (half
of them not their own), so that what they may see through their decisions grows with the store (the page
scoped by TrackedEmail.visible_to).
Target: p95 at N ≤ 1.5 × p95 at 10,000.

    python bench/b13_timeline.py [--emails 1000000] [--requests 50] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

VENDOR = "postgresql"
SMALL = 10000
RECORDS = 1000
WARMUP = 3
ADMIN, PLAIN = "bench-admin", "bench-user"
MEASURED = "B13 Measured Contact"


def name_for(emails: int) -> str:
    return f"{common.DB_PREFIX}_timeline_{emails}"


def _literal(field: Any) -> tuple[str, list[Any]]:
    """SQL for a column the seed does not set: its default, or NULL, so that columns added later need no
    change here."""
    from django.db import models

    if field.null:
        return "NULL", []
    if isinstance(field, models.DateTimeField):
        return "now()", []
    default = field.get_default()
    if isinstance(field, models.JSONField):
        return "%s::jsonb", [json.dumps(default)]
    return "%s", [default]


def _insert_select(model: Any, given: dict[str, str], source: str, batch: tuple[int, int]) -> None:
    from django.db import connection

    columns: list[str] = []
    expressions: list[str] = []
    params: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.column not in given:
            continue  # numbered by the database
        columns.append(connection.ops.quote_name(field.column))
        if field.column in given:
            expressions.append(given[field.column])
        else:
            sql, values = _literal(field)
            expressions.append(sql)
            params += values
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(expressions)} FROM {source}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *batch])


def _plain_users_mailbox(user: Any) -> Any:
    from tracking.models import EmailServerProfile, Mailbox

    profile = EmailServerProfile.objects.create(name="bench-b13", kind="local", endpoint=str(common.BUILD))
    return Mailbox.objects.create(email_address=f"{PLAIN}@bench.example", user=user, profile=profile)


def _insert_decisions(mailbox: Any, at: str, batch: tuple[int, int]) -> None:
    """A decision of the plain user's mailbox tracking one email in five, half of them emails the user does
    not own: what the user sees through their decisions grows with the store, as it does in a real one."""
    from tracking.models import Decision

    columns = {
        "mailbox_id": str(mailbox.pk),
        "folder": "'inbox'",
        "message_id": "'<b13-' || g || '@bench.example>'",
        "direction": "'incoming'",
        "outcome": "'tracked'",
        "reason": "'accepted_all'",
        "tracked_email_id": "g",
        "received_at": at,
        "decided_at": at,
    }
    _insert_select(Decision, columns, "generate_series(%s, %s) AS g WHERE mod(g, 10) IN (4, 5)", batch)


def seed(emails: int) -> dict[str, Any]:
    """N emails and their parties, in batches of 200,000 (one statement each); then ANALYZE."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from tracking.models import CrmRecord, EmailParty, TrackedEmail

    started = time.perf_counter()
    User.objects.create_superuser(ADMIN, f"{ADMIN}@bench.example", "unused-Pa55")
    plain = User.objects.create_user(PLAIN, f"{PLAIN}@bench.example", "unused-Pa55")
    measured = CrmRecord.objects.create(kind="contact", name=MEASURED, email1="measured@bench.example")
    others = CrmRecord.objects.bulk_create(
        CrmRecord(kind="contact", name=f"Contact {i}", email1=f"c{i}@bench.example")
        for i in range(RECORDS - 1)
    )
    first_other, m = others[0].pk, measured.pk
    other = f"({first_other} + mod(g * {{k}}, {RECORDS - 1}))"
    at = "timestamptz '2020-01-01 00:00+00' + ((g - mod(g, 4) / 3) * interval '1 minute')"
    email_columns = {
        "id": "g",
        "message_id": "'<b13-' || g || '@bench.example>'",
        "direction": "CASE WHEN mod(g, 3) = 0 THEN 'outgoing' ELSE 'incoming' END",
        "subject": "'Timeline email ' || g",
        "sender": "'s' || mod(g, 5000) || '@bench.example'",
        "sender_name": "'Sender ' || mod(g, 5000)",
        "recipients": """'[["to", "measured@bench.example"]]'::jsonb""",
        "regarding_id": f"CASE WHEN mod(g, 20) = 0 THEN {m} ELSE {other.format(k=1)} END",
        "owner_id": f"CASE WHEN mod(g, 3) <> 0 THEN {plain.pk} END",
        "timeline_at": at,
    }
    # three parties an email: from (another contact), to (the measured one on g % 10 in (0, 5)), cc
    party_columns = {
        "tracked_email_id": "g",
        "role": "p.role",
        "address": "p.role || '-' || g || '@bench.example'",
        "record_id": f"""CASE
            WHEN p.role = 'to' AND mod(g, 10) IN (0, 5) THEN {m}
            WHEN p.role = 'cc' AND mod(g, 40) = 5 THEN {m}
            ELSE {other.format(k=7)} END""",
        "timeline_at": at,
    }
    roles = "(VALUES ('from'), ('to'), ('cc')) AS p(role)"
    mailbox = _plain_users_mailbox(plain)
    step = 200_000
    for low in range(1, emails + 1, step):
        high = min(low + step - 1, emails)
        with transaction.atomic():
            _insert_select(TrackedEmail, email_columns, "generate_series(%s, %s) AS g", (low, high))
            _insert_select(
                EmailParty, party_columns, f"generate_series(%s, %s) AS g CROSS JOIN {roles}", (low, high)
            )
            _insert_decisions(mailbox, at, (low, high))
        common.log(f"B13 seed: {high:,} of {emails:,} emails")
    with connection.cursor() as cursor:
        for model in (TrackedEmail, EmailParty):
            table = model._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        # as autovacuum would soon after a bulk load: the visibility map lets the timeline's index-only
        # reads skip the table
        cursor.execute("VACUUM ANALYZE")
    seconds = time.perf_counter() - started
    on_timeline = (
        TrackedEmail.objects.filter(regarding_id=m).count(),
        EmailParty.objects.filter(record_id=m).values("tracked_email_id").distinct().count(),
    )
    return {"seconds": seconds, "record": m, "regarding": on_timeline[0], "party_emails": on_timeline[1]}


def measure(requests: int, record: int) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from tracking.models import EmailParty

    page = reverse("web-record", args=["contact", record])
    # the middle of the timeline: an email the contact is a party of, halfway down by time
    count = EmailParty.objects.filter(record_id=record).count()
    middle = (
        EmailParty.objects.filter(record_id=record)
        .order_by("-timeline_at", "-tracked_email_id")
        .values_list("tracked_email_id", flat=True)[count // 2]
    )
    urls = [page, f"{page}?after={middle}"]
    out: dict[str, Any] = {}
    for username in (ADMIN, PLAIN):
        client = Client()
        client.force_login(User.objects.get(username=username))

        def timed(url: str) -> float:
            started = time.perf_counter()
            response = client.get(url)  # noqa: B023
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (url, response.status_code)
            assert response.content.count(b'<tr id="email-') == 50, url
            return elapsed

        for i in range(WARMUP):
            timed(urls[i % 2])
        times = [timed(urls[i % 2]) for i in range(requests)]
        with CaptureQueriesContext(connection) as captured:
            timed(urls[1])
        out[username] = {"times": times, "queries": [q["sql"] for q in captured.captured_queries]}
    return out


def child(args: argparse.Namespace) -> None:
    common.setup_django(os.environ["DATABASE_URL"])
    if args.seed:
        print(json.dumps(seed(args.emails)))
    else:
        print(json.dumps(measure(args.requests, args.record)))


def summary(times: list[float]) -> dict[str, float]:
    return {"p50": common.percentile(times, 50), "p95": common.percentile(times, 95), "n": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--record", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--emails", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the databases (to EXPLAIN the queries)")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sizes = {"big": args.emails, "small": SMALL}
    urls: dict[str, str] = {}
    seeded: dict[str, dict[str, Any]] = {}
    try:
        for key, emails in sizes.items():
            urls[key] = common.create_db(VENDOR, name_for(emails))
            common.log(f"B13: seeding {emails:,} tracked emails")
            seeded[key] = common.run_child(
                Path(__file__), "--seed", "--emails", str(emails), database_url=urls[key], timeout=3600
            )
            common.log(f"B13: {emails:,} emails and parties in {seeded[key]['seconds']:.0f} s")
        # two rounds, small and large in turn, so that a noisy minute hits both
        times: dict[str, dict[str, list[float]]] = {k: {ADMIN: [], PLAIN: []} for k in sizes}
        last: dict[str, Any] = {}
        for n in (args.requests // 2, args.requests - args.requests // 2):
            for key in ("small", "big"):
                found = common.run_child(
                    Path(__file__),
                    "--requests",
                    str(n),
                    "--record",
                    str(seeded[key]["record"]),
                    database_url=urls[key],
                )
                for username in (ADMIN, PLAIN):
                    times[key][username] += found[username]["times"]
                last[key] = found
    finally:
        if not args.keep:
            for emails in sizes.values():
                common.drop_db(VENDOR, name_for(emails))

    ms = 1000
    figures = []
    big, small = seeded["big"], seeded["small"]
    size = (
        f"{args.emails:,} tracked emails, {3 * args.emails:,} parties; the record on "
        f"{big['regarding']:,} as regarding and {big['party_emails']:,} as a party"
    )
    for username, who in ((ADMIN, "superuser"), (PLAIN, "plain user, scoped by visible_to")):
        at_n, at_small = summary(times["big"][username]), summary(times["small"][username])
        ratio = at_n["p95"] / at_small["p95"]
        figures.append(
            common.Figure(
                figure="B13",
                measure=f"record timeline p95 ({who}), {args.emails:,} vs {SMALL:,} tracked emails",
                measured=at_n["p95"] * ms,
                baseline=at_small["p95"] * ms,
                unit="ms",
                target="≤ 1.5×",
                met=ratio <= 1.5,
                db=VENDOR,
                size=size,
                notes=[
                    f"{who}: at {args.emails:,} p50 {at_n['p50'] * ms:.0f} ms, "
                    f"p95 {at_n['p95'] * ms:.0f} ms; "
                    f"at {SMALL:,} p50 {at_small['p50'] * ms:.0f} ms, p95 {at_small['p95'] * ms:.0f} ms; "
                    f"{len(last['big'][username]['queries'])} queries a page",
                ]
                + ([f"seeded {args.emails:,} emails in {big['seconds']:.0f} s"] if username == ADMIN else []),
                details={
                    "at_n": at_n,
                    "at_small": at_small,
                    "seeded": {"big": big, "small": small},
                    "queries": last["big"][username]["queries"],
                },
            )
        )
    common.write_result("b13", figures)


if __name__ == "__main__":
    main()
