"""An admin's administration of mailboxes in the product: the default profile, a mailbox's setup
(profile, incoming method, start date), a queue's Track option and owner, and bulk operations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext

from tracking.actions.audit import audit, utc_text
from tracking.actions.errors import ActionError
from tracking.actions.mailboxes import check_add_mailbox
from tracking.actions.scans import do_reset_sync_state
from tracking.actions.users import check_invite_user
from tracking.choices import AuditAction, BulkAction, IncomingMethod, Role, TrackOption
from tracking.models import BulkOperation, EmailServerProfile, FolderSyncState, Mailbox, Queue


def default_profile() -> EmailServerProfile | None:
    return EmailServerProfile.objects.filter(is_default=True).first()


@transaction.atomic
def do_set_default_profile(
    profile: EmailServerProfile, *, acting_user: User | None = None, actor_label: str = "cli"
) -> bool:
    """Make `profile` the one new mailboxes get; False if it already was."""
    old = EmailServerProfile.objects.select_for_update().filter(is_default=True).first()
    if old is not None and old.pk == profile.pk:
        return False
    EmailServerProfile.objects.filter(is_default=True).update(is_default=False)
    EmailServerProfile.objects.filter(pk=profile.pk).update(is_default=True)
    audit(
        AuditAction.PROFILE_DEFAULT_SET,
        profile.name,
        old.name if old is not None else None,
        profile.name,
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return True


@transaction.atomic
def check_add_mailbox_for_new_user(
    address: str,
    *,
    profile_name: str | None = None,
    approve: bool = False,
    track: int | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> Mailbox:
    """A mailbox for someone SyncAdmin does not know yet: a new user (role user, no password) whose email is
    the mailbox's address, and their mailbox, together or not at all. The caller sends the invitation
    (tracking.invitations) once this has committed, so that the link names a user that exists."""
    user = check_invite_user(address, Role.USER, acting_user=acting_user, actor_label=actor_label)
    return check_add_mailbox(
        address,
        profile_name=profile_name,
        username=user.get_username(),
        approve=approve,
        track=track,
        acting_user=acting_user,
        actor_label=actor_label,
    )


@transaction.atomic
def check_update_mailbox(
    mailbox: Mailbox,
    *,
    profile: EmailServerProfile,
    incoming_method: str,
    start_date: datetime | None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> list[str]:
    """Change a mailbox's setup; returns what changed. Each change is audited.

    Another profile means another server: the mailbox stops being scanned until Test & Enable
    succeeds with it, and a sync state of another kind of server is forgotten (it means nothing there).
    """
    if incoming_method not in IncomingMethod.values:
        raise ActionError(gettext("unknown incoming method %(method)s") % {"method": repr(incoming_method)})
    mailbox = Mailbox.objects.select_for_update().select_related("profile").get(pk=mailbox.pk)
    changed: list[str] = []

    def note(field: str, old: object, new: object) -> None:
        audit(
            AuditAction.MAILBOX_CHANGED,
            f"{mailbox.email_address}.{field}",
            old,
            new,
            acting_user=acting_user,
            actor_label=actor_label,
        )
        changed.append(field)

    if profile.pk != mailbox.profile_id:
        old_profile = mailbox.profile
        note("profile", old_profile.name, profile.name)
        mailbox.profile = profile
        if mailbox.enabled:
            mailbox.enabled = False
            mailbox.next_run_at = None
            changed += ["enabled", "next_run_at"]
        if old_profile.kind != profile.kind:
            for folder in FolderSyncState.objects.filter(mailbox=mailbox).values_list("folder", flat=True):
                do_reset_sync_state(mailbox, folder)
    if incoming_method != mailbox.incoming_method:
        note("incoming_method", mailbox.incoming_method, incoming_method)
        mailbox.incoming_method = incoming_method
    if start_date != mailbox.process_emails_received_after:
        note(
            "process_emails_received_after",
            utc_text(mailbox.process_emails_received_after),
            utc_text(start_date),
        )
        mailbox.process_emails_received_after = start_date
    if changed:
        mailbox.save(update_fields=changed)
    return [f for f in changed if f not in ("enabled", "next_run_at")]


def do_apply_default_profile(
    mailbox: Mailbox, *, acting_user: User | None = None, actor_label: str = "cli"
) -> tuple[bool, str]:
    """Move the mailbox to the default profile: (changed, words)."""
    profile = default_profile()
    if profile is None:
        raise ActionError(gettext("no server profile is the default; make one the default first"))
    if mailbox.profile_id == profile.pk:
        return False, gettext("already uses %(profile)s") % {"profile": profile.name}
    check_update_mailbox(
        mailbox,
        profile=profile,
        incoming_method=mailbox.incoming_method,
        start_date=mailbox.process_emails_received_after,
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return True, gettext("now uses %(profile)s; run Test & Enable") % {"profile": profile.name}


@transaction.atomic
def check_update_queue(
    queue: Queue,
    *,
    track: int,
    owner: User | None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> list[str]:
    """A queue's Track option and owner; each change audited."""
    if track not in TrackOption.values:
        raise ActionError(gettext("track must be 0–4"))
    queue = Queue.objects.select_for_update().get(pk=queue.pk)
    changed = []
    old_owner = queue.owner.get_username() if queue.owner is not None else None
    new_owner = owner.get_username() if owner is not None else None
    for field, old, new in (("track", queue.track, track), ("owner", old_owner, new_owner)):
        if old == new:
            continue
        audit(
            AuditAction.QUEUE_CHANGED,
            f"{queue.name}.{field}",
            old,
            new,
            acting_user=acting_user,
            actor_label=actor_label,
        )
        changed.append(field)
    if changed:
        queue.track = track
        queue.owner = owner
        queue.save(update_fields=changed)
    return changed


@transaction.atomic
def check_start_bulk(
    action: str, mailbox_ids: Sequence[int], *, acting_user: User | None = None, actor_label: str = "cli"
) -> BulkOperation:
    """Record a bulk operation for its job to carry out (the caller queues it after the commit)."""
    if action not in BulkAction.values:
        raise ActionError(gettext("unknown bulk action %(action)s") % {"action": repr(action)})
    ids = sorted(set(mailbox_ids))
    if not ids:
        raise ActionError(gettext("Select at least one mailbox."))
    if action == BulkAction.APPLY_DEFAULT_PROFILE and default_profile() is None:
        raise ActionError(gettext("no server profile is the default; make one the default first"))
    operation = BulkOperation.objects.create(action=action, created_by=acting_user, mailbox_ids=ids)
    audit(
        AuditAction.BULK_QUEUED,
        f"bulk {operation.pk}",
        None,
        f"{action} × {len(ids)}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return operation


def do_record_bulk_result(operation: BulkOperation, mailbox: str, ok: bool, message: str) -> None:
    operation.results = [*operation.results, {"mailbox": mailbox, "ok": ok, "message": message}]
    operation.save(update_fields=["results"])


def do_finish_bulk(operation: BulkOperation, *, now: datetime) -> None:
    operation.finished_at = now
    operation.save(update_fields=["finished_at"])
