"""Bulk synthetic data for benchmarks and load tests: user mailboxes, CRM records and decisions.

    manage.py generate_load --mailboxes 100 --records 100000 --decisions 1000000 --seed 1

Rows are written with bulk inserts in batches, so a million decisions take minutes, not hours. The same
seed on an empty database gives the same rows; running it again adds more (names and Message-IDs continue
from what is there). Decisions look like a scan's: outcomes and reasons in realistic proportions, a trace
of the usual length, a message snapshot, received times spread over --days before --until.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from argparse import ArgumentParser
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Model

from tracking.choices import (
    Approval,
    CorrelationMethod,
    Direction,
    EntityKind,
    Folder,
    MailboxStatus,
    Outcome,
    ProfileKind,
    Reason,
    RecordKind,
    TrackOption,
)
from tracking.management.commands._common import MAX_DAYS
from tracking.models import CrmRecord, Decision, EmailServerProfile, Mailbox, PersonalOptions

LOAD_PROFILE = "load"
MAILBOX_DOMAIN = "load.contoso.example"
# (outcome, reason, share): roughly what a mailbox on "in response to SyncAdmin email" sees
OUTCOMES: Sequence[tuple[Outcome, Reason, int]] = (
    (Outcome.TRACKED, Reason.ACCEPTED_CORRELATED, 14),
    (Outcome.TRACKED, Reason.ACCEPTED_CRM_PARTY, 8),
    (Outcome.TRACKED, Reason.ACCEPTED_ALL, 4),
    (Outcome.TRACKED, Reason.FOLDER_RULE, 1),
    (Outcome.ALREADY_TRACKED, Reason.DUPLICATE_MESSAGE_ID, 9),
    (Outcome.NOT_TRACKED, Reason.NO_CORRELATION, 38),
    (Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY, 10),
    (Outcome.NOT_TRACKED, Reason.BEFORE_WATERMARK, 8),
    (Outcome.NOT_TRACKED, Reason.EXCLUDED_ADDRESS, 3),
    (Outcome.NOT_TRACKED, Reason.INTERNAL_DUPLICATE, 1),
    (Outcome.FAILED, Reason.UNPARSEABLE, 2),
    (Outcome.FAILED, Reason.FETCH_ERROR, 2),
)
CORRELATIONS: Sequence[tuple[str, int]] = (
    (CorrelationMethod.IN_REPLY_TO, 6),
    (CorrelationMethod.TRACKING_TOKEN, 2),
    (CorrelationMethod.CONVERSATION_INDEX, 2),
    (CorrelationMethod.SMART_MATCHING, 1),
    ("", 4),
)
RECORD_KINDS: Sequence[tuple[str, int]] = (
    (RecordKind.CONTACT, 50),
    (RecordKind.LEAD, 25),
    (RecordKind.ACCOUNT, 20),
    (RecordKind.OTHER, 5),
)
FIRST = (
    "anna", "ben", "chloe", "david", "emma", "felix", "grace", "henry", "isla", "jack", "kira", "liam",
    "maya", "noah", "olga", "paul", "quinn", "rosa", "sam", "tara", "uma", "victor", "wen", "xavier",
)  # fmt: skip
LAST = (
    "adams", "baker", "clark", "dubois", "evans", "fischer", "garcia", "hansen", "ito", "jensen", "kowalski",
    "lopez", "muller", "nakamura", "olsen", "petrov", "quist", "rossi", "schmidt", "tanaka", "ueda", "weber",
)  # fmt: skip
WORDS = (
    "quote", "invoice", "meeting", "contract", "renewal", "proposal", "order", "delivery", "support",
    "ticket", "pricing", "schedule", "review", "update", "question", "forecast", "budget", "report",
)  # fmt: skip


def _weighted(rng: random.Random, table: Sequence[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


class Command(BaseCommand):
    help = (
        "Generate synthetic mailboxes, CRM records and decisions with bulk inserts (benchmarks, load tests); "
        "reproducible with --seed."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--mailboxes", type=int, default=0, help="user mailboxes to add (with their users)"
        )
        parser.add_argument("--records", type=int, default=0, help="CRM records to add")
        parser.add_argument(
            "--decisions",
            type=int,
            default=0,
            help="decisions to add, spread over all mailboxes (one mailbox is added when there is none)",
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--batch", type=int, default=5000, help="rows per INSERT")
        parser.add_argument(
            "--profile",
            default="",
            help=f"server profile of the new mailboxes (default: a local profile named {LOAD_PROFILE!r})",
        )
        parser.add_argument(
            "--enable", action="store_true", help="new mailboxes are approved, enabled and due for a scan"
        )
        parser.add_argument("--track", type=int, choices=TrackOption.values, default=TrackOption.RESPONSES)
        parser.add_argument(
            "--addresses-from",
            metavar="FILE",
            help="addresses (one a line) the first records get, before synthetic ones",
        )
        parser.add_argument("--days", type=int, default=365, help="decisions are spread over this many days")
        parser.add_argument(
            "--until",
            default="2026-01-01",
            help="the newest decision's date (a fixed default keeps runs reproducible)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("mailboxes", "records", "decisions", "days"):
            if options[name] < 0:
                raise CommandError(f"--{name} must not be negative")
        if options["days"] > MAX_DAYS:
            raise CommandError(f"--days must be at most {MAX_DAYS}")
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        try:
            until = datetime.fromisoformat(options["until"]).replace(tzinfo=UTC)
        except ValueError:
            raise CommandError(f"--until {options['until']!r}: use YYYY-MM-DD") from None
        addresses: list[str] = []
        if options["addresses_from"]:
            try:
                text = Path(options["addresses_from"]).read_text(encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"--addresses-from: {exc}") from None
            addresses = list(dict.fromkeys(a.strip().lower() for a in text.splitlines() if "@" in a))
        rng = random.Random(options["seed"])
        batch = options["batch"]

        if options["mailboxes"] or (options["decisions"] and not Mailbox.objects.exists()):
            count = options["mailboxes"] or 1
            started = time.perf_counter()
            self._mailboxes(count, options["profile"], enable=options["enable"], track=options["track"])
            self._report("mailboxes", count, started)
        if options["records"]:
            started = time.perf_counter()
            self._records(rng, options["records"], addresses, batch, until)
            self._report("CRM records", options["records"], started)
        if options["decisions"]:
            started = time.perf_counter()
            self._decisions(rng, options["decisions"], batch, until, timedelta(days=options["days"]))
            self._report("decisions", options["decisions"], started)

    def _report(self, what: str, count: int, started: float) -> None:
        seconds = time.perf_counter() - started
        rate = count / seconds if seconds > 0 else 0.0
        self.stdout.write(f"added {count} {what} in {seconds:.1f} s ({rate:,.0f}/s)")

    # -- mailboxes ---------------------------------------------------------------------------------------

    def _profile(self, name: str) -> EmailServerProfile:
        if name:
            profile = EmailServerProfile.objects.filter(name=name).first()
            if profile is None:
                raise CommandError(f"--profile {name!r}: no such server profile")
            return profile
        profile, _ = EmailServerProfile.objects.get_or_create(
            name=LOAD_PROFILE, defaults={"kind": ProfileKind.LOCAL, "endpoint": "var/load"}
        )
        return profile

    @transaction.atomic
    def _mailboxes(self, count: int, profile_name: str, *, enable: bool, track: int) -> None:
        profile = self._profile(profile_name)
        User = get_user_model()
        first = User.objects.filter(username__startswith="load").count()
        names = [f"load{n:06d}" for n in range(first, first + count)]
        users = [User(username=n, email=f"{n}@{MAILBOX_DOMAIN}", first_name=n) for n in names]
        for user in users:
            user.set_unusable_password()
        User.objects.bulk_create(users)
        users = list(User.objects.filter(username__in=names).order_by("username"))
        PersonalOptions.objects.bulk_create([PersonalOptions(user=u, track=track) for u in users])
        Mailbox.objects.bulk_create(
            [
                Mailbox(
                    email_address=u.email,
                    user=u,
                    profile=profile,
                    approval=Approval.APPROVED if enable else Approval.PENDING,
                    enabled=enable,
                    incoming_status=MailboxStatus.SUCCESS if enable else MailboxStatus.NOT_RUN,
                    next_run_at=datetime.now(UTC) if enable else None,
                )
                for u in users
            ]
        )

    # -- CRM records ---------------------------------------------------------------------------------------

    def _records(
        self, rng: random.Random, count: int, addresses: Sequence[str], batch: int, until: datetime
    ) -> None:
        owners = list(Mailbox.objects.filter(user__isnull=False).values_list("user_id", flat=True)[:1000])
        first = CrmRecord.objects.count()
        for start, size in _batches(count, batch):
            rows = []
            for n in range(first + start, first + start + size):
                kind = _weighted(rng, RECORD_KINDS)
                given, family = rng.choice(FIRST), rng.choice(LAST)
                email = (
                    addresses[n] if n < len(addresses) else f"{given}.{family}.{n}@customer{n % 997}.example"
                )
                rows.append(
                    (
                        kind,
                        "Competitor" if kind == RecordKind.OTHER else "",
                        f"{given.title()} {family.title()} {n}",
                        email,
                        f"{given}{n}@mail{n % 31}.example" if rng.random() < 0.1 else "",
                        "",
                        rng.choice(owners) if owners and rng.random() < 0.5 else None,
                        rng.random() >= 0.03,
                        until - timedelta(minutes=count + first - n),
                    )
                )
            _insert(
                CrmRecord,
                ("kind", "other_kind", "name", "email1", "email2", "email3", "owner", "active", "created_at"),
                rows,
            )

    # -- decisions ---------------------------------------------------------------------------------------

    def _decisions(
        self, rng: random.Random, count: int, batch: int, until: datetime, spread: timedelta
    ) -> None:
        boxes = list(Mailbox.objects.select_related("user").order_by("pk"))
        # a sample drawn with the seed (not ORDER BY random()), so that the same seed gives the same rows
        known = list(CrmRecord.objects.order_by("pk").values_list("pk", "email1")[:50000])
        sample = rng.sample(known, min(len(known), 5000))
        record_ids = [pk for pk, _ in sample]
        senders = [email for _, email in sample if email] or [
            f"sender{n}@partner{n % 50}.example" for n in range(500)
        ]
        owners = [
            (b.pk, b.email_address, b.user.pk, b.user.get_username(), b.user.email)
            if b.user is not None
            else (b.pk, b.email_address, None, "", "")
            for b in boxes
        ]
        first = Decision.objects.count()
        step = spread / max(count, 1)
        oldest = until - spread
        outcomes = [(o, r) for o, r, _ in OUTCOMES]
        outcome_weights = list(itertools.accumulate(w for *_, w in OUTCOMES))
        correlations = [c for c, _ in CORRELATIONS]
        correlation_weights = list(itertools.accumulate(w for _, w in CORRELATIONS))
        labels = {str(r): _esc(str(Reason(r).label)) for _, r, _ in OUTCOMES}
        done = 0
        for start, size in _batches(count, batch):
            rows = []
            for n in range(first + start, first + start + size):
                outcome, reason = rng.choices(outcomes, cum_weights=outcome_weights)[0]
                correlation = (
                    rng.choices(correlations, cum_weights=correlation_weights)[0]
                    if outcome in (Outcome.TRACKED, Outcome.ALREADY_TRACKED)
                    else ""
                )
                box = owners[rng.randrange(len(owners))]
                decided = oldest + step * (n - first)
                rows.append(
                    _decision_row(
                        rng, n, box, decided, outcome, reason, correlation, senders, record_ids, labels
                    )
                )
            _insert(Decision, DECISION_FIELDS, rows)
            done += size
            if count >= 20 * batch and (done // batch) % 20 == 0:
                self.stdout.write(f"  {done:,} decisions")


DECISION_FIELDS = (
    "mailbox",
    "folder",
    "provider_item_id",
    "message_id",
    "message_id_synthetic",
    "subject",
    "sender",
    "received_at",
    "direction",
    "outcome",
    "reason",
    "accepting_kind",
    "accepting_id",
    "accepting_name",
    "accepting_email",
    "correlation_method",
    "correlated_message_id",
    "regarding",
    "trace",
    "message_snapshot",
    "manual",
    "decided_at",
)
# JSON text of a typical trace, written once: formatting a string per row is what makes a million cheap.
TRACE = json.dumps(
    [
        {"check": "parse", "result": "ok", "detail": "Message-ID @MID@; @NRCPT@ recipient(s)"},
        {"check": "folder", "result": "@FOLDER@", "detail": "the root Inbox is always scanned"},
        {
            "check": "start_date",
            "result": "after",
            "detail": "received after the start date 2020-01-01 00:00:00 UTC",
        },
        {
            "check": "sender",
            "result": "resolved",
            "detail": "@SENDER@ → Contact 'Contact @N@' <@SENDER@> (#@N@) (only match)",
        },
        {"check": "recipients", "result": "1 of @NRCPT@ resolved", "detail": "@RCPT@ → User 'owner' (#1)"},
        {"check": "duplicate", "result": "none", "detail": "no tracked email has this Message-ID"},
        {
            "check": "exclusion",
            "result": "none",
            "detail": "no address of the message is on the exclusion list",
        },
        {"check": "in-reply-to", "result": "none", "detail": "no In-Reply-To or References id is tracked"},
        {"check": "tracking token", "result": "none", "detail": "the subject has no tracking token"},
        {"check": "conversation index", "result": "none", "detail": "the message has no ConversationIndex"},
        {
            "check": "candidate: user owner",
            "result": "@ACCEPTS@",
            "detail": "mailbox owner; option 1 'Email messages in response to SyncAdmin email'",
        },
        {"check": "outcome", "result": "@OUTCOME@/@REASON@", "detail": "@LABEL@"},
    ],
    ensure_ascii=False,
)
FAILED_TRACE = json.dumps(
    [
        {"check": "parse", "result": "failed", "detail": "no From, To, Subject, Date or Message-ID header"},
        {"check": "outcome", "result": "@OUTCOME@/@REASON@", "detail": "@LABEL@"},
    ]
)
SNAPSHOT = (
    '{"sender_name": "@NAME@", "to": [@TO@], "cc": [@CC@], "bcc": [], "sent_at": "@SENT@", '
    '"in_reply_to": [], "references": [], "conversation_index": ""}'
)


def _template(text: str) -> str:
    """JSON text with @KEY@ markers as a %-format string, so that one row costs one formatting."""
    return re.sub(r"@([A-Z]+)@", r"%(\1)s", text.replace("%", "%%"))


def _esc(value: str) -> str:
    """A value as the inside of a JSON string (addresses and ids rarely need any escaping)."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return json.dumps(value, ensure_ascii=False)[1:-1]


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
TRACE_FORMAT = _template(TRACE)
FAILED_TRACE_FORMAT = _template(FAILED_TRACE)
SNAPSHOT_FORMAT = _template(SNAPSHOT)


def _decision_row(
    rng: random.Random,
    n: int,
    box: tuple[int, str, int | None, str, str],
    decided: datetime,
    outcome: str,
    reason: str,
    correlation: str,
    senders: Sequence[str],
    record_ids: Sequence[int],
    labels: dict[str, str],
) -> tuple[object, ...]:
    mailbox_id, address, owner_id, owner_name, owner_email = box
    outgoing = rng.random() < 0.2
    folder = Folder.SENT_ITEMS if outgoing else Folder.INBOX
    sender = address if outgoing else senders[rng.randrange(len(senders))]
    recipients = [senders[rng.randrange(len(senders))] for _ in range(rng.randint(1, 4))]
    prefix = ("", "RE: ", "FW: ", "RE: ")[rng.randrange(4)]
    subject = f"{prefix}{WORDS[rng.randrange(len(WORDS))].title()} {WORDS[rng.randrange(len(WORDS))]} #{n}"
    message_id = f"<load.{n}.{rng.getrandbits(32):08x}@{sender.rpartition('@')[2]}>"
    received = decided - timedelta(seconds=rng.randint(5, 900))
    tracked = outcome == Outcome.TRACKED
    accepting = tracked and owner_id is not None
    values = {
        "MID": _esc(message_id),
        "NRCPT": str(len(recipients)),
        "FOLDER": folder,
        "SENDER": _esc(sender),
        "N": str(n),
        "RCPT": _esc(recipients[0]),
        "ACCEPTS": "accepts" if tracked else "declines",
        "OUTCOME": outcome,
        "REASON": reason,
        "LABEL": labels[reason],
    }
    snapshot = SNAPSHOT_FORMAT % {
        "NAME": _esc(sender.split("@")[0]),
        "SENT": received.isoformat(),
        "TO": ", ".join(f'"{_esc(a)}"' for a in recipients[:2]),
        "CC": ", ".join(f'"{_esc(a)}"' for a in recipients[2:]),
    }
    return (
        mailbox_id,
        folder,
        f"AAMkAD{n:012d}",
        message_id,
        False,
        subject,
        sender,
        received,
        Direction.OUTGOING if outgoing else Direction.INCOMING,
        outcome,
        reason,
        EntityKind.USER if accepting else "",
        owner_id if accepting else None,
        owner_name if accepting else "",
        owner_email if accepting else "",
        correlation,
        f"<load.parent.{n // 7}@{MAILBOX_DOMAIN}>" if correlation else "",
        record_ids[rng.randrange(len(record_ids))] if tracked and record_ids and rng.random() < 0.3 else None,
        (FAILED_TRACE_FORMAT if outcome == Outcome.FAILED else TRACE_FORMAT) % values,
        snapshot,
        False,
        decided,
    )


def _insert(model: type[Model], fields: Sequence[str], rows: Sequence[tuple[object, ...]]) -> None:
    """One bulk insert of plain tuples: COPY on PostgreSQL, a multi-row executemany elsewhere.

    The ORM's bulk_create spends most of its time adapting values (on PostgreSQL, escaping each JSON
    document into an UNNEST array); rows of ready values skip that. JSON columns get JSON text.
    """
    if not rows:
        return
    meta = model._meta
    columns = [str(meta.get_field(name).column) for name in fields]  # type: ignore[union-attr]
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    names = ", ".join(qn(c) for c in columns)
    dates = [
        i for i, name in enumerate(fields) if meta.get_field(name).get_internal_type() == "DateTimeField"
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        adapt = connection.ops.adapt_datetimefield_value
        ready: list[Any] = [
            tuple(adapt(v) if i in dates else v for i, v in enumerate(row))  # type: ignore[arg-type]
            for row in rows
        ]
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", ready)
