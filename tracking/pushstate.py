"""Whether a mailbox's new mail arrives by push (Microsoft Graph change notifications, EWS streaming
notifications) or by polling, and why (tracking-rules §9). Reads only: the scheduler, the pages and the
push jobs share these answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from tracking.choices import Folder, IncomingMethod, ProfileKind, SubscriptionStatus
from tracking.decisions import OrgRules
from tracking.models import EwsStreamState, FolderTrackingRule, GraphSubscription, Mailbox


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
    kind = Mailbox.objects.filter(pk=mailbox_id).values_list("profile__kind", flat=True).first()
    if kind == ProfileKind.EXCHANGE_EWS:
        # the stream watches mapped folders too (tracking.push_ews.push_folders)
        return is_push_healthy(mailbox_id, now=now)
    if push_base_url() is None:
        return False
    subs = {s.folder: s for s in GraphSubscription.objects.filter(mailbox_id=mailbox_id)}
    if not all(f in subs and _healthy(subs[f], now) for f in push_folders(rules)):
        return False
    if not rules.folder_tracking_enabled:
        return True
    return not FolderTrackingRule.objects.scanned().filter(mailbox_id=mailbox_id).exists()


# -- Exchange Server: the EWS stream of tracking.ews_stream ----------------------------------------------

# A connected stream answers at least every heartbeat (Exchange: about a minute); past this it is not
# healthy, whatever the process last wrote.
EWS_HEALTHY_WITHIN = timedelta(minutes=3)


def is_push_healthy(mailbox: Mailbox | int, *, now: datetime | None = None) -> bool:
    """Whether the mailbox's EWS stream is up: subscribed (to every folder a scan cycle reads, mapped
    folders included), connected, and heard from lately."""
    pk = mailbox if isinstance(mailbox, int) else mailbox.pk
    state = EwsStreamState.objects.filter(mailbox_id=pk).first()
    return state is not None and _stream_up(state, now or timezone.now())


def healthy_mailbox_ids(now: datetime | None = None) -> set[int]:
    """The mailboxes whose EWS stream is up, in one query (for the dispatcher)."""
    since = (now or timezone.now()) - EWS_HEALTHY_WITHIN
    return set(
        EwsStreamState.objects.exclude(subscription_id="")
        .filter(connected_since__isnull=False, seen_at__gte=since)
        .values_list("mailbox_id", flat=True)
    )


@dataclass(frozen=True)
class PushStatus:
    """Whether a mailbox is on push or on polling, and why, in words for the dashboard."""

    on_push: bool
    why: str


def push_status(state: EwsStreamState | None, *, now: datetime | None = None) -> PushStatus:
    """What a mailbox's EwsStreamState (None: it has none) means for the person reading the dashboard."""
    now = now or timezone.now()
    if state is None:
        return PushStatus(False, gettext("Polling: no EWS stream (ews_stream is not running for it)."))
    if _stream_up(state, now):
        since = timezone.localtime(state.connected_since).strftime("%Y-%m-%d %H:%M")
        return PushStatus(True, gettext("Push: streaming since %(since)s.") % {"since": since})
    if state.connected_since is None and state.last_error:
        return PushStatus(
            False, gettext("Polling: the stream is down: %(error)s") % {"error": state.last_error}
        )
    if state.connected_since is not None and state.seen_at is not None:
        seen = timezone.localtime(state.seen_at).strftime("%Y-%m-%d %H:%M")
        return PushStatus(
            False, gettext("Polling: nothing heard from the stream since %(seen)s.") % {"seen": seen}
        )
    if not state.subscription_id:
        return PushStatus(
            False, gettext("Polling: not streamed now (ews_stream stopped, or left the mailbox).")
        )
    return PushStatus(False, gettext("Polling: the stream is connecting."))


def _stream_up(state: EwsStreamState, now: datetime) -> bool:
    return bool(
        state.subscription_id
        and state.connected_since is not None
        and state.seen_at is not None
        and state.seen_at >= now - EWS_HEALTHY_WITHIN
    )


@dataclass(frozen=True)
class PushState:
    """How new mail of a mailbox is found, for the pages: `push` or `polling`, and why."""

    mode: str
    reason: StrOrPromise
    since: datetime | None = None


def push_state(mailbox: Mailbox, rules: OrgRules, now: datetime) -> PushState:
    if mailbox.profile.kind == ProfileKind.EXCHANGE_EWS:
        state = EwsStreamState.objects.filter(mailbox=mailbox).first()
        status = push_status(state, now=now)
        since = state.connected_since if state is not None and status.on_push else None
        return PushState("push" if status.on_push else "polling", status.why, since)
    if mailbox.profile.kind != ProfileKind.EXCHANGE_GRAPH:
        return PushState(
            "polling", _("push is available for Exchange Online (Graph) and Exchange Server (EWS) profiles")
        )
    if push_base_url() is None:
        return PushState(
            "polling", _("no https SYNCADMIN_SITE_URL: Microsoft Graph has no address to notify")
        )
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
