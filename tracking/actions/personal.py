"""A user's Personal Options: the general and email options, and folder tracking rules."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext

from tracking.actions.audit import audit
from tracking.actions.errors import ActionError
from tracking.choices import AuditAction
from tracking.models import CrmRecord, FolderTrackingRule, Mailbox, OrgSettings, PersonalOptions
from tracking.orgsettings import has_control_characters


@transaction.atomic
def do_set_personal_options(
    user: User,
    *,
    track: int | None = None,
    auto_create: str | None = None,
    allow_send_on_behalf: bool | None = None,
    time_zone: str | None = None,
    rows_per_page: int | None = None,
    language: str | None = None,
    alert_mail: bool | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> PersonalOptions:
    options = PersonalOptions.objects.select_for_update().get_or_create(user=user)[0]
    changes: dict[str, object] = {
        "track": track,
        "auto_create": auto_create,
        "allow_send_on_behalf": allow_send_on_behalf,
        "time_zone": time_zone,
        "rows_per_page": rows_per_page,
        "language": language,
        "alert_mail": alert_mail,
    }
    changed = []
    for attr, value in changes.items():
        if value is None or getattr(options, attr) == value:
            continue
        audit(
            AuditAction.PERSONAL_OPTIONS_CHANGED,
            f"{user.get_username()}.{attr}",
            getattr(options, attr),
            value,
            acting_user=acting_user,
            actor_label=actor_label,
        )
        setattr(options, attr, value)
        changed.append(attr)
    if changed:
        options.save(update_fields=changed)
    return options


FOLDER_NAME_MAX = 255


def normalize_folder_path(path: str) -> str:
    """A folder path as typed ("inbox / Projects/Contoso/") in the form rules keep: "Inbox/Projects/Contoso".

    Only the first segment's case is settled here (Inbox); the rest keeps the server's case once matched.
    """
    parts = [p.strip() for p in path.replace("\\", "/").split("/") if p.strip()]
    if parts and parts[0].lower() == "inbox":
        parts[0] = "Inbox"
    return "/".join(parts)


@transaction.atomic
def check_add_folder_rule(
    mailbox: Mailbox,
    folder: str,
    *,
    folder_id: str,
    regarding: CrmRecord | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> FolderTrackingRule:
    """Map a folder under the Inbox of a user's Exchange mailbox to tracking (with an optional regarding
    record); `folder` is its display path and `folder_id` the server's id, as the folder listing gave them.

    Refused (ActionError, nothing changed) for queue or non-Exchange mailboxes, when the org turned
    folder tracking off (IsFolderBasedTrackingEnabled), for the Inbox itself or a folder outside it, for a
    folder that already has a rule, and past MaxFolderBasedTrackingMappings.
    """
    org = OrgSettings.load()
    # Lock the mailbox so that two requests cannot both pass the count check.
    mailbox = Mailbox.objects.select_for_update().select_related("profile").get(pk=mailbox.pk)
    folder = normalize_folder_path(folder)
    if mailbox.user_id is None:
        raise ActionError(gettext("Folder tracking rules are for user mailboxes, not queues."))
    if not mailbox.profile.is_exchange:
        raise ActionError(gettext("Folder tracking rules need an Exchange mailbox."))
    if not org.folder_tracking_enabled:
        raise ActionError(gettext("Folder-based tracking is turned off for the organisation."))
    if not folder:
        raise ActionError(gettext("A folder tracking rule needs a folder name."))
    if folder.lower() == "inbox" or not folder.lower().startswith("inbox/"):
        raise ActionError(
            gettext("Only folders under the Inbox can be mapped; %(folder)s is not one.") % {"folder": folder}
        )
    if len(folder) > FOLDER_NAME_MAX:
        raise ActionError(gettext("A folder name has at most %(max)d characters.") % {"max": FOLDER_NAME_MAX})
    if has_control_characters(folder) or ".." in re.split(r"[/\\]", folder):
        # A path step up would name a folder outside the mailbox's (a local profile reads paths).
        raise ActionError(gettext("A folder path may not contain “..” or control characters."))
    if not folder_id:
        raise ActionError(gettext("The folder %(folder)s was not found on the server.") % {"folder": folder})
    rules = FolderTrackingRule.objects.filter(mailbox=mailbox)
    if rules.filter(folder__iexact=folder).exists() or rules.filter(folder_id=folder_id).exists():
        raise ActionError(gettext("The folder %(folder)s already has a rule.") % {"folder": folder})
    if rules.count() >= org.max_folder_mappings:
        raise ActionError(
            gettext("You already have %(max)d folder tracking rules, the most the organisation allows.")
            % {"max": org.max_folder_mappings}
        )
    rule = FolderTrackingRule.objects.create(
        mailbox=mailbox, folder=folder, folder_id=folder_id, regarding=regarding
    )
    audit(
        AuditAction.FOLDER_RULE_ADDED,
        f"{mailbox.email_address}/{folder}",
        None,
        str(regarding) if regarding is not None else "(no regarding record)",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return rule


@transaction.atomic
def do_delete_folder_rule(
    rule: FolderTrackingRule, *, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    audit(
        AuditAction.FOLDER_RULE_DELETED,
        f"{rule.mailbox.email_address}/{rule.folder}",
        str(rule.regarding) if rule.regarding is not None else "(no regarding record)",
        None,
        acting_user=acting_user,
        actor_label=actor_label,
    )
    rule.delete()
