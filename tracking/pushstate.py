"""Whether a mailbox's new mail arrives by push (Microsoft Graph change notifications) or by polling, and
why (tracking-rules §9). Reads only: the scheduler, the pages and the push jobs share these answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from tracking.choices import Folder, IncomingMethod, ProfileKind, SubscriptionStatus
from tracking.decisions import OrgRules
from tracking.models import FolderTrackingRule, GraphSubscription, Mailbox


def push_base_url() -> str | None:
    """The public address Microsoft Graph posts notifications to (SYNCADMIN_SITE_URL), or None: no push."""
    return settings.GRAPH_PUSH_BASE_URL or None


def push_folders(rules: OrgRules) -> list[str]:
    """The folders a Graph mailbox subscribes to: those a scan cycle reads besides mapped folders (§3.2)."""
    folders = [Folder.INBOX.value]
    if rules.auto_track_sent_folder_items:
        folders.append(Folder.SENT_ITEMS.value)
    return folders


def wants_push(mailbox: Mailbox, rules: OrgRules) -> bool:
    """Whether the mailbox should hold subscriptions: push is configured and the mailbox is scanned."""
    return (
        push_base_url() is not None
        and mailbox.profile.kind == ProfileKind.EXCHANGE_GRAPH
        and mailbox.enabled
        and mailbox.incoming_method == IncomingMethod.SERVER_SIDE_SYNC
        and not mailbox.needs_approval(rules)
    )


def _healthy(sub: GraphSubscription, now: datetime) -> bool:
    return (
        sub.status == SubscriptionStatus.ACTIVE
        and bool(sub.subscription_id)
        and sub.expires_at is not None
        and sub.expires_at > now
    )


def on_push(mailbox_id: int, rules: OrgRules, now: datetime) -> bool:
    """Whether push covers every folder a scan cycle of the mailbox reads, so that polling is only the
    safety net (PushSafetyNetPollMinutes). Mapped folders (§3.4) have no subscription: they keep the
    mailbox on MailboxPollIntervalMinutes."""
    if push_base_url() is None:
        return False
    subs = {s.folder: s for s in GraphSubscription.objects.filter(mailbox_id=mailbox_id)}
    if not all(f in subs and _healthy(subs[f], now) for f in push_folders(rules)):
        return False
    if not rules.folder_tracking_enabled:
        return True
    return not FolderTrackingRule.objects.scanned().filter(mailbox_id=mailbox_id).exists()


@dataclass(frozen=True)
class PushState:
    """How new mail of a mailbox is found, for the pages: `push` or `polling`, and why."""

    mode: str
    reason: StrOrPromise
    since: datetime | None = None


def push_state(mailbox: Mailbox, rules: OrgRules, now: datetime) -> PushState:
    if mailbox.profile.kind != ProfileKind.EXCHANGE_GRAPH:
        return PushState("polling", _("push is available for Exchange Online (Microsoft Graph) profiles"))
    if push_base_url() is None:
        return PushState("polling", _("no SYNCADMIN_SITE_URL: Microsoft Graph has no address to notify"))
    if not wants_push(mailbox, rules):
        return PushState("polling", _("the mailbox is not enabled for server-side synchronization"))
    subs = {s.folder: s for s in GraphSubscription.objects.filter(mailbox=mailbox)}
    for folder in push_folders(rules):
        sub = subs.get(folder)
        if sub is None:
            return PushState("polling", _("subscribing to change notifications…"))
        if sub.status == SubscriptionStatus.FAILED:
            return PushState("polling", _("the subscription failed: %(error)s") % {"error": sub.last_error})
        if sub.status == SubscriptionStatus.REMOVED:
            return PushState("polling", _("Microsoft Graph removed the subscription; it is being recreated"))
        if not _healthy(sub, now):
            return PushState("polling", _("the subscription expired; it is being renewed"))
    since = max((s.active_since for s in subs.values() if s.active_since), default=None)
    if not on_push(mailbox.pk, rules, now):
        return PushState(
            "push", _("push for Inbox and Sent Items; mapped folders are polled every scan cycle"), since
        )
    return PushState("push", _("Microsoft Graph notifies SyncAdmin of new mail"), since)
