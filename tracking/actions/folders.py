"""Folder tracking rules against the server's folder tree (tracking-rules §3.4): paths refreshed on each
hierarchy
sync, rules of deleted folders made inactive (with a warning alert to their user), and the regarding a
rule sets on an email tracked before it was moved into the rule's folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from tracking.actions.audit import audit
from tracking.choices import AlertLevel, AuditAction
from tracking.models import Alert, FolderSyncState, FolderTrackingRule, Mailbox, ScanRun, TrackedEmail
from tracking.sources.base import FolderInfo


@dataclass(frozen=True)
class HierarchyChange:
    rule_id: int
    change: str  # renamed, deleted, found, restored
    old_path: str
    new_path: str


@transaction.atomic
def do_apply_folder_hierarchy(
    mailbox: Mailbox, folders: Sequence[FolderInfo], *, now: datetime
) -> list[HierarchyChange]:
    """Bring the mailbox's rules in line with the server's folders under the Inbox.

    A rule follows its folder id: a renamed or moved folder gives the rule (and the folder's sync state
    and scan runs, so that its scans continue where they were) the new path; a folder no longer under the
    Inbox makes the rule inactive, once, with a warning alert and an audit row. A rule made before folder
    ids were kept finds its folder by path.
    """
    by_id = {f.id: f for f in folders}
    by_path = {f.path.lower(): f for f in folders}
    rules = list(FolderTrackingRule.objects.select_for_update().filter(mailbox=mailbox).order_by("pk"))
    changes: list[HierarchyChange] = []
    for rule in rules:
        info = by_id.get(rule.folder_id) if rule.folder_id else by_path.get(rule.folder.lower())
        if info is None:
            if rule.folder_deleted_at is None:
                rule.folder_deleted_at = now
                rule.save(update_fields=["folder_deleted_at"])
                changes.append(HierarchyChange(rule.pk, "deleted", rule.folder, rule.folder))
                Alert.objects.create(
                    mailbox=mailbox,
                    level=AlertLevel.WARNING,
                    message=(
                        f"The folder {rule.folder} was deleted or moved out of the Inbox; its tracking rule "
                        "is inactive. Delete the rule or map another folder."
                    ),
                )
                audit(
                    AuditAction.FOLDER_RULE_FOLDER_GONE,
                    f"{mailbox.email_address}/{rule.folder}",
                    rule.folder_id,
                    None,
                    acting_user=None,
                    actor_label="scan",
                )
            continue
        updates = []
        if not rule.folder_id:
            rule.folder_id = info.id
            updates.append("folder_id")
            changes.append(HierarchyChange(rule.pk, "found", rule.folder, info.path))
        if rule.folder_deleted_at is not None:
            rule.folder_deleted_at = None
            updates.append("folder_deleted_at")
            changes.append(HierarchyChange(rule.pk, "restored", rule.folder, info.path))
        if rule.folder != info.path:
            old = rule.folder
            clash = FolderTrackingRule.objects.filter(mailbox=mailbox, folder__iexact=info.path).exclude(
                pk=rule.pk
            )
            for other in clash:  # an inactive rule still holding the path of a folder deleted before
                other.folder = f"{other.folder} (deleted #{other.pk})"[:255]
                other.save(update_fields=["folder"])
            rule.folder = info.path
            updates.append("folder")
            FolderSyncState.objects.filter(mailbox=mailbox, folder=old).update(folder=info.path)
            ScanRun.objects.filter(mailbox=mailbox, folder=old).update(folder=info.path)
            changes.append(HierarchyChange(rule.pk, "renamed", old, info.path))
        if updates:
            rule.save(update_fields=updates)
    return changes


def do_set_regarding_by_folder_rule(
    mailbox: Mailbox, folder: str, email_id: int, regarding_id: int | None
) -> bool:
    """A message tracked before was moved into a mapped folder: its TrackedEmail now regards the rule's
    record (audited). Called inside the page's transaction; False when nothing changed."""
    if regarding_id is None:
        return False
    email = TrackedEmail.objects.select_for_update().filter(pk=email_id).first()
    if email is None or email.regarding_id == regarding_id:
        return False
    old = email.regarding
    email.regarding_id = regarding_id
    email.save(update_fields=["regarding"])
    email.refresh_from_db(fields=["regarding"])
    audit(
        AuditAction.FOLDER_RULE_REGARDING,
        f"{mailbox.email_address} {folder} {email.message_id}"[:300],
        str(old) if old is not None else "(no regarding record)",
        str(email.regarding),
        acting_user=None,
        actor_label="scan",
    )
    return True
