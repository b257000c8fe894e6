"""People: roles (the two groups), invitations, deactivation, and the audit of sign-ins.

Roles stay the groups syncadmin-admins and syncadmin-auditors (tracking.roles), so every permission
check keeps working; a user in neither is a plain user.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from tracking.actions.audit import audit
from tracking.choices import AuditAction

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
