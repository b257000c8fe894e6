"""Track / Set regarding on a message a scan did not track: a manual decision beside the scan's."""

from __future__ import annotations

from django.utils import timezone

from tracking.decisions import RecordRef
from tracking.models import CrmRecord, Decision, TrackedEmail
from tracking.pipeline import track_decision_manually

REPLY = (
    b"From: Buyer <buyer@northwind.example>\nTo: alice@contoso.com\nCc: bob@contoso.com\n"
    b"Subject: Re: offer\nMessage-ID: <r1@northwind.example>\nIn-Reply-To: <o1@contoso.com>\n"
    b"Date: Tue, 3 Nov 2026 10:00:00 +0000\n\nyes\n"
)


def test_it_tracks_a_decided_message_by_hand_with_its_recipients(alice, cmd, tmp_path):
    path = tmp_path / "m.eml"
    path.write_bytes(REPLY)
    [row] = cmd(
        "ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path), "--json"
    ).json_lines()
    assert row["outcome"] == "not_tracked"
    record = CrmRecord.objects.create(kind="account", name="Northwind", email1="orders@northwind.example")
    decision = Decision.objects.get()

    processed = track_decision_manually(
        decision, RecordRef(record.pk, "account", "Northwind"), now=timezone.now()
    )

    assert processed.new and (processed.decision.outcome, processed.decision.reason) == ("tracked", "manual")
    email = TrackedEmail.objects.get()
    assert email.regarding == record
    assert email.recipients == [["to", "alice@contoso.com"], ["cc", "bob@contoso.com"]]
    assert email.in_reply_to == "<o1@contoso.com>"
    assert Decision.objects.count() == 2
    again = track_decision_manually(decision, None, now=timezone.now())
    assert not again.new and TrackedEmail.objects.count() == 1
