"""People: roles (the two groups), invitations, deactivation, and the audit of sign-ins.

Roles stay the groups syncadmin-admins and syncadmin-auditors (tracking.roles), so every permission
check keeps working; a user in neither is a plain user.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from tracking.actions.audit import audit
from tracking.actions.errors import ActionError
from tracking.actions.mailboxes import do_disable_mailbox
from tracking.choices import AuditAction, Role
from tracking.messages import normalize_address
from tracking.models import AuditEvent, Mailbox
from tracking.roles import ADMINS_GROUP, AUDITORS_GROUP

# An attempted user name is typed by anyone: the audit row keeps at most this much of it.
ATTEMPT_CHARS = 150


def do_audit_sign_in(user: User, *, method: str) -> None:
    """A successful sign-in (method: 'password' or the provider's name)."""
    audit(AuditAction.SIGNED_IN, user.get_username(), None, method, acting_user=user, actor_label="")


def do_audit_sign_in_failure(username: str, *, address: str, locked_out: bool = False) -> None:
    """A wrong password, or the lockout it led to (django-axes): who was tried, from where."""
    attempted = username.replace("\x00", "")[:ATTEMPT_CHARS]
    audit(
        AuditAction.LOCKED_OUT if locked_out else AuditAction.SIGN_IN_FAILED,
        attempted,
        None,
        f"from {address}" if address else "",
        acting_user=None,
        actor_label="anonymous",
    )


# ---------------------------------------------------------------------------------------------
# Roles, invitations, deactivation
# ---------------------------------------------------------------------------------------------


def role_of(user: User) -> Role:
    """The user's role by its groups (a superuser is always an admin)."""
    if user.is_superuser or ADMINS_GROUP in _group_names(user):
        return Role.ADMIN
    if AUDITORS_GROUP in _group_names(user):
        return Role.AUDITOR
    return Role.USER


def _group_names(user: User) -> set[str]:
    return {g.name for g in user.groups.all()}


def _apply_role(user: User, role: Role) -> None:
    admins = Group.objects.get_or_create(name=ADMINS_GROUP)[0]
    auditors = Group.objects.get_or_create(name=AUDITORS_GROUP)[0]
    user.groups.remove(admins, auditors)
    if role == Role.ADMIN:
        user.groups.add(admins)
    elif role == Role.AUDITOR:
        user.groups.add(auditors)
    user.__dict__.pop("_syncadmin_groups", None)  # roles.py caches the groups on the object


def parse_role(raw: str) -> Role:
    try:
        return Role(raw.strip().lower())
    except ValueError:
        raise ActionError(
            gettext("unknown role %(role)s; use one of %(roles)s")
            % {"role": repr(raw), "roles": ", ".join(Role.values)}
        ) from None


def _other_active_admins(user: User) -> bool:
    return (
        User.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=ADMINS_GROUP))
        .exclude(pk=user.pk)
        .exists()
    )


def user_for_email(address: str) -> User | None:
    """The user whose email, or whose mailbox's address, is `address` (case-insensitive)."""
    address = address.strip()
    if not address:
        return None
    found = User.objects.filter(email__iexact=address).order_by("pk").first()
    if found is None:
        mailbox = (
            Mailbox.objects.filter(email_address__iexact=address, user__isnull=False)
            .select_related("user")
            .first()
        )
        found = mailbox.user if mailbox is not None else None
    return found


def _free_username(email: str) -> str:
    base = re.sub(r"[^\w.@+-]", "", email.split("@")[0])[:140] or "user"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


@transaction.atomic
def check_invite_user(
    email: str, role: Role = Role.USER, *, acting_user: User | None = None, actor_label: str = "cli"
) -> User:
    """A new user for `email`, with no password yet (the invitation's link sets one), in `role`."""
    address = normalize_address(email)
    if address is None:
        raise ActionError(gettext("%(email)s is not an email address") % {"email": repr(email)})
    if user_for_email(address) is not None:
        raise ActionError(
            gettext("a user with the email address %(email)s exists already") % {"email": address}
        )
    user = User(username=_free_username(address), email=address)
    user.set_unusable_password()
    user.save()
    _apply_role(user, role)
    audit(
        AuditAction.USER_INVITED,
        user.get_username(),
        None,
        f"{address} as {role.value}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return user


@transaction.atomic
def check_set_role(
    user: User, role: Role, *, acting_user: User | None = None, actor_label: str = "cli", source: str = ""
) -> bool:
    """Give `user` the role; False when it had it. The last active admin cannot be demoted."""
    old = role_of(user)
    if old == role:
        return False
    if user.is_superuser:
        raise ActionError(
            gettext("%(user)s is a superuser and so always an admin") % {"user": user.get_username()}
        )
    if old == Role.ADMIN and user.is_active and not _other_active_admins(user):
        raise ActionError(gettext("%(user)s is the last admin") % {"user": user.get_username()})
    _apply_role(user, role)
    audit(
        AuditAction.USER_ROLE_CHANGED,
        user.get_username(),
        old.value,
        f"{role.value} ({source})" if source else role.value,
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return True


@transaction.atomic
def check_deactivate_user(user: User, *, acting_user: User | None = None, actor_label: str = "cli") -> bool:
    """Deactivate `user`: no more sign-ins, their sessions end, their mailboxes stop being scanned.

    A disabled user is no candidate and resolves as no party (tracking-rules §6), so their mail is not
    tracked.
    False when the user was inactive already.
    """
    if not user.is_active:
        return False
    if acting_user is not None and acting_user.pk == user.pk:
        raise ActionError(gettext("you cannot deactivate yourself"))
    if role_of(user) == Role.ADMIN and not _other_active_admins(user):
        raise ActionError(gettext("%(user)s is the last admin") % {"user": user.get_username()})
    user.is_active = False
    user.save(update_fields=["is_active"])
    for mailbox in Mailbox.objects.filter(user=user, enabled=True):
        do_disable_mailbox(mailbox, acting_user=acting_user, actor_label=actor_label)
    ended = end_sessions_of(user)
    audit(
        AuditAction.USER_DEACTIVATED,
        user.get_username(),
        "active",
        f"inactive; {ended} session(s) ended",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return True


def last_sign_in_methods() -> dict[str, str]:
    """User name → how they last signed in ('password' or the provider's name), from the audit trail."""
    events = AuditEvent.objects.filter(action=AuditAction.SIGNED_IN).order_by("id")
    return dict(events.values_list("target", "new_value"))


def source_of(user: User, last_method: str | None) -> str:
    """'provider' for a person who signs in with the identity provider, else 'local'."""
    if last_method is not None:
        return "local" if last_method == "password" else "provider"
    return "local" if user.has_usable_password() or not settings.OIDC_ENABLED else "provider"


def user_rows() -> list[dict[str, object]]:
    """Every user with role, mailbox, last sign-in and source: the list the CLI and the page show."""
    methods = last_sign_in_methods()
    mailboxes = dict(Mailbox.objects.filter(user__isnull=False).values_list("user_id", "email_address"))
    rows = []
    for user in User.objects.prefetch_related("groups").order_by("username"):
        rows.append(
            {
                "id": user.pk,
                "username": user.get_username(),
                "email": user.email,
                "role": role_of(user).value,
                "active": user.is_active,
                "mailbox": mailboxes.get(user.pk),
                "last_sign_in": user.last_login.isoformat() if user.last_login else None,
                "source": source_of(user, methods.get(user.get_username())),
            }
        )
    return rows


def end_sessions_of(user: User) -> int:
    """Delete the user's sessions (database sessions: each one is decoded to find its user)."""
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()
            ended += 1
    return ended


def do_audit_password_set(user: User, *, invited: bool) -> None:
    audit(
        AuditAction.PASSWORD_SET,
        user.get_username(),
        None,
        "invitation accepted" if invited else "reset by email",
        acting_user=user,
        actor_label="",
    )


def do_audit_password_reset_requested(user: User, *, mailed: bool) -> None:
    audit(
        AuditAction.PASSWORD_RESET_REQUESTED,
        user.get_username(),
        None,
        "mailed" if mailed else "",
        acting_user=None,
        actor_label="anonymous",
    )


def do_audit_sign_in_refused(address: str, *, reason: str, provider: str) -> None:
    """The identity provider vouched for someone SyncAdmin does not let in (unknown or deactivated)."""
    audit(
        AuditAction.SIGN_IN_REFUSED,
        address.replace("\x00", "")[:ATTEMPT_CHARS] or "(no email claim)",
        None,
        f"{provider}: {reason}",
        acting_user=None,
        actor_label="anonymous",
    )


@transaction.atomic
def do_create_provider_user(address: str, role: Role, *, provider: str) -> User | None:
    """A user for a person the provider vouches for (OIDC_CREATE_USERS), with no local password."""
    email = normalize_address(address)
    if email is None:
        return None
    user = User(username=_free_username(email), email=email)
    user.set_unusable_password()
    user.save()
    _apply_role(user, role)
    audit(
        AuditAction.USER_CREATED,
        user.get_username(),
        None,
        f"{email} as {role.value} ({provider})",
        acting_user=None,
        actor_label="system",
    )
    return user
