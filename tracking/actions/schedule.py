"""Scheduling and the mailbox lifecycle: claiming the due mailboxes, and what the end of a cycle does."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import transaction

from tracking.actions.alerts import raise_alert
from tracking.actions.audit import audit
from tracking.choices import AlertLevel, AuditAction, ErrorKind, MailboxStatus
from tracking.decisions import OrgRules
from tracking.models import Mailbox
from tracking.pushstate import on_push


def do_claim_due_mailboxes(rules: OrgRules, *, now: datetime, lease: timedelta) -> list[int]:
    """Claim every due mailbox for one scan: its next run moves to now + lease until the scan ends.

    One conditional UPDATE marks the claimed rows with this call's token, so two dispatchers running
    at once claim disjoint sets (the database checks a row's due conditions again when another claim
    changed it first); a scan lost with its worker makes the mailbox due again after the lease. Two
    statements whatever the number of mailboxes (B9).
    """
    token = uuid.uuid4().hex
    if not Mailbox.objects.due(rules, now).update(next_run_at=now + lease, dispatch_token=token):
        return []
    return list(Mailbox.objects.filter(dispatch_token=token).order_by("pk").values_list("pk", flat=True))


def do_postpone_scan(mailbox_id: int, *, until: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox_id).update(next_run_at=until)


def do_finish_cycle(mailbox_id: int, rules: OrgRules, *, now: datetime) -> None:
    """A scan cycle that succeeded: next run is the end of this cycle + MailboxPollIntervalMinutes, or the
    profile's minimum poll interval when that is longer; PushSafetyNetPollMinutes when push covers the
    mailbox (the poll is then only the safety net)."""
    minimum = (
        Mailbox.objects.filter(pk=mailbox_id)
        .values_list("profile__minimum_poll_interval_minutes", flat=True)
        .first()
    )
    minutes = max(rules.poll_interval_minutes, minimum or 0)
    if on_push(mailbox_id, rules, now):
        minutes = max(minutes, rules.push_safety_net_poll_minutes)
    Mailbox.objects.filter(pk=mailbox_id).update(
        next_run_at=now + timedelta(minutes=minutes), transient_failure_count=0
    )


@transaction.atomic
def do_record_cycle_failure(
    mailbox_id: int,
    rules: OrgRules,
    *,
    error: str,
    kind: ErrorKind,
    permanent: bool,
    retry_after: float | None,
    now: datetime,
) -> str:
    """Retry a transient failure later (the server's back-off if longer), or disable the mailbox.

    Returns what happened in words: "retry at …" or "disabled".
    """
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox_id)
    mailbox.last_error = error
    mailbox.last_error_kind = kind
    mailbox.incoming_status = MailboxStatus.FAILURE
    fields = [
        "last_error",
        "last_error_kind",
        "incoming_status",
        "transient_failure_count",
        "next_run_at",
        "enabled",
    ]
    if not permanent:
        mailbox.transient_failure_count += 1
    if permanent or mailbox.transient_failure_count > rules.transient_retry_limit:
        mailbox.enabled = False
        mailbox.next_run_at = None
        mailbox.save(update_fields=fields)
        why = "a permanent error" if permanent else f"{mailbox.transient_failure_count - 1} retries"
        raise_alert(
            mailbox,
            AlertLevel.ERROR,
            f"Mailbox disabled after {why}: {error}. Fix the cause, then run Test & Enable.",
        )
        audit(
            AuditAction.MAILBOX_DISABLED,
            mailbox.email_address,
            "enabled",
            f"disabled: {error}",
            acting_user=None,
            actor_label="system",
        )
        return "disabled"
    wait = max(timedelta(minutes=rules.transient_retry_minutes), timedelta(seconds=retry_after or 0))
    mailbox.next_run_at = now + wait
    mailbox.save(update_fields=fields)
    raise_alert(
        mailbox,
        AlertLevel.WARNING,
        (
            f"Scan failed (retry {mailbox.transient_failure_count} of {rules.transient_retry_limit}): "
            f"{error}. Next try at {mailbox.next_run_at:%Y-%m-%d %H:%M} UTC."
        ),
    )
    return f"retry at {mailbox.next_run_at.isoformat()}"
