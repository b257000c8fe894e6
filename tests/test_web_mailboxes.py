"""Mailboxes: the filtered list, one mailbox's page, its status fragment and the admin actions."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django_rq
import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rq import Queue

from tests.conftest import login, make_mailbox, run_command
from tracking.actions import (
    ProfileValues,
    check_add_mailbox,
    check_add_profile,
    do_record_test_result,
    do_set_personal_options,
    do_start_scan_run,
)
from tracking.choices import AlertLevel, Approval, ErrorKind, MailboxStatus, ScanStatus
from tracking.jobqueues import SCANS, WORKER_QUEUES, rq_queues
from tracking.jobs import QUEUE
from tracking.models import (
    Alert,
    AuditEvent,
    EmailServerProfile,
    FolderSyncState,
    Mailbox,
    PersonalOptions,
    ScanRun,
)
from tracking.workers import SimpleWorker

# Nothing listens here: django-rq pointed at it is Redis being down.
REDIS_DOWN = rq_queues("redis://127.0.0.1:1/0", 60)
HTMX = {"HX-Request": "true"}


@pytest.fixture
def queue() -> Iterator[Queue]:
    """The queue of Test & Enable (scans go to SCANS); every queue starts and ends empty."""
    every = [django_rq.get_queue(name) for name in WORKER_QUEUES]
    for q in every:
        q.empty()
    yield django_rq.get_queue(QUEUE)
    for q in every:
        q.empty()


def burst(q: Queue) -> None:
    """Run the queued jobs of every queue here, in this thread, so they see the test's transaction."""
    SimpleWorker([django_rq.get_queue(name) for name in WORKER_QUEUES], connection=q.connection).work(
        burst=True
    )


@pytest.fixture
def carol(db: None) -> User:
    """A signed-in user without a mailbox."""
    return User.objects.create_user("carol", "carol@contoso.com", "pw-carol-123")


@pytest.fixture
def support(exchange_profile: EmailServerProfile) -> Mailbox:
    """A queue mailbox, pending approval."""
    return check_add_mailbox("support@contoso.com", profile_name=exchange_profile.name, queue_name="Support")


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    (tmp_path / "dana@contoso.com" / "inbox").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def dana(local_root: Path) -> Mailbox:
    """An approved user mailbox on a local folder profile: Test & Enable succeeds without a network."""
    profile = check_add_profile(ProfileValues("files", "local", endpoint=str(local_root)))
    return make_mailbox("dana@contoso.com", "dana", profile)


def text(r) -> str:
    """The response's HTML with entities decoded, so that "Test & Enable" reads the same escaped or not."""
    return html.unescape(r.content.decode())


def url(name: str, mailbox: Mailbox) -> str:
    return reverse(name, args=[mailbox.pk])


def post_forms(body: str) -> int:
    """How many POST forms a page has besides the sign-out form every page has."""
    return body.count('method="post"') - 1


# --- the list ------------------------------------------------------------------------------------------


def test_it_sends_anonymous_visitors_to_sign_in(client: Client, alice: Mailbox) -> None:
    for target in (
        reverse("web-mailboxes"),
        url("web-mailbox", alice),
        url("web-mailbox-status", alice),
        url("web-mailbox-reset-sync", alice),
    ):
        r = client.get(target)
        assert r.status_code == 302, target
        assert r["Location"].startswith(reverse("login"))


def test_it_lists_every_mailbox_for_admins_and_auditors(
    client: Client, admin: User, auditor: User, alice: Mailbox, bob: Mailbox, support: Mailbox
) -> None:
    for user in (admin, auditor):
        body = text(login(client, user).get(reverse("web-mailboxes")))
        assert "alice@contoso.com" in body and "bob@contoso.com" in body and "support@contoso.com" in body
        assert "3 mailboxes" in body
        assert 'id="id_q"' in body  # the filters


def test_it_shows_a_user_only_their_own_mailbox(client: Client, alice: Mailbox, bob: Mailbox) -> None:
    assert alice.user is not None
    r = login(client, alice.user).get(reverse("web-mailboxes"), {"q": "bob"})
    body = text(r)
    assert r.status_code == 200
    assert "alice@contoso.com" in body
    assert "bob@contoso.com" not in body
    assert 'id="id_q"' not in body  # no filters for one mailbox


def test_it_shows_a_user_without_a_mailbox_an_empty_list(client: Client, carol: User, alice: Mailbox) -> None:
    body = text(login(client, carol).get(reverse("web-mailboxes")))
    assert "alice@contoso.com" not in body
    assert "No mailboxes yet." in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failure"}, {"bob@contoso.com"}),
        ({"status": "not_run"}, {"alice@contoso.com", "support@contoso.com"}),
        ({"enabled": "yes"}, {"bob@contoso.com"}),
        ({"enabled": "no"}, {"alice@contoso.com", "support@contoso.com"}),
        ({"approval": "pending"}, {"support@contoso.com"}),
        ({"approval": "approved"}, {"alice@contoso.com", "bob@contoso.com"}),
        ({"owner": "queue"}, {"support@contoso.com"}),
        ({"owner": "user"}, {"alice@contoso.com", "bob@contoso.com"}),
        ({"q": "ALICE"}, {"alice@contoso.com"}),
        ({"q": "Robert"}, {"bob@contoso.com"}),  # the owner's name
        ({"q": "support"}, {"support@contoso.com"}),
        ({"q": "bob", "enabled": "no"}, set()),
        ({"status": "bogus"}, {"alice@contoso.com", "bob@contoso.com", "support@contoso.com"}),
    ],
)
def test_it_filters_the_list(
    client: Client,
    admin: User,
    alice: Mailbox,
    bob: Mailbox,
    support: Mailbox,
    query: dict[str, str],
    expected: set[str],
) -> None:
    assert bob.user is not None
    bob.user.first_name = "Robert"
    bob.user.save(update_fields=["first_name"])
    do_record_test_result(bob, ok=True, message="connected", now=timezone.now())
    Mailbox.objects.filter(pk=bob.pk).update(incoming_status=MailboxStatus.FAILURE)
    body = text(login(client, admin).get(reverse("web-mailboxes"), query))
    shown = {
        a for a in ("alice@contoso.com", "bob@contoso.com", "support@contoso.com") if f">{a}</a>" in body
    }
    assert shown == expected


def test_it_filters_by_server_profile(
    client: Client, admin: User, alice: Mailbox, imap_profile: EmailServerProfile
) -> None:
    make_mailbox("ian@contoso.com", "ian", imap_profile)
    body = text(login(client, admin).get(reverse("web-mailboxes"), {"profile": imap_profile.pk}))
    assert "ian@contoso.com" in body
    assert ">alice@contoso.com</a>" not in body


def test_it_answers_htmx_with_the_table_only(
    client: Client, admin: User, alice: Mailbox, bob: Mailbox
) -> None:
    r = login(client, admin).get(reverse("web-mailboxes"), {"q": "alice"}, headers=HTMX)
    body = text(r)
    assert r.status_code == 200
    assert body.startswith('<div id="mailbox-table">')
    assert "<html" not in body
    assert "alice@contoso.com" in body and "bob@contoso.com" not in body


def test_it_pages_the_list_by_the_users_rows_per_page(
    client: Client, admin: User, exchange_profile: EmailServerProfile
) -> None:
    for i in range(12):
        check_add_mailbox(f"q{i:02d}@contoso.com", profile_name=exchange_profile.name, queue_name=f"Q{i:02d}")
    PersonalOptions.objects.update_or_create(user=admin, defaults={"rows_per_page": 10})
    login(client, admin)
    first = text(client.get(reverse("web-mailboxes"), {"owner": "queue"}))
    assert "q09@contoso.com" in first and "q10@contoso.com" not in first
    assert "Page 1 of 2" in first
    assert "owner=queue&page=2" in first
    second = text(client.get(reverse("web-mailboxes"), {"owner": "queue", "page": "2"}))
    assert "q10@contoso.com" in second and "q09@contoso.com" not in second


# --- the mailbox page ----------------------------------------------------------------------------------


def test_it_shows_a_user_their_own_mailbox_read_only(client: Client, alice: Mailbox, bob: Mailbox) -> None:
    assert alice.user is not None
    login(client, alice.user)
    r = client.get(url("web-mailbox", alice))
    assert r.status_code == 200
    body = text(r)
    assert "alice@contoso.com" in body
    assert post_forms(body) == 0
    assert reverse("web-profile-edit", args=[alice.profile_id]) not in body
    assert client.get(url("web-mailbox", bob)).status_code == 404
    assert client.get(url("web-mailbox-status", bob)).status_code == 404


def test_it_hides_other_mailboxes_from_a_user_without_one(
    client: Client, carol: User, alice: Mailbox
) -> None:
    login(client, carol)
    assert client.get(url("web-mailbox", alice)).status_code == 404
    assert client.get(url("web-mailbox-status", alice)).status_code == 404


def test_it_shows_auditors_the_page_without_any_action(
    client: Client, auditor: User, alice: Mailbox, queue: object
) -> None:
    body = text(login(client, auditor).get(url("web-mailbox", alice)))
    assert "alice@contoso.com" in body
    assert post_forms(body) == 0
    for name in ("web-mailbox-approve", "web-mailbox-test", "web-mailbox-scan", "web-mailbox-disable"):
        assert url(name, alice) not in body
    assert url("web-mailbox-reset-sync", alice) not in body
    assert url("web-mailbox-start-date", alice) not in body


def test_it_shows_admins_the_actions(client: Client, admin: User, support: Mailbox, queue: object) -> None:
    body = text(login(client, admin).get(url("web-mailbox", support)))
    assert url("web-mailbox-approve", support) in body
    # Test & Enable would certainly fail before approval (issue 18): not offered, and the page says why
    assert url("web-mailbox-test", support) not in body
    assert "Enable is not offered: its email address is not approved" in body
    assert url("web-mailbox-reset-sync", support) in body
    assert url("web-mailbox-start-date", support) in body
    assert 'type="datetime-local"' in body
    # not approved, not enabled: nothing to scan or disable yet
    assert url("web-mailbox-scan", support) not in body
    assert "Scan now is not offered" in body
    assert url("web-mailbox-disable", support) not in body


def test_it_shows_the_state_of_a_scanned_mailbox(client: Client, auditor: User, alice: Mailbox) -> None:
    now = timezone.now()
    run = do_start_scan_run(alice, "inbox", now=now - timedelta(minutes=4))
    ScanRun.objects.filter(pk=run.pk).update(
        status=ScanStatus.SUCCEEDED,
        finished_at=now - timedelta(minutes=3),
        tracked=7,
        not_tracked=5,
        failed=1,
    )
    failed = do_start_scan_run(alice, "inbox", now=now - timedelta(minutes=2))
    ScanRun.objects.filter(pk=failed.pk).update(
        status=ScanStatus.FAILED,
        finished_at=now - timedelta(minutes=2),
        error="HTTP 401 from the EWS server",
        error_kind=ErrorKind.CREDENTIALS,
    )
    state = FolderSyncState.objects.create(mailbox=alice, folder="inbox", state="opaque-token")
    FolderSyncState.objects.filter(pk=state.pk).update(updated_at=now - timedelta(minutes=3))
    Mailbox.objects.filter(pk=alice.pk).update(
        incoming_status=MailboxStatus.FAILURE,
        last_error="the server refused the credentials (HTTP 401)",
        last_error_kind=ErrorKind.CREDENTIALS,
        last_sync_started_at=now - timedelta(minutes=2),
        last_sync_succeeded_at=now - timedelta(minutes=3),
    )
    Alert.objects.create(mailbox=alice, level=AlertLevel.WARNING, message="Scan failed (retry 1 of 10)")
    body = text(login(client, auditor).get(url("web-mailbox", alice)))
    assert "Credentials refused" in body  # the kind
    assert "The server refused to sign SyncAdmin in" in body  # in plain words
    assert "the server refused the credentials (HTTP 401)" in body  # and the server's own
    assert "updated 3\xa0minutes ago" in body
    assert "saved" in body and "opaque-token" not in body
    assert "HTTP 401 from the EWS server" in body
    assert ">7</td>" in body and ">5</td>" in body
    assert "1.0 s" in body or "60 s" in body or "1 min 0 s" in body
    assert "Scan failed (retry 1 of 10)" in body
    assert "Sent Items not scanned" in body


def test_it_shows_dates_in_the_users_time_zone(client: Client, auditor: User, alice: Mailbox) -> None:
    PersonalOptions.objects.update_or_create(user=auditor, defaults={"time_zone": "Asia/Tokyo"})
    Mailbox.objects.filter(pk=alice.pk).update(
        process_emails_received_after=datetime(2024, 5, 1, 22, 30, tzinfo=UTC)
    )
    body = text(login(client, auditor).get(url("web-mailbox", alice)))
    assert "2024-05-02T07:30:00+09:00" in body


def test_it_returns_the_status_fragment_for_htmx(client: Client, auditor: User, alice: Mailbox) -> None:
    login(client, auditor)
    fragment = text(client.get(url("web-mailbox-status", alice), headers=HTMX))
    assert fragment.startswith('<section id="mailbox-status"')
    assert "<html" not in fragment
    assert "hx-trigger" not in fragment  # nothing queued: no polling
    page = text(client.get(url("web-mailbox-status", alice)))
    assert "<html" in page and 'id="mailbox-status"' in page


# --- admin actions: who may -----------------------------------------------------------------------------

ACTIONS = [
    "web-mailbox-approve",
    "web-mailbox-test",
    "web-mailbox-scan",
    "web-mailbox-disable",
    "web-mailbox-reset-sync",
    "web-mailbox-start-date",
]


@pytest.mark.parametrize("name", ACTIONS)
def test_it_refuses_actions_to_everyone_but_admins(
    client: Client, name: str, auditor: User, alice: Mailbox, bob: Mailbox, support: Mailbox, queue: object
) -> None:
    assert alice.user is not None
    do_record_test_result(bob, ok=True, message="connected", now=timezone.now())
    FolderSyncState.objects.create(mailbox=bob, folder="inbox", state="token")
    data = {"confirm": "on", "folder": "", "process_emails_received_after": "2024-01-01T00:00"}
    before = AuditEvent.objects.exclude(action="signed_in").count()
    r = client.post(url(name, bob), data)
    assert r.status_code == 302 and r["Location"].startswith(reverse("login"))
    for user, mailbox in ((alice.user, alice), (alice.user, bob), (auditor, bob), (auditor, support)):
        login(client, user)
        assert client.post(url(name, mailbox), data).status_code == 403
        if name == "web-mailbox-reset-sync":  # its confirmation page too
            assert client.get(url(name, mailbox)).status_code == 403
    bob.refresh_from_db()
    support.refresh_from_db()
    assert bob.enabled and bob.process_emails_received_after is None
    assert support.approval == Approval.PENDING
    assert FolderSyncState.objects.get(mailbox=bob).state == "token"
    assert AuditEvent.objects.exclude(action="signed_in").count() == before
    assert queue.count == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", [n for n in ACTIONS if n != "web-mailbox-reset-sync"])
def test_it_takes_actions_by_post_only(client: Client, name: str, admin: User, alice: Mailbox) -> None:
    assert login(client, admin).get(url(name, alice)).status_code == 405


def test_it_answers_404_for_a_missing_mailbox(client: Client, admin: User, db: None) -> None:
    login(client, admin)
    assert client.post(reverse("web-mailbox-approve", args=[999])).status_code == 404
    assert client.get(reverse("web-mailbox", args=[999])).status_code == 404


# --- approve, disable ----------------------------------------------------------------------------------


def test_it_approves_a_mailbox(client: Client, admin: User, support: Mailbox) -> None:
    r = login(client, admin).post(url("web-mailbox-approve", support), follow=True)
    support.refresh_from_db()
    assert support.approval == Approval.APPROVED
    assert "Approved the email address of support@contoso.com." in text(r)
    event = AuditEvent.objects.get(action="mailbox_approved", target="support@contoso.com")
    assert (event.actor, event.old_value, event.new_value) == (admin, "pending", "approved")


def test_it_disables_a_mailbox(client: Client, admin: User, alice: Mailbox) -> None:
    do_record_test_result(alice, ok=True, message="connected", now=timezone.now())
    login(client, admin)
    r = client.post(url("web-mailbox-disable", alice), follow=True)
    alice.refresh_from_db()
    assert not alice.enabled and alice.next_run_at is None
    assert "will not be scanned" in text(r)
    event = AuditEvent.objects.get(action="mailbox_disabled")
    assert (event.actor, event.target, event.new_value) == (admin, "alice@contoso.com", "disabled")
    assert Alert.objects.filter(mailbox=alice, message__contains="disabled by ada").exists()
    again = client.post(url("web-mailbox-disable", alice), follow=True)
    assert "was already disabled" in text(again)
    assert AuditEvent.objects.filter(action="mailbox_disabled").count() == 1


# --- Test & Enable and Scan now (the job queue) ---------------------------------------------------------


def test_it_queues_test_and_enable_and_shows_the_result(
    client: Client,
    admin: User,
    dana: Mailbox,
    queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    login(client, admin)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(url("web-mailbox-test", dana), follow=True)
    body = text(r)
    assert "Test & Enable queued for dana@contoso.com." in body
    assert queue.count == 1
    assert AuditEvent.objects.filter(action="mailbox_test_queued", actor=admin).count() == 1

    waiting = text(client.get(url("web-mailbox-status", dana), headers=HTMX))
    assert "Test & Enable queued" in waiting
    assert 'hx-trigger="every 2s"' in waiting
    assert "?waiting=1" in waiting
    still = client.get(url("web-mailbox-status", dana) + "?waiting=1", headers=HTMX)
    assert "HX-Refresh" not in still

    burst(queue)
    dana.refresh_from_db()
    assert dana.enabled and dana.incoming_status == MailboxStatus.SUCCESS
    done = text(client.get(url("web-mailbox-status", dana), headers=HTMX))
    assert "Test & Enable succeeded: connected; Inbox can be read" in done
    assert "hx-trigger" not in done  # polling stops
    # the page that was waiting reloads, so that its actions match the mailbox's new state
    finished = client.get(url("web-mailbox-status", dana) + "?waiting=1", headers=HTMX)
    assert finished["HX-Refresh"] == "true"
    assert "Test & Enable succeeded" in text(client.get(url("web-mailbox", dana)))


def test_it_shows_why_test_and_enable_failed(
    client: Client,
    admin: User,
    dana: Mailbox,
    local_root: Path,
    queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    (local_root / "dana@contoso.com" / "inbox").rmdir()
    (local_root / "dana@contoso.com").rmdir()
    login(client, admin)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("web-mailbox-test", dana))
    burst(queue)
    done = text(client.get(url("web-mailbox-status", dana), headers=HTMX))
    assert "Test & Enable failed: mailbox not found" in done
    assert "Not found" in done and "The mailbox, folder or service was not found on the server." in done
    dana.refresh_from_db()
    assert not dana.enabled and dana.incoming_status == MailboxStatus.FAILURE
    assert dana.last_error_kind == ErrorKind.NOT_FOUND


def test_it_queues_a_scan_of_an_enabled_mailbox(
    client: Client,
    admin: User,
    dana: Mailbox,
    queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    do_record_test_result(dana, ok=True, message="connected", now=timezone.now())
    login(client, admin)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(url("web-mailbox-scan", dana), follow=True)
    assert "Scan of dana@contoso.com queued" in text(r)
    assert django_rq.get_queue(SCANS).count == 1
    assert AuditEvent.objects.filter(action="mailbox_scan_queued", target="dana@contoso.com").exists()
    burst(queue)
    assert ScanRun.objects.filter(mailbox=dana, folder="inbox", status=ScanStatus.SUCCEEDED).exists()


def test_it_refuses_to_scan_a_disabled_mailbox(
    client: Client, admin: User, alice: Mailbox, queue: Queue
) -> None:
    r = login(client, admin).post(url("web-mailbox-scan", alice), follow=True)
    assert "alice@contoso.com cannot be scanned: it is disabled; run Test & Enable first." in text(r)
    assert queue.count == 0
    assert not AuditEvent.objects.filter(action="mailbox_scan_queued").exists()


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_it_says_the_queue_is_unavailable_when_redis_is_down(
    client: Client, admin: User, alice: Mailbox
) -> None:
    do_record_test_result(alice, ok=True, message="connected", now=timezone.now())
    login(client, admin)
    page = text(client.get(url("web-mailbox", alice)))
    assert "The job queue is unavailable" in page
    assert url("web-mailbox-test", alice) not in page
    assert url("web-mailbox-scan", alice) not in page
    assert url("web-mailbox-disable", alice) in page  # what needs no queue still works
    for name in ("web-mailbox-test", "web-mailbox-scan"):
        r = client.post(url(name, alice), follow=True)
        assert r.status_code == 200
        assert "The job queue is unavailable" in text(r)
        assert "was not queued" in text(r)
    assert not AuditEvent.objects.filter(action__in=["mailbox_test_queued", "mailbox_scan_queued"]).exists()
    assert "Test & Enable queued" not in text(client.get(url("web-mailbox-status", alice)))
    assert client.get(reverse("web-mailboxes")).status_code == 200


# --- reset sync state ----------------------------------------------------------------------------------


@pytest.fixture
def synced(alice: Mailbox) -> Mailbox:
    for folder in ("inbox", "sentitems"):
        FolderSyncState.objects.create(
            mailbox=alice,
            folder=folder,
            state=f"{folder}-token",
        )
    return alice


def test_it_asks_before_resetting_the_sync_state(client: Client, admin: User, synced: Mailbox) -> None:
    r = login(client, admin).get(url("web-mailbox-reset-sync", synced), {"folder": "inbox"})
    body = text(r)
    assert r.status_code == 200
    assert "Are you sure you want to reset the sync state of alice@contoso.com?" in body
    assert '<option value="inbox" selected>' in body
    assert FolderSyncState.objects.filter(state="").count() == 0


def test_it_does_not_reset_without_the_confirmation(client: Client, admin: User, synced: Mailbox) -> None:
    r = login(client, admin).post(url("web-mailbox-reset-sync", synced), {"folder": "inbox"})
    assert r.status_code == 400
    assert "Tick the box to confirm." in text(r)
    assert FolderSyncState.objects.filter(state="").count() == 0
    assert not AuditEvent.objects.filter(action="mailbox_sync_state_reset").exists()


def test_it_resets_one_folders_sync_state(client: Client, admin: User, synced: Mailbox) -> None:
    r = login(client, admin).post(
        url("web-mailbox-reset-sync", synced), {"folder": "inbox", "confirm": "on"}, follow=True
    )
    assert "Sync state reset for inbox" in text(r)
    inbox = FolderSyncState.objects.get(mailbox=synced, folder="inbox")
    sent = FolderSyncState.objects.get(mailbox=synced, folder="sentitems")
    assert inbox.state == ""
    assert sent.state == "sentitems-token"
    event = AuditEvent.objects.get(action="mailbox_sync_state_reset")
    assert (event.actor, event.target) == (admin, "alice@contoso.com/inbox")


def test_it_resets_every_folder(client: Client, admin: User, synced: Mailbox) -> None:
    login(client, admin).post(url("web-mailbox-reset-sync", synced), {"folder": "", "confirm": "on"})
    assert set(FolderSyncState.objects.values_list("state", flat=True)) == {""}
    assert AuditEvent.objects.filter(action="mailbox_sync_state_reset").count() == 2


def test_it_refuses_an_unknown_folder(client: Client, admin: User, synced: Mailbox) -> None:
    r = login(client, admin).post(
        url("web-mailbox-reset-sync", synced), {"folder": "drafts", "confirm": "on"}
    )
    assert r.status_code == 400
    assert "Select a valid choice." in text(r)
    assert FolderSyncState.objects.filter(state="").count() == 0


# --- process emails received after ----------------------------------------------------------------------


def test_it_sets_the_start_date_in_the_users_time_zone(client: Client, admin: User, alice: Mailbox) -> None:
    PersonalOptions.objects.update_or_create(user=admin, defaults={"time_zone": "Europe/Berlin"})
    r = login(client, admin).post(
        url("web-mailbox-start-date", alice),
        {"process_emails_received_after": "2024-05-01T09:30"},
        follow=True,
    )
    alice.refresh_from_db()
    assert alice.process_emails_received_after == datetime(2024, 5, 1, 7, 30, tzinfo=UTC)
    assert "will not be evaluated" in text(r)
    # shown back in the same zone, as the input wants it
    assert 'value="2024-05-01T09:30"' in text(r)
    event = AuditEvent.objects.get(action="mailbox_watermark_changed")
    assert (event.actor, event.old_value, event.new_value) == (admin, "", "2024-05-01T07:30:00+00:00")


def test_it_clears_the_start_date(client: Client, admin: User, alice: Mailbox) -> None:
    Mailbox.objects.filter(pk=alice.pk).update(process_emails_received_after=datetime(2024, 1, 1, tzinfo=UTC))
    login(client, admin).post(url("web-mailbox-start-date", alice), {"process_emails_received_after": ""})
    alice.refresh_from_db()
    assert alice.process_emails_received_after is None
    event = AuditEvent.objects.get(action="mailbox_watermark_changed")
    assert (event.old_value, event.new_value) == ("2024-01-01T00:00:00+00:00", "")


def test_it_refuses_a_start_date_that_is_not_a_date(client: Client, admin: User, alice: Mailbox) -> None:
    r = login(client, admin).post(
        url("web-mailbox-start-date", alice), {"process_emails_received_after": "soon"}
    )
    assert r.status_code == 400
    assert "Enter a valid date/time." in text(r)
    assert 'aria-invalid="true"' in text(r)
    alice.refresh_from_db()
    assert alice.process_emails_received_after is None
    assert not AuditEvent.objects.filter(action="mailbox_watermark_changed").exists()


def test_it_leaves_an_unchanged_start_date_unaudited(client: Client, admin: User, alice: Mailbox) -> None:
    login(client, admin).post(url("web-mailbox-start-date", alice), {"process_emails_received_after": ""})
    assert not AuditEvent.objects.filter(action="mailbox_watermark_changed").exists()


def test_it_lets_a_user_with_a_mailbox_see_only_their_status(client: Client, alice: Mailbox) -> None:
    assert alice.user is not None
    do_set_personal_options(alice.user, track=0)
    r = login(client, alice.user).get(url("web-mailbox-status", alice), headers=HTMX)
    assert r.status_code == 200
    assert "Not run" in text(r)


def test_admins_see_a_users_folder_rules_on_the_mailbox_page(client, alice, admin):
    from tracking.actions import check_add_folder_rule

    check_add_folder_rule(alice, "Inbox/Projects/Contoso", folder_id="f-contoso")
    body = login(client, admin).get(reverse("web-mailbox", args=[alice.pk])).content.decode()
    section = body.split('id="folder-rules-heading"')[1].split("</section>")[0]
    assert "Inbox/Projects/Contoso" in section and "active" in section and "never" in section


def test_test_and_enable_asks_for_the_start_date_and_offers_a_round_when_it_is_lowered(
    client: Client,
    admin: User,
    dana: Mailbox,
    queue: Queue,
    django_capture_on_commit_callbacks,
    tmp_path: Path,
) -> None:
    Mailbox.objects.filter(pk=dana.pk).update(process_emails_received_after=datetime(2024, 5, 1, tzinfo=UTC))
    login(client, admin)
    page = text(client.get(url("web-mailbox", dana)))
    assert 'name="process_emails_received_after" value="2024-05-01T00:00"' in page
    eml = tmp_path / "one.eml"
    eml.write_bytes(
        b"From: a@fabrikam.example\nTo: dana@contoso.com\nMessage-ID: <d1@x>\n"
        b"Date: Mon, 3 Jun 2024 10:00:00 +0000\n\nhi\n"
    )
    run_command("ingest", "--mailbox", "dana@contoso.com", "--folder", "inbox", str(eml))
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            url("web-mailbox-test", dana), {"process_emails_received_after": "2024-03-01T00:00"}, follow=True
        )
    body = text(r)
    dana.refresh_from_db()
    assert dana.process_emails_received_after == datetime(2024, 3, 1, tzinfo=UTC)
    assert "Test & Enable queued for dana@contoso.com." in body
    assert (
        "Reprocess from this date…" in body
        and f"/reprocess/?mailbox={dana.pk}&since=2024-03-01T00:00" in body
    )
    refused = client.post(url("web-mailbox-test", dana), {"process_emails_received_after": "soon"})
    assert refused.status_code == 400 and queue.count == 1


def test_test_and_enable_is_offered_once_approved_and_the_stale_not_approved_error_clears(
    client: Client, admin: User, support: Mailbox, queue: object
) -> None:
    """Issue 18: a failed Test & Enable of an unapproved mailbox leaves a "not approved" error; approving
    the address removes its cause, so the error goes (and Test & Enable is offered again)."""
    from tracking.actions import do_record_test_result
    from tracking.choices import ErrorKind, MailboxStatus

    do_record_test_result(
        support, ok=False, message="not approved", kind=ErrorKind.NOT_APPROVED, now=timezone.now()
    )
    login(client, admin)
    body = text(client.get(url("web-mailbox", support)))
    assert "not approved" in body and url("web-mailbox-test", support) not in body
    assert client.post(url("web-mailbox-approve", support)).status_code == 302
    support.refresh_from_db()
    assert (support.last_error, support.last_error_kind) == ("", "")
    assert support.incoming_status == MailboxStatus.NOT_RUN
    body = text(client.get(url("web-mailbox", support)))
    assert url("web-mailbox-test", support) in body and "is not offered: its email" not in body
    # an error of another kind is not approval's to clear
    do_record_test_result(
        support, ok=False, message="refused", kind=ErrorKind.CREDENTIALS, now=timezone.now()
    )
    from tracking.actions import do_approve_mailbox

    do_approve_mailbox(support, approve=False)
    do_approve_mailbox(support)
    support.refresh_from_db()
    assert support.last_error_kind == ErrorKind.CREDENTIALS and support.last_error == "refused"
