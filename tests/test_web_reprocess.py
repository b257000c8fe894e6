"""Reprocessing rounds in the web UI (tracking-rules §3.6): preview then start, progress, cancel, who may."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import login, run_command, user_of
from tracking.actions import do_set_personal_options
from tracking.choices import TrackOption
from tracking.models import AuditEvent, Decision, Mailbox, ReprocessRound, ScanRun

URL = reverse("web-reprocess")


@pytest.fixture
def enabled(alice: Mailbox) -> Mailbox:
    Mailbox.objects.filter(pk=alice.pk).update(enabled=True)
    alice.refresh_from_db()
    return alice


def since(days: int) -> str:
    return timezone.localtime(timezone.now() - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def test_an_admin_previews_then_starts_a_round(
    client: Client, admin: User, enabled: Mailbox, tmp_path
) -> None:
    path = tmp_path / "one.eml"
    when = timezone.now() - timedelta(days=2)
    path.write_bytes(
        b"From: carla@fabrikam.example\nTo: alice@contoso.com\nMessage-ID: <p1@x>\nSubject: s\n"
        + f"Date: {when:%a, %d %b %Y %H:%M:%S +0000}\n\nhi\n".encode()
    )
    run_command("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path))
    do_set_personal_options(user_of(enabled), track=TrackOption.ALL)
    c = login(client, admin)

    preview = c.post(URL, {"mailbox": enabled.pk, "since": since(7)})
    body = preview.content.decode()
    assert preview.status_code == 200 and "What the round would change" in body
    assert "1 of 1 message(s) would change outcome" in body
    assert not ReprocessRound.objects.exists()

    started = c.post(URL, {"mailbox": enabled.pk, "since": since(7), "confirm": "1"})
    round = ReprocessRound.objects.get()
    assert started.status_code == 302 and started["Location"] == reverse("web-round", args=[round.pk])
    assert ScanRun.objects.filter(round=round, folder="inbox", status="queued").exists()
    assert AuditEvent.objects.filter(action="reprocess_started", actor=admin).count() == 1
    page = c.get(started["Location"])
    assert "0 of 1 folder(s) done" in page.content.decode()

    cancelled = c.post(reverse("web-round-cancel", args=[round.pk]), follow=True)
    assert "Cancelled at" in cancelled.content.decode()
    assert ScanRun.objects.get(round=round).status == "cancelled"


def test_a_user_reprocesses_only_their_own_recent_mail(
    client: Client, enabled: Mailbox, bob: Mailbox
) -> None:
    c = login(client, user_of(enabled))
    too_far = c.post(URL, {"since": since(45), "confirm": "1"})
    assert too_far.status_code == 400 and "last 30 days" in too_far.content.decode()
    assert c.get(URL, {"mailbox": bob.pk}).status_code == 404
    assert c.post(URL, {"mailbox": bob.pk, "since": since(3), "confirm": "1"}).status_code == 404
    ok = c.post(URL, {"since": since(3), "confirm": "1"})
    assert ok.status_code == 302
    assert list(ScanRun.objects.filter(round__isnull=False).values_list("mailbox", flat=True)) == [enabled.pk]


def test_an_auditor_watches_rounds_and_starts_none(client: Client, auditor: User, enabled: Mailbox) -> None:
    c = login(client, auditor)
    assert c.get(URL, {"mailbox": enabled.pk}).status_code == 403
    assert c.post(URL, {"mailbox": enabled.pk, "since": since(3), "confirm": "1"}).status_code == 403
    assert not ReprocessRound.objects.exists()


def test_the_decision_log_shows_current_decisions_unless_asked_for_all(
    client: Client, admin: User, enabled: Mailbox, tmp_path
) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(
        b"From: carla@fabrikam.example\nTo: alice@contoso.com\nMessage-ID: <c1@x>\nSubject: s\n\nhi\n"
    )
    run_command("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path))
    first = Decision.objects.get()
    round = ReprocessRound.objects.create(requested_via="test", since=timezone.now() - timedelta(days=1))
    later = Decision.objects.create(
        mailbox=enabled,
        folder="inbox",
        message_id="<c1@x>",
        direction="incoming",
        outcome="tracked",
        reason="accepted_all",
        decided_at=timezone.now(),
        round=round,
        supersedes=first,
    )
    c = login(client, admin)
    current = c.get(reverse("web-decisions")).content.decode()
    assert reverse("web-decision", args=[later.pk]) in current
    assert reverse("web-decision", args=[first.pk]) not in current
    every = c.get(reverse("web-decisions"), {"evaluations": "all"}).content.decode()
    assert reverse("web-decision", args=[first.pk]) in every
    old_page = c.get(reverse("web-decision", args=[first.pk])).content.decode()
    assert "Superseded by" in old_page and reverse("web-decision", args=[later.pk]) in old_page
    new_page = c.get(reverse("web-decision", args=[later.pk])).content.decode()
    assert "Supersedes" in new_page and reverse("web-round", args=[round.pk]) in new_page


def test_changing_the_track_option_offers_to_apply_it_to_older_mail(client: Client, enabled: Mailbox) -> None:
    c = login(client, user_of(enabled))
    r = c.post(
        reverse("web-personal-options"),
        {"tab": "email", "track": str(TrackOption.ALL), "auto_create_kind": "contact"},
        follow=True,
    )
    assert "Apply it to my mail since…" in r.content.decode()
