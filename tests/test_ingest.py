"""`ingest` end to end against the database: JSON Lines, idempotence, dedup, acceptance, correlation,
start dates, Sent Items, auto-create, scan runs and refused requests (tracking-rules §3–§8)."""

from __future__ import annotations

import base64
import email.utils
import mailbox as mailboxlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management.base import CommandError

from tests.conftest import make_mailbox
from tracking import pipeline
from tracking.actions import check_set_org_setting, do_set_personal_options
from tracking.models import CrmRecord, Decision, Mailbox, ScanRun, TrackedEmail

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
JSON_KEYS = {
    "message_id",
    "folder",
    "outcome",
    "reason",
    "accepting_entity",
    "correlation_method",
    "correlated_message_id",
    "regarding",
    "direction",
    "new",
    "trace",
    "decision_id",
    "supersedes",
    "round",
    "owner",
    "queue_items",
}


# ---------------------------------------------------------------------------------------------
# Helpers: messages as files, and running ingest
# ---------------------------------------------------------------------------------------------


def message(
    *,
    frm: str = "Ann Example <ann@example.net>",
    to: str | None = "alice@contoso.com",
    subject: str = "Hello",
    date: datetime | None = T0,
    message_id: str | None = "<hello@example.net>",
    body: str = "Hello there.\n",
    **headers: str,
) -> bytes:
    """RFC 5322 bytes; keyword headers are spelled with underscores (in_reply_to → In-Reply-To)."""
    fields: dict[str, str | None] = {
        "From": frm,
        "To": to,
        "Subject": subject,
        "Date": email.utils.format_datetime(date) if date else None,
        "Message-ID": message_id,
    }
    fields.update({k.replace("_", "-").title(): v for k, v in headers.items()})
    lines = [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def write_eml(directory: Path, name: str, **kw: Any) -> Path:
    path = directory / name
    path.write_bytes(message(**kw))
    return path


def write_mbox(path: Path, *messages: bytes) -> Path:
    box = mailboxlib.mbox(path)
    try:
        for m in messages:
            box.add(m)
        box.flush()
    finally:
        box.close()
    return path


def thread_index(*blocks: int) -> str:
    """A base64 Thread-Index: a 22-byte conversation header, then one 5-byte block per reply level."""
    raw = bytes([1]) + b"CONVERSATION-7" + bytes(7)
    for b in blocks:
        raw += b.to_bytes(5, "big")
    return base64.b64encode(raw).decode()


def ingest(cmd, address: str, folder: str, *paths: Path, regarding: str | None = None) -> list[dict]:
    args = ["ingest", "--mailbox", address, "--folder", folder, *map(str, paths), "--json"]
    if regarding:
        args += ["--regarding", regarding]
    return cmd(*args).json_lines()


def one(rows: list[dict]) -> dict:
    assert len(rows) == 1, rows
    return rows[0]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["message_id"]: r for r in rows}


def contact(name: str, address: str, owner: User | None = None) -> CrmRecord:
    return CrmRecord.objects.create(kind="contact", name=name, email1=address, owner=owner)


def trace_checks(row: dict) -> list[str]:
    return [s["check"] for s in row["trace"]]


def table_counts() -> tuple[int, int, int, int]:
    return (
        Decision.objects.count(),
        TrackedEmail.objects.count(),
        ScanRun.objects.count(),
        CrmRecord.objects.count(),
    )


@pytest.fixture
def carol(exchange_profile) -> Mailbox:
    """carol@contoso.com, a third Exchange user mailbox, Track option 0 (all)."""
    return make_mailbox("carol@contoso.com", "carol", exchange_profile, track=0)


@pytest.fixture
def support(cmd, exchange_profile) -> Mailbox:
    """support@contoso.com, the mailbox of queue Support (a queue's Track option defaults to 0)."""
    cmd(
        "mailbox",
        "add",
        "support@contoso.com",
        "--queue",
        "Support",
        "--profile",
        exchange_profile.name,
        "--approve",
    )
    return Mailbox.objects.get(email_address="support@contoso.com")


def set_track(mailbox: Mailbox, track: int) -> None:
    assert mailbox.user is not None
    do_set_personal_options(mailbox.user, track=track)


def syncing(*mailboxes: Mailbox) -> None:
    """As after Test & Enable: only mailboxes that sync make candidates (tracking-rules §4)."""
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes]).update(enabled=True)


# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------


class TestJsonLines:
    def test_it_writes_exactly_the_documented_keys(self, alice, carol, cmd, tmp_path):
        contact("Contoso Pharma", "buyer@pharma.example")
        parent = write_eml(tmp_path, "parent.eml", to="alice@contoso.com", message_id="<p1@example.net>")
        ingest(cmd, "alice@contoso.com", "inbox", parent, regarding="contact:Contoso Pharma")
        reply = write_eml(
            tmp_path,
            "reply.eml",
            to="alice@contoso.com, carol@contoso.com",
            subject="RE: Hello",
            message_id="<r1@example.net>",
            in_reply_to="<p1@example.net>",
            date=T0 + timedelta(hours=1),
        )
        row = one(ingest(cmd, "alice@contoso.com", "inbox", reply))

        assert set(row) == JSON_KEYS
        assert row["message_id"] == "<r1@example.net>"
        assert row["folder"] == "inbox"
        assert row["outcome"] == "tracked"
        assert row["reason"] == "accepted_correlated"
        assert row["accepting_entity"] == {"kind": "user", "name": "alice", "email": "alice@contoso.com"}
        assert row["correlation_method"] == "in_reply_to"
        assert row["correlated_message_id"] == "<p1@example.net>"
        assert row["regarding"] == {"kind": "contact", "name": "Contoso Pharma"}
        assert row["direction"] == "incoming"
        assert row["new"] is True
        assert row["trace"] and all(set(step) == {"check", "result", "detail"} for step in row["trace"])
        assert row["trace"][-1]["check"] == "outcome"
        assert row["owner"] == {"kind": "user", "name": "alice"}
        assert row["queue_items"] == []

    def test_it_writes_nulls_for_what_a_decision_lacks(self, alice, cmd, tmp_path):
        row = one(ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "a.eml")))

        assert set(row) == JSON_KEYS
        assert (row["outcome"], row["reason"]) == ("not_tracked", "no_correlation")
        assert row["accepting_entity"] is None
        assert row["correlation_method"] is None
        assert row["correlated_message_id"] is None
        assert row["regarding"] is None
        assert row["owner"] is None
        assert row["queue_items"] == []

    def test_it_prints_a_summary_without_json(self, alice, cmd, tmp_path):
        write_eml(tmp_path, "a.eml", message_id="<a@example.net>")
        write_eml(tmp_path, "b.eml", message_id="<b@example.net>")
        out = cmd("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(tmp_path)).out

        assert "2 message(s) into alice@contoso.com/inbox" in out
        assert "not_tracked 2" in out
        assert "2 new decision(s)" in out


# ---------------------------------------------------------------------------------------------
# Idempotence (tracking-rules §7)
# ---------------------------------------------------------------------------------------------


class TestIdempotence:
    def test_it_creates_nothing_when_the_same_ingest_runs_twice(self, alice, carol, cmd, tmp_path):
        box = write_mbox(
            tmp_path / "in.mbox",
            message(to="carol@contoso.com", message_id="<m1@example.net>"),
            message(
                to="carol@contoso.com",
                message_id="<m2@example.net>",
                subject="Second",
                in_reply_to="<m1@example.net>",
                date=T0 + timedelta(minutes=5),
            ),
            message(to="carol@contoso.com", message_id=None, subject="No id", date=T0 + timedelta(minutes=9)),
        )
        first = ingest(cmd, "carol@contoso.com", "inbox", box)
        counts = (Decision.objects.count(), TrackedEmail.objects.count())
        second = ingest(cmd, "carol@contoso.com", "inbox", box)

        assert [r["outcome"] for r in first] == ["tracked"] * 3
        assert all(r["new"] for r in first)
        assert not any(r["new"] for r in second)
        assert (Decision.objects.count(), TrackedEmail.objects.count()) == counts == (3, 3)
        strip = [{k: v for k, v in r.items() if k != "new"} for r in first]
        assert [{k: v for k, v in r.items() if k != "new"} for r in second] == strip

    def test_it_gives_a_message_without_message_id_a_stable_synthetic_one(self, carol, cmd, tmp_path):
        path = write_eml(tmp_path, "noid.eml", to="carol@contoso.com", message_id=None)
        first = one(ingest(cmd, "carol@contoso.com", "inbox", path))
        second = one(ingest(cmd, "carol@contoso.com", "inbox", path))

        assert first["message_id"].endswith("@synthetic.syncadmin.invalid>")
        assert second["message_id"] == first["message_id"]
        assert (first["new"], second["new"]) == (True, False)
        assert Decision.objects.get().message_id_synthetic is True
        assert TrackedEmail.objects.count() == 1

    def test_it_records_an_unparseable_file_as_failed_and_carries_on(self, carol, cmd, tmp_path):
        write_eml(tmp_path, "1-good.eml", to="carol@contoso.com", message_id="<g1@example.net>")
        (tmp_path / "2-bad.eml").write_bytes(b"\x00\x01\x02 not a message at all\n\n\xff\xfe")
        (tmp_path / "3-empty.eml").write_bytes(b"")
        write_eml(tmp_path, "4-good.eml", to="carol@contoso.com", message_id="<g2@example.net>")

        first = ingest(cmd, "carol@contoso.com", "inbox", tmp_path)
        second = ingest(cmd, "carol@contoso.com", "inbox", tmp_path)

        assert [(r["outcome"], r["reason"]) for r in first] == [
            ("tracked", "accepted_all"),
            ("failed", "unparseable"),
            ("failed", "unparseable"),
            ("tracked", "accepted_all"),
        ]
        assert first[1]["message_id"] != first[2]["message_id"]
        assert first[1]["trace"][0]["check"] == "parse"
        assert [r["message_id"] for r in second] == [r["message_id"] for r in first]
        assert not any(r["new"] for r in second)
        assert Decision.objects.count() == 4
        assert TrackedEmail.objects.count() == 2
        assert set(ScanRun.objects.values_list("status", flat=True)) == {"succeeded"}

    def test_it_decides_a_message_found_twice_in_one_file_once(self, carol, cmd, tmp_path):
        same = message(to="carol@contoso.com", message_id="<twice@example.net>")
        rows = ingest(cmd, "carol@contoso.com", "inbox", write_mbox(tmp_path / "twice.mbox", same, same))

        assert [r["new"] for r in rows] == [True, False]
        assert rows[0]["outcome"] == rows[1]["outcome"] == "tracked"
        assert Decision.objects.count() == TrackedEmail.objects.count() == 1

    def test_it_finds_earlier_decisions_across_pages(self, carol, cmd, tmp_path):
        msgs = [
            message(to="carol@contoso.com", message_id=f"<n{i}@example.net>", date=T0 + timedelta(minutes=i))
            for i in range(pipeline.PAGE_SIZE + 5)
        ]
        box = write_mbox(tmp_path / "big.mbox", *msgs, msgs[3])  # the last one repeats one of the first page
        rows = ingest(cmd, "carol@contoso.com", "inbox", box)

        assert len(rows) == pipeline.PAGE_SIZE + 6
        assert rows[-1]["message_id"] == "<n3@example.net>"
        assert rows[-1]["new"] is False
        assert Decision.objects.count() == TrackedEmail.objects.count() == pipeline.PAGE_SIZE + 5


# ---------------------------------------------------------------------------------------------
# Duplicates and direction (tracking-rules §7)
# ---------------------------------------------------------------------------------------------


class TestDuplicates:
    def test_it_links_a_message_tracked_by_another_mailbox(self, alice, bob, cmd, tmp_path):
        set_track(alice, 0)
        set_track(bob, 0)
        path = write_eml(
            tmp_path, "m.eml", to="alice@contoso.com, bob@contoso.com", message_id="<both@example.net>"
        )

        a = one(ingest(cmd, "alice@contoso.com", "inbox", path))
        b = one(ingest(cmd, "bob@contoso.com", "inbox", path))

        assert (a["outcome"], a["reason"]) == ("tracked", "accepted_all")
        assert (b["outcome"], b["reason"]) == ("already_tracked", "duplicate_message_id")
        email_ = TrackedEmail.objects.get()
        assert email_.receiving_mailbox == alice
        assert Decision.objects.get(mailbox=alice).tracked_email == email_
        assert Decision.objects.get(mailbox=bob).tracked_email == email_

    def test_it_carries_the_regarding_of_the_existing_email_onto_the_duplicate(
        self, alice, bob, cmd, tmp_path
    ):
        contact("Fabrikam", "buyer@fabrikam.example")
        path = write_eml(tmp_path, "m.eml", to="alice@contoso.com, bob@contoso.com")
        ingest(cmd, "alice@contoso.com", "inbox", path, regarding="contact:Fabrikam")
        b = one(ingest(cmd, "bob@contoso.com", "inbox", path))

        assert (b["outcome"], b["regarding"]) == ("already_tracked", {"kind": "contact", "name": "Fabrikam"})

    def test_it_tracks_internal_mail_once_per_direction(self, alice, bob, cmd, tmp_path):
        check_set_org_setting("AutoTrackSentFolderItems", "true")
        set_track(alice, 0)
        set_track(bob, 0)
        path = write_eml(tmp_path, "internal.eml", frm="Alice <alice@contoso.com>", to="bob@contoso.com")

        sent = one(ingest(cmd, "alice@contoso.com", "sentitems", path))
        received = one(ingest(cmd, "bob@contoso.com", "inbox", path))

        assert (sent["outcome"], sent["reason"], sent["direction"]) == ("tracked", "accepted_all", "outgoing")
        assert (received["outcome"], received["reason"], received["direction"]) == (
            "tracked",
            "accepted_all",
            "incoming",
        )
        emails = {e.direction: e for e in TrackedEmail.objects.all()}
        assert set(emails) == {"outgoing", "incoming"}
        assert emails["outgoing"].owner == alice.user
        assert emails["incoming"].owner == bob.user
        assert Decision.objects.get(mailbox=bob).tracked_email == emails["incoming"]

    def test_it_tracks_internal_mail_once_per_direction_whichever_comes_first(
        self, alice, bob, cmd, tmp_path
    ):
        check_set_org_setting("AutoTrackSentFolderItems", "true")
        set_track(alice, 0)
        set_track(bob, 0)
        path = write_eml(tmp_path, "internal.eml", frm="alice@contoso.com", to="bob@contoso.com")

        received = one(ingest(cmd, "bob@contoso.com", "inbox", path))
        sent = one(ingest(cmd, "alice@contoso.com", "sentitems", path))

        assert (received["outcome"], sent["outcome"]) == ("tracked", "tracked")
        assert sorted(TrackedEmail.objects.values_list("direction", flat=True)) == ["incoming", "outgoing"]

    def test_it_tracks_internal_mail_once_without_two_activities(self, alice, bob, cmd, tmp_path):
        check_set_org_setting("AutoTrackSentFolderItems", "true")
        check_set_org_setting("TrackEmailsBetweenUsersAsTwoActivities", "false")
        set_track(alice, 0)
        set_track(bob, 0)
        path = write_eml(tmp_path, "internal.eml", frm="Alice <alice@contoso.com>", to="bob@contoso.com")

        sent = one(ingest(cmd, "alice@contoso.com", "sentitems", path))
        received = one(ingest(cmd, "bob@contoso.com", "inbox", path))

        assert sent["outcome"] == "tracked"
        assert (received["outcome"], received["reason"]) == ("not_tracked", "internal_duplicate")
        assert TrackedEmail.objects.get().direction == "outgoing"

    def test_it_links_a_third_recipient_to_the_incoming_activity(self, alice, bob, carol, cmd, tmp_path):
        check_set_org_setting("AutoTrackSentFolderItems", "true")
        set_track(alice, 0)
        set_track(bob, 0)
        path = write_eml(
            tmp_path, "internal.eml", frm="alice@contoso.com", to="bob@contoso.com, carol@contoso.com"
        )
        ingest(cmd, "alice@contoso.com", "sentitems", path)
        ingest(cmd, "bob@contoso.com", "inbox", path)
        c = one(ingest(cmd, "carol@contoso.com", "inbox", path))

        assert (c["outcome"], c["reason"], c["direction"]) == (
            "already_tracked",
            "duplicate_message_id",
            "incoming",
        )
        assert Decision.objects.get(mailbox=carol).tracked_email == TrackedEmail.objects.get(
            direction="incoming"
        )
        assert TrackedEmail.objects.count() == 2


# ---------------------------------------------------------------------------------------------
# Acceptance: queues, recipients with mailboxes, the force override (tracking-rules §4)
# ---------------------------------------------------------------------------------------------


class TestAcceptance:
    def test_it_lets_a_queue_mailbox_accept_everything(self, support, cmd, tmp_path):
        row = one(
            ingest(
                cmd, "support@contoso.com", "inbox", write_eml(tmp_path, "q.eml", to="support@contoso.com")
            )
        )

        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_all")
        assert row["accepting_entity"] == {"kind": "queue", "name": "Support", "email": "support@contoso.com"}
        email_ = TrackedEmail.objects.get()
        assert email_.owner is None  # a queue mailbox has no owning user
        assert email_.accepting_kind == "queue"

    def test_it_lets_a_queue_in_copy_accept_for_a_user_who_tracks_nothing(
        self, alice, support, cmd, tmp_path
    ):
        set_track(alice, 4)
        syncing(support)
        path = write_eml(tmp_path, "cc.eml", to="alice@contoso.com", cc="Support <support@contoso.com>")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_all")
        assert row["accepting_entity"] == {"kind": "queue", "name": "Support", "email": "support@contoso.com"}
        candidates = [s for s in row["trace"] if s["check"].startswith("candidate:")]
        assert [(s["check"], s["result"]) for s in candidates] == [
            ("candidate: user alice", "declines"),
            ("candidate: queue Support", "accepts"),
        ]
        # Not a user accepted: the owner is the syncing mailbox's.
        assert TrackedEmail.objects.get().owner == alice.user

    def test_it_takes_the_first_accepting_recipient_and_makes_it_the_owner(
        self, alice, bob, support, cmd, tmp_path
    ):
        set_track(alice, 4)
        set_track(bob, 0)
        syncing(bob, support)
        path = write_eml(tmp_path, "m.eml", to="alice@contoso.com, bob@contoso.com", cc="support@contoso.com")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert row["accepting_entity"] == {"kind": "user", "name": "bob", "email": "bob@contoso.com"}
        assert TrackedEmail.objects.get().owner == bob.user

    def test_it_gives_the_mailbox_owners_reason_when_nobody_accepts(self, alice, bob, cmd, tmp_path):
        set_track(bob, 4)
        syncing(bob)
        path = write_eml(tmp_path, "m.eml", to="alice@contoso.com, bob@contoso.com")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert (row["outcome"], row["reason"]) == ("not_tracked", "no_correlation")
        results = [(s["check"], s["result"]) for s in row["trace"] if s["check"].startswith("candidate:")]
        assert results == [("candidate: user alice", "declines"), ("candidate: user bob", "declines")]

    def test_it_does_not_let_a_disabled_user_accept(self, alice, bob, cmd, tmp_path):
        set_track(alice, 4)
        set_track(bob, 0)
        User.objects.filter(username="bob").update(is_active=False)
        path = write_eml(tmp_path, "m.eml", to="alice@contoso.com, bob@contoso.com")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert (row["outcome"], row["reason"]) == ("not_tracked", "option_none")

    def test_it_considers_only_the_syncing_mailbox_when_told_so(self, alice, support, cmd, tmp_path):
        check_set_org_setting("UseFilteringMethodOfSyncingMailboxOnlyForCorrelation", "true")
        set_track(alice, 4)
        path = write_eml(tmp_path, "cc.eml", to="alice@contoso.com", cc="support@contoso.com")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert (row["outcome"], row["reason"]) == ("not_tracked", "option_none")

    def test_it_lets_the_force_override_make_a_user_accept(self, alice, cmd, tmp_path):
        set_track(alice, 4)
        check_set_org_setting("SSSForceFilteringMethodForUserMailboxes", "0")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "m.eml")))

        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_all")
        assert row["accepting_entity"]["kind"] == "user"
        owner_step = next(s for s in row["trace"] if s["check"] == "candidate: user alice")
        assert "SSSForceFilteringMethodForUserMailboxes" in owner_step["detail"]

    def test_it_does_not_force_queues(self, alice, support, cmd, tmp_path):
        check_set_org_setting("SSSForceFilteringMethodForUserMailboxes", "4")
        set_track(alice, 0)
        syncing(support)
        path = write_eml(tmp_path, "cc.eml", to="alice@contoso.com", cc="support@contoso.com")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert row["accepting_entity"] == {"kind": "queue", "name": "Support", "email": "support@contoso.com"}


# ---------------------------------------------------------------------------------------------
# Correlation through the database (tracking-rules §5)
# ---------------------------------------------------------------------------------------------


class TestCorrelation:
    def test_it_correlates_a_later_reply_and_inherits_the_manual_regarding(self, alice, cmd, tmp_path):
        contact("Northwind Buyer", "buyer@northwind.example")
        parent = write_eml(tmp_path, "parent.eml", message_id="<parent@example.net>", subject="Order 17")
        manual = one(ingest(cmd, "alice@contoso.com", "inbox", parent, regarding="contact:Northwind Buyer"))
        reply = write_eml(
            tmp_path,
            "reply.eml",
            message_id="<reply@example.net>",
            subject="RE: Order 17",
            in_reply_to="<parent@example.net>",
            references="<parent@example.net>",
            date=T0 + timedelta(hours=2),
        )
        row = one(ingest(cmd, "alice@contoso.com", "inbox", reply))

        assert (manual["outcome"], manual["reason"]) == ("tracked", "manual")
        assert manual["regarding"] == {"kind": "contact", "name": "Northwind Buyer"}
        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_correlated")
        assert row["correlation_method"] == "in_reply_to"
        assert row["correlated_message_id"] == "<parent@example.net>"
        assert row["regarding"] == {"kind": "contact", "name": "Northwind Buyer"}
        parent_email = TrackedEmail.objects.get(message_id="<parent@example.net>")
        reply_email = TrackedEmail.objects.get(message_id="<reply@example.net>")
        assert reply_email.correlated_email == parent_email
        assert (
            reply_email.regarding == parent_email.regarding == CrmRecord.objects.get(name="Northwind Buyer")
        )
        assert Decision.objects.get(message_id="<reply@example.net>").regarding == parent_email.regarding

    def test_it_tracks_manually_regardless_of_option_and_start_date(self, alice, cmd, tmp_path):
        set_track(alice, 4)
        Mailbox.objects.filter(pk=alice.pk).update(process_emails_received_after=T0 + timedelta(days=30))
        contact("Northwind Buyer", "buyer@northwind.example")
        row = one(
            ingest(
                cmd,
                "alice@contoso.com",
                "inbox",
                write_eml(tmp_path, "old.eml"),
                regarding="contact:Northwind Buyer",
            )
        )

        assert (row["outcome"], row["reason"]) == ("tracked", "manual")
        assert TrackedEmail.objects.get().owner == alice.user

    def test_it_tracks_manually_a_message_that_was_not_tracked(self, alice, cmd, tmp_path):
        contact("Northwind Buyer", "buyer@northwind.example")
        path = write_eml(tmp_path, "m.eml")
        first = one(ingest(cmd, "alice@contoso.com", "inbox", path))
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path, regarding="contact:Northwind Buyer"))

        assert first["outcome"] == "not_tracked"
        assert (row["outcome"], row["reason"]) == ("tracked", "manual")
        assert TrackedEmail.objects.get().regarding == CrmRecord.objects.get(name="Northwind Buyer")

    def test_it_correlates_a_reply_in_the_same_file_as_its_parent(self, carol, cmd, tmp_path):
        box = write_mbox(
            tmp_path / "thread.mbox",
            message(to="carol@contoso.com", message_id="<p@example.net>", subject="Kick-off"),
            message(
                to="carol@contoso.com",
                message_id="<r@example.net>",
                subject="RE: Kick-off",
                in_reply_to="<p@example.net>",
                date=T0 + timedelta(minutes=30),
            ),
        )
        rows = by_id(ingest(cmd, "carol@contoso.com", "inbox", box))

        assert rows["<r@example.net>"]["correlation_method"] == "in_reply_to"
        assert rows["<r@example.net>"]["correlated_message_id"] == "<p@example.net>"
        reply_email = TrackedEmail.objects.get(message_id="<r@example.net>")
        assert reply_email.correlated_email == TrackedEmail.objects.get(message_id="<p@example.net>")

    def test_it_lets_a_reply_in_the_same_file_accept_and_inherit_through_its_parent(
        self, alice, cmd, tmp_path
    ):
        contact("Tailspin", "ops@tailspin.example")
        root = write_eml(tmp_path, "root.eml", message_id="<root@example.net>")
        ingest(cmd, "alice@contoso.com", "inbox", root, regarding="contact:Tailspin")
        box = write_mbox(
            tmp_path / "thread.mbox",
            message(
                message_id="<a1@example.net>", in_reply_to="<root@example.net>", date=T0 + timedelta(hours=1)
            ),
            message(
                message_id="<a2@example.net>", in_reply_to="<a1@example.net>", date=T0 + timedelta(hours=2)
            ),
        )
        rows = by_id(ingest(cmd, "alice@contoso.com", "inbox", box))

        for mid, parent in (
            ("<a1@example.net>", "<root@example.net>"),
            ("<a2@example.net>", "<a1@example.net>"),
        ):
            assert (rows[mid]["outcome"], rows[mid]["reason"]) == ("tracked", "accepted_correlated")
            assert rows[mid]["correlated_message_id"] == parent
            assert rows[mid]["regarding"] == {"kind": "contact", "name": "Tailspin"}

    def test_it_does_not_correlate_a_reply_that_comes_before_its_parent(self, alice, cmd, tmp_path):
        box = write_mbox(
            tmp_path / "thread.mbox",
            message(message_id="<late@example.net>", in_reply_to="<early@example.net>"),
            message(message_id="<early@example.net>"),
        )
        rows = ingest(cmd, "alice@contoso.com", "inbox", box)

        assert [r["reason"] for r in rows] == ["no_correlation", "no_correlation"]

    def test_it_correlates_by_tracking_token(self, alice, cmd, tmp_path):
        contact("Litware", "it@litware.example")
        parent = write_eml(tmp_path, "p.eml", message_id="<tok-p@example.net>", subject="Offer CRM:0001042")
        ingest(cmd, "alice@contoso.com", "inbox", parent, regarding="contact:Litware")
        reply = write_eml(
            tmp_path,
            "r.eml",
            message_id="<tok-r@example.net>",
            subject="AW: Offer crm:0001042",
            date=T0 + timedelta(days=1),
        )
        row = one(ingest(cmd, "alice@contoso.com", "inbox", reply))

        assert TrackedEmail.objects.get(message_id="<tok-p@example.net>").tracking_token == "CRM:0001042"
        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_correlated")
        assert row["correlation_method"] == "tracking_token"
        assert row["correlated_message_id"] == "<tok-p@example.net>"
        assert row["regarding"] == {"kind": "contact", "name": "Litware"}

    def test_it_still_recognises_a_token_made_under_an_earlier_prefix(self, alice, cmd, tmp_path):
        parent = write_eml(tmp_path, "p.eml", message_id="<tok-p@example.net>", subject="Offer CRM:0001042")
        set_track(alice, 0)
        ingest(cmd, "alice@contoso.com", "inbox", parent)
        set_track(alice, 1)
        check_set_org_setting("TrackingPrefix", "SYNC")
        reply = write_eml(
            tmp_path,
            "r.eml",
            message_id="<tok-r@example.net>",
            subject="RE: Offer CRM:0001042",
            date=T0 + timedelta(days=1),
        )
        row = one(ingest(cmd, "alice@contoso.com", "inbox", reply))

        assert (row["outcome"], row["correlation_method"]) == ("tracked", "tracking_token")

    @pytest.mark.parametrize(
        "subject", ["Invoice:2024 printer", "Invoice:0001042 printer", "XYZ:0001042 printer"]
    )
    def test_it_does_not_take_any_word_colon_number_for_a_tracking_token(
        self, alice, carol, cmd, tmp_path, subject
    ):
        first = write_eml(
            tmp_path,
            "a.eml",
            frm="a@one.example",
            to="carol@contoso.com",
            message_id="<inv-a@x>",
            subject=subject,
        )
        ingest(cmd, "carol@contoso.com", "inbox", first)
        other = write_eml(
            tmp_path,
            "b.eml",
            frm="b@two.example",
            message_id="<inv-b@x>",
            subject=subject.replace("printer", "laptop"),
            date=T0 + timedelta(days=1),
        )
        row = one(ingest(cmd, "alice@contoso.com", "inbox", other))

        assert TrackedEmail.objects.get().tracking_token == ""
        assert (row["outcome"], row["reason"], row["correlation_method"]) == (
            "not_tracked",
            "no_correlation",
            None,
        )

    def test_it_correlates_by_thread_index_with_the_nearest_tracked_ancestor(self, alice, cmd, tmp_path):
        contact("Root Co", "root@root.example")
        contact("Child Co", "child@child.example")
        root = write_eml(tmp_path, "0.eml", message_id="<t0@example.net>", thread_index=thread_index())
        child = write_eml(
            tmp_path,
            "1.eml",
            message_id="<t1@example.net>",
            thread_index=thread_index(1),
            date=T0 + timedelta(hours=1),
        )
        ingest(cmd, "alice@contoso.com", "inbox", root, regarding="contact:Root Co")
        ingest(cmd, "alice@contoso.com", "inbox", child, regarding="contact:Child Co")
        grandchild = write_eml(
            tmp_path,
            "3.eml",
            message_id="<t3@example.net>",
            subject="RE: RE: Hello",
            thread_index=thread_index(1, 2, 3),
            date=T0 + timedelta(hours=3),
        )
        cousin = write_eml(
            tmp_path,
            "4.eml",
            message_id="<t4@example.net>",
            subject="RE: Hello",
            thread_index=thread_index(9),
            date=T0 + timedelta(hours=4),
        )
        rows = by_id(ingest(cmd, "alice@contoso.com", "inbox", grandchild, cousin))

        near = rows["<t3@example.net>"]
        assert (near["outcome"], near["correlation_method"]) == ("tracked", "conversation_index")
        assert near["correlated_message_id"] == "<t1@example.net>"
        assert near["regarding"] == {"kind": "contact", "name": "Child Co"}
        far = rows["<t4@example.net>"]
        assert far["correlated_message_id"] == "<t0@example.net>"
        assert far["regarding"] == {"kind": "contact", "name": "Root Co"}


# ---------------------------------------------------------------------------------------------
# Start date, not progress (tracking-rules §3.5)
# ---------------------------------------------------------------------------------------------


class TestStartDate:
    def test_it_turns_away_messages_received_before_the_mailbox_start_date(self, carol, cmd, tmp_path):
        Mailbox.objects.filter(pk=carol.pk).update(process_emails_received_after=T0)
        old = write_eml(
            tmp_path, "old.eml", to="carol@contoso.com", message_id="<old@x>", date=T0 - timedelta(days=1)
        )
        new = write_eml(
            tmp_path, "new.eml", to="carol@contoso.com", message_id="<new@x>", date=T0 + timedelta(days=1)
        )
        rows = by_id(ingest(cmd, "carol@contoso.com", "inbox", old, new))

        assert (rows["<old@x>"]["outcome"], rows["<old@x>"]["reason"]) == ("not_tracked", "before_watermark")
        assert rows["<new@x>"]["outcome"] == "tracked"
        assert TrackedEmail.objects.get().message_id == "<new@x>"

    def test_it_compares_received_times_in_utc(self, carol, cmd, tmp_path):
        Mailbox.objects.filter(pk=carol.pk).update(process_emails_received_after=T0)  # 09:00 UTC
        path = tmp_path / "tz.eml"
        # 10:30 at UTC+2 is 08:30 UTC: before the start date although the wall-clock time is later.
        path.write_bytes(message(to="carol@contoso.com", date=None, Date="Mon, 02 Mar 2026 10:30:00 +0200"))

        assert one(ingest(cmd, "carol@contoso.com", "inbox", path))["reason"] == "before_watermark"

    def test_it_evaluates_a_message_that_turns_up_late_with_an_older_received_time(
        self, carol, cmd, tmp_path
    ):
        # delayed delivery, moved out of Junk Email, restored: older than mail already processed
        newest = T0 + timedelta(days=3)
        box = write_mbox(
            tmp_path / "in.mbox",
            message(to="carol@contoso.com", message_id="<w1@x>", date=T0),
            message(to="carol@contoso.com", message_id="<w2@x>", date=newest),
        )
        assert [r["outcome"] for r in ingest(cmd, "carol@contoso.com", "inbox", box)] == ["tracked"] * 2
        late = write_eml(
            tmp_path, "late.eml", to="carol@contoso.com", message_id="<w3@x>", date=T0 - timedelta(days=30)
        )
        row = one(ingest(cmd, "carol@contoso.com", "inbox", late))

        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_all")

    def test_it_evaluates_every_message_received_in_the_same_second_across_pages(self, carol, cmd, tmp_path):
        same_second = [
            message(to="carol@contoso.com", message_id=f"<s{i}@x>", date=T0)
            for i in range(pipeline.PAGE_SIZE + 3)
        ]
        rows = ingest(cmd, "carol@contoso.com", "inbox", write_mbox(tmp_path / "same.mbox", *same_second))

        assert Counter(r["outcome"] for r in rows) == {"tracked": pipeline.PAGE_SIZE + 3}
        again = ingest(cmd, "carol@contoso.com", "inbox", write_mbox(tmp_path / "again.mbox", *same_second))
        assert {r["new"] for r in again} == {False}  # decided once: the Message-ID is the key, not the time

    def test_it_evaluates_older_mail_never_seen_once_the_start_date_is_lowered(self, carol, cmd, tmp_path):
        Mailbox.objects.filter(pk=carol.pk).update(process_emails_received_after=T0)
        older = write_eml(
            tmp_path, "older.eml", to="carol@contoso.com", message_id="<o@x>", date=T0 - timedelta(days=2)
        )
        assert one(ingest(cmd, "carol@contoso.com", "inbox", older))["reason"] == "before_watermark"
        Mailbox.objects.filter(pk=carol.pk).update(process_emails_received_after=T0 - timedelta(days=7))
        unseen = write_eml(
            tmp_path, "unseen.eml", to="carol@contoso.com", message_id="<u@x>", date=T0 - timedelta(days=2)
        )

        assert one(ingest(cmd, "carol@contoso.com", "inbox", unseen))["outcome"] == "tracked"

    def test_it_applies_the_start_date_to_every_folder_alike(self, carol, cmd, tmp_path):
        check_set_org_setting("AutoTrackSentFolderItems", "true")
        ingest(
            cmd,
            "carol@contoso.com",
            "inbox",
            write_eml(
                tmp_path, "i.eml", to="carol@contoso.com", message_id="<i@x>", date=T0 + timedelta(days=5)
            ),
        )
        sent = write_eml(
            tmp_path, "s.eml", frm="carol@contoso.com", to="someone@example.net", message_id="<s@x>"
        )
        row = one(ingest(cmd, "carol@contoso.com", "sentitems", sent))

        assert (row["outcome"], row["direction"]) == ("tracked", "outgoing")

    def test_it_applies_the_later_of_the_profile_and_mailbox_start_dates(
        self, carol, exchange_profile, cmd, tmp_path
    ):
        Mailbox.objects.filter(pk=carol.pk).update(process_emails_received_after=T0 - timedelta(days=10))
        exchange_profile.process_emails_received_after = T0
        exchange_profile.save()
        between = write_eml(
            tmp_path, "b.eml", to="carol@contoso.com", message_id="<b@x>", date=T0 - timedelta(days=2)
        )
        after = write_eml(
            tmp_path, "c.eml", to="carol@contoso.com", message_id="<c@x>", date=T0 + timedelta(hours=1)
        )
        rows = by_id(ingest(cmd, "carol@contoso.com", "inbox", between, after))

        assert rows["<b@x>"]["reason"] == "before_watermark"
        assert rows["<c@x>"]["outcome"] == "tracked"

    def test_it_applies_the_mailbox_start_date_when_it_is_the_later_one(
        self, carol, exchange_profile, cmd, tmp_path
    ):
        exchange_profile.process_emails_received_after = T0 - timedelta(days=10)
        exchange_profile.save()
        Mailbox.objects.filter(pk=carol.pk).update(process_emails_received_after=T0)
        between = write_eml(
            tmp_path, "b.eml", to="carol@contoso.com", message_id="<b@x>", date=T0 - timedelta(days=2)
        )

        assert one(ingest(cmd, "carol@contoso.com", "inbox", between))["reason"] == "before_watermark"


# ---------------------------------------------------------------------------------------------
# Sent Items (tracking-rules §3.2)
# ---------------------------------------------------------------------------------------------


class TestSentItems:
    def sent(self, tmp_path: Path, sender: str) -> Path:
        return write_eml(tmp_path, "sent.eml", frm=sender, to="customer@example.net", message_id="<sent@x>")

    def test_it_does_not_track_sent_items_of_a_non_exchange_mailbox(self, imap_profile, cmd, tmp_path):
        make_mailbox("dave@contoso.com", "dave", imap_profile, track=0)
        check_set_org_setting("AutoTrackSentFolderItems", "true")
        row = one(ingest(cmd, "dave@contoso.com", "sentitems", self.sent(tmp_path, "dave@contoso.com")))

        assert (row["outcome"], row["reason"], row["direction"]) == (
            "not_tracked",
            "sent_items_unsupported_server",
            "outgoing",
        )
        assert TrackedEmail.objects.count() == 0

    def test_it_does_not_track_sent_items_when_the_setting_is_off(self, imap_profile, cmd, tmp_path):
        make_mailbox("dave@contoso.com", "dave", imap_profile, track=0)
        row = one(ingest(cmd, "dave@contoso.com", "sentitems", self.sent(tmp_path, "dave@contoso.com")))

        assert (row["outcome"], row["reason"]) == ("not_tracked", "sent_items_disabled")

    def test_it_does_not_track_exchange_sent_items_when_the_setting_is_off(self, carol, cmd, tmp_path):
        row = one(ingest(cmd, "carol@contoso.com", "sentitems", self.sent(tmp_path, "carol@contoso.com")))

        assert (row["outcome"], row["reason"]) == ("not_tracked", "sent_items_disabled")

    def test_it_tracks_the_inbox_of_a_non_exchange_mailbox(self, imap_profile, cmd, tmp_path):
        make_mailbox("dave@contoso.com", "dave", imap_profile, track=0)
        row = one(
            ingest(cmd, "dave@contoso.com", "inbox", write_eml(tmp_path, "i.eml", to="dave@contoso.com"))
        )

        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_all")

    def test_it_accepts_sent_items_by_recipient_for_option_2(self, alice, cmd, tmp_path):
        check_set_org_setting("AutoTrackSentFolderItems", "true")
        set_track(alice, 2)
        contact("Customer", "customer@example.net")
        row = one(ingest(cmd, "alice@contoso.com", "sentitems", self.sent(tmp_path, "alice@contoso.com")))

        assert (row["outcome"], row["reason"], row["direction"]) == (
            "tracked",
            "accepted_crm_party",
            "outgoing",
        )


# ---------------------------------------------------------------------------------------------
# Auto-create (tracking-rules §6)
# ---------------------------------------------------------------------------------------------


class TestAutoCreate:
    @pytest.mark.parametrize("kind", ["contact", "lead"])
    def test_it_creates_a_record_for_an_unresolved_sender(self, alice, cmd, tmp_path, kind):
        cmd("personaloptions", "alice", "--track", "0", "--auto-create", kind)
        first = write_eml(tmp_path, "1.eml", frm="Jane Roe <jane@roe.example>", message_id="<j1@x>")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", first))
        second = write_eml(
            tmp_path, "2.eml", frm="JANE@ROE.EXAMPLE", message_id="<j2@x>", date=T0 + timedelta(hours=1)
        )
        again = one(ingest(cmd, "alice@contoso.com", "inbox", second))

        record = CrmRecord.objects.get()
        assert (record.kind, record.name, record.email1, record.owner) == (
            kind,
            "Jane Roe",
            "jane@roe.example",
            alice.user,
        )
        assert row["outcome"] == again["outcome"] == "tracked"
        assert "auto-create" in trace_checks(row)
        sender = next(s for s in again["trace"] if s["check"] == "sender")
        assert sender["result"] == "resolved"

    def test_it_creates_one_record_for_two_messages_of_a_new_sender_in_one_file(self, alice, cmd, tmp_path):
        cmd("personaloptions", "alice", "--track", "0", "--auto-create", "contact")
        box = write_mbox(
            tmp_path / "in.mbox",
            message(frm="Jane Roe <jane@roe.example>", message_id="<j1@x>"),
            message(frm="Jane Roe <jane@roe.example>", message_id="<j2@x>", date=T0 + timedelta(hours=1)),
        )
        ingest(cmd, "alice@contoso.com", "inbox", box)

        assert CrmRecord.objects.filter(email1="jane@roe.example").count() == 1
        assert TrackedEmail.objects.count() == 2

    def test_it_does_not_create_a_record_when_the_org_setting_is_off(self, alice, cmd, tmp_path):
        check_set_org_setting("AutoCreateContactOnPromote", "false")
        cmd("personaloptions", "alice", "--track", "0", "--auto-create", "contact")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "1.eml")))

        assert row["outcome"] == "tracked"
        assert CrmRecord.objects.count() == 0

    def test_it_does_not_create_a_record_for_a_known_sender(self, alice, cmd, tmp_path):
        cmd("personaloptions", "alice", "--track", "0", "--auto-create", "contact")
        contact("Ann", "ann@example.net")
        ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "1.eml"))

        assert CrmRecord.objects.count() == 1

    def test_it_does_not_create_a_second_record_for_an_inactive_one(self, alice, cmd, tmp_path):
        cmd("personaloptions", "alice", "--track", "0", "--auto-create", "contact")
        CrmRecord.objects.create(kind="contact", name="Ann", email1="ann@example.net", active=False)
        row = one(ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "1.eml")))

        assert row["outcome"] == "tracked"
        assert CrmRecord.objects.count() == 1


# ---------------------------------------------------------------------------------------------
# Scan runs
# ---------------------------------------------------------------------------------------------


def test_it_records_an_ingest_scan_run_with_counts_matching_its_decisions(alice, bob, cmd, tmp_path):
    set_track(bob, 0)
    shared = write_eml(tmp_path, "0-shared.eml", to="alice@contoso.com, bob@contoso.com", message_id="<s@x>")
    ingest(cmd, "bob@contoso.com", "inbox", shared)
    set_track(alice, 2)
    contact("Ann", "ann@example.net")
    write_eml(tmp_path, "1-crm.eml", message_id="<crm@x>")
    write_eml(tmp_path, "2-other.eml", frm="nobody@else.example", message_id="<other@x>")
    (tmp_path / "3-bad.eml").write_bytes(b"no headers at all")
    rows = ingest(cmd, "alice@contoso.com", "inbox", tmp_path)

    run = ScanRun.objects.get(mailbox=alice)
    assert (run.source, run.status, run.folder, run.error) == ("ingest", "succeeded", "inbox", "")
    assert run.started_at is not None and run.finished_at is not None
    decided = Counter(Decision.objects.filter(scan_run=run).values_list("outcome", flat=True))
    assert decided == Counter(r["outcome"] for r in rows)
    assert decided == {"already_tracked": 1, "tracked": 1, "not_tracked": 1, "failed": 1}
    counts = (run.tracked, run.already_tracked, run.not_tracked, run.failed, run.items_done)
    assert counts == (1, 1, 1, 1, 4)


# ---------------------------------------------------------------------------------------------
# Refused requests write nothing
# ---------------------------------------------------------------------------------------------


class TestRefused:
    @pytest.fixture
    def eml(self, alice, tmp_path) -> Path:
        CrmRecord.objects.create(kind="contact", name="Twin", email1="twin1@example.net")
        CrmRecord.objects.create(kind="contact", name="Twin", email1="twin2@example.net")
        contact("Known", "known@example.net")
        return write_eml(tmp_path, "m.eml")

    def assert_refused(self, cmd, *args: str, match: str) -> None:
        before = table_counts()
        with pytest.raises(CommandError, match=match):
            cmd("ingest", *args)
        assert table_counts() == before
        assert ScanRun.objects.count() == 0

    def test_it_refuses_an_unknown_mailbox(self, eml, cmd):
        self.assert_refused(
            cmd, "--mailbox", "nobody@contoso.com", "--folder", "inbox", str(eml), match="no mailbox"
        )

    def test_it_refuses_a_missing_path_before_reading_any(self, eml, cmd, tmp_path):
        self.assert_refused(
            cmd,
            "--mailbox",
            "alice@contoso.com",
            "--folder",
            "inbox",
            str(eml),
            str(tmp_path / "nope.mbox"),
            match="no such file",
        )

    def test_it_refuses_an_unknown_folder(self, eml, cmd):
        self.assert_refused(cmd, "--mailbox", "alice@contoso.com", "--folder", "junk", str(eml), match="junk")

    def test_it_fails_the_run_when_a_file_inside_a_folder_cannot_be_read(self, alice, cmd, tmp_path):
        write_eml(tmp_path, "1-good.eml")
        (tmp_path / "2-gone.eml").symlink_to(tmp_path / "does-not-exist.eml")
        with pytest.raises(CommandError, match=r"2-gone\.eml"):
            cmd("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(tmp_path))

        run = ScanRun.objects.get()
        assert run.status == "failed"
        assert "2-gone.eml" in run.error

    @pytest.mark.parametrize(
        ("spec", "match"),
        [
            ("contact", "use KIND:NAME"),
            ("contact:", "use KIND:NAME"),
            ("customer:Known", "use KIND:NAME"),
            ("contact:Nobody", "no contact named"),
            ("account:Known", "no account named"),
            ("contact:Twin", "several contact records"),
        ],
    )
    def test_it_refuses_a_bad_regarding(self, eml, cmd, spec, match):
        self.assert_refused(
            cmd,
            "--mailbox",
            "alice@contoso.com",
            "--folder",
            "inbox",
            str(eml),
            "--regarding",
            spec,
            match=match,
        )
