"""The rules of issue #14 through the database and the CLI: the loader gives the engine each mailbox's
state, each tracked email's owner, a queue's owning user and the exact conversation index
(tracking-rules §4, §5.3, §6, §7), and traces are stored in English whoever asks (§8).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import translation

from tests.conftest import make_mailbox
from tests.test_ingest import T0, contact, ingest, one, set_track, syncing, thread_index, write_eml
from tracking.actions import check_add_mailbox
from tracking.choices import Approval, IncomingMethod
from tracking.models import CrmRecord, Decision, Mailbox, Queue, TrackedEmail
from tracking.pipeline import track_decision_manually


def step(row: dict, check: str) -> dict:
    [found] = [s for s in row["trace"] if s["check"] == check]
    return found


@pytest.fixture
def support(exchange_profile) -> Mailbox:
    return check_add_mailbox(
        "support@contoso.com", profile_name=exchange_profile.name, queue_name="Support", approve=True
    )


class TestInactiveRecords:
    def test_an_inactive_contact_that_is_the_only_match_resolves(self, alice, cmd, tmp_path):
        set_track(alice, 2)
        CrmRecord.objects.create(kind="contact", name="Ann", email1="ann@example.net", active=False)
        row = one(ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "m.eml")))

        assert (row["outcome"], row["reason"]) == ("tracked", "accepted_crm_party")
        assert step(row, "sender")["result"] == "resolved"
        assert "(only match, inactive)" in step(row, "sender")["detail"]

    def test_several_inactive_matches_are_unresolved_and_the_trace_says_inactive(self, alice, cmd, tmp_path):
        set_track(alice, 2)
        CrmRecord.objects.create(kind="contact", name="Ann", email1="ann@example.net", active=False)
        CrmRecord.objects.create(kind="lead", name="Ann", email1="ann@example.net", active=False)
        row = one(ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "m.eml")))

        assert (row["outcome"], row["reason"]) == ("not_tracked", "no_crm_party")
        assert "2 inactive records and no active one" in step(row, "sender")["detail"]
        assert "matches no" not in step(row, "sender")["detail"]


class TestEligibleRecipients:
    @pytest.mark.parametrize(
        "change",
        [
            {"enabled": False},
            {"approval": Approval.REJECTED},
            {"approval": Approval.PENDING},
            {"incoming_method": IncomingMethod.NONE},
        ],
    )
    def test_a_user_whose_mailbox_does_not_sync_is_no_candidate(self, alice, bob, cmd, tmp_path, change):
        set_track(alice, 4)
        set_track(bob, 0)
        syncing(bob)
        Mailbox.objects.filter(pk=bob.pk).update(**change)
        path = write_eml(tmp_path, "m.eml", to="alice@contoso.com, bob@contoso.com")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert (row["outcome"], row["reason"], row["accepting_entity"]) == (
            "not_tracked",
            "option_none",
            None,
        )
        assert step(row, "candidates")["detail"].startswith("user bob: mailbox")
        assert TrackedEmail.objects.count() == 0

    def test_a_syncing_recipient_accepts(self, alice, bob, cmd, tmp_path):
        set_track(alice, 4)
        set_track(bob, 0)
        syncing(bob)
        path = write_eml(tmp_path, "m.eml", to="alice@contoso.com, bob@contoso.com")
        row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

        assert row["accepting_entity"]["name"] == "bob"
        assert TrackedEmail.objects.get().owner == bob.user


class TestOwnership:
    def test_a_reply_belongs_to_the_owner_of_the_email_it_correlates_to_when_a_party(
        self, alice, bob, cmd, tmp_path
    ):
        set_track(alice, 0)
        parent = write_eml(tmp_path, "p.eml", message_id="<p@example.net>", to="alice@contoso.com")
        one(ingest(cmd, "alice@contoso.com", "inbox", parent))
        TrackedEmail.objects.update(owner=bob.user)  # say Bob tracked it
        reply = write_eml(
            tmp_path,
            "r.eml",
            message_id="<r@example.net>",
            date=T0 + timedelta(hours=1),
            to="alice@contoso.com",
            cc="bob@contoso.com",
            in_reply_to="<p@example.net>",
        )
        row = one(ingest(cmd, "alice@contoso.com", "inbox", reply))

        assert row["accepting_entity"]["name"] == "alice"
        assert step(row, "owner")["result"] == "1: correlated"
        assert TrackedEmail.objects.get(message_id="<r@example.net>").owner == bob.user

    def test_a_queue_mailbox_gives_its_email_to_the_first_syncing_user_recipient_else_the_queue_owner(
        self, support, bob, cmd, tmp_path
    ):
        owner = User.objects.create(username="quinn", first_name="Quinn")
        Queue.objects.filter(pk=support.queue_id).update(owner=owner)
        syncing(bob)
        first = write_eml(tmp_path, "a.eml", message_id="<a@example.net>", to="support@contoso.com")
        second = write_eml(
            tmp_path,
            "b.eml",
            message_id="<b@example.net>",
            date=T0 + timedelta(hours=1),
            to="support@contoso.com",
            cc="bob@contoso.com",
        )
        a = one(ingest(cmd, "support@contoso.com", "inbox", first))
        b = one(ingest(cmd, "support@contoso.com", "inbox", second))

        assert (step(a, "owner")["result"], step(a, "owner")["detail"]) == (
            "4: mailbox owner",
            "Quinn, the owning user of queue Support",
        )
        assert step(b, "owner")["result"] == "3: first user recipient"
        owners = dict(TrackedEmail.objects.values_list("message_id", "owner__username"))
        assert owners == {"<a@example.net>": "quinn", "<b@example.net>": "bob"}


class TestConversationIndex:
    def test_the_same_thread_index_correlates_before_an_ancestor(self, alice, cmd, tmp_path):
        set_track(alice, 0)
        root = write_eml(tmp_path, "0.eml", message_id="<0@example.net>", thread_index=thread_index())
        parent = write_eml(tmp_path, "p.eml", message_id="<p@example.net>", thread_index=thread_index(1))
        ingest(cmd, "alice@contoso.com", "inbox", root, parent)
        set_track(alice, 1)
        reply = write_eml(
            tmp_path,
            "r.eml",
            message_id="<r@example.net>",
            date=T0 + timedelta(hours=1),
            thread_index=thread_index(1),
        )
        row = one(ingest(cmd, "alice@contoso.com", "inbox", reply))

        assert (row["outcome"], row["correlation_method"]) == ("tracked", "conversation_index")
        assert row["correlated_message_id"] == "<p@example.net>"
        assert step(row, "correlation: conversation_index")["detail"] == (
            "a tracked email has the same conversation index"
        )


class TestLanguageNeutralTraces:
    def test_a_manual_tracking_by_a_german_speaking_user_stores_an_english_trace(
        self, alice, bob, cmd, tmp_path
    ):
        set_track(alice, 4)
        syncing(bob)
        contact("Ann", "ann@example.net")
        one(ingest(cmd, "alice@contoso.com", "inbox", write_eml(tmp_path, "m.eml", cc="bob@contoso.com")))
        scanned = Decision.objects.get()
        with translation.override("de"):
            processed = track_decision_manually(
                scanned, None, now=datetime(2026, 2, 1, tzinfo=UTC), acting_user=alice.user
            )
        details = " ".join(s["detail"] for s in processed.decision.trace)
        assert "Contact 'Ann'" in details and "User 'bob'" in details
        assert "Kontakt" not in details and "Benutzer" not in details


def test_make_mailbox_helper_still_makes_pending_free_mailboxes(exchange_profile):
    # The fixtures' mailboxes are approved but not enabled: recipients in tests take part only via syncing().
    m = make_mailbox("zed@contoso.com", "zed", exchange_profile)
    assert (m.approval, m.enabled) == (Approval.APPROVED, False)
