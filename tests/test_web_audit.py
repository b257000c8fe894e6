"""The audit trail page: every kind of audit event, for admins and auditors, filtered, paged, exported."""

from __future__ import annotations

import csv
import getpass
import io
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from tests.conftest import login
from tracking.actions import (
    check_add_folder_rule,
    check_import_records,
    check_set_org_setting,
    do_add_exclusion,
    do_approve_mailbox,
    do_purge_decisions,
    do_set_personal_options,
)
from tracking.models import AuditEvent, Mailbox
from tracking.orgsettings import spec_for

URL = reverse("web-audit")
EXPORT = reverse("web-audit-export")


@pytest.fixture
def history(alice: Mailbox, admin: User) -> None:
    """One event of each kind a change makes, by an admin on the web and by the CLI."""
    from django.utils import timezone

    check_set_org_setting("HashMaxCount", "31", acting_user=admin)
    check_set_org_setting("TrackingPrefix", "ZZ", actor_label="cli")
    do_approve_mailbox(alice, approve=False, acting_user=admin)
    assert alice.user is not None
    do_set_personal_options(alice.user, track=0, acting_user=alice.user)
    do_add_exclusion("@spam.example", acting_user=admin)
    check_add_folder_rule(alice, "Inbox/Projects", folder_id="f-Projects", acting_user=alice.user)
    check_import_records("contact", "name,email\nJane,jane@fabrikam.example\n,bad\n", file_name="c.csv")
    do_purge_decisions(timezone.now(), actor_label="cli:ada")


def rows_of(body: str) -> str:
    return body.split("<tbody>")[1].split("</tbody>")[0] if "<tbody>" in body else ""


def test_an_admin_sees_every_kind_of_event_with_before_and_after(client: Client, admin: User, history: None):
    body = rows_of(login(client, admin).get(URL).content.decode())
    for label in (
        "Organisation setting changed",
        "Mailbox email rejected",
        "Personal options changed",
        "Exclusion added",
        "Folder tracking rule added",
        "CRM records imported",
        "Decisions purged",
        "Signed in",
    ):
        assert label in body, label
    default = spec_for("HashMaxCount").default
    assert f"<code>{default}</code> → <code>31</code>" in body  # HashMaxCount, before → after
    assert "c.csv" in body and "contact: created 1, updated 0, rejected 1" in body
    assert f"cli:{getpass.getuser()}" in body  # the CLI's change names the operating-system user


def test_an_auditor_reads_it_and_a_user_gets_403(
    client: Client, auditor: User, alice: Mailbox, history: None
):
    assert login(client, auditor).get(URL).status_code == 200
    assert client.get(EXPORT).status_code == 200
    assert alice.user is not None
    assert login(client, alice.user).get(URL).status_code == 403
    assert client.get(EXPORT).status_code == 403


def test_the_filters(client: Client, admin: User, history: None) -> None:
    login(client, admin)
    by_action = rows_of(client.get(URL, {"action": "exclusion_added"}).content.decode())
    assert "@spam.example" in by_action and "HashMaxCount" not in by_action
    by_actor = rows_of(client.get(URL, {"actor": "alice"}).content.decode())
    assert "Personal options changed" in by_actor and "HashMaxCount" not in by_actor
    by_object = rows_of(client.get(URL, {"target": "hashmax"}).content.decode())
    assert "HashMaxCount" in by_object and "TrackingPrefix" not in by_object
    assert "No audit events match" in client.get(URL, {"until": "2000-01-01"}).content.decode()
    assert "HashMaxCount" in rows_of(client.get(URL, {"since": "2000-01-01"}).content.decode())


def test_a_bad_filter_value_is_shown_not_a_crash(client: Client, admin: User) -> None:
    response = login(client, admin).get(URL, {"action": "nope", "since": "yesterday"})
    assert response.status_code == 200
    assert 'class="errorlist"' in response.content.decode()


def test_keyset_pages(client: Client, admin: User, db: None) -> None:
    do_set_personal_options(admin, rows_per_page=10)
    for i in range(30):
        check_set_org_setting("HashMaxCount", str(40 + i), acting_user=admin)
    login(client, admin)
    first = client.get(URL, {"action": "orgsetting_changed"}).content.decode()
    assert "<code>68</code> → <code>69</code>" in first and "<code>40</code>" not in first
    older = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(older).content.decode()
    assert "<code>58</code> → <code>59</code>" in second and "<code>68</code> → <code>69</code>" not in second
    assert 'rel="prev"' in second


def test_the_htmx_fragment_is_the_table_alone(client: Client, admin: User, history: None) -> None:
    response = login(client, admin).get(URL, {"action": "decisions_purged"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "<html" not in body and "Decisions purged" in body
    assert response["HX-Push-Url"].startswith(URL + "?")


def test_the_csv_export_streams_the_filtered_events(client: Client, admin: User, history: None) -> None:
    response = login(client, admin).get(EXPORT, {"action": "records_imported"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.getvalue().decode())))
    assert rows[0] == ["created_at", "actor", "action", "target", "old_value", "new_value"]
    assert [r[2:] for r in rows[1:]] == [
        ["records_imported", "c.csv", "", "contact: created 1, updated 0, rejected 1"]
    ]


def test_the_export_defuses_formulas(client: Client, admin: User, db: None) -> None:
    do_add_exclusion("=cmd@x.example", acting_user=admin)
    body = login(client, admin).get(EXPORT).getvalue().decode()
    assert "'=cmd@x.example" in body


def test_sign_ins_failures_and_lockouts_are_audited(client: Client, admin: User, db: None) -> None:
    login_url = reverse("login")
    with override_settings(AXES_FAILURE_LIMIT=2):
        client.post(login_url, {"username": "ada", "password": "wrong"})
        client.post(login_url, {"username": "ada", "password": "wrong"})
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "target"))
    assert ("sign_in_failed", "ada") in actions and ("locked_out", "ada") in actions
    client.post(login_url, {"username": "audrey-not", "password": "x"})
    fresh = Client()
    fresh.post(login_url, {"username": "ada", "password": "pw-ada-123"}, REMOTE_ADDR="10.0.0.9")
    event = AuditEvent.objects.filter(action="signed_in").get()
    assert (event.actor, event.new_value) == (admin, "password")


def test_the_cli_import_names_the_file(cmd, db: None, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("name,email\nLee,lee@example.org\n")
    cmd("import_records", "lead", str(path))
    event = AuditEvent.objects.get(action="records_imported")
    assert (event.target, event.new_value) == ("leads.csv", "lead: created 1, updated 0, rejected 0")
    assert event.actor_label == f"cli:{getpass.getuser()}"


def test_the_web_import_is_audited_as_its_admin(
    client: Client, admin: User, django_capture_on_commit_callbacks: Any
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.rq_helpers import burst

    upload = SimpleUploadedFile("accounts.csv", b"name,email\nContoso,info@contoso.example\n")
    with django_capture_on_commit_callbacks(execute=True):  # the import job is sent when the request commits
        login(client, admin).post(reverse("web-directory-import"), {"kind": "account", "file": upload})
    burst()
    event = AuditEvent.objects.get(action="records_imported")
    assert (event.actor, event.target, event.new_value) == (
        admin,
        "accounts.csv",
        "account: created 1, updated 0, rejected 0",
    )
