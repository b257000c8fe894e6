"""Sign-ins, wrong passwords and lockouts go into the audit trail (django.contrib.auth and axes signals)."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest

from tracking.actions.users import do_audit_sign_in, do_audit_sign_in_failure

# The session key a sign-in through the identity provider leaves, naming the provider (syncadmin/oidc.py).
SIGN_IN_METHOD_KEY = "syncadmin_sign_in_method"


def _address(request: HttpRequest | None) -> str:
    return str(request.META.get("REMOTE_ADDR", "")) if request is not None else ""


def _signed_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    method = "password"
    if request is not None and hasattr(request, "session"):
        method = str(request.session.get(SIGN_IN_METHOD_KEY, method))
    do_audit_sign_in(user, method=method)


def _failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    do_audit_sign_in_failure(str(credentials.get("username", "")), address=_address(request))


def _locked_out(sender: Any, request: HttpRequest | None, username: str | None, **kwargs: Any) -> None:
    do_audit_sign_in_failure(username or "", address=_address(request), locked_out=True)


def connect() -> None:
    user_logged_in.connect(_signed_in, dispatch_uid="syncadmin-audit-signed-in")
    user_login_failed.connect(_failed, dispatch_uid="syncadmin-audit-sign-in-failed")
    user_locked_out.connect(_locked_out, dispatch_uid="syncadmin-audit-locked-out")
