"""Set-password links: an invitation for a new local account, and the password reset of Django.

A link is Django's password-reset token for the user: it is good once (setting the password changes
what it was made from) and for PASSWORD_RESET_TIMEOUT (72 hours). It is mailed when email is
configured, and otherwise shown to the admin who invited the person, to pass on.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# The set-password page marks an invitation (rather than a reset) with this query parameter.
INVITED_PARAM = "invited"


def mail_configured() -> bool:
    """Whether mail can go out: an email backend other than Django's default SMTP to localhost:25."""
    return settings.EMAIL_BACKEND != SMTP_BACKEND or settings.EMAIL_HOST not in ("", "localhost")


def site_url(fallback: str = "") -> str:
    """The public address links start with: SITE_URL, else the request's (fallback)."""
    return (settings.SITE_URL or fallback).rstrip("/")


def set_password_link(user: User, base: str) -> str:
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return f"{base}{path}?{INVITED_PARAM}=1"


def send_invitation(user: User, base: str) -> tuple[str, bool]:
    """The invitation's link, and whether it was mailed."""
    link = set_password_link(user, base)
    if not mail_configured() or not user.email:
        return link, False
    send_mail(
        _("You are invited to SyncAdmin"),
        _(
            "An administrator has given you an account on SyncAdmin (user name %(username)s).\n\n"
            "Choose your password here; the link works once, within 72 hours:\n\n%(link)s\n"
        )
        % {"username": user.get_username(), "link": link},
        None,
        [user.email],
    )
    return link, True
