"""The CSV export writes the same bytes whichever way it is made.

On PostgreSQL the database writes the rows (COPY); elsewhere Python's csv module does. Decisions with
every awkward value (separators, quotes, line breaks, backslashes, formula prefixes, empty and missing
values, microseconds, regarding or not) are exported both ways, in time zones east and west of UTC
and with half-hour offsets, on both sides of a daylight-saving change; the bytes must be identical.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.urls import reverse

from syncadmin.web.views.decisions_export import EXPORT_COLUMNS, _copied_chunks, _written_chunks, csv_chunks
from tests.conftest import make_decisions
from tracking.actions import do_set_personal_options
from tracking.models import CrmRecord, Decision

AWKWARD = [
    "plain",
    "",
    "comma, inside",
    'a "quoted" word',
    "line\nbreak",
    "carriage\rreturn",
    "both\r\nends",
    "tab\tinside",
    "back\\slash and \\n not a newline",
    "=SUM(A1)",
    "+1",
    "-x",
    "@handle",
    "\tleading tab",
    "\rleading return",
    "'already quoted",
    "Grüße, 東京 ✓",
    " leading space",
    "trailing space ",
    '",\r\n',
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/St_Johns", "Asia/Kolkata", "Australia/Adelaide"]


def awkward_decisions(mailbox) -> None:
    record = CrmRecord.objects.create(kind="account", name='=North, "wind"', email1="n@northwind.example")
    rows = make_decisions(mailbox, len(AWKWARD))
    for i, (row, text) in enumerate(zip(rows, AWKWARD, strict=True)):
        Decision.objects.filter(pk=row.pk).update(
            subject=text,
            sender=AWKWARD[-1 - i],
            accepting_name=text,
            correlated_message_id=text,
            folder=text or "inbox",
            manual=i % 2 == 0,
            regarding=record if i % 3 == 0 else None,
            # summer and winter time; whole seconds and microseconds; a missing received time
            received_at=None
            if i == 1
            else datetime(2026, 3, 29, 0, 30, tzinfo=UTC) + timedelta(hours=i, microseconds=i % 2 * 1234),
            decided_at=datetime(2026, 10, 25, 0, 0, 5, tzinfo=UTC) + timedelta(minutes=37 * i),
        )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY writer is PostgreSQL's")
@pytest.mark.parametrize("zone", ZONES)
def test_copy_writes_what_the_csv_module_writes(alice, zone):
    awkward_decisions(alice)
    queryset = Decision.objects.all()

    copied = b"".join(_copied_chunks(queryset, zone))
    written = b"".join(_written_chunks(queryset, ZoneInfo(zone)))

    assert copied == written
    rows = list(csv.reader(io.StringIO(copied.decode(), newline="")))
    assert rows[0] == list(EXPORT_COLUMNS) and len(rows) == len(AWKWARD) + 1
    assert {r[6] for r in rows[1:]} == {("'" + t if t[:1] in "=+-@\t\r" and t else t) for t in AWKWARD}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY writer is PostgreSQL's")
def test_copy_streams_in_chunks(alice):
    make_decisions(alice, 4100)

    chunks = list(_copied_chunks(Decision.objects.all(), "UTC"))

    assert len(chunks) == 4  # the header, then 2,000 + 2,000 + 100 rows
    assert [c.count(b"\r\n") for c in chunks] == [1, 2000, 2000, 100]


def test_the_view_exports_in_the_users_time_zone_either_way(client, alice, admin):
    awkward_decisions(alice)
    do_set_personal_options(admin, time_zone="America/New_York")
    client.force_login(admin)

    response = client.get(reverse("web-decisions-export"))

    expected = b"".join(_written_chunks(Decision.objects.all(), ZoneInfo("America/New_York")))
    assert response.getvalue() == expected


def test_a_zone_the_database_does_not_know_is_written_by_python(alice):
    awkward_decisions(alice)
    with open(f"/usr/share/zoneinfo/{ZONES[1]}", "rb") as tzfile:
        unknown = ZoneInfo.from_file(tzfile, key="Mars/Olympus_Mons")
    queryset = Decision.objects.all()

    exported = b"".join(csv_chunks(queryset, unknown))

    assert exported == b"".join(_written_chunks(queryset, ZoneInfo(ZONES[1])))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY writer is PostgreSQL's")
def test_copy_of_nothing_visible_is_the_header_alone(alice):
    make_decisions(alice, 3)

    for nothing in (Decision.objects.filter(mailbox_id__in=[]), Decision.objects.none()):
        assert b"".join(_copied_chunks(nothing, "UTC")) == b"".join(_written_chunks(nothing, UTC))
