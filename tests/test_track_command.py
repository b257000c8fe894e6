"""Manual tracking in full (tracking-rules §7a) through `track`: track any decided message; set, change and
clear regarding; untrack (never tracked again by a scan); track again. Audited, a decision each."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management.base import CommandError

from tests.conftest import user_of
from tracking.models import AuditEvent, CrmRecord, Decision, Mailbox, TrackedEmail

MID = "<t1@northwind.example>"
MAIL = (
    b"From: Buyer <buyer@northwind.example>\nTo: alice@contoso.com\nSubject: offer\n"
    b"Message-ID: <t1@northwind.example>\nDate: Tue, 3 Nov 2026 10:00:00 +0000\n\nhello\n"
)


@pytest.fixture
def decided(alice: Mailbox, cmd, tmp_path: Path) -> Decision:
    path = tmp_path / "m.eml"
    path.write_bytes(MAIL)
    cmd("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path))
    decision = Decision.objects.get()
    assert decision.outcome == "not_tracked"
    return decision


@pytest.fixture
def northwind(db: None) -> CrmRecord:
    return CrmRecord.objects.create(kind="account", name="Northwind", email1="orders@northwind.example")


def track(cmd, *args: str) -> dict:
    (row,) = cmd("track", "--mailbox", "alice@contoso.com", "--message-id", MID, "--json", *args).json_lines()
    return row


def test_track_then_change_clear_regarding_untrack_and_track_again(alice, decided, northwind, cmd):
    CrmRecord.objects.create(kind="contact", name="Buyer", email1="buyer@northwind.example")
    tracked = track(cmd, "--track", "--regarding", "account:Northwind", "--as", "alice")
    assert (tracked["outcome"], tracked["reason"], tracked["supersedes"]) == ("tracked", "manual", decided.pk)
    assert tracked["regarding"] == {"kind": "account", "name": "Northwind"}
    email = TrackedEmail.objects.get()

    changed = track(cmd, "--regarding", "contact:Buyer")
    assert (
        changed["regarding"] == {"kind": "contact", "name": "Buyer"}
        and changed["supersedes"] == tracked["decision_id"]
    )
    cleared = track(cmd, "--clear-regarding")
    assert cleared["regarding"] is None
    email.refresh_from_db()
    assert email.regarding is None

    untracked = track(cmd, "--untrack", "--as", "alice")
    assert (untracked["outcome"], untracked["reason"]) == ("not_tracked", "untracked")
    email.refresh_from_db()
    assert email.untracked_at is not None and TrackedEmail.objects.count() == 1

    again = track(cmd, "--track", "--regarding", "account:Northwind")
    assert (again["outcome"], again["reason"]) == ("tracked", "manual")
    email.refresh_from_db()
    assert email.untracked_at is None and email.regarding == northwind and TrackedEmail.objects.count() == 1
    # one decision per action, each superseding the one before; the log's current decision is the last
    assert Decision.objects.filter(mailbox=alice).count() == 6
    assert list(Decision.objects.filter(superseded_by__isnull=True).values_list("pk", flat=True)) == [
        again["decision_id"]
    ]
    actions = list(
        AuditEvent.objects.filter(action__startswith="manual_").values_list("action", "actor__username")
    )
    assert actions == [
        ("manual_tracking", "alice"),
        ("manual_regarding", None),
        ("manual_regarding", None),
        ("manual_untracked", "alice"),
        ("manual_tracking", None),
    ]
    made_by = Decision.objects.get(pk=untracked["decision_id"]).made_by
    assert made_by == user_of(alice)


def test_an_untracked_email_is_not_tracked_again_by_a_scan(alice, bob, decided, cmd, tmp_path):
    track(cmd, "--track")
    track(cmd, "--untrack")
    path = tmp_path / "again.eml"
    path.write_bytes(MAIL.replace(b"To: alice@contoso.com", b"To: alice@contoso.com, bob@contoso.com"))
    Mailbox.objects.filter(pk=bob.pk).update(enabled=True)
    cmd("personaloptions", "bob", "--track", "0")
    args = ("ingest", "--mailbox", "bob@contoso.com", "--folder", "inbox", "--json", str(path))
    (row,) = cmd(*args).json_lines()
    assert (row["outcome"], row["reason"]) == ("not_tracked", "untracked")
    assert TrackedEmail.objects.count() == 1 and TrackedEmail.objects.get().untracked_at is not None


def test_a_sent_item_can_be_tracked_by_hand_while_sent_items_tracking_is_off(alice, cmd, tmp_path):
    path = tmp_path / "sent.eml"
    path.write_bytes(
        MAIL.replace(
            b"From: Buyer <buyer@northwind.example>\nTo: alice@contoso.com",
            b"From: alice@contoso.com\nTo: buyer@northwind.example",
        )
    )
    cmd("ingest", "--mailbox", "alice@contoso.com", "--folder", "sentitems", str(path))
    assert Decision.objects.get().reason == "sent_items_disabled"
    row = track(cmd, "--track")
    assert (row["outcome"], row["reason"], row["direction"]) == ("tracked", "manual", "outgoing")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--untrack"], "not tracked; use --track"),
        (["--clear-regarding"], "not tracked; use --track"),
        ([], "say what to do"),
        (["--track", "--as", "nobody"], "no active user"),
        (["--track", "--as", "bob"], "only the mailbox's owner or an admin"),
        (["--untrack", "--regarding", "account:Northwind"], "goes with --track"),
    ],
)
def test_it_refuses_what_cannot_be_done_in_one_line(alice, bob, decided, northwind, cmd, args, message):
    with pytest.raises(CommandError, match=message):
        cmd("track", "--mailbox", "alice@contoso.com", "--message-id", MID, *args)
    assert (
        Decision.objects.count() == 1 and not AuditEvent.objects.filter(action__startswith="manual_").exists()
    )


def test_it_refuses_an_unknown_message_and_a_tracked_one_to_track_again(alice, decided, cmd):
    with pytest.raises(CommandError, match="has no decision"):
        cmd("track", "--mailbox", "alice@contoso.com", "--message-id", "<nope@x>", "--track")
    track(cmd, "--track")
    with pytest.raises(CommandError, match="tracked already"):
        cmd("track", "--mailbox", "alice@contoso.com", "--message-id", MID, "--track")


def test_an_admin_may_act_on_anyones_mailbox(alice, decided, admin: User, cmd):
    row = track(cmd, "--track", "--as", admin.get_username())
    assert Decision.objects.get(pk=row["decision_id"]).made_by == admin
