"""OpenID Connect sign-in: matching the provider's claims to users and roles (syncadmin/oidc.py).

These exercise the product's own part of the flow (matching, roles, refusals, the pages) with claim sets
as a provider sends them; the whole authorization-code flow against a real provider in a browser is
still to be written (see the report of issue 15).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from syncadmin.oidc import ProviderBackend, identity_of, roles_from
from tracking.actions import role_of
from tracking.choices import Role
from tracking.models import AuditEvent, Mailbox

OIDC = override_settings(
    OIDC_ENABLED=True,
    OIDC_ISSUER="https://127.0.0.1:9/unreachable",
    OIDC_PROVIDER_NAME="Microsoft",
    OIDC_ROLES_CLAIM="roles",
    OIDC_ADMIN_ROLES=["SyncAdmin.Admin"],
    OIDC_AUDITOR_ROLES=["SyncAdmin.Auditor"],
    OIDC_CREATE_USERS=False,
    OIDC_VERIFY_SSL=True,
)


def backend() -> ProviderBackend:
    """The backend without the library's start-up (which reads the provider's endpoints over the network)."""
    instance = ProviderBackend.__new__(ProviderBackend)
    instance.request = None
    return instance


def test_roles_from_the_claim() -> None:
    with OIDC:
        assert roles_from({"roles": ["SyncAdmin.Admin", "SyncAdmin.Auditor"]}) == Role.ADMIN
        assert roles_from({"roles": ["SyncAdmin.Auditor"]}) == Role.AUDITOR
        assert roles_from({"roles": "SyncAdmin.Auditor"}) == Role.AUDITOR
        assert roles_from({"roles": ["Other"]}) == Role.USER
        assert roles_from({}) == Role.USER


def test_identity_is_email_then_preferred_username() -> None:
    assert identity_of({"email": " Ann@X.example ", "preferred_username": "b@x.example"}) == "Ann@X.example"
    assert identity_of({"preferred_username": "b@x.example"}) == "b@x.example"
    assert identity_of({"sub": "123"}) == ""


@OIDC
def test_a_mailbox_owner_is_matched_by_address_without_a_duplicate(alice: Mailbox) -> None:
    users = User.objects.count()
    user = backend().match({"preferred_username": "ALICE@contoso.com", "roles": ["SyncAdmin.Auditor"]})
    assert user is not None and user == alice.user
    assert User.objects.count() == users
    assert role_of(user) == Role.AUDITOR
    event = AuditEvent.objects.get(action="user_role_changed")
    assert (event.old_value, event.new_value, event.actor_label) == ("user", "auditor (Microsoft)", "system")


@OIDC
def test_a_role_removed_in_the_provider_is_removed_at_the_next_sign_in(admin: User, alice: Mailbox) -> None:
    assert alice.user is not None
    backend().match({"email": "alice@contoso.com", "roles": ["SyncAdmin.Admin"]})
    assert role_of(User.objects.get(pk=alice.user.pk)) == Role.ADMIN
    backend().match({"email": "alice@contoso.com", "roles": []})
    assert role_of(User.objects.get(pk=alice.user.pk)) == Role.USER


@OIDC
def test_an_unknown_person_is_refused_and_no_user_is_made(db: None) -> None:
    users = User.objects.count()
    assert backend().match({"email": "stranger@fabrikam.example", "roles": ["SyncAdmin.Admin"]}) is None
    assert User.objects.count() == users
    event = AuditEvent.objects.get(action="sign_in_refused")
    assert (event.target, event.new_value) == ("stranger@fabrikam.example", "Microsoft: unknown")


@OIDC
def test_with_oidc_create_users_a_known_person_gets_a_user(db: None) -> None:
    with override_settings(OIDC_CREATE_USERS=True):
        user = backend().match({"email": "new@contoso.com", "roles": ["SyncAdmin.Auditor"]})
    assert user is not None and user.email == "new@contoso.com" and not user.has_usable_password()
    assert role_of(user) == Role.AUDITOR
    assert AuditEvent.objects.filter(action="user_created", target=user.get_username()).exists()


@OIDC
def test_a_deactivated_user_is_refused(alice: Mailbox) -> None:
    assert alice.user is not None
    User.objects.filter(pk=alice.user.pk).update(is_active=False)
    assert backend().match({"email": "alice@contoso.com"}) is None
    assert AuditEvent.objects.get(action="sign_in_refused").new_value == "Microsoft: inactive"


@OIDC
def test_the_sign_in_page_offers_the_provider_and_a_provider_down_is_a_clear_page(db: None) -> None:
    from syncadmin.oidc import forget_discovery

    forget_discovery()
    page = Client().get(reverse("login")).content.decode()
    assert "Sign in with Microsoft" in page and 'name="password"' in page
    down = Client().get(reverse("oidc_authentication_init"))
    assert down.status_code == 503
    body = down.content.decode()
    assert "Microsoft cannot be reached" in body and "Sign in with a password instead" in body


@pytest.mark.parametrize(
    ("reason", "text"), [("unknown", "no user with your email"), ("error", "could not be used")]
)
def test_the_refusal_page_says_why(db: None, reason: str, text: str) -> None:
    client = Client()
    session = client.session
    session["syncadmin_oidc_refusal"] = reason
    session.save()
    response = client.get(reverse("web-oidc-refused"))
    assert response.status_code == 403 and text in response.content.decode()
