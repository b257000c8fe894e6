"""Org settings: the System Settings email tab, the OrgDBOrgSettings list and the audit list of changes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from syncadmin.web.forms.settings import LABELS, SECTIONS
from tests.conftest import login
from tracking.actions import check_set_org_setting
from tracking.models import AuditEvent, OrgSettings
from tracking.orgsettings import ORG_SETTINGS, spec_for

URL = reverse("web-orgsettings")
CHANGES = reverse("web-orgsettings-changes")


def full_form(**overrides: str | bool) -> dict[str, Any]:
    """The whole email tab as a browser posts it: every setting listed, ticked checkboxes only."""
    org = OrgSettings.load()
    data: dict[str, Any] = {"setting": [spec.name for spec in ORG_SETTINGS]}
    for spec in ORG_SETTINGS:
        value = overrides.get(spec.name, getattr(org, spec.field))
        if spec.type == "bool":
            if value is True or value == "true":
                data[spec.name] = "true"
            elif value not in (False, "false"):
                data[spec.name] = value  # a hand-made bad value
        else:
            data[spec.name] = str(value)
    return data


def row_of(body: str, name: str) -> str:
    """One setting's block of the email tab."""
    return body.split(f'id="setting-{name}"')[1].split('id="setting-')[0].split("</fieldset>")[0]


@pytest.fixture
def users(admin: User, auditor: User, alice_user: User) -> dict[str, User]:
    return {"admin": admin, "auditor": auditor, "user": alice_user}


# --- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, URL + "?tab=orgdb", CHANGES])
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, db: None, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 302
    assert r["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("url", [URL, URL + "?tab=orgdb", CHANGES])
def test_it_refuses_users(client: Client, alice_user: User, url: str) -> None:
    assert login(client, alice_user).get(url).status_code == 403


@pytest.mark.parametrize("url", [URL, URL + "?tab=orgdb", CHANGES])
def test_it_shows_admins_and_auditors(client: Client, users: dict[str, User], url: str) -> None:
    for role in ("admin", "auditor"):
        assert login(client, users[role]).get(url).status_code == 200


@pytest.mark.parametrize("role", ["user", "auditor"])
def test_it_refuses_posts_by_non_admins(client: Client, users: dict[str, User], role: str) -> None:
    r = login(client, users[role]).post(URL, full_form(AutoTrackSentFolderItems=True))
    assert r.status_code == 403
    assert OrgSettings.load().auto_track_sent_folder_items is False
    assert not AuditEvent.objects.filter(action="orgsetting_changed").exists()


def test_it_refuses_anonymous_posts(client: Client, db: None) -> None:
    r = client.post(URL, {"setting": ["HashMaxCount"], "HashMaxCount": "30"})
    assert r.status_code == 302
    assert OrgSettings.load().hash_max_count == 20


def main_of(body: str) -> str:
    return body.split('<main id="main">')[1].split("</main>")[0]


@pytest.mark.parametrize("url", [URL, URL + "?tab=orgdb", CHANGES])
def test_it_gives_auditors_no_edit_controls(client: Client, auditor: User, url: str) -> None:
    main = main_of(login(client, auditor).get(url).content.decode())
    assert 'method="post"' not in main
    assert "<input" not in main
    assert "<textarea" not in main


def test_it_tells_auditors_the_page_is_read_only(client: Client, auditor: User) -> None:
    main = main_of(login(client, auditor).get(URL).content.decode())
    assert "Only administrators can change organisation settings." in main
    assert "Save settings" not in main


# --- the email tab ----------------------------------------------------------------------------


def test_every_setting_is_in_exactly_one_section() -> None:
    names = [name for _, section in SECTIONS for name in section]
    assert sorted(names) == sorted(spec.name for spec in ORG_SETTINGS)
    assert len(SECTIONS) == 11
    assert sorted(LABELS) == sorted(names) and len(set(LABELS.values())) == len(LABELS)


def test_it_shows_every_setting_with_description_default_and_current_value(
    client: Client, admin: User
) -> None:
    check_set_org_setting("HashMaxCount", "42")
    body = login(client, admin).get(URL).content.decode()
    for title, _names in SECTIONS:
        assert f"<legend>{title}</legend>" in body.replace("&amp;", "&")
    for spec in ORG_SETTINGS:
        # a readable label, with the OrgDBOrgSettings name beside it (issue 18)
        label = str(LABELS[spec.name]).replace("'", "&#x27;")
        assert f'<label for="id_{spec.name}">{label}</label>' in body
        name = f'<code class="setting-name" lang="en" translate="no">{spec.name}</code>'
        assert name in row_of(body, spec.name)
        assert str(spec.description).replace("'", "&#x27;") in body
    row = row_of(body, "HashMaxCount")
    assert "Default: <code>20</code>" in row
    assert "Current: <code>42</code>" in row
    assert 'type="number"' in row and 'min="1"' in row and 'max="100"' in row and 'value="42"' in row
    assert "changed" in row


def test_it_renders_an_input_per_type(client: Client, admin: User) -> None:
    body = login(client, admin).get(URL).content.decode()

    def row(name: str) -> str:
        return row_of(body, name)

    assert 'type="checkbox"' in row("UseTrackingTokens") and "checked" in row("UseTrackingTokens")
    assert 'type="checkbox"' in row("AutoTrackSentFolderItems")
    assert "checked" not in row("AutoTrackSentFolderItems")
    assert 'type="text"' in row("TrackingPrefix") and 'maxlength="20"' in row("TrackingPrefix")
    assert 'class="mono"' in row("HashFilterKeywords")
    # "≥ 0" settings have a minimum only
    assert 'min="0"' in row("TrackingTokenIdBase") and "max=" not in row("TrackingTokenIdBase")
    # the Track-option override is a select of its named values
    force = row("SSSForceFilteringMethodForUserMailboxes")
    assert "<select" in force and '<option value="-1" selected>' in force
    assert "All email messages" in force


def test_it_saves_changed_settings_and_audits_each(client: Client, admin: User) -> None:
    r = login(client, admin).post(
        URL,
        full_form(
            AutoTrackSentFolderItems=True,
            HashMaxCount="30",
            TrackingPrefix="ACME",
            HashFilterKeywords=r"^(RE|FW):\s*",
            SSSForceFilteringMethodForUserMailboxes="2",
            UseTrackingTokens=False,
        ),
    )
    assert r.status_code == 302
    assert r["Location"] == URL + "?tab=email"
    org = OrgSettings.load()
    assert org.auto_track_sent_folder_items is True
    assert org.hash_max_count == 30
    assert org.tracking_prefix == "ACME"
    assert org.hash_filter_keywords == r"^(RE|FW):\s*"
    assert org.force_filtering_method == 2
    assert org.use_tracking_tokens is False
    events = {e.target: e for e in AuditEvent.objects.filter(action="orgsetting_changed")}
    assert set(events) == {
        "AutoTrackSentFolderItems",
        "HashMaxCount",
        "TrackingPrefix",
        "HashFilterKeywords",
        "SSSForceFilteringMethodForUserMailboxes",
        "UseTrackingTokens",
    }
    assert events["HashMaxCount"].actor == admin
    assert (events["HashMaxCount"].old_value, events["HashMaxCount"].new_value) == ("20", "30")
    assert (events["UseTrackingTokens"].old_value, events["UseTrackingTokens"].new_value) == ("true", "false")
    page = client.get(r["Location"]).content.decode()
    assert "Saved 6 changes" in page


def test_it_says_when_nothing_changed(client: Client, admin: User) -> None:
    r = login(client, admin).post(URL, full_form(), follow=True)
    assert "Nothing changed." in r.content.decode()
    assert not AuditEvent.objects.exclude(action="signed_in").exists()


def test_it_leaves_settings_the_form_did_not_send_alone(client: Client, admin: User) -> None:
    check_set_org_setting("UseTrackingTokens", "true")
    r = login(client, admin).post(URL, {"setting": ["HashMaxCount"], "HashMaxCount": "25"})
    assert r.status_code == 302
    org = OrgSettings.load()
    assert org.hash_max_count == 25
    assert org.use_tracking_tokens is True  # not listed, so an absent checkbox does not turn it off


@pytest.mark.parametrize(
    ("name", "raw", "accepts"),
    [
        ("HashMaxCount", "abc", "a whole number from 1 to 100"),
        ("HashMaxCount", "500", "a whole number from 1 to 100"),
        ("HashMaxCount", "", "a whole number from 1 to 100"),
        ("MaximumSubjectLengthOnMailServer", "254", "a whole number from 255 to 400"),
        ("TrackingTokenIdBase", "-1", "a whole number of at least 0"),
        ("TrackingTokenIdBase", "2147483648", "a whole number of at least 0"),
        ("SSSForceFilteringMethodForUserMailboxes", "5", "a whole number from -1 to 4"),
        ("TrackingPrefix", "", "letters and digits (A–Z, 0–9), 1 to 20 of them"),
        ("TrackingPrefix", "X" * 21, "letters and digits (A–Z, 0–9), 1 to 20 of them"),
        ("TrackingPrefix", " CRM", "letters and digits (A–Z, 0–9), 1 to 20 of them"),
        ("AutoTrackSentFolderItems", "maybe", "true or false (also yes/no or 1/0)"),
        ("HashFilterKeywords", "([a-z", "not a valid regular expression"),
    ],
)
def test_it_refuses_a_bad_value_and_changes_nothing(
    client: Client, admin: User, name: str, raw: str, accepts: str
) -> None:
    before = {spec.name: getattr(OrgSettings.load(), spec.field) for spec in ORG_SETTINGS}
    # a valid change in the same post must not be saved either
    r = login(client, admin).post(URL, full_form(**{name: raw, "MailboxPollIntervalMinutes": "9"}))
    assert r.status_code == 400
    body = r.content.decode()
    row = row_of(body, name)
    assert f'id="err_{name}"' in row
    assert accepts in row
    assert 'aria-invalid="true"' in row
    assert "nothing was saved" in body
    # the form shows what was typed, so it can be corrected
    if name not in ("AutoTrackSentFolderItems", "SSSForceFilteringMethodForUserMailboxes") and raw:
        assert f'value="{raw}"' in row
    after = {spec.name: getattr(OrgSettings.load(), spec.field) for spec in ORG_SETTINGS}
    assert after == before
    assert not AuditEvent.objects.exclude(action="signed_in").exists()


def test_it_reports_every_bad_field_at_once(client: Client, admin: User) -> None:
    r = login(client, admin).post(
        URL, full_form(HashMaxCount="0", TrackingTokenIdDigits="10", HashFilterKeywords="[")
    )
    body = r.content.decode()
    for name in ("HashMaxCount", "TrackingTokenIdDigits", "HashFilterKeywords"):
        assert f'id="err_{name}"' in body
    assert "3 settings were refused" in body


# --- OrgDBOrgSettings -------------------------------------------------------------------------


def test_it_lists_every_setting_with_value_default_and_type(client: Client, auditor: User) -> None:
    check_set_org_setting("EnableSmartMatching", "yes")
    body = login(client, auditor).get(URL + "?tab=orgdb").content.decode()
    for spec in ORG_SETTINGS:
        assert f'id="orgdb-{spec.name}"' in body
    row = body.split('id="orgdb-EnableSmartMatching"')[1].split("</tr>")[0]
    assert "<code>true</code>" in row  # value
    assert "<code>false</code>" in row  # default
    assert "yes/no" in row
    assert "changed" in row
    prefix = body.split('id="orgdb-TrackingPrefix"')[1].split("</tr>")[0]
    assert "<code>CRM</code>" in prefix and "letters and digits (A–Z, 0–9), 1 to 20 of them" in prefix
    assert 'aria-current="page"' in body.split("OrgDBOrgSettings</a>")[0].rsplit("<a", 1)[1]


# --- changes ----------------------------------------------------------------------------------


def test_it_lists_changes_newest_first_with_who_and_old_and_new(
    client: Client, admin: User, auditor: User
) -> None:
    check_set_org_setting("HashMaxCount", "30", acting_user=admin)
    check_set_org_setting("HashMaxCount", "31", actor_label="cli")
    body = login(client, auditor).get(CHANGES).content.decode()
    rows = body.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 2
    assert "cli" in rows[0] and "<code>30</code>" in rows[0] and "<code>31</code>" in rows[0]
    assert "ada" in rows[1] and "<code>20</code>" in rows[1]


def test_it_filters_changes_by_setting(client: Client, admin: User) -> None:
    check_set_org_setting("HashMaxCount", "30")
    check_set_org_setting("TrackingPrefix", "ACME")
    body = login(client, admin).get(CHANGES + "?setting=TrackingPrefix").content.decode()
    table = body.split("<tbody>")[1]
    assert "ACME" in table and "HashMaxCount" not in table


def test_it_pages_changes_200_at_a_time(client: Client, admin: User) -> None:
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                actor_label="cli",
                action="orgsetting_changed",
                target="HashMaxCount",
                old_value=str(i),
                new_value=str(i + 1),
            )
            for i in range(205)
        ]
    )
    AuditEvent.objects.create(actor_label="cli", action="mailbox_added", target="x@example.com")
    body = login(client, admin).get(CHANGES).content.decode()
    assert body.split("<tbody>")[1].count("<tr>") == 200
    assert 'rel="next"' in body
    older = body.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(CHANGES + older).content.decode()
    assert second.split("<tbody>")[1].count("<tr>") == 5
    assert 'rel="next"' not in second
    assert "<code>0</code>" in second  # the oldest change is on the last page
    assert "x@example.com" not in body + second


def test_it_shows_an_empty_state_without_changes(client: Client, admin: User) -> None:
    body = login(client, admin).get(CHANGES).content.decode()
    assert "No organisation setting has been changed yet." in body


def test_spec_for_is_what_the_page_validates_with() -> None:
    # the page and the CLI accept the same text
    assert spec_for("AutoTrackSentFolderItems").parse("YES") is True
