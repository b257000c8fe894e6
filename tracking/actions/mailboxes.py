"""Mailboxes: adding one, approving its address, Test & Enable's result, and an admin's actions on it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext

from tracking.actions.alerts import do_close_failure_episode, raise_alert
from tracking.actions.audit import audit, label_of, utc_text
from tracking.actions.errors import ActionError, check_lengths
from tracking.actions.personal import do_set_personal_options
from tracking.actions.scans import do_reset_sync_state
from tracking.choices import AlertLevel, Approval, AuditAction, ErrorKind, MailboxStatus, TrackOption
from tracking.messages import is_email_address, normalize_address
from tracking.models import EmailServerProfile, FolderSyncState, Mailbox, Queue


@transaction.atomic
def check_add_mailbox(
    address: str,
    *,
    profile_name: str | None = None,
    username: str | None = None,
    create_user: bool = False,
    queue_name: str | None = None,
    approve: bool = False,
    track: int | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> Mailbox:
    email = normalize_address(address)
    if email is None or not is_email_address(email):
        raise ActionError(gettext("%(address)s is not an email address") % {"address": repr(address)})
    if (username is None) == (queue_name is None):
        raise ActionError(gettext("a mailbox belongs to exactly one user or one queue"))
    check_lengths(Mailbox, {"email_address": email})
    if username is not None:
        check_lengths(get_user_model(), {"username": username})
    if queue_name is not None:
        check_lengths(Queue, {"name": queue_name})
    if track is not None and track not in TrackOption.values:
        raise ActionError(gettext("track must be 0–4"))
    if profile_name is None:
        # No profile named: the default one (tracking-rules §9, issue 16).
        profile = EmailServerProfile.objects.filter(is_default=True).first()
        if profile is None:
            raise ActionError(gettext("name a server profile: none is the default"))
    else:
        profile = EmailServerProfile.objects.filter(name=profile_name).first()
    if profile is None:
        raise ActionError(
            gettext("no server profile named %(name)s; add it with 'profile add'")
            % {"name": repr(profile_name)}
        )
    if Mailbox.objects.filter(email_address=email).exists():
        raise ActionError(gettext("a mailbox for %(address)s already exists") % {"address": email})
    mailbox = Mailbox(
        email_address=email, profile=profile, approval=Approval.APPROVED if approve else Approval.PENDING
    )
    if username is not None:
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise ActionError(
                    gettext("no user named %(name)s; pass --create-user to create one")
                    % {"name": repr(username)}
                )
            user = User.objects.create_user(username=username, email=email)
        elif Mailbox.objects.filter(user=user).exists():
            raise ActionError(gettext("user %(name)s already has a mailbox") % {"name": repr(username)})
        if not user.email:
            user.email = email
            user.save(update_fields=["email"])
        mailbox.user = user
        if track is not None:
            do_set_personal_options(user, track=track, acting_user=acting_user, actor_label=actor_label)
    else:
        assert queue_name is not None
        queue, created = Queue.objects.get_or_create(name=queue_name, defaults={"email": email})
        if not created and Mailbox.objects.filter(queue=queue).exists():
            raise ActionError(gettext("queue %(name)s already has a mailbox") % {"name": repr(queue_name)})
        if track is not None and queue.track != track:
            queue.track = track
            queue.save(update_fields=["track"])
        mailbox.queue = queue
    mailbox.save()
    audit(
        AuditAction.MAILBOX_ADDED,
        email,
        None,
        f"profile={profile.name}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    if approve:
        audit(
            AuditAction.MAILBOX_APPROVED,
            email,
            Approval.PENDING,
            Approval.APPROVED,
            acting_user=acting_user,
            actor_label=actor_label,
        )
    return mailbox


@transaction.atomic
def do_record_test_result(
    mailbox: Mailbox,
    *,
    ok: bool,
    message: str,
    now: datetime,
    kind: ErrorKind | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> None:
    """Test & Enable's outcome: enable (or not), set the status, and leave an alert saying what happened.

    `kind` is what kind of error a failed test met.
    """
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    mailbox.enabled = ok
    mailbox.incoming_status = MailboxStatus.SUCCESS if ok else MailboxStatus.FAILURE
    mailbox.last_error = "" if ok else message
    mailbox.last_error_kind = "" if ok else (kind or ErrorKind.INTERNAL)
    mailbox.transient_failure_count = 0
    mailbox.next_run_at = now if ok else None
    mailbox.save(
        update_fields=[
            "enabled",
            "incoming_status",
            "last_error",
            "last_error_kind",
            "transient_failure_count",
            "next_run_at",
        ]
    )
    raise_alert(
        mailbox,
        AlertLevel.INFORMATION if ok else AlertLevel.ERROR,
        f"Test & Enable {'succeeded' if ok else 'failed'}: {message}",
    )
    if ok:
        do_close_failure_episode(mailbox.profile)
    outcome = "enabled" if ok else f"failed: {message}"
    audit(
        AuditAction.MAILBOX_TESTED,
        mailbox.email_address,
        None,
        outcome,
        acting_user=acting_user,
        actor_label=actor_label,
    )


@transaction.atomic
def do_approve_mailbox(
    mailbox: Mailbox, *, approve: bool = True, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    new = Approval.APPROVED if approve else Approval.REJECTED
    if mailbox.approval == new:
        return
    old = mailbox.approval
    mailbox.approval = new
    fields = ["approval"]
    if approve and mailbox.last_error_kind == ErrorKind.NOT_APPROVED:
        # The error's cause is gone: a page that still said "not approved" would send the admin in circles.
        # Nothing is known of the server yet, so the status goes back to "not run" until Test & Enable.
        mailbox.last_error, mailbox.last_error_kind = "", ""
        mailbox.incoming_status = MailboxStatus.NOT_RUN
        fields += ["last_error", "last_error_kind", "incoming_status"]
    mailbox.save(update_fields=fields)
    action = AuditAction.MAILBOX_APPROVED if approve else AuditAction.MAILBOX_REJECTED
    audit(action, mailbox.email_address, old, new, acting_user=acting_user, actor_label=actor_label)


@transaction.atomic
def do_disable_mailbox(
    mailbox: Mailbox, *, acting_user: User | None = None, actor_label: str = "cli"
) -> bool:
    """Stop scanning a mailbox until Test & Enable enables it again; False if it was not enabled."""
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if not mailbox.enabled:
        return False
    mailbox.enabled = False
    mailbox.next_run_at = None
    mailbox.save(update_fields=["enabled", "next_run_at"])
    who = label_of(acting_user, actor_label)
    raise_alert(
        mailbox,
        AlertLevel.INFORMATION,
        f"Mailbox disabled by {who}. Run Test & Enable to scan it again.",
    )
    audit(
        AuditAction.MAILBOX_DISABLED,
        mailbox.email_address,
        "enabled",
        "disabled",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return True


@transaction.atomic
def do_set_mailbox_start_date(
    mailbox: Mailbox, value: datetime | None, *, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    """Set (or clear, with None) the mailbox's "process emails received after"."""
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    old = mailbox.process_emails_received_after
    if old == value:
        return
    mailbox.process_emails_received_after = value
    mailbox.save(update_fields=["process_emails_received_after"])
    audit(
        AuditAction.MAILBOX_START_DATE_CHANGED,
        mailbox.email_address,
        utc_text(old),
        utc_text(value),
        acting_user=acting_user,
        actor_label=actor_label,
    )


@transaction.atomic
def do_reset_mailbox_sync_state(
    mailbox: Mailbox, folder: str | None = None, *, acting_user: User | None = None, actor_label: str = "cli"
) -> list[str]:
    """An admin's reset of one folder's sync state (or every folder's, folder None); audited per folder.

    Returns the folders whose state was reset (those that had one).
    """
    states = FolderSyncState.objects.filter(mailbox=mailbox).order_by("folder")
    if folder is not None:
        states = states.filter(folder=folder)
    folders = list(states.values_list("folder", flat=True))
    for name in folders:
        do_reset_sync_state(mailbox, name)
        audit(
            AuditAction.MAILBOX_SYNC_STATE_RESET,
            f"{mailbox.email_address}/{name}",
            None,
            "reset",
            acting_user=acting_user,
            actor_label=actor_label,
        )
    return folders


def do_note_mailbox_job(
    mailbox: Mailbox,
    job: Literal["test", "scan"],
    *,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> None:
    """Audit that someone queued a job for a mailbox ("test" for Test & Enable, "scan" for Scan now).

    The job records its own result; this row says who asked for it.
    """
    audit(
        AuditAction(f"mailbox_{job}_queued"),
        mailbox.email_address,
        None,
        "queued",
        acting_user=acting_user,
        actor_label=actor_label,
    )
