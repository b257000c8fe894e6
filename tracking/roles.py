"""The three roles (tracking-rules §1), asked by the models' visible_to() and by the web layer's checks.

Admins are superusers or members of group syncadmin-admins; auditors are members of
syncadmin-auditors; every other signed-in user is a plain user who sees only their own.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

ADMINS_GROUP = "syncadmin-admins"
AUDITORS_GROUP = "syncadmin-auditors"


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
