"""Set Personal Options: General and Email tabs, hidden and forced Track options, folder tracking rules."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from tests.conftest import login, make_mailbox
from tests.rq_helpers import add_sim_profile
from tracking.actions import (
    ActionError,
    check_add_folder_rule,
    check_add_mailbox,
    check_set_org_setting,
    do_set_personal_options,
)
from tracking.choices import TrackOption
from tracking.models import (
    AuditEvent,
    CrmRecord,
    EmailServerProfile,
    FolderTrackingRule,
    Mailbox,
    PersonalOptions,
)

URL = reverse("web-personal-options")
RULES = reverse("web-folder-rules")


def main_of(body: str) -> str:
    return body.split('<main id="main">')[1].split("</main>")[0]


def general(**overrides: str) -> dict[str, str]:
    return {
        "tab": "general",
        "time_zone": "UTC",
        "rows_per_page": "50",
        "language": "en",
        "alert_mail": "on",
        **overrides,
    }


def email(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"tab": "email", "track": "1", "auto_create_kind": "contact"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def radios(body: str) -> dict[int, str]:
    """The Track radio buttons by value, each with the text of its label."""
    group = body.split('role="radiogroup"')[1].split("</div>")[0]
    found = {}
    for label in group.split("<label>")[1:]:
        value = int(label.split('value="')[1].split('"')[0])
        found[value] = label
    return found


FOLDERS = ("Contoso", "Misc", "Projects", "A", "B", "C")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """Alice's Exchange server: the folder picker lists Inbox/Contoso, Inbox/Misc, ... from it."""
    data = tmp_path_factory.mktemp("mail")
    for name in FOLDERS:
        (data / "alice@contoso.com" / "inbox" / name).mkdir(parents=True)
    (data / "bob@contoso.com" / "inbox").mkdir(parents=True)
    with Simulator.from_directory(data, cert_dir=data / "ca") as simulator:
        yield simulator


@pytest.fixture
def exchange_profile(db: None, sim: Simulator) -> EmailServerProfile:
    cache.clear()  # the picker's folder list, kept per mailbox id
    return add_sim_profile(sim, "exchange", "exchange_ews")


@pytest.fixture
def bob_user(bob: Mailbox) -> User:
    assert isinstance(bob.user, User)
    return bob.user


@pytest.fixture
def record(db: None) -> CrmRecord:
    return CrmRecord.objects.create(kind="account", name="Contoso Ltd", email1="info@contoso-ltd.com")


# --- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, URL + "?tab=email"])
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, db: None, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith(reverse("login"))


def test_it_refuses_anonymous_posts(client: Client, alice_user: User) -> None:
    for url, data in [(URL, general(rows_per_page="99")), (RULES, {"folder": "Inbox/X"})]:
        r = client.post(url, data)
        assert r.status_code == 302 and r["Location"].startswith(reverse("login"))
    rule = check_add_folder_rule(alice_user.mailbox, "Inbox/Keep", folder_id="f-Keep")
    r = client.post(reverse("web-folder-rule-delete", args=[rule.pk]))
    assert r.status_code == 302
    assert PersonalOptions.objects.of(alice_user).rows_per_page == 50
    assert list(FolderTrackingRule.objects.values_list("folder", flat=True)) == ["Inbox/Keep"]


@pytest.mark.parametrize("who", ["alice", "admin", "auditor"])
def test_every_user_has_their_own_options(
    client: Client, alice_user: User, admin: User, auditor: User, who: str
) -> None:
    people = {"alice": alice_user, "admin": admin, "auditor": auditor}
    for rows, person in enumerate(people.values(), start=11):
        do_set_personal_options(person, rows_per_page=rows)
    user = people[who]
    own = PersonalOptions.objects.of(user).rows_per_page
    login(client, user)
    assert client.get(URL + "?tab=email").status_code == 200
    body = client.get(URL + "?tab=general").content.decode()
    shown = re.findall(r'name="rows_per_page" value="(\d+)"', body)
    assert shown == [str(own)]
    assert client.post(URL, general(rows_per_page="99")).status_code == 302
    assert PersonalOptions.objects.of(user).rows_per_page == 99
    others = [p for p in people.values() if p != user]
    assert all(PersonalOptions.objects.of(p).rows_per_page != 99 for p in others)


def test_it_ignores_a_user_id_in_the_query(client: Client, alice_user: User, bob_user: User) -> None:
    do_set_personal_options(bob_user, rows_per_page=77)
    body = login(client, alice_user).get(f"{URL}?user={bob_user.pk}&tab=general").content.decode()
    assert 'value="50"' in body and 'value="77"' not in body
    client.post(URL, {**general(rows_per_page="66"), "user": str(bob_user.pk)})
    assert PersonalOptions.objects.of(bob_user).rows_per_page == 77
    assert PersonalOptions.objects.of(alice_user).rows_per_page == 66


def test_tabs_work_without_javascript(client: Client, alice_user: User) -> None:
    body = login(client, alice_user).get(URL).content.decode()
    assert f'<a href="{URL}?tab=general" aria-current="page">' in body
    assert f'<a href="{URL}?tab=email" >' in body
    assert 'name="time_zone"' in body and 'name="track"' not in body
    body = client.get(URL + "?tab=email").content.decode()
    assert 'name="track"' in body and 'name="time_zone"' not in body
    assert client.get(URL + "?tab=bogus").status_code == 200


# --- General ----------------------------------------------------------------------------------


def test_it_saves_the_general_tab_and_audits_it(client: Client, alice_user: User) -> None:
    r = login(client, alice_user).post(
        URL, general(time_zone="Europe/Berlin", rows_per_page="25", language="de")
    )
    assert r.status_code == 302 and r["Location"] == URL + "?tab=general"
    options = PersonalOptions.objects.of(alice_user)
    assert (options.time_zone, options.rows_per_page, options.language) == ("Europe/Berlin", 25, "de")
    events = {e.target: e for e in AuditEvent.objects.filter(action="personal_options_changed")}
    assert set(events) == {"alice.time_zone", "alice.rows_per_page", "alice.language"}
    assert all(e.actor == alice_user for e in events.values())
    assert (events["alice.rows_per_page"].old_value, events["alice.rows_per_page"].new_value) == ("50", "25")


def test_it_turns_alert_mail_off_and_on(client: Client, alice_user: User) -> None:
    login(client, alice_user)
    page = client.get(URL).content.decode()
    assert re.search(r'<input type="checkbox" name="alert_mail"[^>]*checked', page)
    client.post(URL, {k: v for k, v in general().items() if k != "alert_mail"})
    assert not PersonalOptions.objects.of(alice_user).alert_mail
    event = AuditEvent.objects.get(target="alice.alert_mail")
    assert (event.old_value, event.new_value) == ("True", "False")
    client.post(URL, general())
    assert PersonalOptions.objects.of(alice_user).alert_mail


def test_it_offers_every_time_zone_and_both_languages(client: Client, alice_user: User) -> None:
    body = login(client, alice_user).get(URL).content.decode()
    assert '<option value="UTC" selected>' in body
    assert re.search(r'<option value="Europe/Berlin">Berlin \(UTC\+0[12]:00\)</option>', body)
    assert '<optgroup label="America">' in body
    assert (
        '<option value="de">Deutsch</option>' in body
        and '<option value="en" selected>English</option>' in body
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rows_per_page", "abc", "Enter a whole number from 10 to 250."),
        ("rows_per_page", "9", "greater than or equal to 10"),
        ("rows_per_page", "251", "less than or equal to 250"),
        ("rows_per_page", "", "This field is required."),
        ("time_zone", "Mars/Olympus_Mons", "Mars/Olympus_Mons is not a known time zone."),
        ("time_zone", "", "This field is required."),
        ("language", "fr", "Select a valid choice."),
    ],
)
def test_it_refuses_bad_general_values(
    client: Client, alice_user: User, field: str, value: str, message: str
) -> None:
    data = general(time_zone="Europe/Paris", rows_per_page="20", language="de")
    data[field] = value
    r = login(client, alice_user).post(URL, data)
    assert r.status_code == 400
    body = r.content.decode()
    assert f'id="id_{field}_error"' in body
    assert message in body
    assert "Nothing was saved" in body
    options = PersonalOptions.objects.of(alice_user)
    assert (options.time_zone, options.rows_per_page, options.language) == ("UTC", 50, "en")
    assert not AuditEvent.objects.filter(action="personal_options_changed", actor=alice_user).exists()


def test_the_language_applies_from_the_next_request(client: Client, alice_user: User) -> None:
    login(client, alice_user)
    first = client.get(URL)
    assert first["Content-Language"] == "en"
    assert '<html lang="en">' in first.content.decode()
    client.post(URL, general(language="de"))
    after = client.get(URL)
    assert after["Content-Language"] == "de"
    assert '<html lang="de">' in after.content.decode()


def test_the_time_zone_applies_to_times_on_pages(client: Client, alice_user: User) -> None:
    rule = check_add_folder_rule(alice_user.mailbox, "Inbox/Zones", folder_id="f-Zones")
    login(client, alice_user).post(URL, general(time_zone="Asia/Kolkata"))
    body = client.get(URL + "?tab=email").content.decode()
    shown = body.split("<td>Inbox/Zones</td>")[1].split("</time>")[0]
    local = rule.created_at.astimezone(zoneinfo.ZoneInfo("Asia/Kolkata"))
    assert f"{local.day} {local:%b %Y, %H:%M}" in shown
    assert "+05:30" in shown


# --- Email ------------------------------------------------------------------------------------


def test_it_shows_the_five_track_options_with_their_labels(client: Client, alice_user: User) -> None:
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    found = radios(body)
    assert sorted(found) == [0, 1, 2, 3, 4]
    for option in TrackOption:
        assert str(option.label) in found[option.value]
    assert "checked" in found[1] and "checked" not in found[0]
    assert "Select the email messages to track in SyncAdmin" in body
    assert "Select if other users can send emails for you" in body
    assert "Automatically create records" in body


def test_it_saves_the_email_tab_and_audits_it(client: Client, alice_user: User) -> None:
    r = login(client, alice_user).post(
        URL, email(track="3", allow_send_on_behalf="on", auto_create="on", auto_create_kind="lead")
    )
    assert r.status_code == 302 and r["Location"] == URL + "?tab=email"
    options = PersonalOptions.objects.of(alice_user)
    assert (options.track, options.allow_send_on_behalf, options.auto_create) == (3, True, "lead")
    targets = set(
        AuditEvent.objects.filter(action="personal_options_changed", actor=alice_user).values_list(
            "target", flat=True
        )
    )
    assert targets == {"alice.track", "alice.allow_send_on_behalf", "alice.auto_create"}
    assert "Your personal options are saved." in client.get(r["Location"]).content.decode()


@pytest.mark.parametrize(
    ("create", "kind", "stored"),
    [(None, "lead", "off"), ("on", "lead", "lead"), ("on", "contact", "contact")],
)
def test_create_and_record_type_map_to_auto_create(
    client: Client, alice_user: User, create: str | None, kind: str, stored: str
) -> None:
    do_set_personal_options(alice_user, auto_create="contact" if stored == "off" else "off")
    login(client, alice_user).post(URL, email(auto_create=create, auto_create_kind=kind))
    assert PersonalOptions.objects.of(alice_user).auto_create == stored


def test_it_shows_the_stored_auto_create(client: Client, alice_user: User) -> None:
    do_set_personal_options(alice_user, auto_create="lead")
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    assert 'name="auto_create" id="id_auto_create" checked' in body
    assert '<option value="lead" selected>' in body


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (email(track="7"), "track", "7 is not one of the Track options your organisation offers."),
        (email(track="x"), "track", "is not one of the Track options"),
        (email(track=None), "track", "This field is required."),
        (email(auto_create="on", auto_create_kind="account"), "auto_create_kind", "Select a valid choice."),
        (email(auto_create="on", auto_create_kind=""), "auto_create_kind", "Choose Leads or Contacts."),
    ],
)
def test_it_refuses_bad_email_values(
    client: Client, alice_user: User, data: dict[str, Any], field: str, message: str
) -> None:
    data = {**data, "allow_send_on_behalf": "on"}
    r = login(client, alice_user).post(URL, data)
    assert r.status_code == 400
    body = r.content.decode()
    assert message in body
    assert f'id="id_{field}_error"' in body
    options = PersonalOptions.objects.of(alice_user)
    assert (options.track, options.allow_send_on_behalf, options.auto_create) == (1, False, "off")


def test_it_hides_track_all_when_the_org_says_so(client: Client, alice_user: User) -> None:
    check_set_org_setting("HideTrackAllOption", "true")
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    assert sorted(radios(body)) == [1, 2, 3, 4]
    r = client.post(URL, email(track="0"))
    assert (
        r.status_code == 400
        and "0 is not one of the Track options your organisation offers." in r.content.decode()
    )
    assert PersonalOptions.objects.of(alice_user).track == 1


def test_it_hides_the_auto_track_options_when_the_org_says_so(client: Client, alice_user: User) -> None:
    check_set_org_setting("HideEmailAutoTrackOptions", "true")
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    assert sorted(radios(body)) == [1, 4]  # tracking-rules §4: options 0, 2 and 3 are hidden
    for hidden in ("0", "2", "3"):
        assert client.post(URL, email(track=hidden)).status_code == 400
    assert PersonalOptions.objects.of(alice_user).track == 1
    check_set_org_setting("HideTrackAllOption", "true")
    assert sorted(radios(client.get(URL + "?tab=email").content.decode())) == [1, 4]


def test_a_stored_hidden_option_stays_selected_and_flagged(client: Client, alice_user: User) -> None:
    do_set_personal_options(alice_user, track=2)
    check_set_org_setting("HideEmailAutoTrackOptions", "true")
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    found = radios(body)
    assert sorted(found) == [1, 2, 4]
    assert "checked" in found[2] and "no longer offered" in found[2]
    assert "no longer offered" not in found[1]
    # saving the other fields keeps it
    r = client.post(URL, email(track="2", allow_send_on_behalf="on"))
    assert r.status_code == 302
    options = PersonalOptions.objects.of(alice_user)
    assert (options.track, options.allow_send_on_behalf) == (2, True)
    # once left, it cannot be chosen again
    client.post(URL, email(track="1"))
    assert client.post(URL, email(track="2")).status_code == 400
    assert PersonalOptions.objects.of(alice_user).track == 1


def test_it_says_which_option_the_org_forces(client: Client, alice_user: User) -> None:
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    assert 'id="track-forced"' not in body
    check_set_org_setting("SSSForceFilteringMethodForUserMailboxes", "2")
    body = client.get(URL + "?tab=email").content.decode()
    notice = body.split('id="track-forced"')[1].split("</p>")[0]
    assert "option 2" in notice
    assert str(TrackOption.CRM_PARTIES.label) in notice
    assert "SSSForceFilteringMethodForUserMailboxes" in notice
    # choosing stays possible: the choice applies again when the override is lifted
    client.post(URL, email(track="4"))
    assert PersonalOptions.objects.of(alice_user).track == 4


def test_it_links_to_the_users_mailbox(client: Client, alice_user: User, admin: User) -> None:
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    assert f'href="{reverse("web-mailbox", args=[alice_user.mailbox.pk])}"' in body
    body = login(client, admin).get(URL + "?tab=email").content.decode()
    assert "You have no mailbox in SyncAdmin." in body
    assert "/mailboxes/" not in main_of(body)


# --- folder tracking rules --------------------------------------------------------------------


def test_it_adds_a_folder_rule_and_audits_it(client: Client, alice_user: User, record: CrmRecord) -> None:
    r = login(client, alice_user).post(RULES, {"folder": " Inbox/Contoso ", "regarding": str(record.pk)})
    assert r.status_code == 302 and r["Location"] == URL + "?tab=email#folder-rules"
    rule = FolderTrackingRule.objects.get()
    assert (rule.mailbox, rule.folder, rule.regarding) == (alice_user.mailbox, "Inbox/Contoso", record)
    event = AuditEvent.objects.get(action="folder_rule_added")
    assert event.actor == alice_user and event.target == "alice@contoso.com/Inbox/Contoso"
    body = client.get(r["Location"]).content.decode()
    section = body.split('id="folder-rules"')[1]
    assert "Inbox/Contoso" in section and "Contoso Ltd" in section
    assert "You have 1 rule of at most 25." in section


def test_a_rule_needs_no_regarding_record(client: Client, alice_user: User) -> None:
    login(client, alice_user).post(RULES, {"folder": "Inbox/Misc", "regarding": ""})
    assert FolderTrackingRule.objects.get().regarding is None


def test_it_offers_active_records_as_regarding(client: Client, alice_user: User, record: CrmRecord) -> None:
    CrmRecord.objects.create(kind="lead", name="Gone Lead", email1="gone@example.com", active=False)
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    assert f'<option value="{record.pk}">Account: Contoso Ltd &lt;info@contoso-ltd.com&gt;</option>' in body
    assert "Gone Lead" not in body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"folder": ""}, "This field is required."),
        ({"folder": "   "}, "This field is required."),
        ({"folder": "X" * 256}, "at most 255 characters"),
        ({"folder": "Inbox"}, "Only folders under the Inbox can be mapped; Inbox is not one."),
        ({"folder": "sentitems"}, "Only folders under the Inbox can be mapped; sentitems is not one."),
        ({"folder": "Inbox/Nowhere"}, "The folder Inbox/Nowhere was not found on the server."),
        ({"folder": "Inbox/A", "regarding": "999999"}, "Select a valid choice."),
        ({"folder": "Inbox/A", "regarding": "abc"}, "Select a valid choice."),
    ],
)
def test_it_refuses_bad_folder_rules(
    client: Client, alice_user: User, data: dict[str, str], message: str
) -> None:
    r = login(client, alice_user).post(RULES, data)
    assert r.status_code == 400
    assert message in r.content.decode()
    assert not FolderTrackingRule.objects.exists()
    assert not AuditEvent.objects.filter(action="folder_rule_added").exists()


def test_it_refuses_a_second_rule_for_the_same_folder(client: Client, alice_user: User) -> None:
    login(client, alice_user).post(RULES, {"folder": "Inbox/Projects"})
    r = client.post(RULES, {"folder": "inbox/projects"})
    assert r.status_code == 400 and "already has a rule" in r.content.decode()
    assert FolderTrackingRule.objects.count() == 1


def test_it_refuses_more_rules_than_the_org_allows(client: Client, alice_user: User) -> None:
    check_set_org_setting("MaxFolderBasedTrackingMappings", "2")
    login(client, alice_user)
    for name in ("Inbox/A", "Inbox/B"):
        assert client.post(RULES, {"folder": name}).status_code == 302
    r = client.post(RULES, {"folder": "Inbox/C"})
    assert r.status_code == 400
    assert "You already have 2 folder tracking rules, the most the organisation allows." in r.content.decode()
    assert FolderTrackingRule.objects.count() == 2
    body = client.get(URL + "?tab=email").content.decode()
    assert "You have reached the most folder tracking rules" in body
    assert f'action="{RULES}"' not in body


def test_a_non_exchange_mailbox_gets_no_folder_rules(
    client: Client, imap_profile: EmailServerProfile, db: None
) -> None:
    mailbox = make_mailbox("carol@contoso.com", "carol", imap_profile)
    assert isinstance(mailbox.user, User)
    login(client, mailbox.user)
    body = client.get(URL + "?tab=email").content.decode()
    assert "Folder tracking needs an Exchange mailbox" in body and "IMAP folders have no" in body
    assert f'action="{RULES}"' not in body
    r = client.post(RULES, {"folder": "Inbox/Projects"})
    assert r.status_code == 400 and "Folder tracking needs an Exchange mailbox" in r.content.decode()
    assert not FolderTrackingRule.objects.exists()


def test_no_folder_rules_when_the_org_turns_them_off(client: Client, alice_user: User) -> None:
    check_set_org_setting("IsFolderBasedTrackingEnabled", "false")
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    assert "Your organisation has turned folder-based tracking off." in body
    assert f'action="{RULES}"' not in body
    r = client.post(RULES, {"folder": "Inbox/Projects"})
    assert r.status_code == 400 and "turned off for the organisation" in r.content.decode()
    assert not FolderTrackingRule.objects.exists()


def test_a_user_without_a_mailbox_gets_no_folder_rules(client: Client, admin: User) -> None:
    r = login(client, admin).post(RULES, {"folder": "Inbox/Projects"})
    assert r.status_code == 400 and "You have no mailbox in SyncAdmin." in r.content.decode()
    assert not FolderTrackingRule.objects.exists()


def test_queues_get_no_folder_rules(exchange_profile: EmailServerProfile) -> None:
    queue = check_add_mailbox(
        "support@contoso.com", profile_name="exchange", queue_name="support", approve=True
    )
    with pytest.raises(ActionError, match="not queues"):
        check_add_folder_rule(queue, "Inbox/Tickets", folder_id="f-Tickets")
    assert not FolderTrackingRule.objects.exists()


def test_it_deletes_the_users_own_rule(client: Client, alice_user: User) -> None:
    rule = check_add_folder_rule(alice_user.mailbox, "Inbox/Old", folder_id="f-Old")
    r = login(client, alice_user).post(reverse("web-folder-rule-delete", args=[rule.pk]))
    assert r.status_code == 302 and r["Location"] == URL + "?tab=email#folder-rules"
    assert not FolderTrackingRule.objects.exists()
    event = AuditEvent.objects.get(action="folder_rule_deleted")
    assert event.actor == alice_user and event.old_value == "(no regarding record)"


@pytest.mark.parametrize("who", ["bob", "admin", "auditor"])
def test_another_users_rule_is_not_found(
    client: Client, alice_user: User, bob_user: User, admin: User, auditor: User, who: str
) -> None:
    rule = check_add_folder_rule(alice_user.mailbox, "Inbox/Mine", folder_id="f-Mine")
    user = {"bob": bob_user, "admin": admin, "auditor": auditor}[who]
    r = login(client, user).post(reverse("web-folder-rule-delete", args=[rule.pk]))
    assert r.status_code == 404
    assert FolderTrackingRule.objects.filter(pk=rule.pk).exists()


def test_rule_urls_take_only_posts(client: Client, alice_user: User) -> None:
    rule = check_add_folder_rule(alice_user.mailbox, "Inbox/Mine", folder_id="f-Mine")
    login(client, alice_user)
    assert client.get(RULES).status_code == 405
    assert client.get(reverse("web-folder-rule-delete", args=[rule.pk])).status_code == 405
    assert client.post(reverse("web-folder-rule-delete", args=[rule.pk + 1000])).status_code == 404


def test_the_folder_picker_lists_the_folders_on_the_server(client: Client, alice_user: User) -> None:
    body = login(client, alice_user).get(URL + "?tab=email").content.decode()
    section = body.split('id="folder-rules"')[1]
    assert '<option value="Inbox/Contoso">Inbox/Contoso</option>' in section
    assert "Refresh folders" in section
    client.post(RULES, {"folder": "Inbox/Contoso"})
    section = client.get(URL + "?tab=email").content.decode().split('id="folder-rules"')[1]
    assert '<option value="Inbox/Contoso">' not in section  # mapped already
    row = section.split("<td>Inbox/Contoso</td>")[1].split("</tr>")[0]
    assert "active" in row and "never" in row


def test_the_picker_says_when_the_server_cannot_be_reached(
    client: Client, alice_user: User, sim: Simulator
) -> None:
    sim.faults.add(Fault("http_status", protocol="ews", status=503, times=-1))
    try:
        body = login(client, alice_user).get(URL + "?tab=email&refresh_folders=1").content.decode()
    finally:
        sim.faults.clear()
    assert "Your mail server could not be reached to list your folders" in body
    assert 'name="folder"' in body  # the path can still be typed
    body = client.get(URL + "?tab=email&refresh_folders=1").content.decode()
    assert '<option value="Inbox/Misc">' in body


def test_a_stored_track_all_is_marked_no_longer_offered_under_hide_email_auto_track_options(
    client: Client, alice_user: User
) -> None:
    do_set_personal_options(alice_user, track=0)
    check_set_org_setting("HideEmailAutoTrackOptions", "true")
    found = radios(login(client, alice_user).get(URL + "?tab=email").content.decode())
    assert sorted(found) == [0, 1, 4]
    assert "checked" in found[0] and "no longer offered" in found[0]
    client.post(URL, email(track="4"))
    assert sorted(radios(client.get(URL + "?tab=email").content.decode())) == [1, 4]
