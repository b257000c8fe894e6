"""A record's timeline (tracking-rules §2): the tracked emails a CRM record, a user or a queue is regarding
or a party of, newest first (timeline_at, then id), in keyset pages.

A page is read as index range reads, however many emails the store holds: at most size + 1 emails from
the regarding index (regarding, -timeline_at, -id) and at most size + 1 from the party index
((record|user|queue), -timeline_at, -tracked_email), each from the page's start, merged and deduplicated
here. An OR or a UNION of both over all of a record's emails sorts every one of them for every page.

Rows are checked as they are read (who may see the email, the filters), so a page that finds few rows to
show would read on through all of a big record's emails. Each read therefore checks stretches of its index
whose ends it finds first (index-only reads), and stops after about WINDOW index entries: a page that ran
out of them before it filled shows what it found and continues from there.
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
# Index entries a page checks at most from each index (~10 ms of checks for a plain user on PostgreSQL).
WINDOW = 2000
# The first stretch of an index a read checks, in pages: enough when most rows pass the checks.
FIRST_STRETCH = 4

Position = tuple[datetime, int]  # (timeline_at, email id), in the timeline's order (newest first)


@dataclass(frozen=True)
class TimelineEntry:
    email: TrackedEmail
    standings: tuple[str, ...]  # of STANDINGS: regarding, from, to, cc, bcc


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    next: int | None  # the id of the email the next page starts after; None on the last page
    paged: bool  # a page other than the first
    partial: bool = False  # the page stopped at its window's end before it filled; more may follow


@dataclass(frozen=True)
class TimeRange:
    """Where on the timeline to read: from `since` (inclusive) up to `until` (exclusive)."""

    since: datetime | None = None
    until: datetime | None = None

    def q(self) -> Q:
        q = Q()
        if self.since is not None:
            q &= Q(timeline_at__gte=self.since)
        if self.until is not None:
            q &= Q(timeline_at__lt=self.until)
        return q


@dataclass(frozen=True)
class _Read:
    keys: dict[int, datetime]  # email id -> timeline_at
    cut: Position | None  # the window's end, when the read stopped there before it found enough


def party_field(subject: Subject) -> str:
    """The EmailParty column that points at the subject."""
    if isinstance(subject, CrmRecord):
        return "record"
    if isinstance(subject, Queue):
        return "queue"
    return "user"


def _not_after(position: Position, id_field: str) -> Q:
    """Rows up to and including `position` in (-timeline_at, -id) order."""
    at, pk = position
    return Q(timeline_at__gte=at) & (Q(timeline_at__gt=at) | Q(timeline_at=at, **{f"{id_field}__gte": pk}))


def _after(position: Position, id_field: str) -> Q:
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


def _read(
    rows: QuerySet[Any],
    id_field: str,
    *,
    visible: QuerySet[TrackedEmail],
    narrow: Narrow,
    span: TimeRange,
    position: Position | None,
    want: int,
    window: int,
) -> _Read:
    """Up to `want` distinct emails of `rows` (the subject's rows of one index) after `position`, checking
    at most about `window` index entries.

    Each step first finds where the next stretch of the index ends (an index-only read), then reads the
    rows that pass the checks within it: a short stretch first, which is all a page needs when most rows
    pass, then longer ones. An email may hold the subject in several rows (to and cc), consecutive in the
    index, so a step that found too few distinct emails goes on from its last row.
    """
    ordering = ("-timeline_at", f"-{id_field}")
    rows = rows.filter(span.q())
    checked_rows = _scoped(narrow(rows), visible, id_field)
    found: dict[int, datetime] = {}
    stretch, read = min(FIRST_STRETCH * want, window), 0
    while True:
        ahead = rows if position is None else rows.filter(_after(position, id_field))
        end = next(
            iter(ahead.order_by(*ordering).values_list("timeline_at", id_field)[stretch - 1 : stretch]), None
        )
        step = checked_rows if position is None else checked_rows.filter(_after(position, id_field))
        if end is not None:
            step = step.filter(_not_after(end, id_field))
        got = list(step.order_by(*ordering).values_list("timeline_at", id_field)[:want])
        for at, pk in got:
            found.setdefault(pk, at)
        if len(found) >= want or (end is None and len(got) < want):
            return _Read(found, None)
        if len(got) == want:
            position = got[-1]  # several rows of one email: on from the last
            continue
        assert end is not None
        read += stretch
        if read >= window:
            return _Read(found, end)
        position, stretch = end, min(stretch * 4, window - read)


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
    span: TimeRange = TimeRange(),
    window: int = WINDOW,
) -> TimelinePage:
    """The `size` emails of `visible` (narrowed, within `span`) on the subject's timeline that follow the
    email `start_after` (the first page when it is None or gone); fewer, and `partial`, when a read reached
    its window's end first."""
    position: Position | None = None
    if start_after is not None:
        at = TrackedEmail.objects.filter(pk=start_after).values_list("timeline_at", flat=True).first()
        position = None if at is None else (at, start_after)
    want = size + 1
    options: dict[str, Any] = {
        "visible": visible,
        "narrow": narrow,
        "span": span,
        "position": position,
        "want": want,
        "window": window,
    }
    parties = EmailParty.objects.filter(**{f"{party_field(subject)}_id": subject.pk})
    reads = [_read(parties, "tracked_email_id", **options)]
    if isinstance(subject, CrmRecord):
        reads.append(_read(TrackedEmail.objects.filter(regarding_id=subject.pk), "id", **options))
    keys: dict[int, datetime] = {}
    for read in reads:
        keys.update(read.keys)  # the regarding read last: the email's own time, should a party's differ
    # Below the newest window's end that cut a read short, that read has not looked yet.
    cut = max((r.cut for r in reads if r.cut is not None), default=None)
    ordered = sorted(
        ((at, pk) for pk, at in keys.items() if cut is None or (at, pk) >= cut),
        reverse=True,
    )[:want]
    shown = [pk for _, pk in ordered[:size]]
    by_id = TrackedEmail.objects.only(*SHOWN_FIELDS, "regarding").in_bulk(shown)
    emails = [by_id[pk] for pk in shown if pk in by_id]
    standings = _standings(subject, emails)
    after: int | None = None
    partial = False
    if len(ordered) > size:
        after = shown[-1]
    elif cut is not None:
        after, partial = cut[1], True
    return TimelinePage(
        entries=[TimelineEntry(e, standings[e.pk]) for e in emails],
        next=after,
        paged=position is not None,
        partial=partial,
    )
