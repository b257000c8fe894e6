"""Scanning through a source: page commits, resume, full resync, skipped folders, Test & Enable."""

from __future__ import annotations

import mailbox as stdlib_mailbox
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from tests.conftest import CORPORA
from tracking.actions import (
    ProfileValues,
    check_add_mailbox,
    check_add_profile,
    check_set_org_setting,
    do_set_personal_options,
)
from tracking.choices import ErrorKind, ScanStatus
from tracking.messages import RawItem
from tracking.models import Alert, Decision, FolderSyncState, Mailbox, ScanRun, TrackedEmail
from tracking.scanning import run_test_and_enable, scan_folder
from tracking.sources.base import SourceError, SyncPage

ENRON_INBOX = CORPORA / "enron-mbox/allen-p/inbox.mbox"


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    root = tmp_path / "mail"
    (root / "phil@contoso.com").mkdir(parents=True)
    shutil.copy(ENRON_INBOX, root / "phil@contoso.com" / "inbox.mbox")
    return root


@pytest.fixture
def phil(db: None, maildir: Path) -> Mailbox:
    check_add_profile(ProfileValues("files", "local", endpoint=str(maildir)))
    mailbox = check_add_mailbox(
        "phil@contoso.com", profile_name="files", username="phil", create_user=True, approve=True
    )
    assert mailbox.user is not None
    do_set_personal_options(mailbox.user, track=0)
    return mailbox


def test_it_scans_a_folder_and_commits_its_sync_state(phil):
    run = scan_folder(phil.pk, "inbox")
    assert run.status == ScanStatus.SUCCEEDED
    assert (run.items_done, run.tracked) == (66, 66)
    assert Decision.objects.filter(mailbox=phil).count() == 66
    assert FolderSyncState.objects.get(mailbox=phil, folder="inbox").state == "66"
    phil.refresh_from_db()
    assert phil.incoming_status == "success" and phil.last_sync_succeeded_at is not None


def test_it_reads_only_new_mail_on_the_next_scan(phil, maildir):
    scan_folder(phil.pk, "inbox")
    box = stdlib_mailbox.mbox(maildir / "phil@contoso.com" / "inbox.mbox")
    box.add(
        b"From: new@fabrikam.com\nTo: phil@contoso.com\nSubject: new\nMessage-ID: <new@fabrikam.com>\n"
        b"Date: Mon, 3 Dec 2001 10:00:00 +0000\n\nhello\n"
    )
    box.flush()
    box.close()
    second = scan_folder(phil.pk, "inbox")
    assert second.items_done == 1
    assert Decision.objects.filter(mailbox=phil).count() == 67
    third = scan_folder(phil.pk, "inbox")
    assert third.items_done == 0


def test_it_resyncs_in_full_without_duplicates_when_the_state_is_refused(phil):
    scan_folder(phil.pk, "inbox")
    FolderSyncState.objects.filter(mailbox=phil, folder="inbox").update(state="9999")
    run = scan_folder(phil.pk, "inbox")
    assert run.status == ScanStatus.SUCCEEDED
    assert Decision.objects.filter(mailbox=phil).count() == 66
    assert TrackedEmail.objects.count() == 66


class FailingAfterOnePage:
    """A source whose server goes away after the first page, as a network would."""

    def __init__(self, items: Sequence[RawItem]) -> None:
        self.items = list(items)

    def test_connection(self, folders: Sequence[str]) -> None:
        raise SourceError(
            "cannot reach https://mail.example.com: connection refused",
            kind=ErrorKind.UNREACHABLE,
            permanent=False,
        )

    def sync(self, folder: str, state: str) -> Iterator[SyncPage]:
        yield SyncPage(items=self.items[:10], state="10", more=True)
        raise SourceError(
            "cannot reach https://mail.example.com: connection reset",
            kind=ErrorKind.UNREACHABLE,
            permanent=False,
            retry_after=30,
        )


def _raw_items() -> list[RawItem]:
    box = stdlib_mailbox.mbox(ENRON_INBOX)
    return [RawItem(f"item{i}", box.get_bytes(key)) for i, key in enumerate(box.iterkeys())]


def test_it_keeps_committed_pages_when_the_source_fails_midway(phil):
    with pytest.raises(SourceError) as caught:
        scan_folder(phil.pk, "inbox", source=FailingAfterOnePage(_raw_items()))
    assert caught.value.retry_after == 30
    run = ScanRun.objects.get(mailbox=phil, folder="inbox")
    assert run.status == ScanStatus.FAILED and "connection reset" in run.error
    assert run.error_kind == ErrorKind.UNREACHABLE
    assert Decision.objects.filter(mailbox=phil).count() == 10
    assert FolderSyncState.objects.get(mailbox=phil, folder="inbox").state == "10"
    phil.refresh_from_db()
    assert phil.incoming_status == "failure" and "connection reset" in phil.last_error
    assert phil.last_error_kind == ErrorKind.UNREACHABLE


def test_it_records_why_sent_items_are_not_scanned(phil):
    run = scan_folder(phil.pk, "sentitems")
    assert (run.status, run.note) == (ScanStatus.SKIPPED, "sent_items_disabled")
    check_set_org_setting("AutoTrackSentFolderItems", "true")
    run = scan_folder(phil.pk, "sentitems")
    assert (run.status, run.note) == (ScanStatus.SKIPPED, "sent_items_unsupported_server")
    assert not Decision.objects.filter(folder="sentitems").exists()


def test_it_enables_a_mailbox_that_passes_test_and_enable(phil):
    ok, message = run_test_and_enable(phil.pk)
    assert ok, message
    phil.refresh_from_db()
    assert phil.enabled and phil.incoming_status == "success"
    assert Alert.objects.get(mailbox=phil).level == "information"


def test_it_says_why_test_and_enable_fails(phil, maildir):
    ok, message = run_test_and_enable(phil.pk, source=FailingAfterOnePage([]))
    assert not ok and "connection refused" in message
    phil.refresh_from_db()
    assert not phil.enabled and phil.incoming_status == "failure"
    alert = Alert.objects.get(mailbox=phil)
    assert alert.level == "error" and "connection refused" in alert.message


def test_it_refuses_to_enable_an_unapproved_mailbox(phil, cmd):
    cmd("mailbox", "reject", "phil@contoso.com")
    with pytest.raises(CommandError, match="not approved"):
        cmd("mailbox", "test", "phil@contoso.com")
    phil.refresh_from_db()
    assert not phil.enabled


def test_it_scans_from_the_command_line(phil, cmd):
    rows = cmd("scan_mailbox", "phil@contoso.com", "--json").json_lines()
    assert [(r["folder"], r["status"], r["items"], r["tracked"]) for r in rows] == [
        ("inbox", "succeeded", 66, 66)
    ]
    again = cmd("scan_mailbox", "phil@contoso.com", "--json").json_lines()
    assert again[0]["items"] == 0
