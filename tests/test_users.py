"""People: invitations and password resets through the tests' email backend, LOCAL_LOGIN, the Users & roles
page and the `users` command; every change audited."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import mail
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tests.conftest import login
from tracking.actions import check_invite_user, role_of
from tracking.choices import Role
from tracking.models import AuditEvent, Mailbox

NO_MAIL = override_settings(
    EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="localhost"
)
GOOD_PASSWORD = "correct horse battery staple 42"


def link_in(text: str) -> str:
    match = re.search(r"https?://[^/\s]+(/set-password/\S+)", text)
    assert match, text
    return match.group(1)


def set_password(client: Client, path: str, password: str) -> Any:
    """Follow a set-password link and choose a password (the page moves the token into the session)."""
    response = client.get(path, follow=True)
    form_url = response.redirect_chain[-1][0] if response.redirect_chain else path
    return client.post(form_url, {"new_password1": password, "new_password2": password})


# -- invitations ------------------------------------------------------------------------------------------


def test_an_admin_invites_a_person_by_mail_who_sets_a_password_and_signs_in(admin: User) -> None:
    admin_client = login(Client(), admin)
    response = admin_client.post(reverse("web-user-invite"), {"email": "Nina@Contoso.com", "role": "auditor"})
    assert response.status_code == 302
    nina = User.objects.get(email="nina@contoso.com")
    assert role_of(nina) == Role.AUDITOR and not nina.has_usable_password()
    [message] = mail.outbox
    assert message.to == ["nina@contoso.com"]
    path = link_in(str(message.body))
    event = AuditEvent.objects.get(action="user_invited")
    assert (event.actor, event.target, event.new_value) == (admin, "nina", "nina@contoso.com as auditor")

    person = Client()
    refused = set_password(person, path, "12345678")  # the password validators are on
    assert refused.status_code == 200 and "too common" in refused.content.decode()
    done = set_password(person, path, GOOD_PASSWORD)
    assert done.status_code == 302 and done["Location"] == reverse("password_reset_complete")
    assert AuditEvent.objects.filter(
        action="password_set", target="nina", new_value="invitation accepted"
    ).exists()
    signed_in = person.post(reverse("login"), {"username": "nina", "password": GOOD_PASSWORD})
    assert signed_in.status_code == 302
    assert person.get(reverse("web-audit")).status_code == 200  # an auditor

    again = Client().get(path, follow=True)  # the link works once
    assert "not valid" in again.content.decode()


def test_without_email_the_admin_is_shown_the_link(admin: User) -> None:
    with NO_MAIL:
        response = login(Client(), admin).post(
            reverse("web-user-invite"), {"email": "omar@contoso.com", "role": "user"}, follow=True
        )
    assert mail.outbox == []
    body = response.content.decode()
    assert "Email is not configured" in body
    assert set_password(Client(), link_in(body), GOOD_PASSWORD).status_code == 302


def test_a_link_older_than_72_hours_is_refused(db: None) -> None:
    user = check_invite_user("old@contoso.com")

    class ThreeDaysAgo(PasswordResetTokenGenerator):
        def _now(self) -> datetime:
            return datetime.now() - timedelta(hours=72, minutes=5)  # noqa: DTZ005  (Django compares naive local times)

    uid = urlsafe_base64_encode(force_bytes(user.pk))
    old = reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": ThreeDaysAgo().make_token(user)})
    assert "not valid" in Client().get(old, follow=True).content.decode()
    fresh = reverse(
        "password_reset_confirm",
        kwargs={"uidb64": uid, "token": PasswordResetTokenGenerator().make_token(user)},
    )
    assert "not valid" not in Client().get(fresh, follow=True).content.decode()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"email": "not-an-address", "role": "user"}, "valid email"),
        ({"email": "ada@contoso.com", "role": "user"}, "exists already"),
        ({"email": "x@contoso.com", "role": "overlord"}, "valid choice"),
    ],
)
def test_a_bad_invitation_is_refused_with_400(admin: User, data: dict[str, str], error: str) -> None:
    before = User.objects.count()
    response = login(Client(), admin).post(reverse("web-user-invite"), data)
    assert response.status_code == 400 and error in response.content.decode()
    assert User.objects.count() == before and mail.outbox == []


# -- password reset ----------------------------------------------------------------------------------------


def test_password_reset_by_email(alice: Mailbox) -> None:
    user = alice.user
    assert user is not None
    user.email = "alice@contoso.com"
    user.set_password("an-old-password-1")  # Django resets only usable passwords; invitations set the first
    user.save()
    client = Client()
    assert "Forgot your password?" in client.get(reverse("login")).content.decode()
    response = client.post(reverse("password_reset"), {"email": "ALICE@contoso.com"})
    assert response.status_code == 302
    [message] = mail.outbox
    assert AuditEvent.objects.filter(action="password_reset_requested", target="alice").exists()
    assert set_password(client, link_in(str(message.body)), GOOD_PASSWORD).status_code == 302
    assert AuditEvent.objects.get(action="password_set").new_value == "reset by email"
    assert client.post(reverse("login"), {"username": "alice", "password": GOOD_PASSWORD}).status_code == 302


def test_an_unknown_address_gets_the_same_answer_and_no_mail(db: None) -> None:
    response = Client().post(reverse("password_reset"), {"email": "nobody@contoso.com"})
    assert response.status_code == 302 and mail.outbox == []


def test_without_email_there_is_no_reset(db: None) -> None:
    with NO_MAIL:
        assert Client().get(reverse("password_reset")).status_code == 404
        assert "Forgot your password?" not in Client().get(reverse("login")).content.decode()


# -- LOCAL_LOGIN=0 ----------------------------------------------------------------------------------------


@override_settings(LOCAL_LOGIN=False)
def test_local_login_off_leaves_only_the_provider_and_superusers(admin: User, db: None) -> None:
    page = Client().get(reverse("login")).content.decode()
    assert 'name="password"' not in page
    refused = Client().post(reverse("login"), {"username": "ada", "password": "pw-ada-123"})
    assert refused.status_code == 200  # the form again: no session
    assert Client().get(reverse("password_reset")).status_code == 404
    User.objects.create_superuser("root", "root@contoso.com", "pw-root-123")
    breakglass = Client()
    assert (
        breakglass.post("/admin/login/", {"username": "root", "password": "pw-root-123"}).status_code == 302
    )


# -- the Users & roles page ---------------------------------------------------------------------------------


def test_the_page_lists_role_mailbox_last_sign_in_and_source(
    admin: User, auditor: User, alice: Mailbox
) -> None:
    body = login(Client(), admin).get(reverse("web-users")).content.decode()
    for text in ("ada", "audrey", "alice", "alice@contoso.com", "never", "local"):
        assert text in body
    assert login(Client(), auditor).get(reverse("web-users")).status_code == 403


def test_an_admin_changes_a_role_and_it_is_audited(admin: User, alice: Mailbox) -> None:
    assert alice.user is not None
    client = login(Client(), admin)
    response = client.post(reverse("web-user-role", kwargs={"pk": alice.user.pk}), {"role": "admin"})
    assert response.status_code == 302
    assert role_of(User.objects.get(pk=alice.user.pk)) == Role.ADMIN
    event = AuditEvent.objects.get(action="user_role_changed")
    assert (event.actor, event.target, event.old_value, event.new_value) == (admin, "alice", "user", "admin")


def test_the_last_admin_cannot_be_demoted(admin: User) -> None:
    response = login(Client(), admin).post(
        reverse("web-user-role", kwargs={"pk": admin.pk}), {"role": "user"}
    )
    assert response.status_code == 400 and "last admin" in response.content.decode()
    assert role_of(admin) == Role.ADMIN


def test_deactivating_ends_sessions_and_stops_the_mailbox(admin: User, alice: Mailbox) -> None:
    assert alice.user is not None
    Mailbox.objects.filter(pk=alice.pk).update(enabled=True)
    theirs = login(Client(), alice.user)
    assert theirs.get(reverse("web-mailboxes")).status_code == 200
    response = login(Client(), admin).post(reverse("web-user-deactivate", kwargs={"pk": alice.user.pk}))
    assert response.status_code == 302
    assert not User.objects.get(pk=alice.user.pk).is_active
    assert not Mailbox.objects.get(pk=alice.pk).enabled
    assert theirs.get(reverse("web-mailboxes")).status_code == 302  # signed out
    event = AuditEvent.objects.get(action="user_deactivated")
    assert event.actor == admin and event.new_value == "inactive; 1 session(s) ended"


# -- the `users` command ---------------------------------------------------------------------------------


def test_users_list_json(cmd, admin: User, alice: Mailbox) -> None:
    rows = json.loads(cmd("users", "list", "--json").out)
    by_name = {r["username"]: r for r in rows}
    assert set(by_name["alice"]) == {
        "id",
        "username",
        "email",
        "role",
        "active",
        "mailbox",
        "last_sign_in",
        "source",
    }
    assert (by_name["ada"]["role"], by_name["alice"]["role"]) == ("admin", "user")
    assert by_name["alice"]["mailbox"] == "alice@contoso.com"
    assert "ada\tada@contoso.com\tadmin\tactive" in cmd("users", "list").out


def test_users_invite_role_deactivate(cmd, admin: User) -> None:
    out = cmd("users", "invite", "pat@contoso.com", "--role", "admin").out
    assert "invited pat@contoso.com as pat (admin)" in out and "mailed" in out
    assert len(mail.outbox) == 1
    pat = User.objects.get(username="pat")
    assert role_of(pat) == Role.ADMIN
    assert cmd("users", "role", "pat", "auditor").out.strip() == "pat: auditor"
    assert cmd("users", "deactivate", "pat").out.strip() == "pat: deactivated"
    actions = list(AuditEvent.objects.filter(target="pat").order_by("id").values_list("action", flat=True))
    assert actions == ["user_invited", "user_role_changed", "user_deactivated"]
    with NO_MAIL:
        shown = cmd("users", "invite", "quinn@contoso.com").out
    assert "email is not configured" in shown and "/set-password/" in shown


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("role", "nobody", "admin"), "no user 'nobody'"),
        (("deactivate", "ada"), "last admin"),
        (("invite", "bad address"), "not an email address"),
    ],
)
def test_users_refusals(cmd, admin: User, args: tuple[str, ...], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        cmd("users", *args)
