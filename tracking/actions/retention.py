"""Retention: do_purge_decisions is the only way a Decision is ever deleted; do_purge_content the only way
a tracked email's stored content goes (tracking-rules §2)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from tracking.actions.audit import audit, utc_text
from tracking.choices import AuditAction
from tracking.models import Decision, Mailbox, TrackedAttachment, TrackedEmail


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


def content_purgeable(cutoff: datetime) -> QuerySet[TrackedEmail]:
    """The tracked emails made before cutoff whose content is still kept: what a content purge clears."""
    return TrackedEmail.objects.filter(created_at__lt=cutoff, content_purged_at__isnull=True)


@transaction.atomic
def do_purge_content(
    cutoff: datetime, *, now: datetime, acting_user: User | None = None, actor_label: str
) -> int:
    """Clear the bodies and attachment contents of the emails tracked before cutoff, keeping everything
    else (subject, parties, attachment names, types and sizes), and audit it; returns how many emails.

    For organisations that must not keep content: the email stays on its timelines, marked as purged.
    """
    emails = content_purgeable(cutoff)
    TrackedAttachment.objects.filter(tracked_email__in=emails.values("pk"), content__isnull=False).update(
        content=None
    )
    cleared = emails.update(body_text="", body_html="", content_purged_at=now)
    audit(
        AuditAction.CONTENT_PURGED,
        "tracked email content",
        f"tracked before {utc_text(cutoff)}",
        f"{cleared} emails cleared",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return cleared
