"""B14: search across tracked emails at N emails on PostgreSQL (issue 18): p95 of tracking.search.

The emails are generated (COPY from this process, then the secondary indexes built once, as after a bulk
load): subjects and bodies of words drawn from a 50,000-word vocabulary with Zipf frequencies (the most
common words are real English ones, the rest made-up words that stand for names, products and jargon),
senders and recipients from a pool of 20,000 addresses (Zipf too), one subject in ten with a ticket
number. Bodies are 30 to 120 words in sentences, with a greeting and a signature.

Queries, each the user's text as typed in the search box:
- common: one word found in about a quarter of the emails
- rare: one word found in about a hundred
- two words: both must occur (each in a few percent of the emails)
- sender: an address that sent a few hundred
- ticket: a ticket number (one email)

Measured: for each query, `search(user, text)` evaluated for the first page (RESULTS rows) plus their
headlines, which is the search page's database work, signed in as an admin (every email) and as a user
who owns one email in 200 (visible_to's scoping). Baseline, in the same run and on the same data: a plain
`ILIKE '%word%'` scan of subject, sender, sender name, recipients and body, each word required, newest
first, the first RESULTS rows. Target: p95 of the search ≤ 300 ms at 1,000,000 emails.

    python bench/b14_search.py [--emails 1000000] [--repeat 20] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

VENDOR = "postgresql"
TARGET_MS = 300.0
VOCABULARY = 50_000
ADDRESSES = 20_000
OWNERS = 200
SEED = 14
ILIKE_REPEAT = 2  # a full scan takes seconds at a million: fewer rounds of the baseline
COMMON_TEXT = (
    "the to and of a in for is on that we you this with be it will are have at please your our can "
    "from as by if not all meeting project update team new know thanks would about order call week "
    "next attached time need report price contract deal today review client office schedule account "
    "agreement budget customer delivery draft email friday invoice issue list monday note plan "
    "proposal question request sales service status support thursday tuesday wednesday document "
    "market number payment change information details final changes meet work group help send soon "
    "morning afternoon regards best hello dear sorry confirm available let me us any more one two "
    "three also get see some what when how just like been there their they them out up so do has was"
)
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "ei")]
FIRST_NAMES = "anna ben carla dmitri elena farid gina hugo ines jon kira lars mona nils olga per rosa sven"


def vocabulary(rng: random.Random) -> list[str]:
    words = list(dict.fromkeys(COMMON_TEXT.split()))
    seen = set(words)
    while len(words) < VOCABULARY:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_weights(n: int) -> list[float]:
    """Cumulative weights 1/rank, for random.choices(cum_weights=...)."""
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += 1 / rank
        out.append(total)
    return out


class Generator:
    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.words = vocabulary(self.rng)
        self.word_weights = zipf_weights(len(self.words))
        self.first_names = FIRST_NAMES.split()
        self.addresses = [
            f"{self.rng.choice(self.first_names)}.{self.words[200 + i]}@{self.words[1000 + i % 3000]}.example"
            for i in range(ADDRESSES)
        ]
        self.address_weights = zipf_weights(ADDRESSES)

    def draw(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.word_weights, k=k)

    def sentence(self) -> str:
        words = self.draw(self.rng.randint(5, 15))
        return words[0].capitalize() + " " + " ".join(words[1:]) + "."

    def row(self, n: int, owner_ids: list[int], start: datetime) -> tuple[Any, ...]:
        rng = self.rng
        sender, *recipients = rng.choices(
            self.addresses, cum_weights=self.address_weights, k=1 + rng.randint(1, 3)
        )
        subject = " ".join(self.draw(rng.randint(3, 8))).capitalize()
        if n % 10 == 0:
            subject += f" (ticket TK-{(n * 7919) % 10_000_019})"
        if n % 3 == 0:
            subject = "Re: " + subject
        name = sender.split("@")[0].replace(".", " ").title()
        body = [f"Hello {recipients[0].split('.')[0].title()},", ""]
        words = 0
        target = rng.randint(30, 120)
        while words < target:
            sentence = self.sentence()
            words += sentence.count(" ") + 1
            body.append(sentence)
        body += ["", "Best regards,", name]
        when = start + timedelta(seconds=n * 30)
        return (
            f"<b14-{n}@bench.invalid>",
            "incoming",
            subject,
            sender,
            name,
            json.dumps([["to", r] for r in recipients]),
            "\n".join(body),
            owner_ids[n % len(owner_ids)],
            when,
            when,
        )


COLUMNS = (
    "message_id",
    "direction",
    "subject",
    "sender",
    "sender_name",
    "recipients",
    "body_text",
    "owner_id",
    "timeline_at",
    "created_at",
)
# Django sets these itself (no database defaults): blank text for every row.
BLANK = (
    "in_reply_to",
    "references",
    "conversation_index",
    "tracking_token",
    "accepting_kind",
    "accepting_name",
    "accepting_email",
    "correlation_method",
    "body_html",
)


def seed(url: str, count: int, generator: Generator, owner_ids: list[int]) -> dict[str, float]:
    """COPY the emails in, with the table's secondary indexes dropped and built again afterwards."""
    import psycopg

    start = datetime(2020, 1, 1, tzinfo=UTC)
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        table = "tracking_trackedemail"
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            [table],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        began = time.perf_counter()
        with conn.cursor() as cursor:
            columns = ", ".join(f'"{c}"' for c in (*COLUMNS, *BLANK))
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                blank = ("",) * len(BLANK)
                for n in range(count):
                    copy.write_row(generator.row(n, owner_ids, start) + blank)
                    if n and n % 200_000 == 0:
                        common.log(f"B14: {n:,} emails copied")
        timings["copy_s"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            conn.execute(definition)
        timings["indexes_s"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute(f"VACUUM ANALYZE {table}")
        timings["analyze_s"] = time.perf_counter() - began
        size = conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()
        timings["table_mb"] = (size[0] if size else 0) / 2**20
    return timings


def queries(generator: Generator) -> dict[str, str]:
    words = generator.words
    return {
        "common": "meeting",
        "rare": words[40_000],
        "two words": f"{words[400]} {words[900]}",
        "sender": generator.addresses[40],
        "ticket": f"TK-{(12_340 * 7919) % 10_000_019}",
    }


def ilike(text: str, limit: int) -> list[int]:
    """The baseline: each word of the text somewhere in subject, parties or body, newest first."""
    from django.db import connection

    from tracking.search import parse

    terms = [t for group in parse(text) for t in group.must]
    fields = ("subject", "sender", "sender_name", "recipients::text", "body_text")
    where = " AND ".join("(" + " OR ".join(f"{f} ILIKE %s" for f in fields) + ")" for _ in terms)
    params: list[Any] = []
    for term in terms:
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [pattern] * len(fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM tracking_trackedemail WHERE {where} ORDER BY timeline_at DESC, id DESC LIMIT %s",
            [*params, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def measure(user: Any, text: str) -> tuple[float, int]:
    from tracking.search import RESULTS, headlines, search

    started = time.perf_counter()
    shown = list(search(user, text).only("subject", "sender", "sender_name", "timeline_at")[:RESULTS])
    headlines(shown, text)
    return time.perf_counter() - started, len(shown)


def counts(texts: dict[str, str]) -> dict[str, int]:
    """How many emails each query matches (read once, for the report)."""
    from tracking.models import TrackedEmail
    from tracking.search import matching

    return {label: matching(TrackedEmail.objects.all(), text).count() for label, text in texts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emails", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="rounds of every query")
    parser.add_argument("--keep", action="store_true", help="keep the database (syncadmin_bench_b14)")
    args = parser.parse_args()
    name = f"{common.DB_PREFIX}_b14"
    url = common.create_db(VENDOR, name)
    try:
        figures = run(url, args.emails, args.repeat)
    finally:
        if not args.keep:
            common.drop_db(VENDOR, name)
    common.write_result("b14", figures)


def run(url: str, emails: int, repeat: int) -> list[common.Figure]:
    common.setup_django(url)
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("b14-admin", "b14-admin@bench.example", "unused-Pa55")
    owners = User.objects.bulk_create(User(username=f"b14-user-{i}") for i in range(OWNERS))
    generator = Generator()
    common.log(f"B14: generating and copying {emails:,} emails")
    load = seed(url, emails, generator, [u.pk for u in owners])
    common.log(
        f"B14: copied in {load['copy_s']:.0f} s, indexes in {load['indexes_s']:.0f} s, "
        f"{load['table_mb']:,.0f} MB"
    )
    texts = queries(generator)
    matches = counts(texts)
    user = owners[40 % OWNERS]
    times: dict[str, dict[str, list[float]]] = {"admin": {}, "user": {}, "ilike": {}}
    for label in texts:
        for who in times:
            times[who][label] = []
    for text in texts.values():  # warm-up: the first reads come from disk
        measure(admin, text)
        measure(user, text)
    for round_ in range(repeat):
        for label, text in texts.items():
            times["admin"][label].append(measure(admin, text)[0])
            times["user"][label].append(measure(user, text)[0])
            if round_ < ILIKE_REPEAT:
                started = time.perf_counter()
                ilike(text, 50)
                times["ilike"][label].append(time.perf_counter() - started)

    ms = 1000

    def p95(who: str, label: str | None = None) -> float:
        values = times[who][label] if label else [t for per in times[who].values() for t in per]
        return common.percentile(values, 95) * ms

    search_p95, user_p95, ilike_p95 = p95("admin"), p95("user"), p95("ilike")
    per_query = "; ".join(
        f"{label} ({texts[label]!r}, {matches[label]:,} matches): {p95('admin', label):.0f} ms, "
        f"as a user {p95('user', label):.0f} ms, ILIKE {p95('ilike', label):.0f} ms"
        for label in texts
    )
    size = f"{emails:,} tracked emails ({load['table_mb']:,.0f} MB with indexes)"
    notes = [
        f"p95 per query: {per_query}",
        f"load: COPY {load['copy_s']:.0f} s, indexes {load['indexes_s']:.0f} s, VACUUM ANALYZE "
        f"{load['analyze_s']:.0f} s",
        f"{repeat} rounds of each query as admin and as a user; the ILIKE baseline {ILIKE_REPEAT} rounds",
    ]
    details = {"times_s": times, "queries": texts, "matches": matches, "load": load}
    return [
        common.Figure(
            figure="B14",
            measure=f"search p95 (first page and its passages), {emails:,} emails, vs ILIKE scan",
            measured=search_p95,
            baseline=ilike_p95,
            unit="ms",
            target=f"≤ {TARGET_MS:.0f} ms",
            met=search_p95 <= TARGET_MS,
            db=VENDOR,
            size=size,
            notes=notes,
            details=details,
        ),
        common.Figure(
            figure="B14",
            measure=f"search p95 as a user (scoped to their emails), {emails:,} emails, vs ILIKE scan",
            measured=user_p95,
            baseline=ilike_p95,
            unit="ms",
            target=f"≤ {TARGET_MS:.0f} ms",
            met=user_p95 <= TARGET_MS,
            db=VENDOR,
            size=size,
        ),
    ]


if __name__ == "__main__":
    main()
