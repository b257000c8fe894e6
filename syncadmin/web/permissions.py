"""Who may see and do what (tracking-rules §1), checked first in every view.

Admins (superusers or group syncadmin-admins) see and change everything; auditors (group
syncadmin-auditors) read logs, scan runs, mailboxes and settings and export, and change nothing;
every signed-in user reads their own mailbox and decisions and edits their own Personal Options.
A wrong role gets 403; another user's object gets 404, so ids cannot be probed. What each role
sees of a model is the model's `visible_to(user)`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from tracking.models import Decision, Mailbox
from tracking.roles import is_admin, is_auditor, reads_everything

__all__ = [
    "AuthenticatedHttpRequest",
    "admin_required",
    "get_visible_mailbox",
    "is_admin",
    "is_auditor",
    "may_track",
    "reader_required",
    "reads_everything",
    "user_required",
]


class AuthenticatedHttpRequest(HttpRequest):
    """A request the decorators below let through: its user is signed in."""

    user: User


P = ParamSpec("P")
View = Callable[Concatenate[AuthenticatedHttpRequest, P], HttpResponseBase]


def admin_required(view: View[P]) -> View[P]:
    """Signed in (else the sign-in page) and an admin (else 403)."""

    @wraps(view)
    def wrapper(request: AuthenticatedHttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        if not is_admin(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def reader_required(view: View[P]) -> View[P]:
    """Signed in and an admin or an auditor (else 403)."""

    @wraps(view)
    def wrapper(request: AuthenticatedHttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        if not reads_everything(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def user_required(view: View[P]) -> View[P]:
    """Any signed-in user; the view scopes what it shows with the models' visible_to(user)."""
    return login_required(view)


def get_visible_mailbox(request: AuthenticatedHttpRequest, pk: int) -> Mailbox:
    mailbox = (
        Mailbox.objects.visible_to(request.user)
        .select_related("user", "queue", "profile")
        .filter(pk=pk)
        .first()
    )
    if mailbox is None:
        raise Http404
    return mailbox


def may_track(user: User | AnonymousUser, decision: Decision) -> bool:
    """Track / Set regarding: the mailbox's owner or an admin (tracking-rules §3.3)."""
    return is_admin(user) or (user.is_authenticated and decision.mailbox.user_id == user.pk)
