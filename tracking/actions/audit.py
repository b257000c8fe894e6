"""The audit list's rows: who changed what, from what to what (the actions write them, nothing else)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth.models import User

from tracking.choices import AuditAction
from tracking.models import AuditEvent


def label_of(acting_user: User | None, actor_label: str) -> str:
    """The name an audit row and an alert give the actor: the user's, or the label ('cli', 'system')."""
    return acting_user.get_username() if acting_user is not None else actor_label


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
