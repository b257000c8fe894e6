"""Who may see and do what (DOMAIN §1), checked first in every view.

Admins (superusers or group syncadmin-admins) see and change everything; auditors (group
syncadmin-auditors) read logs, scan runs, mailboxes and settings and export, and change nothing;
every signed-in user reads their own mailbox and decisions and edits their own Personal Options.
A wrong role gets 403; another user's object gets 404, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from tracking.models import Decision, Mailbox

ADMINS_GROUP = "syncadmin-admins"
AUDITORS_GROUP = "syncadmin-auditors"

P = ParamSpec("P")
View = Callable[Concatenate[HttpRequest, P], HttpResponseBase]


def _groups(user: User | AnonymousUser) -> frozenset[str]:
    if not user.is_authenticated:
        return frozenset()
    cached: frozenset[str] | None = getattr(user, "_syncadmin_groups", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        setattr(user, "_syncadmin_groups", cached)  # noqa: B010  (once per request, not per check)
    return cached


def is_admin(user: User | AnonymousUser) -> bool:
    return user.is_authenticated and user.is_active and (user.is_superuser or ADMINS_GROUP in _groups(user))


def is_auditor(user: User | AnonymousUser) -> bool:
    return user.is_authenticated and user.is_active and AUDITORS_GROUP in _groups(user)


def reads_everything(user: User | AnonymousUser) -> bool:
    return is_admin(user) or is_auditor(user)


def admin_required(view: View[P]) -> View[P]:
    """Signed in (else the sign-in page) and an admin (else 403)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        if not is_admin(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def reader_required(view: View[P]) -> View[P]:
    """Signed in and an admin or an auditor (else 403)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        if not reads_everything(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def user_required(view: View[P]) -> View[P]:
    """Any signed-in user; the view scopes what it shows with the helpers below."""
    return login_required(view)


def visible_mailboxes(user: User | AnonymousUser) -> QuerySet[Mailbox]:
    mailboxes = Mailbox.objects.select_related("user", "queue", "profile")
    if reads_everything(user):
        return mailboxes
    if not user.is_authenticated:
        return mailboxes.none()
    return mailboxes.filter(user_id=user.pk)


def visible_decisions(user: User | AnonymousUser) -> QuerySet[Decision]:
    if reads_everything(user):
        return Decision.objects.all()
    if not user.is_authenticated:
        return Decision.objects.none()
    # By mailbox id rather than a join on the owner, so the (mailbox, -id) index serves the log.
    own = list(Mailbox.objects.filter(user_id=user.pk).values_list("pk", flat=True))
    return Decision.objects.filter(mailbox_id__in=own)


def get_visible_mailbox(request: HttpRequest, pk: int) -> Mailbox:
    mailbox = visible_mailboxes(request.user).filter(pk=pk).first()
    if mailbox is None:
        raise Http404
    return mailbox


def get_visible_decision(request: HttpRequest, pk: int) -> Decision:
    decision = (
        visible_decisions(request.user).select_related("mailbox", "regarding", "tracked_email").filter(pk=pk)
    )
    found = decision.first()
    if found is None:
        raise Http404
    return found


def may_track(user: User | AnonymousUser, decision: Decision) -> bool:
    """Track / Set regarding: the mailbox's owner or an admin (DOMAIN §3.3)."""
    return is_admin(user) or (user.is_authenticated and decision.mailbox.user_id == user.pk)
