"""Sign-in with the organisation's OpenID Connect provider (Microsoft Entra ID or another), on
mozilla-django-oidc: the authorization-code flow with state, nonce and PKCE, the ID token's signature
checked against the provider's keys (JWKS) and, here, its issuer, audience and expiry by PyJWT.

The provider's endpoints come from its discovery document (OIDC_ISSUER/.well-known/openid-configuration),
fetched when first needed and kept for an hour, so a provider that is down when SyncAdmin starts does not
stop it: the sign-in page says so and local sign-in keeps working.

A person is matched by the `email` claim, then `preferred_username`, to a user's email or a mailbox's
address, case-insensitively; an unknown person is refused (no user is made unless OIDC_CREATE_USERS).
Roles come from the roles claim at every sign-in: a role removed in the provider is removed here.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend  # type: ignore[import-untyped]
from mozilla_django_oidc.utils import import_from_settings  # type: ignore[import-untyped]
from mozilla_django_oidc.views import (  # type: ignore[import-untyped]
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from syncadmin.web.signins import SIGN_IN_METHOD_KEY
from tracking.actions.users import (
    check_set_role,
    do_audit_sign_in_refused,
    do_create_provider_user,
    role_of,
    user_for_email,
)
from tracking.choices import Role

DISCOVERY_TTL = 3600  # seconds
DISCOVERY_TIMEOUT = 10
# The session key saying why the provider's sign-in was refused, for the page that explains it.
REFUSAL_KEY = "syncadmin_oidc_refusal"

# mozilla-django-oidc's settings → the discovery document's keys.
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}

RETRY_AFTER_FAILURE = 30  # seconds: a provider that is down is not asked again on every request
_discovery: dict[str, Any] = {}
_discovered_at = 0.0
_failed_at: float | None = None


class ProviderUnavailable(Exception):
    """The provider's discovery document cannot be read."""


def discovery() -> dict[str, Any]:
    global _discovery, _discovered_at, _failed_at
    now = time.monotonic()
    if _discovery and now - _discovered_at < DISCOVERY_TTL:
        return _discovery
    url = settings.OIDC_ISSUER.rstrip("/") + "/.well-known/openid-configuration"
    if _failed_at is not None and now - _failed_at < RETRY_AFTER_FAILURE:
        raise ProviderUnavailable(f"{url}: unreachable a moment ago")
    try:
        response = requests.get(url, timeout=DISCOVERY_TIMEOUT, verify=settings.OIDC_VERIFY_SSL)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        _failed_at = now
        raise ProviderUnavailable(f"{url}: {exc}") from exc
    _failed_at = None
    if not isinstance(document, dict) or any(
        key not in document for key in ("authorization_endpoint", "token_endpoint", "jwks_uri")
    ):
        raise ProviderUnavailable(f"{url}: not an OpenID Connect discovery document")
    _discovery, _discovered_at = document, time.monotonic()
    return document


def forget_discovery() -> None:
    global _discovery, _discovered_at, _failed_at
    _discovery, _discovered_at, _failed_at = {}, 0.0, None


def provider_setting(attr: str, *args: Any) -> Any:
    """mozilla-django-oidc's settings, with the endpoints from discovery."""
    if attr in ENDPOINTS:
        return discovery().get(ENDPOINTS[attr], *args)
    return import_from_settings(attr, *args)


def roles_from(claims: dict[str, Any]) -> Role:
    """The role the provider's roles claim gives (admin before auditor); a user without either is a user."""
    raw = claims.get(settings.OIDC_ROLES_CLAIM) or []
    granted = {raw} if isinstance(raw, str) else {str(r) for r in raw} if isinstance(raw, list) else set()
    if granted & set(settings.OIDC_ADMIN_ROLES):
        return Role.ADMIN
    if granted & set(settings.OIDC_AUDITOR_ROLES):
        return Role.AUDITOR
    return Role.USER


def identity_of(claims: dict[str, Any]) -> str:
    """The address the person is matched by: the email claim, else preferred_username."""
    for key in ("email", "preferred_username"):
        value = claims.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


class ProviderBackend(OIDCAuthenticationBackend):
    get_settings = staticmethod(provider_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django builds every backend for every sign-in and session: a provider that is down must not
        # stop password sign-in or the sessions of people already signed in.
        self.unavailable = False
        try:
            super().__init__(*args, **kwargs)
        except ProviderUnavailable:
            self.unavailable = True
            self.UserModel = get_user_model()

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        if self.unavailable:
            return None
        user: User | None = super().authenticate(request, **kwargs)
        return user

    def get_user(self, user_id: int) -> User | None:
        user = User.objects.filter(pk=user_id, is_active=True).first()
        return user

    def _verify_jws(self, payload: bytes, key: Any) -> dict[str, Any]:
        header = jwt.get_unverified_header(payload)
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation("the ID token's algorithm is not the one expected")
        try:
            claims: dict[str, Any] = jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=discovery().get("issuer", settings.OIDC_ISSUER),
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"ID token refused: {exc}") from exc
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User | None:
        claims = {**payload, **(self.get_userinfo(access_token, id_token, payload) or {})}
        # Entra puts app roles in the ID token, not in userinfo.
        if settings.OIDC_ROLES_CLAIM in payload:
            claims[settings.OIDC_ROLES_CLAIM] = payload[settings.OIDC_ROLES_CLAIM]
        return self.match(claims)

    def match(self, claims: dict[str, Any]) -> User | None:
        """The user the claims name, with the provider's role; None (and why, in the session) if none."""
        address = identity_of(claims)
        user = user_for_email(address) if address else None
        if user is None and address and settings.OIDC_CREATE_USERS:
            user = do_create_provider_user(address, roles_from(claims), provider=settings.OIDC_PROVIDER_NAME)
        if user is None or not user.is_active:
            self._refuse("unknown" if user is None else "inactive", address)
            return None
        wanted = roles_from(claims)
        if role_of(user) != wanted and not user.is_superuser:
            check_set_role(
                user, wanted, acting_user=None, actor_label="system", source=settings.OIDC_PROVIDER_NAME
            )
        if self.request is not None:
            self.request.session[SIGN_IN_METHOD_KEY] = settings.OIDC_PROVIDER_NAME
        return user

    def _refuse(self, reason: str, address: str) -> None:
        do_audit_sign_in_refused(address, reason=reason, provider=settings.OIDC_PROVIDER_NAME)
        if self.request is not None:
            self.request.session[REFUSAL_KEY] = reason


class ProviderSignInView(OIDCAuthenticationRequestView):
    get_settings = staticmethod(provider_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._unavailable = False
        try:
            super().__init__(*args, **kwargs)
        except ProviderUnavailable:
            self._unavailable = True

    def get(self, request: HttpRequest) -> HttpResponse:
        if self._unavailable:
            return provider_unavailable(request)
        response: HttpResponse = super().get(request)
        return response


class ProviderCallbackView(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(provider_setting)

    @property
    def failure_url(self) -> str:
        return reverse("web-oidc-refused")

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            response: HttpResponse = super().get(request)
        except ProviderUnavailable:
            return provider_unavailable(request)
        except (requests.RequestException, SuspiciousOperation):
            request.session[REFUSAL_KEY] = "error"
            return HttpResponseRedirect(self.failure_url)
        return response


def provider_unavailable(request: HttpRequest) -> HttpResponse:
    context = {
        "reason": "unavailable",
        "local_login": settings.LOCAL_LOGIN,
        "provider": settings.OIDC_PROVIDER_NAME,
    }
    return render(request, "registration/oidc_refused.html", context, status=503)
