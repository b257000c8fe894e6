"""Server profiles: the list, create and edit for admins, read-only for auditors; the secret is write-only."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.conftest import login, make_mailbox
from tracking.actions import ProfileValues, check_add_profile
from tracking.models import AuditEvent, EmailServerProfile, Mailbox, PersonalOptions

LIST = reverse("web-profiles")
CREATE = reverse("web-profile-create")
SECRET = "Sup3r-s3cret-Pa55!"
NEW_SECRET = "An0ther-s3cret-Pa55?"


def text(r) -> str:
    return html.unescape(r.content.decode())


def edit_url(profile: EmailServerProfile) -> str:
    return reverse("web-profile-edit", args=[profile.pk])


def form_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Contoso EWS",
        "kind": "exchange_ews",
        "endpoint": "https://mail.contoso.com/EWS/Exchange.asmx",
        "auth_method": "basic",
        "username": "svc-sync",
        "secret": SECRET,
        "tenant_id": "",
        "client_id": "",
        "authority": "",
        "ca_bundle": "",
        "process_emails_received_after": "",
        "max_concurrent_connections": "10",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def ews(db: None) -> EmailServerProfile:
    return check_add_profile(
        ProfileValues(
            "Contoso EWS",
            "exchange_ews",
            endpoint="https://mail.contoso.com/EWS/Exchange.asmx",
            auth_method="basic",
            username="svc-sync",
        ),
        secret=SECRET,
    )


def assert_no_secret(*responses) -> None:
    for r in responses:
        body = r.content.decode()
        assert SECRET not in body and NEW_SECRET not in body
        assert html.escape(SECRET) not in body and html.escape(NEW_SECRET) not in body


def assert_no_secret_in_audit() -> None:
    for old, new in AuditEvent.objects.values_list("old_value", "new_value"):
        for secret in (SECRET, NEW_SECRET):
            assert secret not in old and secret not in new


# --- who may ------------------------------------------------------------------------------------------


def test_it_sends_anonymous_visitors_to_sign_in(client: Client, ews: EmailServerProfile) -> None:
    for target in (LIST, CREATE, edit_url(ews)):
        r = client.get(target)
        assert r.status_code == 302 and r["Location"].startswith(reverse("login"))
    r = client.post(CREATE, form_data(name="x"))
    assert r.status_code == 302
    assert not EmailServerProfile.objects.filter(name="x").exists()


def test_it_refuses_users(client: Client, alice: Mailbox, ews: EmailServerProfile) -> None:
    assert alice.user is not None
    login(client, alice.user)
    for target in (LIST, CREATE, edit_url(ews)):
        assert client.get(target).status_code == 403
    assert client.post(CREATE, form_data(name="by a user")).status_code == 403
    assert client.post(edit_url(ews), form_data(name="renamed")).status_code == 403
    assert not EmailServerProfile.objects.filter(name__in=["by a user", "renamed"]).exists()


def test_it_lets_auditors_read_but_not_write(client: Client, auditor: User, ews: EmailServerProfile) -> None:
    login(client, auditor)
    assert client.get(LIST).status_code == 200
    assert client.get(CREATE).status_code == 403
    assert client.post(CREATE, form_data(name="by an auditor")).status_code == 403
    page = client.get(edit_url(ews))
    assert page.status_code == 200
    body = text(page)
    assert body.count('method="post"') == 1  # sign out only
    assert 'type="password"' not in body
    assert "https://mail.contoso.com/EWS/Exchange.asmx" in body
    assert "svc-sync" in body
    assert r"Password or client secret" in body and ">set<" in body
    r = client.post(edit_url(ews), form_data(name="renamed", secret=NEW_SECRET))
    assert r.status_code == 403
    ews.refresh_from_db()
    assert ews.name == "Contoso EWS" and ews.get_secret() == SECRET
    assert not EmailServerProfile.objects.filter(name="by an auditor").exists()
    assert_no_secret(page, r)


def test_it_answers_404_for_a_missing_profile(client: Client, admin: User, db: None) -> None:
    assert login(client, admin).get(reverse("web-profile-edit", args=[999])).status_code == 404


# --- the list ------------------------------------------------------------------------------------------


def test_it_lists_profiles_with_secret_state_and_mailbox_count(
    client: Client, admin: User, ews: EmailServerProfile, alice: Mailbox
) -> None:
    make_mailbox("zoe@contoso.com", "zoe", ews)
    make_mailbox("yann@contoso.com", "yann", ews)
    r = login(client, admin).get(LIST)
    body = text(r)
    row = body.split(">Contoso EWS</a>")[1].split("</tr>")[0]
    assert "Exchange Server (EWS)" in row
    assert "https://mail.contoso.com/EWS/Exchange.asmx" in row
    assert "Basic" in row and "svc-sync" in row
    assert '<span class="badge success">set</span>' in row
    assert f'?profile={ews.pk}">2</a>' in row
    other = body.split(">exchange</a>")[1].split("</tr>")[0]  # the conftest profile alice is on
    assert '<span class="badge">not set</span>' in other
    assert ">1</a>" in other
    assert CREATE in body
    assert_no_secret(r)


def test_it_offers_no_new_profile_button_to_auditors(
    client: Client, auditor: User, ews: EmailServerProfile
) -> None:
    assert CREATE not in text(login(client, auditor).get(LIST))


# --- create --------------------------------------------------------------------------------------------


def test_it_shows_an_empty_form(client: Client, admin: User, db: None) -> None:
    body = text(login(client, admin).get(CREATE))
    assert 'type="password"' in body
    assert "clear_secret" not in body  # nothing to clear yet
    assert 'type="datetime-local"' in body


def test_it_creates_a_profile(client: Client, admin: User, db: None) -> None:
    PersonalOptions.objects.update_or_create(user=admin, defaults={"time_zone": "Europe/Berlin"})
    login(client, admin)
    r = client.post(
        CREATE, form_data(process_emails_received_after="2024-06-01T08:00", use_impersonation="on")
    )
    profile = EmailServerProfile.objects.get(name="Contoso EWS")
    assert r.status_code == 302 and r["Location"] == edit_url(profile)
    assert profile.kind == "exchange_ews" and profile.username == "svc-sync"
    assert profile.use_impersonation
    assert profile.process_emails_received_after == datetime(2024, 6, 1, 6, 0, tzinfo=UTC)
    assert profile.get_secret() == SECRET
    assert SECRET not in profile.secret_encrypted
    event = AuditEvent.objects.get(action="profile_added")
    assert (event.actor, event.target) == (admin, "Contoso EWS")
    page = client.get(r["Location"])
    assert "Server profile Contoso EWS created." in text(page)
    assert "A secret is set." in text(page)
    assert_no_secret(r, page, client.get(LIST))
    assert_no_secret_in_audit()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required."),
        ({"kind": "pop3"}, "kind", "Select a valid choice. pop3 is not one of the available choices."),
        ({"auth_method": "kerberos"}, "auth_method", "Select a valid choice."),
        ({"max_concurrent_connections": "0"}, "max_concurrent_connections", "greater than or equal to 1"),
        ({"max_concurrent_connections": "301"}, "max_concurrent_connections", "less than or equal to 300"),
        ({"max_concurrent_connections": "many"}, "max_concurrent_connections", "Enter a whole number."),
        ({"endpoint": ""}, "endpoint", "Enter the EWS URL"),
        ({"endpoint": "http://mail.contoso.com/EWS/Exchange.asmx"}, "endpoint", "Enter the EWS URL"),
        ({"endpoint": "mail.contoso.com"}, "endpoint", "Enter the EWS URL"),
        ({"kind": "exchange_graph", "endpoint": "graph.microsoft.com"}, "endpoint", "https:// URL"),
        ({"kind": "imap", "endpoint": "https://mail.contoso.com"}, "endpoint", "imaps://host:993"),
        ({"kind": "imap", "endpoint": "imaps://"}, "endpoint", "imaps://host:993"),
        ({"kind": "imap", "endpoint": "imaps://mail.contoso.com:99999"}, "endpoint", "imaps://host:993"),
        ({"kind": "local", "endpoint": "/nonexistent/syncadmin-mail"}, "endpoint", "a directory that exists"),
        ({"kind": "local", "endpoint": ""}, "endpoint", "a directory that exists"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle", "There is no file /nonexistent/ca.pem"),
        ({"authority": "http://login.example.com"}, "authority", "Enter an https:// URL"),
        ({"process_emails_received_after": "yesterday"}, "process_emails_received_after", "valid date/time"),
        ({"name": "n" * 101}, "name", "at most 100 characters"),
    ],
)
def test_it_validates_the_form(
    client: Client, admin: User, db: None, overrides: dict[str, str], field: str, message: str
) -> None:
    r = login(client, admin).post(CREATE, form_data(**overrides))
    assert r.status_code == 400
    body = text(r)
    error = body.split(f'id="id_{field}_error"')[1].split("</span>")[0]
    assert message in error
    assert 'aria-invalid="true"' in body
    assert not EmailServerProfile.objects.exists()
    assert not AuditEvent.objects.exists()
    assert_no_secret(r)  # the password field never renders its value, even on an error


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "exchange_graph", "endpoint": "", "auth_method": "oauth2", "client_id": "app"},
        {"kind": "exchange_graph", "endpoint": "https://graph.microsoft.com"},
        {"kind": "imap", "endpoint": "imaps://mail.contoso.com:993"},
        {"kind": "imap", "endpoint": "imap://mail.contoso.com"},
    ],
)
def test_it_accepts_each_kinds_endpoint(
    client: Client, admin: User, db: None, overrides: dict[str, str]
) -> None:
    r = login(client, admin).post(CREATE, form_data(**overrides))
    assert r.status_code == 302
    assert EmailServerProfile.objects.get(name="Contoso EWS").kind == overrides["kind"]


def test_it_accepts_a_local_directory_and_a_ca_file(client: Client, admin: User, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    r = login(client, admin).post(
        CREATE, form_data(kind="local", endpoint=str(tmp_path), ca_bundle=str(ca), secret="")
    )
    assert r.status_code == 302
    profile = EmailServerProfile.objects.get(name="Contoso EWS")
    assert profile.endpoint == str(tmp_path) and profile.ca_bundle == str(ca)
    assert not profile.has_secret


def test_it_treats_an_empty_post_as_a_form_with_errors(client: Client, admin: User, db: None) -> None:
    r = login(client, admin).post(CREATE, {})
    assert r.status_code == 400
    assert "This field is required." in text(r)


def test_it_refuses_a_duplicate_name(client: Client, admin: User, ews: EmailServerProfile) -> None:
    r = login(client, admin).post(CREATE, form_data(secret=NEW_SECRET))
    assert r.status_code == 400
    assert "a server profile named 'Contoso EWS' already exists" in text(r)
    assert EmailServerProfile.objects.count() == 1
    assert_no_secret(r)


# --- edit ----------------------------------------------------------------------------------------------


def test_it_shows_the_form_without_the_secret(client: Client, admin: User, ews: EmailServerProfile) -> None:
    r = login(client, admin).get(edit_url(ews))
    body = text(r)
    assert 'name="secret"' in body
    assert (
        'name="secret" autocomplete="new-password" aria-describedby="id_secret_helptext" id="id_secret"'
        in body
    )
    assert 'value="svc-sync"' in body
    assert "Clear the stored secret" in body
    assert_no_secret(r)


def test_it_keeps_the_secret_when_the_field_is_empty(
    client: Client, admin: User, ews: EmailServerProfile
) -> None:
    r = login(client, admin).post(
        edit_url(ews), form_data(secret="", max_concurrent_connections="3", name="Renamed")
    )
    assert r.status_code == 302
    ews.refresh_from_db()
    assert (ews.name, ews.max_concurrent_connections, ews.get_secret()) == ("Renamed", 3, SECRET)
    changes = {
        e.target: (e.old_value, e.new_value) for e in AuditEvent.objects.filter(action="profile_changed")
    }
    assert changes == {
        "Contoso EWS.name": ("Contoso EWS", "Renamed"),
        "Contoso EWS.max_concurrent_connections": ("10", "3"),
    }
    assert all(e.actor == admin for e in AuditEvent.objects.filter(action="profile_changed"))


def test_it_replaces_the_secret(client: Client, admin: User, ews: EmailServerProfile) -> None:
    login(client, admin)
    r = client.post(edit_url(ews), form_data(secret=NEW_SECRET))
    assert r.status_code == 302
    ews.refresh_from_db()
    assert ews.get_secret() == NEW_SECRET
    event = AuditEvent.objects.get(action="profile_changed")
    assert (event.target, event.old_value, event.new_value) == ("Contoso EWS.secret", "set", "secret changed")
    assert_no_secret_in_audit()
    assert_no_secret(r, client.get(edit_url(ews)), client.get(LIST))


def test_it_clears_the_secret(client: Client, admin: User, ews: EmailServerProfile) -> None:
    login(client, admin)
    r = client.post(edit_url(ews), form_data(secret="", clear_secret="on"), follow=True)
    ews.refresh_from_db()
    assert not ews.has_secret
    assert "No secret is set." in text(r)
    event = AuditEvent.objects.get(action="profile_changed")
    assert (event.target, event.new_value) == ("Contoso EWS.secret", "secret cleared")


def test_it_refuses_a_new_secret_and_clearing_at_once(
    client: Client, admin: User, ews: EmailServerProfile
) -> None:
    r = login(client, admin).post(edit_url(ews), form_data(secret=NEW_SECRET, clear_secret="on"))
    assert r.status_code == 400
    assert "Type a new secret or clear it, not both." in text(r)
    ews.refresh_from_db()
    assert ews.get_secret() == SECRET
    assert_no_secret(r)


def test_it_says_when_nothing_changed(client: Client, admin: User, ews: EmailServerProfile) -> None:
    r = login(client, admin).post(edit_url(ews), form_data(secret=""), follow=True)
    assert "Nothing changed." in text(r)
    assert not AuditEvent.objects.filter(action="profile_changed").exists()


def test_it_audits_dates_in_utc(client: Client, admin: User, ews: EmailServerProfile) -> None:
    PersonalOptions.objects.update_or_create(user=admin, defaults={"time_zone": "America/New_York"})
    login(client, admin).post(
        edit_url(ews), form_data(secret="", process_emails_received_after="2024-01-15T07:00")
    )
    event = AuditEvent.objects.get(action="profile_changed")
    assert (event.target, event.old_value, event.new_value) == (
        "Contoso EWS.process_emails_received_after",
        "",
        "2024-01-15T12:00:00+00:00",
    )


def test_it_validates_edits(client: Client, admin: User, ews: EmailServerProfile) -> None:
    check_add_profile(ProfileValues("Other", "imap", endpoint="imaps://imap.contoso.com:993"))
    login(client, admin)
    r = client.post(edit_url(ews), form_data(name="Other", secret=NEW_SECRET))
    assert r.status_code == 400
    assert "a server profile named 'Other' already exists" in text(r)
    r2 = client.post(edit_url(ews), form_data(max_concurrent_connections="301", secret=NEW_SECRET))
    assert r2.status_code == 400
    ews.refresh_from_db()
    assert (ews.name, ews.max_concurrent_connections, ews.get_secret()) == ("Contoso EWS", 10, SECRET)
    assert not AuditEvent.objects.filter(action="profile_changed").exists()
    assert_no_secret(r, r2)


def test_it_keeps_the_kind_of_a_profile_in_use(
    client: Client, admin: User, ews: EmailServerProfile, tmp_path: Path
) -> None:
    make_mailbox("zoe@contoso.com", "zoe", ews)
    r = login(client, admin).post(edit_url(ews), form_data(kind="local", endpoint=str(tmp_path), secret=""))
    assert r.status_code == 400
    assert "the kind of a server profile cannot change while mailboxes use it" in text(r)
    ews.refresh_from_db()
    assert ews.kind == "exchange_ews"


def test_it_changes_the_kind_of_an_unused_profile(
    client: Client, admin: User, ews: EmailServerProfile
) -> None:
    r = login(client, admin).post(
        edit_url(ews), form_data(kind="imap", endpoint="imaps://imap.contoso.com:993", secret=NEW_SECRET)
    )
    assert r.status_code == 302
    ews.refresh_from_db()
    assert (ews.kind, ews.endpoint, ews.get_secret()) == ("imap", "imaps://imap.contoso.com:993", NEW_SECRET)


def test_it_never_shows_the_secret_on_any_page(
    client: Client, admin: User, auditor: User, ews: EmailServerProfile
) -> None:
    mailbox = make_mailbox("zoe@contoso.com", "zoe", ews)
    pages = [LIST, edit_url(ews), reverse("web-mailbox", args=[mailbox.pk]), reverse("web-mailboxes")]
    for user in (admin, auditor):
        login(client, user)
        assert_no_secret(*[client.get(p) for p in pages])
    assert mailbox.user is not None
    login(client, mailbox.user)
    assert_no_secret(client.get(reverse("web-mailbox", args=[mailbox.pk])))
