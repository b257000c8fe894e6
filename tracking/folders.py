"""Folder-level tracking against the server (tracking-rules §3.4): the folder tree under the Inbox, read from
the
mailbox's server (EWS FindFolder, Graph childFolders); the hierarchy sync that keeps rules on their folder
ids; which mapped folders a scan cycle reads; and the rules as people see them (path, state, counts).

IMAP and `local` profiles have no folder tracking: IMAP folders have no stable server id to key a rule
on, and only Exchange mailboxes are scanned beyond the Inbox (§3.2, §3.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db.models import Count, Max, Q
from django.utils.translation import gettext, gettext_lazy

from tracking.actions import (
    ActionError,
    HierarchyChange,
    check_add_folder_rule,
    do_apply_folder_hierarchy,
    normalize_folder_path,
)
from tracking.choices import ErrorKind, Folder, Reason
from tracking.decisions import OrgRules
from tracking.models import CrmRecord, Decision, FolderTrackingRule, Mailbox, OrgSettings, ScanRun
from tracking.sources.base import FolderInfo, MailSource, SourceError

CACHE_SECONDS = 15 * 60  # the folder picker's list; its refresh button reads the server again
ERROR_CACHE_SECONDS = 60
PAGE_TIMEOUT = 10.0  # seconds a web page waits for the server's folder list


class FolderState:
    ACTIVE = "active"
    FOLDER_DELETED = "folder_deleted"
    TRACKING_OFF = "tracking_off"

    LABELS = {
        ACTIVE: gettext_lazy("active"),
        FOLDER_DELETED: gettext_lazy("folder deleted"),
        TRACKING_OFF: gettext_lazy("tracking off"),
    }


def why_no_folder_tracking(mailbox: Mailbox | None) -> str | None:
    """Why this mailbox can have no folder rules (in words for its user), or None when it can."""
    if mailbox is None:
        return gettext("You have no mailbox in SyncAdmin.")
    if mailbox.user_id is None:
        return gettext("Folder tracking rules are for user mailboxes, not queues.")
    if not mailbox.profile.is_exchange:
        return gettext(
            "Folder tracking needs an Exchange mailbox (EWS or Microsoft Graph): IMAP folders have no "
            "stable id to keep a rule on, and IMAP and local mailboxes are read from the Inbox only."
        )
    return None


def _lister(mailbox: Mailbox, source: MailSource | None) -> MailSource:
    if source is None:
        from tracking.scanning import source_for

        source = source_for(mailbox, timeout=PAGE_TIMEOUT)
    if not hasattr(source, "list_folders"):
        raise SourceError(
            f"the source of {mailbox.email_address} cannot list folders",
            kind=ErrorKind.INTERNAL,
            permanent=True,
        )
    return source


def _cache_key(mailbox: Mailbox) -> str:
    return f"syncadmin:folders:{mailbox.pk}"


def server_folders(
    mailbox: Mailbox, *, refresh: bool = False, source: MailSource | None = None
) -> list[FolderInfo]:
    """The folders under the mailbox's Inbox, from the server, cached for the picker; raises SourceError."""
    key = _cache_key(mailbox)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return [FolderInfo(*row) for row in cached]
        failed = cache.get(key + ":error")
        if failed is not None:  # a server that just failed is not asked again on every page view
            raise SourceError(failed, kind=ErrorKind.UNREACHABLE, permanent=False)
    try:
        folders = _lister(mailbox, source).list_folders()  # type: ignore[attr-defined]
    except SourceError as exc:
        cache.set(key + ":error", str(exc), ERROR_CACHE_SECONDS)
        raise
    cache.set(key, [(f.id, f.path, f.total) for f in folders], CACHE_SECONDS)
    cache.delete(key + ":error")
    return list(folders)


def sync_folder_hierarchy(
    mailbox: Mailbox, *, now: datetime, source: MailSource | None = None
) -> list[HierarchyChange]:
    """Read the folder tree and bring the rules in line (paths, deleted folders); raises SourceError."""
    folders = server_folders(mailbox, refresh=True, source=source)
    return do_apply_folder_hierarchy(mailbox, folders, now=now)


def folder_tracking_on(mailbox: Mailbox, rules: OrgRules) -> bool:
    """Whether a scan cycle of this mailbox reads mapped folders (IsFolderBasedTrackingEnabled, §3.4)."""
    return rules.folder_tracking_enabled and why_no_folder_tracking(mailbox) is None


def folders_after_hierarchy_sync(
    mailbox: Mailbox, rules: OrgRules, *, now: datetime, source: MailSource | None = None
) -> list[str]:
    """The display paths of the mapped folders a scan cycle reads, after reading the folder tree (so that
    renamed folders are scanned under their new path and deleted ones not at all); raises SourceError."""
    if not folder_tracking_on(mailbox, rules) or not mailbox.folder_rules.exists():
        return []
    sync_folder_hierarchy(mailbox, now=now, source=source)
    return [rule.folder for rule in mapped_folders(mailbox)]


def mapped_folders(mailbox: Mailbox) -> list[FolderTrackingRule]:
    """The rules a scan cycle reads, in a stable order: folder known on the server, not deleted."""
    return list(FolderTrackingRule.objects.scanned().filter(mailbox=mailbox).order_by("folder", "pk"))


def rule_for_folder(mailbox: Mailbox, path: str) -> FolderTrackingRule | None:
    """The rule whose folder has this display path (any case), active or not."""
    wanted = normalize_folder_path(path)
    return FolderTrackingRule.objects.filter(mailbox=mailbox, folder__iexact=wanted).first()


def is_well_known(folder: str) -> bool:
    return folder in (Folder.INBOX, Folder.SENT_ITEMS)


def add_folder_rule(
    mailbox: Mailbox,
    path: str,
    *,
    regarding: CrmRecord | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
    source: MailSource | None = None,
) -> FolderTrackingRule:
    """Map the folder at PATH (read from the server now, so the rule gets its id); ActionError if refused."""
    why = why_no_folder_tracking(mailbox)
    if why is not None:
        raise ActionError(why)
    if not OrgSettings.load().folder_tracking_enabled:
        raise ActionError(gettext("Folder-based tracking is turned off for the organisation."))
    wanted = normalize_folder_path(path)
    if wanted.lower() in ("inbox", "sent items", "sentitems") or not wanted.lower().startswith("inbox/"):
        raise ActionError(
            gettext("Only folders under the Inbox can be mapped; %(folder)s is not one.") % {"folder": wanted}
        )
    try:
        folders = server_folders(mailbox, refresh=True, source=source)
    except SourceError as exc:
        raise ActionError(
            gettext("The mail server could not be reached to read your folders: %(error)s") % {"error": exc}
        ) from None
    found = next((f for f in folders if f.path.lower() == wanted.lower()), None)
    if found is None:
        raise ActionError(gettext("The folder %(folder)s was not found on the server.") % {"folder": wanted})
    return check_add_folder_rule(
        mailbox,
        found.path,
        folder_id=found.id,
        regarding=regarding,
        acting_user=acting_user,
        actor_label=actor_label,
    )


@dataclass(frozen=True)
class RuleRow:
    """A rule as its user and admins see it."""

    rule: FolderTrackingRule
    state: str
    tracked: int
    last_scan: datetime | None

    @property
    def state_label(self) -> str:
        return str(FolderState.LABELS[self.state])


def rule_rows(rules: Sequence[FolderTrackingRule], org: OrgSettings) -> list[RuleRow]:
    """Each rule with its state (active / folder deleted / tracking off), the messages its folder rule
    tracked and its folder's last scan; two queries whatever the number of rules."""
    if not rules:
        return []
    mailbox_ids = {r.mailbox_id for r in rules}
    paths = [r.folder for r in rules]
    counts = {
        (row["mailbox_id"], row["folder"]): row["n"]
        for row in Decision.objects.filter(
            mailbox_id__in=mailbox_ids, folder__in=paths, reason=Reason.FOLDER_RULE
        )
        .values("mailbox_id", "folder")
        .annotate(n=Count("id"))
    }
    scans = {
        (row["mailbox_id"], row["folder"]): row["last"]
        for row in ScanRun.objects.filter(mailbox_id__in=mailbox_ids, folder__in=paths)
        .filter(Q(finished_at__isnull=False))
        .values("mailbox_id", "folder")
        .annotate(last=Max("finished_at"))
    }
    out = []
    for rule in rules:
        if rule.folder_deleted_at is not None or not rule.folder_id:
            state = FolderState.FOLDER_DELETED
        elif not org.folder_tracking_enabled:
            state = FolderState.TRACKING_OFF
        else:
            state = FolderState.ACTIVE
        key = (rule.mailbox_id, rule.folder)
        out.append(RuleRow(rule, state, counts.get(key, 0), scans.get(key)))
    return out
