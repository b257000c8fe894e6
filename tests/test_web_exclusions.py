"""Exclusion list (tracking-rules §10): org-wide entries for admins to manage, personal entries for each
user."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from syncadmin.web.forms.exclusions import normalize_pattern
from tests.conftest import login
from tracking.actions import do_add_exclusion
from tracking.models import AuditEvent, ExclusionEntry, Mailbox

URL = reverse("web-exclusions")


def delete_url(entry: ExclusionEntry) -> str:
    return reverse("web-exclusion-delete", args=[entry.pk])


def main_of(body: str) -> str:
    return body.split('<main id="main">')[1].split("</main>")[0]


@pytest.fixture
def bob_user(bob: Mailbox) -> User:
    assert isinstance(bob.user, User)
    return bob.user


@pytest.fixture
def people(alice_user: User, bob_user: User, admin: User, auditor: User) -> dict[str, User]:
    return {"alice": alice_user, "bob": bob_user, "admin": admin, "auditor": auditor}


# --- permissions and visibility ---------------------------------------------------------------


def test_it_sends_anonymous_visitors_to_sign_in(client: Client, alice_user: User) -> None:
    entry = do_add_exclusion("@spam.example")
    for r in (client.get(URL), client.post(URL, {"scope": "org", "pattern": "x@y.example"})):
        assert r.status_code == 302 and r["Location"].startswith(reverse("login"))
    assert client.post(delete_url(entry)).status_code == 302
    assert ExclusionEntry.objects.count() == 1


@pytest.mark.parametrize("who", ["alice", "bob", "admin", "auditor"])
def test_everyone_reads_the_org_list_and_only_their_own_entries(
    client: Client, people: dict[str, User], who: str
) -> None:
    do_add_exclusion("@spam.example")
    do_add_exclusion("newsletter@alice.example", user=people["alice"])
    do_add_exclusion("@bob-private.example", user=people["bob"])
    body = login(client, people[who]).get(URL).content.decode()
    assert "@spam.example" in body
    assert ("newsletter@alice.example" in body) == (who == "alice")
    assert ("@bob-private.example" in body) == (who == "bob")


@pytest.mark.parametrize("who", ["alice", "auditor"])
def test_non_admins_get_no_org_controls(client: Client, people: dict[str, User], who: str) -> None:
    entry = do_add_exclusion("@spam.example")
    main = main_of(login(client, people[who]).get(URL).content.decode())
    org = main.split('id="org-exclusions"')[1].split("</section>")[0]
    assert "<form" not in org and delete_url(entry) not in org
    assert "Only administrators change this list." in org


def test_admins_get_org_controls(client: Client, admin: User) -> None:
    entry = do_add_exclusion("@spam.example")
    org = (
        login(client, admin).get(URL).content.decode().split('id="org-exclusions"')[1].split("</section>")[0]
    )
    assert delete_url(entry) in org
    assert 'name="scope" value="org"' in org


@pytest.mark.parametrize("who", ["alice", "auditor"])
def test_non_admins_cannot_add_org_entries(client: Client, people: dict[str, User], who: str) -> None:
    r = login(client, people[who]).post(URL, {"scope": "org", "pattern": "@example.org"})
    assert r.status_code == 403
    assert not ExclusionEntry.objects.exists()
    assert not AuditEvent.objects.filter(action="exclusion_added").exists()


@pytest.mark.parametrize("who", ["alice", "auditor"])
def test_non_admins_cannot_delete_org_entries(client: Client, people: dict[str, User], who: str) -> None:
    entry = do_add_exclusion("@spam.example")
    assert login(client, people[who]).post(delete_url(entry)).status_code == 403
    assert ExclusionEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.parametrize("who", ["bob", "admin", "auditor"])
def test_another_users_entry_is_not_found(client: Client, people: dict[str, User], who: str) -> None:
    entry = do_add_exclusion("@alice-only.example", user=people["alice"])
    assert login(client, people[who]).post(delete_url(entry)).status_code == 404
    assert ExclusionEntry.objects.filter(pk=entry.pk).exists()


def test_delete_takes_only_posts_and_known_ids(client: Client, alice_user: User) -> None:
    entry = do_add_exclusion("@mine.example", user=alice_user)
    login(client, alice_user)
    assert client.get(delete_url(entry)).status_code == 405
    assert client.post(reverse("web-exclusion-delete", args=[entry.pk + 1000])).status_code == 404


# --- adding and deleting ----------------------------------------------------------------------


def test_admins_add_org_entries_lower_cased_and_audited(client: Client, admin: User) -> None:
    r = login(client, admin).post(URL, {"scope": "org", "pattern": "  Marketing@Contoso.COM "})
    assert r.status_code == 302 and r["Location"] == URL
    entry = ExclusionEntry.objects.get()
    assert (entry.pattern, entry.user) == ("marketing@contoso.com", None)
    event = AuditEvent.objects.get(action="exclusion_added")
    assert (event.actor, event.target, event.new_value) == (admin, "marketing@contoso.com", "organisation")
    assert "marketing@contoso.com is added" in client.get(URL).content.decode()


@pytest.mark.parametrize("who", ["alice", "admin", "auditor"])
def test_each_user_adds_personal_entries(client: Client, people: dict[str, User], who: str) -> None:
    user = people[who]
    r = login(client, user).post(URL, {"scope": "personal", "pattern": "@Newsletters.Example"})
    assert r.status_code == 302
    entry = ExclusionEntry.objects.get()
    assert (entry.pattern, entry.user) == ("@newsletters.example", user)
    assert AuditEvent.objects.get(action="exclusion_added").new_value == f"user {user.username}"


def test_a_post_without_a_scope_is_personal(client: Client, alice_user: User) -> None:
    login(client, alice_user).post(URL, {"pattern": "x@y.example"})
    assert ExclusionEntry.objects.get().user == alice_user


def test_users_delete_their_own_entries(client: Client, alice_user: User) -> None:
    entry = do_add_exclusion("@mine.example", user=alice_user)
    r = login(client, alice_user).post(delete_url(entry))
    assert r.status_code == 302 and r["Location"] == URL
    assert not ExclusionEntry.objects.exists()
    event = AuditEvent.objects.get(action="exclusion_deleted")
    assert (event.actor, event.old_value) == (alice_user, "user alice")


def test_admins_delete_org_entries(client: Client, admin: User) -> None:
    entry = do_add_exclusion("@spam.example")
    assert login(client, admin).post(delete_url(entry)).status_code == 302
    assert not ExclusionEntry.objects.exists()
    assert AuditEvent.objects.get(action="exclusion_deleted").old_value == "organisation"


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "   ",
        "not an address",
        "nobody",
        "@",
        "a@",
        "@@example.com",
        "a@b@example.com",
        "@exa mple.com",
        "@.example.com",
        "@example..com",
        "a@example.com.",
        ".a@example.com",
        "x" * 310 + "@example.com",
    ],
)
def test_it_refuses_what_is_neither_an_address_nor_a_domain(
    client: Client, alice_user: User, pattern: str
) -> None:
    r = login(client, alice_user).post(URL, {"scope": "personal", "pattern": pattern})
    assert r.status_code == 400
    body = r.content.decode()
    assert 'id="personal_pattern_error"' in body
    field = re.search(r'<input[^>]*id="personal_pattern"[^>]*>', body)
    assert field is not None and 'aria-invalid="true"' in field.group(0)
    assert not ExclusionEntry.objects.exists()


def test_it_refuses_duplicates_in_any_case(client: Client, admin: User) -> None:
    login(client, admin)
    client.post(URL, {"scope": "org", "pattern": "@spam.example"})
    r = client.post(URL, {"scope": "org", "pattern": "@SPAM.example"})
    assert r.status_code == 400
    assert "@spam.example is already on the organisation&#x27;s exclusion list." in r.content.decode()
    assert 'id="org_pattern_error"' in r.content.decode()
    client.post(URL, {"scope": "personal", "pattern": "@mine.example"})
    r = client.post(URL, {"scope": "personal", "pattern": "@Mine.Example"})
    assert "@mine.example is already on your exclusion list." in r.content.decode()
    # the same pattern may be both org-wide and personal
    assert client.post(URL, {"scope": "personal", "pattern": "@spam.example"}).status_code == 302
    assert ExclusionEntry.objects.count() == 3


def test_two_users_may_exclude_the_same_address(client: Client, alice_user: User, bob_user: User) -> None:
    login(client, alice_user).post(URL, {"pattern": "@shared.example"})
    login(client, bob_user).post(URL, {"pattern": "@shared.example"})
    assert ExclusionEntry.objects.filter(pattern="@shared.example").count() == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Name@Example.COM", "name@example.com"),
        ("@Example.com", "@example.com"),
        ("@localhost", "@localhost"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("@münchen.example", "@münchen.example"),
        ("no-at-sign", None),
        ("two@@example.com", None),
    ],
)
def test_patterns_are_normalised(raw: str, expected: str | None) -> None:
    assert normalize_pattern(raw) == expected
