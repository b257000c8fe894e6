"""A record's timeline (tracking-rules §2): the tracked emails a CRM record, a user or a queue is regarding
or a party of, newest first (timeline_at, then id), in keyset pages.

A page is read as index range reads, however many emails the store holds: at most size + 1 emails from
the regarding index (regarding, -timeline_at, -id) and at most size + 1 from the party index
((record|user|queue), -timeline_at, -tracked_email), each from the page's start, merged and deduplicated
here. An OR or a UNION of both over all of a record's emails sorts every one of them for every page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Q, QuerySet

from tracking.choices import PartyRole
from tracking.models import CrmRecord, EmailParty, Queue, TrackedEmail

Subject = CrmRecord | User | Queue
# Narrows a queryset of TrackedEmail or of EmailParty (the web page's filters); the same function for both.
Narrow = Callable[[QuerySet[Any]], QuerySet[Any]]

REGARDING = "regarding"
# How a record stands on an email, in the order a timeline shows it.
STANDINGS = (REGARDING, PartyRole.FROM, PartyRole.TO, PartyRole.CC, PartyRole.BCC)
# Fields a timeline shows of an email: the rows of a page are read by id, nothing else of them.
SHOWN_FIELDS = ("id", "message_id", "subject", "sender", "sender_name", "direction", "timeline_at")


@dataclass(frozen=True)
class TimelineEntry:
    email: TrackedEmail
    standings: tuple[str, ...]  # of STANDINGS: regarding, from, to, cc, bcc


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    next: int | None  # the id of the email the next page starts after; None on the last page
    paged: bool  # a page other than the first


def party_field(subject: Subject) -> str:
    """The EmailParty column that points at the subject."""
    if isinstance(subject, CrmRecord):
        return "record"
    if isinstance(subject, Queue):
        return "queue"
    return "user"


def _after(position: tuple[datetime, int], id_field: str) -> Q:
    """Rows after `position` in (-timeline_at, -id) order. The plain `timeline_at <= ...` is what lets the
    database start the index range at the position instead of filtering its way down to it."""
    at, pk = position
    return Q(timeline_at__lte=at) & (Q(timeline_at__lt=at) | Q(timeline_at=at, **{f"{id_field}__lt": pk}))


def _scoped(queryset: QuerySet[Any], visible: QuerySet[TrackedEmail], email: str) -> QuerySet[Any]:
    """The rows of `queryset` whose email (the column `email`) is in `visible`, checked row by row as an
    index hands them over: an EXISTS on the email's primary key, which PostgreSQL plans for one row, so
    that the checks inside (a decision of the user's mailbox) are index lookups too. As a semi-join
    (`__in=visible`), or with visible's conditions on the outer query, it hashes every visible email or
    every decision of the user's mailbox for each page (1.8 s a page at 1,000,000 emails, B13)."""
    if not visible.query.has_filters():
        return queryset
    return queryset.filter(Exists(visible.filter(pk=OuterRef(email))))


def _regarding_keys(
    record: CrmRecord,
    visible: QuerySet[TrackedEmail],
    narrow: Narrow,
    position: tuple[datetime, int] | None,
    want: int,
) -> list[tuple[datetime, int]]:
    emails = _scoped(narrow(TrackedEmail.objects.filter(regarding_id=record.pk)), visible, "pk")
    if position is not None:
        emails = emails.filter(_after(position, "id"))
    return list(emails.order_by("-timeline_at", "-id").values_list("timeline_at", "id")[:want])


def _party_keys(
    subject: Subject,
    visible: QuerySet[TrackedEmail],
    narrow: Narrow,
    position: tuple[datetime, int] | None,
    want: int,
) -> dict[int, datetime]:
    """Up to `want` distinct emails the subject is a party of. An email holds the subject as several
    parties (to and cc) in consecutive rows, so a short read goes on from the last row until enough."""
    parties = narrow(EmailParty.objects.filter(**{f"{party_field(subject)}_id": subject.pk}))
    parties = _scoped(parties, visible, "tracked_email_id")
    found: dict[int, datetime] = {}
    while True:
        page = parties if position is None else parties.filter(_after(position, "tracked_email_id"))
        rows = list(
            page.order_by("-timeline_at", "-tracked_email_id").values_list("timeline_at", "tracked_email_id")[
                :want
            ]
        )
        for at, pk in rows:
            found.setdefault(pk, at)
        if len(rows) < want or len(found) >= want:
            return found
        position = rows[-1]


def _standings(subject: Subject, emails: list[TrackedEmail]) -> dict[int, tuple[str, ...]]:
    if not emails:
        return {}
    # The page's time range keeps the read on the party index's range for the subject.
    times = [e.timeline_at for e in emails]
    rows = (
        EmailParty.objects.filter(
            **{f"{party_field(subject)}_id": subject.pk},
            tracked_email_id__in=[e.pk for e in emails],
            timeline_at__gte=min(times),
            timeline_at__lte=max(times),
        )
        .order_by()
        .values_list("tracked_email_id", "role")
    )
    found: dict[int, set[str]] = {e.pk: set() for e in emails}
    for pk, role in rows:
        found[pk].add(role)
    if isinstance(subject, CrmRecord):
        for e in emails:
            if e.regarding_id == subject.pk:
                found[e.pk].add(REGARDING)
    return {pk: tuple(s for s in STANDINGS if s in roles) for pk, roles in found.items()}


def _unchanged(queryset: QuerySet[Any]) -> QuerySet[Any]:
    return queryset


def timeline_page(
    subject: Subject,
    *,
    visible: QuerySet[TrackedEmail],
    size: int,
    start_after: int | None = None,
    narrow: Narrow = _unchanged,
) -> TimelinePage:
    """The `size` emails of `visible` (narrowed) on the subject's timeline that follow the email
    `start_after` (the first page when it is None or gone)."""
    position: tuple[datetime, int] | None = None
    if start_after is not None:
        at = TrackedEmail.objects.filter(pk=start_after).values_list("timeline_at", flat=True).first()
        position = None if at is None else (at, start_after)
    want = size + 1
    keys = _party_keys(subject, visible, narrow, position, want)
    if isinstance(subject, CrmRecord):
        for at, pk in _regarding_keys(subject, visible, narrow, position, want):
            keys[pk] = at  # the email's own time, should its parties' copy differ
    ordered = sorted(keys.items(), key=lambda item: (item[1], item[0]), reverse=True)[:want]
    shown = [pk for pk, _ in ordered[:size]]
    by_id = TrackedEmail.objects.only(*SHOWN_FIELDS, "regarding").in_bulk(shown)
    emails = [by_id[pk] for pk in shown if pk in by_id]
    standings = _standings(subject, emails)
    return TimelinePage(
        entries=[TimelineEntry(e, standings[e.pk]) for e in emails],
        next=shown[-1] if len(ordered) > size else None,
        paged=position is not None,
    )
