"""The job of a bulk operation on mailboxes (the mailbox list's Approve, Reject, Test & Enable, Disable,
Apply default profile): one mailbox after another, each its own audited action, progress after each."""

from __future__ import annotations

import logging

import django_rq
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.translation import gettext
from rq.job import Job

from tracking.actions import (
    ActionError,
    do_apply_default_profile,
    do_approve_mailbox,
    do_disable_mailbox,
    do_finish_bulk,
    do_record_bulk_result,
)
from tracking.choices import Approval, BulkAction
from tracking.jobs import QUEUE
from tracking.models import BulkOperation, Mailbox
from tracking.scanning import run_test_and_enable

log = logging.getLogger(__name__)

# Test & Enable connects to each server in turn: a long list may take a while.
BULK_TIMEOUT = 3600


def enqueue_bulk(operation: BulkOperation) -> Job | None:
    """Queue the operation's job (sent when the current transaction commits)."""
    return django_rq.get_queue(QUEUE).enqueue_call(
        run_bulk_operation,
        args=(operation.pk,),
        timeout=BULK_TIMEOUT,
        description=f"bulk {operation.action} of {operation.total} mailbox(es)",
    )


def _one(action: str, mailbox: Mailbox, user: User | None) -> tuple[bool, str]:
    if action in (BulkAction.APPROVE, BulkAction.REJECT):
        approve = action == BulkAction.APPROVE
        target = Approval.APPROVED if approve else Approval.REJECTED
        if mailbox.approval == target:
            return True, gettext("already approved") if approve else gettext("already rejected")
        do_approve_mailbox(mailbox, approve=approve, acting_user=user, actor_label="system")
        return True, gettext("approved") if approve else gettext("rejected")
    if action == BulkAction.DISABLE:
        changed = do_disable_mailbox(mailbox, acting_user=user, actor_label="system")
        return True, gettext("disabled") if changed else gettext("already disabled")
    if action == BulkAction.APPLY_DEFAULT_PROFILE:
        return do_apply_default_profile(mailbox, acting_user=user, actor_label="system")
    ok, message = run_test_and_enable(mailbox.pk, acting_user=user)
    return ok, (gettext("enabled: %(message)s") if ok else gettext("not enabled: %(message)s")) % {
        "message": message
    }


def run_bulk_operation(operation_id: int) -> str:
    operation = BulkOperation.objects.select_related("created_by").get(pk=operation_id)
    done = {r["mailbox"] for r in operation.results}
    mailboxes = (
        Mailbox.objects.filter(pk__in=operation.mailbox_ids)
        .select_related("profile")
        .order_by("email_address")
    )
    for mailbox in mailboxes:
        if mailbox.email_address in done:  # a job that is run again goes on where it stopped
            continue
        try:
            ok, message = _one(operation.action, mailbox, operation.created_by)
        except ActionError as exc:
            ok, message = False, str(exc)
        except Exception as exc:  # one mailbox's surprise must not stop the rest
            log.exception("bulk %s: %s failed", operation.pk, mailbox)
            ok, message = False, f"internal error: {type(exc).__name__}: {exc}"
        do_record_bulk_result(operation, mailbox.email_address, ok, message)
    missing = operation.total - operation.done
    for _ in range(missing):  # mailboxes deleted since the operation was queued
        do_record_bulk_result(operation, "—", False, gettext("the mailbox no longer exists"))
    do_finish_bulk(operation, now=timezone.now())
    return f"{operation.action}: {operation.done - operation.failed} ok, {operation.failed} failed"
