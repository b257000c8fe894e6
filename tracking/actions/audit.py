"""The audit list's rows: who changed what, from what to what (the actions write them, nothing else)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

from django.contrib.auth.models import User

from tracking.choices import AuditAction
from tracking.models import AuditEvent

CLI = "cli"


def os_user() -> str:
    """The operating-system user running a command, or "" when the system cannot say."""
    try:
        return getpass.getuser()
    except OSError:  # a container user without a passwd entry or LOGNAME
        return ""


def cli_label(name: str | None = None) -> str:
    """`cli:NAME` (by default the operating-system user), or plain `cli` when there is no name."""
    name = os_user() if name is None else name
    return f"{CLI}:{name}" if name else CLI


def label_of(acting_user: User | None, actor_label: str) -> str:
    """The name an audit row and an alert give the actor: the user's, or the label ('cli', 'system').

    A command's changes say which operating-system user ran it: 'cli' becomes 'cli:NAME'.
    """
    if acting_user is not None:
        return acting_user.get_username()
    return cli_label() if actor_label == CLI else actor_label


def utc_text(value: datetime | None) -> str | None:
    """A date and time as the audit list stores it: ISO 8601 in UTC."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def audit(
    action: AuditAction, target: str, old: object, new: object, *, acting_user: User | None, actor_label: str
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=acting_user,
        actor_label=label_of(acting_user, actor_label),
        action=action,
        target=target,
        old_value="" if old is None else str(old),
        new_value="" if new is None else str(new),
    )
