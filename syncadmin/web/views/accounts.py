"""Signing in: the sign-in page (password and/or the identity provider), password reset by email, and the
set-password page an invitation or a reset links to (Django's views, audited, with the password validators).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm, SetPasswordForm
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from tracking.actions.users import do_audit_password_reset_requested, do_audit_password_set
from tracking.invitations import mail_configured


def _sign_in_context() -> dict[str, Any]:
    return {
        "local_login": settings.LOCAL_LOGIN,
        "oidc_enabled": settings.OIDC_ENABLED,
        "oidc_provider_name": settings.OIDC_PROVIDER_NAME,
        "password_reset": settings.LOCAL_LOGIN and mail_configured(),
    }


class SignInView(auth_views.LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **_sign_in_context()}


# Django's LoginView would take a PUT as a POST.
sign_in = require_http_methods(["GET", "POST"])(SignInView.as_view())


class AuditedPasswordResetForm(PasswordResetForm):
    def get_users(self, email: str) -> Any:
        for user in super().get_users(email):
            do_audit_password_reset_requested(user, mailed=True)
            yield user


class ResetView(auth_views.PasswordResetView):
    form_class = AuditedPasswordResetForm
    success_url = reverse_lazy("password_reset_done")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.LOCAL_LOGIN or not mail_configured():
            raise Http404  # no passwords to reset, or no way to send the link
        return super().dispatch(request, *args, **kwargs)


class SetPasswordView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form: SetPasswordForm[User]) -> HttpResponse:
        invited = not form.user.has_usable_password()  # an invitation: the account has no password yet
        response = super().form_valid(form)
        do_audit_password_set(form.user, invited=invited)
        return response


password_reset = require_http_methods(["GET", "POST"])(ResetView.as_view())
password_reset_done = require_http_methods(["GET"])(
    auth_views.PasswordResetDoneView.as_view(extra_context={"title": None})
)
password_reset_confirm = require_http_methods(["GET", "POST"])(SetPasswordView.as_view())
password_reset_complete = require_http_methods(["GET"])(auth_views.PasswordResetCompleteView.as_view())


# -- OpenID Connect ------------------------------------------------------------------------------------


def _provider_view(view: Any) -> Any:
    """A provider view that exists only when OIDC_ISSUER is set."""

    def wrapper(request: HttpRequest) -> HttpResponseBase:
        if not settings.OIDC_ENABLED:
            raise Http404
        response: HttpResponseBase = view(request)
        return response

    return require_http_methods(["GET"])(wrapper)


def _oidc_sign_in(request: HttpRequest) -> HttpResponseBase:
    from syncadmin.oidc import ProviderSignInView

    response: HttpResponseBase = ProviderSignInView.as_view()(request)
    return response


def _oidc_callback(request: HttpRequest) -> HttpResponseBase:
    from syncadmin.oidc import ProviderCallbackView

    response: HttpResponseBase = ProviderCallbackView.as_view()(request)
    return response


oidc_sign_in = _provider_view(_oidc_sign_in)
oidc_callback = _provider_view(_oidc_callback)


@require_http_methods(["GET"])
def oidc_refused(request: HttpRequest) -> HttpResponse:
    """Why the provider's sign-in did not let the person in: unknown, deactivated, or an error."""
    reason = (
        request.session.pop("syncadmin_oidc_refusal", "error") if hasattr(request, "session") else "error"
    )
    context = {"reason": reason, "local_login": settings.LOCAL_LOGIN, "provider": settings.OIDC_PROVIDER_NAME}
    return render(request, "registration/oidc_refused.html", context, status=403)
