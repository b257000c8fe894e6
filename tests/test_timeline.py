"""tracking.timeline (issue 18): the pages of a record's timeline, read from two indexes with a window of
index entries per read, hold every email the reader may see exactly once, in order, whatever the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import QuerySet

from tracking.bulk import insert_rows
from tracking.models import CrmRecord, EmailParty, TrackedEmail
from tracking.timeline import TimeRange, timeline_page

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["orm", "insert_rows"])
def story(request: pytest.FixtureRequest, db: None) -> tuple[CrmRecord, User, list[TrackedEmail]]:
    """60 emails on Dana's timeline, by regarding, party (sometimes twice) or both, three at each time;
    the user owns one in seven; some emails are someone else's record's.

    The parties are written by the ORM, or as a scan's page commit writes them (`insert_rows`): on SQLite
    that once stored their times in another form, which the timeline's comparisons missed."""
    dana = CrmRecord.objects.create(kind="contact", name="Dana")
    other = CrmRecord.objects.create(kind="contact", name="Other")
    reader = User.objects.create_user("reader")
    made = []
    for i in range(75):
        on_dana = i % 5 != 4
        tracked = TrackedEmail.objects.create(
            message_id=f"<s{i}@example.net>",
            direction="outgoing" if i % 3 == 0 else "incoming",
            regarding=dana if on_dana and i % 2 == 0 else other,
            owner=reader if i % 7 == 0 else None,
            timeline_at=T0 + timedelta(minutes=i // 3),
        )
        roles = ["to", "cc"] if i % 4 == 1 else ["from"] if i % 2 else ["to"] if i % 6 == 0 else []
        for role in roles:
            party = (tracked.pk, role, "d@example.net", (dana if on_dana else other).pk, tracked.timeline_at)
            if request.param == "orm":
                EmailParty.objects.create(
                    tracked_email_id=party[0],
                    role=role,
                    address=party[2],
                    record_id=party[3],
                    timeline_at=party[4],
                )
            else:
                insert_rows(
                    EmailParty, ("tracked_email_id", "role", "address", "record_id", "timeline_at"), [party]
                )
        if on_dana:
            made.append(tracked)
    return dana, reader, made


def every_page(record: CrmRecord, visible: QuerySet[TrackedEmail], **options: Any) -> tuple[list[int], int]:
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        page = timeline_page(record, visible=visible, start_after=after, **options)
        pages += 1
        assert len(page.entries) <= options["size"]
        assert page.partial or page.next is None or len(page.entries) == options["size"]
        seen += [e.email.pk for e in page.entries]
        if page.next is None:
            return seen, pages
        after = page.next


def newest_first(emails: list[TrackedEmail]) -> list[int]:
    return [e.pk for e in sorted(emails, key=lambda e: (e.timeline_at, e.pk), reverse=True)]


@pytest.mark.parametrize(("size", "window"), [(3, 2), (3, 5), (5, 1), (10, 7), (50, 2000)])
def test_a_reader_who_sees_few_gets_each_of_them_once_in_order(story, size: int, window: int) -> None:
    dana, reader, made = story
    visible = TrackedEmail.objects.visible_to(reader)
    seen, pages = every_page(dana, visible, size=size, window=window)
    assert seen == newest_first([e for e in made if e.owner_id == reader.pk])
    if window < 10:
        assert pages > len(seen) / size  # some pages stopped at the window's end


@pytest.mark.parametrize(("size", "window"), [(4, 3), (7, 50), (100, 2000)])
def test_everything_with_a_filter_and_a_span(story, size: int, window: int) -> None:
    dana, _, made = story
    since, until = T0 + timedelta(minutes=3), T0 + timedelta(minutes=20)
    span = TimeRange(since=since, until=until)
    seen, _ = every_page(
        dana,
        TrackedEmail.objects.all(),
        size=size,
        window=window,
        span=span,
        narrow=lambda qs: qs.filter(
            **{"tracked_email__direction" if qs.model is EmailParty else "direction": "incoming"}
        ),
    )
    expected = [e for e in made if e.direction == "incoming" and since <= e.timeline_at < until]
    assert seen == newest_first(expected)
