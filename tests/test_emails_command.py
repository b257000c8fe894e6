"""`emails show MESSAGE-ID [--direction D] [--json]`: the public JSON contract (README), both rows of a
Message-ID tracked once per direction, and a clear refusal for one that is unknown or not tracked."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from tests.conftest import raw, scan
from tests.test_tracked_content import full_message
from tracking.actions import check_set_org_setting, do_set_personal_options
from tracking.models import CrmRecord, Queue, QueueItem, TrackedEmail

KEYS = [
    "message_id",
    "state",
    "direction",
    "subject",
    "sender",
    "recipients",
    "body_text",
    "body_html",
    "attachments",
    "regarding",
    "owner",
    "queue_items",
]


@pytest.fixture
def tracked(alice) -> TrackedEmail:
    do_set_personal_options(alice.user, track=0)
    check_set_org_setting("MaxTrackedAttachmentMB", "1")
    (decision,) = scan(alice, full_message("<show@example.net>", pdf=b"\x01" * (1024 * 1024 + 1)))
    assert decision.tracked_email_id is not None
    email = TrackedEmail.objects.get(pk=decision.tracked_email_id)
    record = CrmRecord.objects.create(kind="account", name="Northwind", email1="x@northwind.example")
    TrackedEmail.objects.filter(pk=email.pk).update(regarding=record)
    queue = Queue.objects.create(name="Support", email="support@contoso.com")
    QueueItem.objects.create(queue=queue, tracked_email=email, created_at=timezone.now())
    return email


def test_json_has_exactly_the_public_keys(tracked, cmd):
    shown = json.loads(cmd("emails", "show", "<show@example.net>", "--json").out)
    assert list(shown) == KEYS
    assert shown["message_id"] == "<show@example.net>"
    assert (shown["state"], shown["direction"], shown["subject"]) == ("tracked", "incoming", "Quote")
    assert shown["sender"] == "ann@example.net"
    assert shown["recipients"] == [{"role": "to", "address": "alice@contoso.com"}]
    assert shown["body_text"].strip() == "Grüße from Ann."
    assert shown["body_html"].strip() == "<p>Grüße <b>from</b> Ann.</p>"
    assert shown["attachments"] == [
        {"name": "quote.pdf", "content_type": "application/pdf", "size": 1024 * 1024 + 1, "stored": False},
        {"name": "Earlier.eml", "content_type": "message/rfc822", "size": 56, "stored": True},
    ]
    assert shown["regarding"] == "account:Northwind"
    assert shown["owner"] == "alice"
    assert shown["queue_items"] == [{"queue": "Support", "state": "active"}]


def test_angle_brackets_are_optional_and_the_text_form_reads_as_headers(tracked, cmd):
    out = cmd("emails", "show", "show@example.net").out
    assert out.startswith("Message-ID:  <show@example.net>\nState:       tracked\n")
    assert "Regarding:   account:Northwind" in out and "Queue items: Support (active)" in out
    assert "Attachment:  quote.pdf (application/pdf, 1048577 bytes, content not stored)" in out
    assert out.rstrip().endswith("Grüße from Ann.")


def test_an_untracked_email_says_so(tracked, cmd):
    TrackedEmail.objects.filter(pk=tracked.pk).update(untracked_at=timezone.now())
    assert json.loads(cmd("emails", "show", "<show@example.net>", "--json").out)["state"] == "untracked"


def test_internal_mail_tracked_in_both_directions_prints_both(alice, bob, cmd):
    do_set_personal_options(alice.user, track=0)
    do_set_personal_options(bob.user, track=0)
    check_set_org_setting("AutoTrackSentFolderItems", "true")
    message = raw("<internal@contoso.com>", frm="Bob <bob@contoso.com>", to="alice@contoso.com")
    scan(alice, message)
    scan(bob, message, folder="sentitems")
    assert TrackedEmail.objects.filter(message_id="<internal@contoso.com>").count() == 2
    both = json.loads(cmd("emails", "show", "<internal@contoso.com>", "--json").out)
    assert isinstance(both, list) and [row["direction"] for row in both] == ["incoming", "outgoing"]
    assert all(list(row) == KEYS for row in both)
    one = json.loads(cmd("emails", "show", "<internal@contoso.com>", "--direction", "outgoing", "--json").out)
    assert isinstance(one, dict) and one["direction"] == "outgoing"
    text = cmd("emails", "show", "<internal@contoso.com>").out
    assert text.count("Message-ID:") == 2


def test_an_unknown_or_untracked_message_id_is_refused_clearly(alice, cmd):
    with pytest.raises(CommandError, match="no tracked email and no decision has the Message-ID '<nope@x>'"):
        cmd("emails", "show", "<nope@x>")
    (decision,) = scan(alice, raw("<declined@example.net>"))
    assert decision.tracked_email_id is None
    with pytest.raises(CommandError, match="was decided but no tracked email has this Message-ID"):
        cmd("emails", "show", "<declined@example.net>", "--json")
