"""tracking.bulk.bulk_insert writes what bulk_create would, and gives every instance its primary key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import DataError, connection, transaction

from tests.conftest import make_mailbox
from tracking.bulk import bulk_insert
from tracking.models import Decision, EmailHash, TrackedEmail

T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)


def tracked(n: int, **fields: object) -> TrackedEmail:
    return TrackedEmail(message_id=f"<t{n}@example.net>", direction="incoming", **fields)


def test_it_inserts_in_order_and_sets_the_keys(exchange_profile):
    box = make_mailbox("bulk@contoso.com", "bulk", exchange_profile)
    emails = [
        tracked(
            n,
            subject=f'Quote "{n}", \\ ünïcode ✓\r\n',
            recipients=[["to", f"a{n}@example.net"], ["cc", 'odd "name"@example.net']],
            sent_at=T0 if n % 2 else None,
            receiving_mailbox=box,
        )
        for n in range(5)
    ]
    bulk_insert(emails)
    assert all(e.pk is not None and not e._state.adding for e in emails)
    for e in emails:
        stored = TrackedEmail.objects.get(pk=e.pk)
        assert (stored.message_id, stored.subject, stored.recipients) == (
            e.message_id,
            e.subject,
            e.recipients,
        )
        assert stored.sent_at == e.sent_at and stored.receiving_mailbox_id == box.pk
        assert stored.created_at is not None  # auto_now_add, as bulk_create fills it

    bulk_insert([EmailHash(tracked_email=e, kind=EmailHash.ADDRESS, value=-(2**63) + e.pk) for e in emails])
    assert sorted(EmailHash.objects.values_list("value", flat=True)) == sorted(
        -(2**63) + e.pk for e in emails
    )

    decisions = [
        Decision(
            mailbox=box,
            folder="inbox",
            message_id=e.message_id,
            direction="incoming",
            outcome="tracked",
            reason="sender_is_contact",
            tracked_email=e,
            trace=[{"step": 1, "text": 'a "quoted" \\ step'}],
            message_snapshot={"to": ["x@example.net"], "nested": {"n": None, "ok": True}},
            received_at=T0,
            decided_at=T0,
        )
        for e in emails
    ]
    bulk_insert(decisions)
    got = {d.pk: d for d in Decision.objects.filter(pk__in=[d.pk for d in decisions])}
    for d in decisions:
        assert got[d.pk].tracked_email_id == d.tracked_email_id and got[d.pk].message_id == d.message_id
        assert got[d.pk].trace == d.trace and got[d.pk].message_snapshot == d.message_snapshot
        assert got[d.pk].received_at == T0 and got[d.pk].manual is False


def test_it_inserts_nothing_for_nothing(db):
    bulk_insert([])
    assert not TrackedEmail.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not enforce lengths")
def test_a_value_too_long_for_its_column_is_refused_not_cut(db):
    with pytest.raises(DataError), transaction.atomic():
        bulk_insert([tracked(1, tracking_token="X" * 41)])
    assert not TrackedEmail.objects.exists()


def test_a_time_prepared_once_for_many_rows_is_stored_as_djangos_own_writes_store_it(db):
    from tracking.bulk import insert_rows, prepared_datetime
    from tracking.models import CrmRecord

    made = prepared_datetime(CrmRecord, T0)
    insert_rows(
        CrmRecord,
        ("kind", "name", "email1", "email2", "email3", "active", "other_kind", "created_at"),
        # prepared once, and a plain datetime (which insert_rows prepares itself)
        [("contact", f"Row {n}", f"r{n}@example.net", "", "", True, "", made if n else T0) for n in range(3)],
    )
    orm = CrmRecord.objects.create(kind="contact", name="By the ORM", email1="orm@example.net")
    CrmRecord.objects.filter(pk=orm.pk).update(created_at=T0)  # created_at is auto_now_add

    # an equality lookup compares what is stored (text on SQLite): it finds all four only if they agree
    assert CrmRecord.objects.filter(created_at=T0).count() == 4
    assert {r.created_at for r in CrmRecord.objects.all()} == {T0}


def test_migrating_rewrites_the_times_sqlite_stored_with_an_offset_as_django_writes_them(transactional_db):
    from django.db.migrations.executor import MigrationExecutor

    from tracking.models import CrmRecord

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL stores timestamptz, not text")
    before, after = (
        ("tracking", "0019_tracked_email_search"),
        ("tracking", "0020_sqlite_bulk_datetimes_as_django_writes_them"),
    )
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate([before])
    with connection.cursor() as cursor:  # as insert_rows wrote them before: the driver kept the offset
        cursor.executemany(
            "INSERT INTO tracking_crmrecord (kind, name, email1, email2, email3, active, other_kind, "
            "created_at) VALUES ('contact', %s, %s, '', '', 1, '', %s)",
            [
                ("UTC", "utc@example.net", "2026-03-02 09:00:00.123456+00:00"),
                ("Pacific", "pdt@example.net", "2026-03-02 02:00:00.123456-07:00"),
                ("Django", "orm@example.net", "2026-03-02 09:00:00.123456"),
            ],
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    try:
        executor.migrate([after])
        with connection.cursor() as cursor:
            cursor.execute("SELECT DISTINCT CAST(created_at AS TEXT) FROM tracking_crmrecord")
            assert cursor.fetchall() == [("2026-03-02 09:00:00.123456",)]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(leaves)
    assert CrmRecord.objects.filter(created_at=T0).count() == 3
