"""Mailbox administration in the product (issue 16): New mailbox, a mailbox's setup, Reject, a queue's
page, bulk actions from the list and their progress, the default profile, the profile form by kind,
Test connection, the minimum poll interval, and the Django admin that cannot touch internal state."""

from __future__ import annotations

import html
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import django_rq
import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rq import Queue

from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tests.conftest import login, run_command
from tests.test_users import GOOD_PASSWORD, NO_MAIL, link_in, set_password
from tracking.actions import (
    ActionError,
    ProfileValues,
    check_add_mailbox,
    check_add_mailbox_for_new_user,
    check_add_profile,
    do_finish_cycle,
    do_record_test_result,
    do_set_default_profile,
    role_of,
)
from tracking.choices import Approval, MailboxStatus, Role
from tracking.context import load_rules
from tracking.jobqueues import rq_queues
from tracking.jobs import QUEUE
from tracking.models import (
    AuditEvent,
    BulkOperation,
    EmailServerProfile,
    FolderSyncState,
    Mailbox,
)
from tracking.models import (
    Queue as CrmQueue,
)
from tracking.workers import SimpleWorker

HTMX = {"HX-Request": "true"}


def text(r) -> str:
    return html.unescape(r.content.decode())


@pytest.fixture
def rq_queue() -> Iterator[Queue]:
    q = django_rq.get_queue(QUEUE)
    q.empty()
    yield q
    q.empty()


def burst(q: Queue) -> None:
    SimpleWorker([q], connection=q.connection).work(burst=True)


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    for address in ("dana@contoso.com", "erin@contoso.com", "fred@contoso.com"):
        (tmp_path / address / "inbox").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def files(local_root: Path) -> EmailServerProfile:
    return check_add_profile(ProfileValues("files", "local", endpoint=str(local_root)))


@pytest.fixture
def three(files: EmailServerProfile) -> list[Mailbox]:
    """Three user mailboxes on a local folder profile, pending approval."""
    return [
        check_add_mailbox(f"{name}@contoso.com", profile_name="files", username=name, create_user=True)
        for name in ("dana", "erin", "fred")
    ]


# --- New mailbox, edit, reject, queue -------------------------------------------------------------------


def test_an_admin_creates_a_mailbox_for_a_user_with_the_default_profile(
    client: Client, admin: User, files: EmailServerProfile, exchange_profile: EmailServerProfile
) -> None:
    do_set_default_profile(files, acting_user=admin)
    gina = User.objects.create_user("gina", "")
    login(client, admin)
    form = text(client.get(reverse("web-mailbox-create")))
    assert f'<option value="{files.pk}" selected>files</option>' in form
    assert "New mailboxes get the default profile, files." in form
    r = client.post(
        reverse("web-mailbox-create"),
        {
            "email_address": "Gina@Contoso.com",
            "owner_kind": "user",
            "user": gina.pk,
            "profile": files.pk,
            "incoming_method": "server_side_sync",
            "process_emails_received_after": "2026-01-01T08:00",
        },
    )
    mailbox = Mailbox.objects.get(email_address="gina@contoso.com")
    assert r.status_code == 302 and r["Location"] == reverse("web-mailbox", args=[mailbox.pk])
    assert (mailbox.user, mailbox.profile, mailbox.approval, mailbox.enabled) == (
        gina,
        files,
        Approval.PENDING,
        False,
    )
    assert mailbox.process_emails_received_after is not None
    assert AuditEvent.objects.filter(action="mailbox_added", target="gina@contoso.com", actor=admin).exists()
    # the CLI uses the default profile too when none is named
    queue_box = check_add_mailbox("sales@contoso.com", queue_name="Sales")
    assert queue_box.profile == files


def test_an_admin_creates_a_mailbox_for_a_new_user_who_is_invited_by_mail(
    client: Client, admin: User, files: EmailServerProfile
) -> None:
    login(client, admin)
    assert "A new user, invited by email" in text(client.get(reverse("web-mailbox-create")))
    r = client.post(
        reverse("web-mailbox-create"),
        {
            "email_address": "Hugo@Contoso.com",
            "owner_kind": "invite",
            "profile": files.pk,
            "incoming_method": "server_side_sync",
            "approve": "on",
        },
        follow=True,
    )
    mailbox = Mailbox.objects.get(email_address="hugo@contoso.com")
    hugo = mailbox.user
    assert hugo is not None and hugo.email == "hugo@contoso.com" and not hugo.has_usable_password()
    assert role_of(hugo) == Role.USER
    assert (mailbox.profile, mailbox.approval) == (files, Approval.APPROVED)
    page = text(r)
    assert "Mailbox hugo@contoso.com created." in page
    assert "Invited hugo@contoso.com: the set-password link is on its way." in page
    [message] = mail.outbox
    assert message.to == ["hugo@contoso.com"] and f"user name {hugo.get_username()}" in str(message.body)
    actions = AuditEvent.objects.filter(actor=admin).exclude(action="signed_in").order_by("id")
    assert list(actions.values_list("action", "target")) == [
        ("user_invited", hugo.get_username()),
        ("mailbox_added", "hugo@contoso.com"),
        ("mailbox_approved", "hugo@contoso.com"),
    ]
    # the link in the mail lets hugo choose a password and sign in, to see his own mailbox
    path = link_in(str(message.body))
    person = Client()
    set_password(person, path, GOOD_PASSWORD)
    assert (
        person.post(
            reverse("login"), {"username": hugo.get_username(), "password": GOOD_PASSWORD}
        ).status_code
        == 302
    )
    assert person.get(reverse("web-mailbox", args=[mailbox.pk])).status_code == 200


def test_without_email_the_new_owners_link_is_shown_to_the_admin(
    client: Client, admin: User, files: EmailServerProfile
) -> None:
    with NO_MAIL:
        r = login(client, admin).post(
            reverse("web-mailbox-create"),
            {
                "email_address": "ines@contoso.com",
                "owner_kind": "invite",
                "profile": files.pk,
                "incoming_method": "server_side_sync",
            },
            follow=True,
        )
    page = text(r)
    assert "Email is not configured: give them this link" in page and "/set-password/" in page
    assert not mail.outbox
    assert Mailbox.objects.get(email_address="ines@contoso.com").user == User.objects.get(
        email="ines@contoso.com"
    )


def test_a_mail_server_that_is_down_shows_the_new_owners_link(
    client: Client, admin: User, files: EmailServerProfile
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    login(client, admin)
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="127.0.0.1", EMAIL_PORT=port
    ):
        r = client.post(
            reverse("web-mailbox-create"),
            {
                "email_address": "ola@contoso.com",
                "owner_kind": "invite",
                "profile": files.pk,
                "incoming_method": "server_side_sync",
            },
            follow=True,
        )
    page = text(r)
    assert r.status_code == 200 and "Mailbox ola@contoso.com created." in page
    assert "The invitation to ola@contoso.com could not be mailed" in page and "/set-password/" in page
    assert Mailbox.objects.get(email_address="ola@contoso.com").user is not None


def test_a_new_user_is_not_invited_for_an_address_someone_has(
    client: Client, admin: User, files: EmailServerProfile
) -> None:
    User.objects.create_user("jo", "JO@contoso.com")
    login(client, admin)
    before = (User.objects.count(), Mailbox.objects.count(), AuditEvent.objects.count())
    r = client.post(
        reverse("web-mailbox-create"),
        {
            "email_address": "jo@contoso.com",
            "owner_kind": "invite",
            "profile": files.pk,
            "incoming_method": "server_side_sync",
        },
    )
    assert r.status_code == 400 and "jo has this email address already: choose them as the user." in text(r)
    assert (User.objects.count(), Mailbox.objects.count(), AuditEvent.objects.count()) == before
    assert not mail.outbox


def test_a_refused_mailbox_leaves_no_invited_user_behind(db: None, files: EmailServerProfile) -> None:
    """The user and the mailbox are made together or not at all: a profile that does not exist refuses the
    mailbox after the user was made, and the user goes too."""
    before = (User.objects.count(), Mailbox.objects.count(), AuditEvent.objects.count())
    with pytest.raises(ActionError, match="no server profile named 'gone'"):
        check_add_mailbox_for_new_user("kim@contoso.com", profile_name="gone")
    assert (User.objects.count(), Mailbox.objects.count(), AuditEvent.objects.count()) == before
    mailbox = check_add_mailbox_for_new_user("kim@contoso.com", profile_name="files")
    assert mailbox.user is not None and mailbox.user.email == "kim@contoso.com"
    assert not mail.outbox  # the caller sends the invitation


def test_mailbox_add_invite_on_the_command_line(db: None, files: EmailServerProfile) -> None:
    out = run_command(
        "mailbox", "add", "Lea@Contoso.com", "--invite", "--profile", "files", "--track", "2"
    ).out
    lea = User.objects.get(email="lea@contoso.com")
    assert f"added mailbox lea@contoso.com (approval: pending) for the new user {lea.get_username()}" in out
    assert "the set-password link was mailed to lea@contoso.com" in out
    [message] = mail.outbox
    assert message.to == ["lea@contoso.com"] and "/set-password/" in str(message.body)
    assert Mailbox.objects.get(user=lea).profile == files and lea.personal_options.track == 2
    assert not lea.has_usable_password()
    with NO_MAIL:
        shown = run_command("mailbox", "add", "max@contoso.com", "--invite", "--profile", "files").out
    assert "email is not configured" in shown and "/set-password/" in shown
    before = (User.objects.count(), Mailbox.objects.count(), AuditEvent.objects.count())
    for args, error in [
        (("lea@contoso.com", "--invite", "--profile", "files"), "exists already"),
        (("nia@contoso.com", "--invite", "--profile", "gone"), "no server profile named 'gone'"),
        (("nia@contoso.com", "--invite", "--user", "nia"), "not allowed with argument"),
    ]:
        with pytest.raises(CommandError, match=error):
            run_command("mailbox", "add", *args)
    assert (User.objects.count(), Mailbox.objects.count(), AuditEvent.objects.count()) == before
    assert len(mail.outbox) == 1


def test_an_admin_creates_a_queue_mailbox_and_edits_the_queue(
    client: Client, admin: User, auditor: User, files: EmailServerProfile
) -> None:
    login(client, admin)
    r = client.post(
        reverse("web-mailbox-create"),
        {
            "email_address": "help@contoso.com",
            "owner_kind": "queue",
            "queue_name": "Helpdesk",
            "profile": files.pk,
            "incoming_method": "server_side_sync",
            "approve": "on",
        },
    )
    assert r.status_code == 302
    mailbox = Mailbox.objects.get(email_address="help@contoso.com")
    assert mailbox.queue is not None and mailbox.approval == Approval.APPROVED
    queue = mailbox.queue
    r = client.post(reverse("web-queue", args=[queue.pk]), {"track": "2", "owner": admin.pk})
    assert r.status_code == 302
    queue.refresh_from_db()
    assert (queue.track, queue.owner) == (2, admin)
    assert AuditEvent.objects.filter(action="queue_changed").count() == 2
    # the queue already has a mailbox: a second one is refused with 400
    again = client.post(
        reverse("web-mailbox-create"),
        {
            "email_address": "help2@contoso.com",
            "owner_kind": "queue",
            "queue_name": "Helpdesk",
            "profile": files.pk,
            "incoming_method": "server_side_sync",
        },
    )
    assert again.status_code == 400 and "This queue already has a mailbox." in text(again)
    # auditors read the queue and cannot change it
    login(client, auditor)
    page = text(client.get(reverse("web-queue", args=[queue.pk])))
    assert "Email messages from SyncAdmin Leads, Contacts, and Accounts" in page
    assert client.post(reverse("web-queue", args=[queue.pk]), {"track": "0"}).status_code == 403


def test_the_new_mailbox_form_refuses_what_it_cannot_store(
    client: Client, admin: User, alice: Mailbox, files: EmailServerProfile
) -> None:
    login(client, admin)  # a sign-in is an audit event of its own
    before = (Mailbox.objects.count(), AuditEvent.objects.count())
    for data, message in [
        (
            {"email_address": "not an address", "owner_kind": "queue", "queue_name": "Q"},
            "Enter an email address.",
        ),
        ({"email_address": "alice@contoso.com", "owner_kind": "queue", "queue_name": "Q"}, "already exists"),
        ({"email_address": "x@contoso.com", "owner_kind": "user"}, "Choose the user whose mailbox this is."),
        ({"email_address": "x@contoso.com", "owner_kind": "queue", "queue_name": " "}, "Name the queue."),
    ]:
        r = client.post(
            reverse("web-mailbox-create"),
            {"profile": files.pk, "incoming_method": "server_side_sync", **data},
        )
        assert r.status_code == 400 and message in text(r), message
    assert (Mailbox.objects.count(), AuditEvent.objects.count()) == before


def test_changing_the_profile_disables_the_mailbox_and_forgets_another_kinds_sync_state(
    client: Client, admin: User, alice: Mailbox, files: EmailServerProfile
) -> None:
    do_record_test_result(alice, ok=True, message="connected", now=timezone.now())
    FolderSyncState.objects.create(mailbox=alice, folder="inbox", state="ews-token")
    login(client, admin)
    page = text(client.get(reverse("web-mailbox-edit", args=[alice.pk])))
    assert 'name="enabled"' not in page and 'name="incoming_status"' not in page
    r = client.post(
        reverse("web-mailbox-edit", args=[alice.pk]),
        {"profile": files.pk, "incoming_method": "none", "process_emails_received_after": ""},
        follow=True,
    )
    assert "Run Test & Enable" in text(r)
    alice.refresh_from_db()
    assert (alice.profile, alice.incoming_method, alice.enabled, alice.next_run_at) == (
        files,
        "none",
        False,
        None,
    )
    assert FolderSyncState.objects.get(mailbox=alice).state == ""
    targets = set(AuditEvent.objects.filter(action="mailbox_changed").values_list("target", flat=True))
    assert targets == {"alice@contoso.com.profile", "alice@contoso.com.incoming_method"}


def test_an_admin_rejects_a_mailbox(client: Client, admin: User, alice: Mailbox) -> None:
    login(client, admin)
    r = client.post(reverse("web-mailbox-reject", args=[alice.pk]), follow=True)
    assert "Rejected the email address of alice@contoso.com." in text(r)
    alice.refresh_from_db()
    assert alice.approval == Approval.REJECTED
    event = AuditEvent.objects.get(action="mailbox_rejected")
    assert (event.actor, event.old_value, event.new_value) == (admin, "approved", "rejected")


# --- bulk ------------------------------------------------------------------------------------------------


def test_bulk_approve_then_test_and_enable_the_selected_mailboxes(
    client: Client,
    admin: User,
    auditor: User,
    three: list[Mailbox],
    rq_queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    login(client, admin)
    listing = text(client.get(reverse("web-mailboxes")))
    assert f'name="mailbox" value="{three[0].pk}"' in listing
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            reverse("web-mailbox-bulk"),
            {"action": "approve", "scope": "selected", "mailbox": [m.pk for m in three[:2]], "query": ""},
        )
    operation = BulkOperation.objects.get()
    assert r.status_code == 302 and r["Location"] == reverse("web-bulk-operation", args=[operation.pk])
    waiting = text(client.get(r["Location"], headers={**HTMX, "HX-Target": "bulk-progress"}))
    assert "0 of 2 done" in waiting and 'hx-trigger="every 2s"' in waiting
    burst(rq_queue)
    done = text(client.get(r["Location"]))
    assert "Finished: 2 done, 0 failed." in done and "hx-trigger" not in done
    approvals = AuditEvent.objects.filter(action="mailbox_approved", actor=admin)
    assert sorted(approvals.values_list("target", flat=True)) == ["dana@contoso.com", "erin@contoso.com"]
    assert Mailbox.objects.get(pk=three[2].pk).approval == Approval.PENDING
    # Test & Enable of all mailboxes matching a filter (approved ones): one audit event per mailbox
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("web-mailbox-bulk"), {"action": "test", "scope": "all", "query": "approval=approved"}
        )
    burst(rq_queue)
    enabled = set(Mailbox.objects.filter(enabled=True).values_list("email_address", flat=True))
    assert enabled == {"dana@contoso.com", "erin@contoso.com"}
    assert AuditEvent.objects.filter(action="mailbox_tested", actor=admin).count() == 2
    # auditors watch the progress and cannot start a bulk action
    login(client, auditor)
    assert client.get(reverse("web-bulk-operation", args=[operation.pk])).status_code == 200
    assert client.post(reverse("web-mailbox-bulk"), {"action": "disable", "scope": "all"}).status_code == 403


def test_bulk_refuses_an_empty_selection_with_400(client: Client, admin: User, three: list[Mailbox]) -> None:
    r = login(client, admin).post(reverse("web-mailbox-bulk"), {"action": "approve", "scope": "selected"})
    assert r.status_code == 400
    assert "Select at least one mailbox" in text(r)
    assert not BulkOperation.objects.exists()


def test_bulk_apply_default_profile_and_disable(
    client: Client,
    admin: User,
    alice: Mailbox,
    files: EmailServerProfile,
    rq_queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    login(client, admin)
    r = client.post(
        reverse("web-mailbox-bulk"), {"action": "apply_default_profile", "scope": "all"}, follow=True
    )
    assert "no server profile is the default" in text(r)
    client.post(reverse("web-profile-default", args=[files.pk]))
    assert EmailServerProfile.objects.get(is_default=True) == files
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("web-mailbox-bulk"), {"action": "apply_default_profile", "scope": "all"})
    burst(rq_queue)
    alice.refresh_from_db()
    assert alice.profile == files
    assert (
        AuditEvent.objects.filter(action="mailbox_changed", target="alice@contoso.com.profile").count() == 1
    )


def test_test_and_enable_the_mailboxes_of_a_profile(
    client: Client,
    admin: User,
    three: list[Mailbox],
    files: EmailServerProfile,
    rq_queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    Mailbox.objects.update(approval=Approval.APPROVED)
    login(client, admin)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(reverse("web-profile-test-mailboxes", args=[files.pk]))
    assert r.status_code == 302
    burst(rq_queue)
    assert Mailbox.objects.filter(enabled=True, incoming_status=MailboxStatus.SUCCESS).count() == 3


# --- the profile form by kind ----------------------------------------------------------------------------


def test_the_profile_form_shows_only_the_kinds_fields(client: Client, admin: User, db: None) -> None:
    login(client, admin)
    graph = text(client.get(reverse("web-profile-create")))
    assert 'name="tenant_id"' in graph and 'name="username"' not in graph
    assert '<option value="oauth2" selected>' in graph and '<option value="none"' not in graph
    local = client.get(
        reverse("web-profile-create") + "?kind=local", headers={**HTMX, "HX-Target": "kind-fields"}
    )
    body = text(local)
    assert body.startswith('<div id="kind-fields">')
    assert 'name="endpoint"' in body and 'name="secret"' not in body and 'name="auth_method"' not in body
    # without JavaScript: "Show the fields of this kind" posts, keeps what was typed and saves nothing
    r = client.post(reverse("web-profile-create"), {"name": "Typed", "kind": "imap", "refresh_kind": "1"})
    assert r.status_code == 200 and 'value="Typed"' in text(r) and 'name="tenant_id"' not in text(r)
    assert not EmailServerProfile.objects.exists()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"kind": "exchange_graph", "auth_method": "oauth2"}, "tenant_id", "Test & Enable needs this"),
        ({"kind": "exchange_graph", "auth_method": "oauth2", "tenant_id": "t"}, "client_id", "needs this"),
        (
            {"kind": "exchange_graph", "auth_method": "oauth2", "tenant_id": "t", "client_id": "c"},
            "secret",
            "needs a secret",
        ),
        ({"kind": "exchange_graph", "auth_method": "none"}, "auth_method", "Select a valid choice."),
        (
            {
                "kind": "exchange_ews",
                "endpoint": "https://m.example.com/EWS/Exchange.asmx",
                "auth_method": "ntlm",
            },
            "username",
            "needs this for NTLM",
        ),
        (
            {"kind": "imap", "endpoint": "https://m.example.com", "auth_method": "password"},
            "endpoint",
            "imaps://",
        ),
        ({"kind": "local", "endpoint": "/nonexistent/syncadmin"}, "endpoint", "a directory that exists"),
    ],
)
def test_the_profile_form_refuses_what_test_and_enable_would_find_missing(
    client: Client, admin: User, db: None, data: dict[str, str], field: str, message: str
) -> None:
    r = login(client, admin).post(
        reverse("web-profile-create"), {"name": "Broken", "max_concurrent_connections": "10", **data}
    )
    assert r.status_code == 400
    assert message in text(r).split(f'id="id_{field}_error"')[1].split("</span>")[0]
    assert not EmailServerProfile.objects.exists()


def test_test_connection_on_the_profile_page_is_a_job_whose_result_the_page_shows(
    client: Client,
    admin: User,
    files: EmailServerProfile,
    rq_queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    login(client, admin)
    page = text(client.get(reverse("web-profile-edit", args=[files.pk])))
    assert "Test connection" in page and "Make default for new mailboxes" in page
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(reverse("web-profile-test", args=[files.pk]), {"address": "Dana@Contoso.com"})
    assert r.status_code == 302 and r["Location"] == reverse("web-profile-edit", args=[files.pk])
    # queued, not run in the request: the page polls until a worker has the result
    assert len(rq_queue) == 1
    waiting = client.get(
        reverse("web-profile-edit", args=[files.pk]), headers={**HTMX, "HX-Target": "connection-test"}
    )
    body = text(waiting)
    assert body.startswith('<div id="connection-test"') and 'hx-trigger="every 2s"' in body
    assert "Test connection queued" in body and "dana@contoso.com" in body
    burst(rq_queue)
    done = text(client.get(reverse("web-profile-edit", args=[files.pk])))
    assert "Test connection succeeded: connected; the inbox of dana@contoso.com can be read" in done
    assert 'hx-trigger="every 2s"' not in done
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("web-profile-test", args=[files.pk]), {"address": "nobody@contoso.com"})
    burst(rq_queue)
    bad = text(client.get(reverse("web-profile-edit", args=[files.pk])))
    assert "Test connection failed" in bad and "nobody@contoso.com" in bad
    assert not Mailbox.objects.exists()
    # the result is this session's: another admin's page shows none
    other = User.objects.create_superuser("root", "root@contoso.com", "pw-root-123")
    assert "Test connection failed" not in text(
        login(Client(), other).get(reverse("web-profile-edit", args=[files.pk]))
    )


def test_test_connection_refuses_a_bad_address_and_queues_nothing(
    client: Client, admin: User, files: EmailServerProfile, rq_queue: Queue
) -> None:
    r = login(client, admin).post(
        reverse("web-profile-test", args=[files.pk]), {"address": "not an address"}, follow=True
    )
    assert "Enter an email address." in text(r)
    assert len(rq_queue) == 0


def test_test_connection_says_so_when_the_job_queue_is_down(
    client: Client, admin: User, files: EmailServerProfile
) -> None:
    login(client, admin)
    with override_settings(RQ_QUEUES=rq_queues("redis://127.0.0.1:1/0", 60)):
        r = client.post(
            reverse("web-profile-test", args=[files.pk]), {"address": "dana@contoso.com"}, follow=True
        )
        page = text(r)
    assert r.status_code == 200
    assert "The job queue is unavailable" in page and "nothing was queued" in page
    assert "Test connection queued" not in page


# --- Test connection against the Exchange simulator: a token and one request, no mailbox ------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # Graph: one token from the token endpoint (msal reads the tenant's OpenID configuration first),
        # then one request for the inbox
        ("exchange_graph", {"token": 1, "graph": 1, "ews": 0}),
        # EWS with basic auth: no token, one GetFolder of the inbox
        ("exchange_ews", {"token": 0, "graph": 0, "ews": 1}),
    ],
)
def test_test_connection_against_the_simulator(
    client: Client, admin: User, sim: Simulator, kind: str, expected: dict[str, int]
) -> None:
    h.fill(sim, "dana@contoso.com", count=1)
    profile = h.add_sim_profile(sim, "contoso", kind)
    login(client, admin)
    sim.clear_requests()
    client.post(reverse("web-profile-test", args=[profile.pk]), {"address": "dana@contoso.com"})
    assert sim.count() == 0  # nothing happens in the request itself
    h.burst()
    page = text(client.get(reverse("web-profile-edit", args=[profile.pk])))
    assert "Test connection succeeded: connected; the inbox of dana@contoso.com can be read" in page
    counts = {protocol: sim.count(protocol) for protocol in ("graph", "ews")}
    assert {"token": sim.count("token", "token"), **counts} == expected
    assert not Mailbox.objects.exists()


@pytest.mark.parametrize("kind", ["exchange_graph", "exchange_ews"])
def test_test_connection_says_why_it_failed(client: Client, admin: User, sim: Simulator, kind: str) -> None:
    h.fill(sim, "dana@contoso.com", count=1)
    wrong = h.add_sim_profile(sim, "wrong secret", kind, secret="not-the-secret")
    right = h.add_sim_profile(sim, "right secret", kind)
    login(client, admin)
    client.post(reverse("web-profile-test", args=[wrong.pk]), {"address": "dana@contoso.com"})
    client.post(reverse("web-profile-test", args=[right.pk]), {"address": "nobody@contoso.com"})
    h.burst()
    refused = text(client.get(reverse("web-profile-edit", args=[wrong.pk])))
    assert "Test connection failed:" in refused and "refused the credentials" in refused
    missing = text(client.get(reverse("web-profile-edit", args=[right.pk])))
    assert "Test connection failed:" in missing and "nobody@contoso.com" in missing
    assert not Mailbox.objects.exists()


def test_profile_test_on_the_command_line(sim: Simulator) -> None:
    h.fill(sim, "dana@contoso.com", count=1)
    h.add_sim_profile(sim, "contoso", "exchange_graph")
    ok = run_command("profile", "test", "contoso", "Dana@Contoso.com")
    assert ok.out.strip() == "contoso: connected; the inbox of dana@contoso.com can be read"
    with pytest.raises(CommandError, match=r"^Test connection of contoso failed: .*nobody@contoso\.com"):
        run_command("profile", "test", "contoso", "nobody@contoso.com")
    with pytest.raises(CommandError, match="is not an email address"):
        run_command("profile", "test", "contoso", "nobody")
    assert not Mailbox.objects.exists()


# --- scheduling and internal state -----------------------------------------------------------------------


def test_the_scheduler_honours_a_profiles_minimum_poll_interval(alice: Mailbox) -> None:
    rules = load_rules()
    now = timezone.now()
    do_finish_cycle(alice.pk, rules, now=now)
    alice.refresh_from_db()
    assert alice.next_run_at == now + timedelta(minutes=rules.poll_interval_minutes)
    EmailServerProfile.objects.filter(pk=alice.profile_id).update(minimum_poll_interval_minutes=60)
    do_finish_cycle(alice.pk, rules, now=now)
    alice.refresh_from_db()
    assert alice.next_run_at == now + timedelta(minutes=60)


def test_the_django_admin_cannot_edit_internal_state(client: Client, alice: Mailbox) -> None:
    root = User.objects.create_superuser("root", "root@contoso.com", "pw-root-123")
    login(client, root)
    page = text(client.get(reverse("admin:tracking_mailbox_change", args=[alice.pk])))
    for name in ("enabled", "approval", "incoming_status", "transient_failure_count", "next_run_at"):
        assert f'name="{name}"' not in page, name
    assert client.get(reverse("admin:tracking_mailbox_add")).status_code == 403
    assert CrmQueue.objects.count() == 0
