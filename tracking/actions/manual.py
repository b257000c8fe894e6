"""Manual tracking on a tracked email (tracking-rules §7a): set or clear its regarding, untrack it, track it
again. Each is a decision of its own (manual, made by the person) superseding the message's current one,
and an audit event with before → after. Tracking a message nobody tracked goes through the engine
(tracking.pipeline.track_decision_manually); these change an email that exists.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction

from tracking.actions.audit import audit
from tracking.choices import AuditAction, Outcome, Reason
from tracking.models import CrmRecord, Decision, TrackedEmail


def current_decision(decision: Decision) -> Decision:
    """The newest decision of this message in this mailbox folder that nothing supersedes."""
    found = (
        Decision.objects.filter(
            mailbox_id=decision.mailbox_id, folder=decision.folder, message_id=decision.message_id
        )
        .filter(superseded_by__isnull=True)
        .order_by("-id")
        .first()
    )
    return found or decision


def _locked(email: TrackedEmail) -> TrackedEmail:
    """The email, read again under a row lock (of it alone: PostgreSQL locks no outer-joined regarding)."""
    return TrackedEmail.objects.select_for_update(of=("self",)).select_related("regarding").get(pk=email.pk)


def _label(record: CrmRecord | None) -> str:
    return f"{record.kind}:{record.name}" if record is not None else "none"


def _append(
    decision: Decision,
    email: TrackedEmail,
    *,
    outcome: Outcome,
    reason: Reason,
    steps: list[tuple[str, str, str]],
    now: datetime,
    made_by: User | None,
) -> Decision:
    latest = current_decision(decision)
    return Decision.objects.create(
        mailbox_id=decision.mailbox_id,
        folder=decision.folder,
        provider_item_id=decision.provider_item_id,
        message_id=decision.message_id,
        message_id_synthetic=decision.message_id_synthetic,
        subject=decision.subject,
        sender=decision.sender,
        received_at=decision.received_at,
        direction=email.direction,
        outcome=outcome,
        reason=reason,
        accepting_kind=email.accepting_kind,
        accepting_id=email.accepting_id,
        accepting_name=email.accepting_name,
        accepting_email=email.accepting_email,
        correlation_method=email.correlation_method,
        regarding_id=email.regarding_id,
        tracked_email=email,
        trace=[{"check": c, "result": r, "detail": d} for c, r, d in steps],
        message_snapshot=decision.message_snapshot,
        manual=True,
        made_by=made_by,
        supersedes=latest,
        decided_at=now,
    )


def _by(acting_user: User | None) -> str:
    return f"by {acting_user.get_username()}" if acting_user is not None else "from the command line"


@transaction.atomic
def do_set_regarding_by_hand(
    decision: Decision,
    email: TrackedEmail,
    record: CrmRecord | None,
    *,
    now: datetime,
    acting_user: User | None,
    actor_label: str = "cli",
) -> Decision:
    """Set, change (a record) or clear (None) the regarding of a tracked email."""
    email = _locked(email)
    before = email.regarding
    email.regarding = record
    email.save(update_fields=["regarding"])
    what = "regarding cleared" if record is None else "regarding set"
    made = _append(
        decision,
        email,
        outcome=Outcome.TRACKED,
        reason=Reason.MANUAL,
        steps=[
            ("manual", what, f"{_label(before)} → {_label(record)}, {_by(acting_user)}"),
            ("outcome", "tracked/manual", "the tracked email stays tracked"),
        ],
        now=now,
        made_by=acting_user,
    )
    audit(
        AuditAction.MANUAL_REGARDING,
        f"{email.message_id} ({email.direction})"[:300],
        _label(before),
        _label(record),
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return made


@transaction.atomic
def do_untrack(
    decision: Decision,
    email: TrackedEmail,
    *,
    now: datetime,
    acting_user: User | None,
    actor_label: str = "cli",
) -> Decision:
    """Untrack a tracked email: kept, marked untracked; scans and rounds never track it again (§7a)."""
    email = _locked(email)
    email.untracked_at = now
    email.save(update_fields=["untracked_at"])
    made = _append(
        decision,
        email,
        outcome=Outcome.NOT_TRACKED,
        reason=Reason.UNTRACKED,
        steps=[
            ("manual", "untracked", f"untracked {_by(acting_user)}; kept for the audit"),
            ("outcome", "not_tracked/untracked", "scans and reprocessing rounds never track it again"),
        ],
        now=now,
        made_by=acting_user,
    )
    audit(
        AuditAction.MANUAL_UNTRACKED,
        f"{email.message_id} ({email.direction})"[:300],
        "tracked",
        "untracked",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return made


@transaction.atomic
def do_track_again(
    decision: Decision,
    email: TrackedEmail,
    record: CrmRecord | None,
    *,
    now: datetime,
    acting_user: User | None,
    actor_label: str = "cli",
) -> Decision:
    """Track by hand an email that was untracked: the same TrackedEmail, tracked again."""
    email = _locked(email)
    email.untracked_at = None
    if record is not None:
        email.regarding = record
    email.save(update_fields=["untracked_at", "regarding"])
    made = _append(
        decision,
        email,
        outcome=Outcome.TRACKED,
        reason=Reason.MANUAL,
        steps=[
            (
                "manual",
                "tracked again",
                f"tracked again by hand {_by(acting_user)}, regarding {_label(email.regarding)}",
            ),
            ("outcome", "tracked/manual", "the email untracked before is tracked again"),
        ],
        now=now,
        made_by=acting_user,
    )
    audit(
        AuditAction.MANUAL_TRACKING,
        f"{email.message_id} ({email.direction})"[:300],
        "untracked",
        f"tracked, regarding {_label(email.regarding)}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return made
