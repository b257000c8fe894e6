"""purge_decisions, the only way decisions are deleted: old ones only, atomically, audited, refused loudly."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management.base import CommandError
from django.db import IntegrityError
from django.utils import timezone

from tests.conftest import make_decisions
from tracking.actions import do_purge_decisions
from tracking.models import AuditEvent, Decision, Mailbox, ScanRun, TrackedAttachment, TrackedEmail


def decide(mailbox: Mailbox, name: str, *, days_ago: float, tracked: bool = False) -> Decision:
    """One decision made days_ago days ago (a tracked one with its TrackedEmail and ScanRun)."""
    message_id = f"<{name}@example.net>"
    run = ScanRun.objects.create(mailbox=mailbox, folder="inbox", status="succeeded", tracked=int(tracked))
    email = (
        TrackedEmail.objects.create(message_id=message_id, direction="incoming", subject=name)
        if tracked
        else None
    )
    [decision] = make_decisions(
        mailbox,
        1,
        scan_run=run,
        message_id=message_id,
        subject=name,
        outcome="tracked" if tracked else "not_tracked",
        reason="accepted_all" if tracked else "no_correlation",
        tracked_email=email,
        decided_at=timezone.now() - timedelta(days=days_ago),
    )
    return decision


@pytest.fixture
def history(alice: Mailbox, bob: Mailbox, admin: User) -> dict[str, Decision]:
    return {
        "alice_old": decide(alice, "alice-old", days_ago=40, tracked=True),
        "alice_edge": decide(alice, "alice-edge", days_ago=29.9),
        "alice_new": decide(alice, "alice-new", days_ago=0.5),
        "bob_old": decide(bob, "bob-old", days_ago=400),
        "bob_new": decide(bob, "bob-new", days_ago=0),
    }


def left() -> set[str]:
    return set(Decision.objects.values_list("subject", flat=True))


ALL = {"alice-old", "alice-edge", "alice-new", "bob-old", "bob-new"}


def test_it_deletes_only_the_decisions_older_than_the_cutoff(history, cmd):
    out = cmd("purge_decisions", "--older-than", "30", "--actor", "ada").out
    assert "deleted 2 decision(s)" in out and "older than 30 days" in out
    assert left() == {"alice-edge", "alice-new", "bob-new"}


def test_what_goes_with_them_is_nothing_else(history, cmd):
    """Tracked emails are CRM data and scan runs keep their counts: both stay."""
    emails, runs = TrackedEmail.objects.count(), ScanRun.objects.count()
    cmd("purge_decisions", "--older-than", "30")
    assert (TrackedEmail.objects.count(), ScanRun.objects.count()) == (emails, runs)
    assert TrackedEmail.objects.filter(message_id="<alice-old@example.net>").exists()


def test_it_writes_one_audit_event_with_who_the_cutoff_and_the_count(history, cmd):
    cmd("purge_decisions", "--older-than", "30", "--actor", "ada")
    event = AuditEvent.objects.get(action="decisions_purged")
    assert event.actor_label == "cli:ada"
    assert event.target == "all mailboxes"
    assert event.old_value.startswith("decided before ")
    cutoff = event.old_value.removeprefix("decided before ")
    expected = timezone.now() - timedelta(days=30)
    assert abs(datetime.fromisoformat(cutoff) - expected) < timedelta(minutes=5)
    assert event.new_value == "2 deleted"


def test_the_default_actor_is_the_operating_system_user(history, cmd):
    import getpass

    cmd("purge_decisions", "--older-than", "30")
    assert AuditEvent.objects.get(action="decisions_purged").actor_label == f"cli:{getpass.getuser()}"


def test_a_dry_run_counts_and_deletes_nothing(history, cmd):
    out = cmd("purge_decisions", "--older-than", "30", "--dry-run").out
    assert "would delete 2 decision(s)" in out
    assert left() == ALL
    assert not AuditEvent.objects.filter(action="decisions_purged").exists()


def test_mailbox_limits_the_purge_to_one_mailbox(history, cmd):
    out = cmd("purge_decisions", "--older-than", "30", "--mailbox", "BOB@contoso.com").out
    assert "deleted 1 decision(s) of bob@contoso.com" in out
    assert left() == ALL - {"bob-old"}
    assert AuditEvent.objects.get(action="decisions_purged").target == "bob@contoso.com"


def test_json_output(history, cmd):
    summary = json.loads(cmd("purge_decisions", "--older-than", "30", "--json", "--actor", "ada").out)
    assert summary.keys() == {"cutoff", "mailbox", "dry_run", "matched", "deleted", "actor"}
    assert summary["mailbox"] is None and summary["dry_run"] is False
    assert (summary["matched"], summary["deleted"], summary["actor"]) == (2, 2, "cli:ada")
    dry = json.loads(
        cmd(
            "purge_decisions", "--older-than", "1", "--json", "--dry-run", "--mailbox", "alice@contoso.com"
        ).out
    )
    assert (dry["mailbox"], dry["dry_run"], dry["matched"], dry["deleted"]) == (
        "alice@contoso.com",
        True,
        1,
        0,
    )


def test_nothing_old_enough_still_audits_a_purge_of_zero(history, cmd):
    assert "deleted 0 decision(s)" in cmd("purge_decisions", "--older-than", "36500").out
    assert left() == ALL
    assert AuditEvent.objects.get(action="decisions_purged").new_value == "0 deleted"


@pytest.mark.parametrize("days", ["0", "-3", "1.5", "thirty", "", "36501", "99999999999"])
def test_it_refuses_days_that_are_not_a_whole_number_from_one(history, cmd, days):
    with pytest.raises(CommandError, match="whole number of days from 1 to 36500"):
        cmd("purge_decisions", "--older-than", days)
    assert left() == ALL
    assert not AuditEvent.objects.filter(action="decisions_purged").exists()


def test_it_refuses_an_unknown_mailbox(history, cmd):
    with pytest.raises(CommandError, match=r"no mailbox 'carol@contoso\.com'"):
        cmd("purge_decisions", "--older-than", "1", "--mailbox", "carol@contoso.com")
    assert left() == ALL


@pytest.mark.parametrize("actor", ["x" * 200, "ops", "alice", "audrey", ""])
def test_the_actor_must_be_an_admin_of_syncadmin(history, cmd, auditor, actor):
    """--actor is validated, not free text: the user name of an active admin (alice is a plain user)."""
    with pytest.raises(CommandError, match=r"--actor .*not the user name of an active admin"):
        cmd("purge_decisions", "--older-than", "1", "--actor", actor)
    assert left() == ALL
    assert not AuditEvent.objects.filter(action="decisions_purged").exists()


def test_an_inactive_admin_is_no_actor(history, cmd, admin):
    admin.is_active = False
    admin.save()
    with pytest.raises(CommandError, match="--actor"):
        cmd("purge_decisions", "--older-than", "1", "--actor", "ada")
    assert left() == ALL


def test_it_is_atomic_when_the_audit_event_cannot_be_written(history, alice):
    """A failure after the DELETE (here: the audit row is refused) rolls the deletion back."""
    with pytest.raises(IntegrityError):
        do_purge_decisions(timezone.now(), actor_label=None)  # type: ignore[arg-type]
    assert left() == ALL


# -- --content-older-than: stored bodies and attachment contents (tracking-rules §2) -----------------------


def with_content(name: str, *, days_ago: float) -> TrackedEmail:
    """A tracked email made days_ago days ago with both bodies and an attachment with its content."""
    email = TrackedEmail.objects.create(
        message_id=f"<{name}@example.net>",
        direction="incoming",
        subject=name,
        body_text=f"{name} text",
        body_html=f"<p>{name}</p>",
    )
    TrackedEmail.objects.filter(pk=email.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    TrackedAttachment.objects.create(
        tracked_email=email, name="a.pdf", content_type="application/pdf", size=3, content=b"pdf"
    )
    return email


@pytest.fixture
def contents(admin: User) -> dict[str, TrackedEmail]:
    return {"old": with_content("old", days_ago=100), "new": with_content("new", days_ago=10)}


def test_content_purge_clears_bodies_and_contents_and_keeps_the_metadata(contents, cmd):
    out = cmd("purge_decisions", "--content-older-than", "90", "--actor", "ada").out
    assert "cleared the content of 1 tracked email(s)" in out and "older than 90 days" in out
    old = TrackedEmail.objects.get(pk=contents["old"].pk)
    assert (old.body_text, old.body_html, old.subject) == ("", "", "old")
    assert old.content_purged_at is not None
    kept = TrackedAttachment.objects.get(tracked_email=old)
    assert (kept.name, kept.content_type, kept.size, kept.content) == ("a.pdf", "application/pdf", 3, None)
    new = TrackedEmail.objects.get(pk=contents["new"].pk)
    assert (new.body_text, new.content_purged_at) == ("new text", None)
    assert bytes(TrackedAttachment.objects.get(tracked_email=new).content or b"") == b"pdf"


def test_content_purge_is_audited_and_leaves_decisions_alone(history, contents, cmd):
    cmd("purge_decisions", "--content-older-than", "90", "--actor", "ada")
    event = AuditEvent.objects.get(action="content_purged")
    assert event.actor_label == "cli:ada" and event.new_value == "1 emails cleared"
    assert event.old_value.startswith("tracked before ")
    assert left() == ALL
    assert not AuditEvent.objects.filter(action="decisions_purged").exists()


def test_content_purge_dry_run_and_json_and_both_at_once(history, contents, cmd):
    dry = json.loads(cmd("purge_decisions", "--content-older-than", "90", "--dry-run", "--json").out)
    assert (dry["content_matched"], dry["content_cleared"], dry["dry_run"]) == (1, 0, True)
    assert TrackedEmail.objects.get(pk=contents["old"].pk).body_text == "old text"
    both = json.loads(cmd("purge_decisions", "--older-than", "30", "--content-older-than", "5", "--json").out)
    assert both.keys() == {
        "cutoff",
        "mailbox",
        "dry_run",
        "matched",
        "deleted",
        "actor",
        "content_cutoff",
        "content_matched",
        "content_cleared",
    }
    # by when the email was tracked: the history's email was tracked just now, whatever its decision's age
    assert (both["deleted"], both["content_cleared"]) == (2, 2)
    again = json.loads(cmd("purge_decisions", "--content-older-than", "5", "--json").out)
    assert again["content_cleared"] == 0  # cleared once, never again


def test_content_purge_needs_a_valid_number_and_something_to_purge(contents, cmd):
    with pytest.raises(CommandError, match="--content-older-than 'x': give a whole number of days"):
        cmd("purge_decisions", "--content-older-than", "x")
    with pytest.raises(CommandError, match="say what to purge"):
        cmd("purge_decisions")
    assert TrackedEmail.objects.get(pk=contents["old"].pk).content_purged_at is None
