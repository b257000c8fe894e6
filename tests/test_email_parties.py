"""The parties of a tracked email (tracking-rules §6): written with the email, in the page's transaction, as
the engine resolved them — one row per entity an address resolved to, one without any when it resolved to
nothing, an auto-created sender as the From party's record; tracked by hand the same; and `emails
backfill-parties` for emails tracked before parties were recorded."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import raw, scan
from tracking.actions import do_backfill_parties, do_set_personal_options
from tracking.choices import Outcome
from tracking.decisions import RecordRef
from tracking.models import CrmRecord, Decision, EmailParty, Mailbox, Queue, TrackedEmail
from tracking.pipeline import track_decision_manually


def parties(email_id: int | None) -> list[tuple[str, str, str]]:
    """(role, address, what it resolved to) of an email's parties, in the order written."""
    out = []
    for p in EmailParty.objects.filter(tracked_email_id=email_id).select_related("record", "user", "queue"):
        if p.record is not None:
            to = f"{p.record.kind}:{p.record.name}"
        elif p.user is not None:
            to = f"user:{p.user.username}"
        elif p.queue is not None:
            to = f"queue:{p.queue.name}"
        else:
            to = "-"
        out.append((p.role, p.address, to))
    return out


@pytest.fixture
def directory(db: None) -> None:
    CrmRecord.objects.create(kind="contact", name="Ann", email1="ann@example.net")
    CrmRecord.objects.create(kind="account", name="Northwind", email1="sales@northwind.example")
    CrmRecord.objects.create(kind="lead", name="Northwind lead", email2="sales@northwind.example")
    Queue.objects.create(name="Support", email="support@contoso.com")


def test_a_tracked_email_has_one_party_per_entity_and_one_for_an_unresolved_address(alice, bob, directory):
    do_set_personal_options(alice.user, track=0)
    (decision,) = scan(
        alice,
        raw(
            "<p1@example.net>",
            to="alice@contoso.com, sales@northwind.example",
            extra="Cc: support@contoso.com, nobody@nowhere.example, bob@contoso.com\r\n"
            "Bcc: sales@northwind.example\r\n",
        ),
    )
    assert decision.outcome == Outcome.TRACKED
    assert parties(decision.tracked_email_id) == [
        ("from", "ann@example.net", "contact:Ann"),
        ("to", "alice@contoso.com", "user:alice"),
        ("to", "sales@northwind.example", "account:Northwind"),
        ("to", "sales@northwind.example", "lead:Northwind lead"),
        ("cc", "support@contoso.com", "queue:Support"),
        ("cc", "nobody@nowhere.example", "-"),
        ("cc", "bob@contoso.com", "user:bob"),
        ("bcc", "sales@northwind.example", "account:Northwind"),
        ("bcc", "sales@northwind.example", "lead:Northwind lead"),
    ]
    assert decision.tracked_email_id is not None
    email = TrackedEmail.objects.get(pk=decision.tracked_email_id)
    assert set(EmailParty.objects.filter(tracked_email=email).values_list("timeline_at", flat=True)) == {
        email.timeline_at
    }


def test_an_unresolved_sender_is_a_party_without_a_record(alice):
    do_set_personal_options(alice.user, track=0)
    (decision,) = scan(alice, raw("<p2@example.net>", frm="Stranger <who@unknown.example>"))
    assert parties(decision.tracked_email_id) == [
        ("from", "who@unknown.example", "-"),
        ("to", "alice@contoso.com", "user:alice"),
    ]


def test_an_auto_created_sender_is_the_from_partys_record_for_every_message_of_the_page(alice):
    do_set_personal_options(alice.user, track=0, auto_create="contact")
    first, second = scan(
        alice,
        raw("<a1@example.net>", frm="Jane Roe <jane@roe.example>"),
        raw("<a2@example.net>", frm="Jane Roe <jane@roe.example>"),
    )
    (jane,) = CrmRecord.objects.filter(email1="jane@roe.example")
    for decision in (first, second):
        assert parties(decision.tracked_email_id)[0] == ("from", "jane@roe.example", "contact:Jane Roe")
    (later,) = scan(alice, raw("<a3@example.net>", frm="jane@roe.example"))
    assert parties(later.tracked_email_id)[0] == ("from", "jane@roe.example", "contact:Jane Roe")
    assert EmailParty.objects.filter(record=jane, role="from").count() == 3


def test_a_message_not_tracked_has_no_parties_and_one_tracked_by_hand_has_them(alice, directory):
    (decision,) = scan(alice, raw("<m1@example.net>", to="alice@contoso.com, sales@northwind.example"))
    assert decision.outcome == Outcome.NOT_TRACKED and not EmailParty.objects.exists()
    record = CrmRecord.objects.get(name="Northwind")
    processed = track_decision_manually(
        decision, RecordRef(record.pk, "account", "Northwind"), now=timezone.now()
    )
    made = processed.decision
    assert made.manual and made.tracked_email_id is not None
    assert parties(made.tracked_email_id) == [
        ("from", "ann@example.net", "contact:Ann"),
        ("to", "alice@contoso.com", "user:alice"),
        ("to", "sales@northwind.example", "account:Northwind"),
        ("to", "sales@northwind.example", "lead:Northwind lead"),
    ]


def test_a_page_writes_its_parties_in_one_statement(alice, directory):
    do_set_personal_options(alice.user, track=0)
    with CaptureQueriesContext(connection) as captured:
        scan(alice, *[raw(f"<q{i}@example.net>", extra="Cc: sales@northwind.example\r\n") for i in range(20)])
    inserts = [
        q["sql"] for q in captured.captured_queries if "INSERT" in q["sql"] and "emailparty" in q["sql"]
    ]
    assert len(inserts) == 1
    assert EmailParty.objects.count() == 20 * 4


def test_backfill_gives_old_emails_every_matching_party_and_leaves_others_alone(
    alice: Mailbox, directory: None, cmd
):
    assert alice.user is not None
    do_set_personal_options(alice.user, track=0)
    (scanned,) = scan(alice, raw("<new@example.net>"))
    before = parties(scanned.tracked_email_id)
    old = TrackedEmail.objects.create(
        message_id="<old@example.net>",
        direction="incoming",
        sender="ANN@example.net",
        recipients=[["to", "Alice@Contoso.com"], ["cc", "sales@northwind.example"], ["cc", "x@y.example"]],
    )
    out = cmd("emails", "backfill-parties")
    assert out.out.strip() == "recorded the parties of 1 tracked email(s)"
    assert parties(old.pk) == [
        ("from", "ann@example.net", "contact:Ann"),
        ("to", "alice@contoso.com", "user:alice"),
        ("cc", "sales@northwind.example", "account:Northwind"),
        ("cc", "sales@northwind.example", "lead:Northwind lead"),
        ("cc", "x@y.example", "-"),
    ]
    assert parties(scanned.tracked_email_id) == before
    assert do_backfill_parties() == 0  # again: nothing left to do
    assert {p.timeline_at for p in EmailParty.objects.filter(tracked_email=old)} == {old.timeline_at}


def test_backfill_works_in_batches(alice: Mailbox) -> None:
    user = alice.user
    assert isinstance(user, User)
    TrackedEmail.objects.bulk_create(
        TrackedEmail(message_id=f"<b{i}@example.net>", direction="incoming", sender="alice@contoso.com")
        for i in range(7)
    )
    assert do_backfill_parties(batch_size=3) == 7
    assert EmailParty.objects.filter(user=user, role="from").count() == 7
    assert not Decision.objects.exists()
