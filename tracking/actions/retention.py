"""Retention: do_purge_decisions is the only way a Decision is ever deleted."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction

from tracking.actions.audit import audit, utc_text
from tracking.choices import AuditAction
from tracking.models import Decision, Mailbox


@transaction.atomic
def do_purge_decisions(
    cutoff: datetime, *, mailbox: Mailbox | None = None, acting_user: User | None = None, actor_label: str
) -> int:
    """Delete the decisions made before cutoff and audit who did it; returns how many were deleted.

    Only Decisions go: their TrackedEmails are CRM data and their ScanRuns keep the counts.
    """
    _, per_model = Decision.objects.purgeable(cutoff, mailbox).delete()
    deleted = per_model.get(Decision._meta.label, 0)
    audit(
        AuditAction.DECISIONS_PURGED,
        mailbox.email_address if mailbox is not None else "all mailboxes",
        f"decided before {utc_text(cutoff)}",
        f"{deleted} deleted",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return deleted
