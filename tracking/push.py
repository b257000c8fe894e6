"""Push for Exchange Online: Microsoft Graph change notifications start a folder's scan seconds after mail
arrives (tracking-rules §9).

A subscription per mailbox folder (`users/{id}/mailFolders('inbox')/messages`, created and updated) tells
Graph to POST to /graph/notifications/ (and lifecycle events to /graph/lifecycle/). A notification is only
a nudge: whoever sends it, the job it queues runs the folder's normal delta scan, which reads what the
server holds. The network is touched here and in tracking.sources; every state change is an action.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.urls import reverse
from django.utils import timezone

from tracking.actions.push import (
    do_forget_subscription,
    do_mark_subscription_removed,
    do_note_notifications,
    do_record_renewal,
    do_record_subscription,
    do_record_subscription_failure,
)
from tracking.choices import IncomingMethod, ProfileKind, SubscriptionStatus
from tracking.context import load_rules
from tracking.models import GraphSubscription, Mailbox
from tracking.pushstate import push_base_url, push_folders, wants_push
from tracking.scanning import source_for
from tracking.sources.base import SourceError
from tracking.sources.graph import GraphSource, SubscriptionGone

log = logging.getLogger(__name__)

# Graph allows Outlook message subscriptions 10,080 minutes (7 days); the margin absorbs clock skew.
SUBSCRIPTION_LIFETIME = timedelta(minutes=10_000)
RENEW_BEFORE = timedelta(days=2)
RETRY_FAILED_AFTER = timedelta(minutes=15)
MAX_NOTIFICATIONS = 1000  # per POST; Graph batches far fewer


def notification_urls() -> tuple[str, str]:
    """(notificationUrl, lifecycleNotificationUrl) under SYNCADMIN_SITE_URL."""
    base = push_base_url()
    assert base is not None
    return base + reverse("web-graph-notifications"), base + reverse("web-graph-lifecycle")


def _graph_source(mailbox: Mailbox) -> GraphSource:
    source = source_for(mailbox)
    assert isinstance(source, GraphSource)
    return source


# -- keeping subscriptions -------------------------------------------------------------------------------


@dataclass
class Maintenance:
    """What one pass over a mailbox's subscriptions did, for the job's result and the logs."""

    created: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def words(self) -> str:
        parts = [f"{what} {', '.join(folders)}" for what, folders in vars(self).items() if folders]
        return "; ".join(parts) or "nothing to do"


def maintain_mailbox(
    mailbox_id: int, *, now: datetime | None = None, renew: str | None = None
) -> tuple[Maintenance, list[str]]:
    """Bring a mailbox's subscriptions to what it should have: one per push folder while it is scanned and
    SYNCADMIN_SITE_URL is set, none otherwise; renew those near expiry (or the folder `renew` at once: a
    reauthorizationRequired). Returns what was done and the folders to catch up with a scan (new
    subscriptions: mail may have arrived before Graph started notifying)."""
    now = now or timezone.now()
    mailbox = Mailbox.objects.select_related("profile", "user", "queue").get(pk=mailbox_id)
    rules = load_rules()
    wanted = push_folders(rules) if wants_push(mailbox, rules) else []
    existing = {s.folder: s for s in GraphSubscription.objects.filter(mailbox=mailbox)}
    done = Maintenance()
    catch_up: list[str] = []
    source: GraphSource | None = None

    def graph() -> GraphSource:
        nonlocal source
        source = source or _graph_source(mailbox)
        return source

    for folder, sub in existing.items():
        if folder in wanted:
            continue
        if sub.subscription_id and mailbox.profile.kind == ProfileKind.EXCHANGE_GRAPH:
            try:
                graph().delete_subscription(sub.subscription_id)
            except SourceError as exc:
                # It expires by itself within SUBSCRIPTION_LIFETIME; its notifications are ignored meanwhile.
                log.warning("could not delete subscription of %s/%s: %s", mailbox, folder, exc)
        do_forget_subscription(sub)
        done.deleted.append(folder)
    for folder in wanted:
        held = existing.get(folder)
        action = _next_step(held, now, renew=renew == folder)
        if action == "keep":
            continue
        try:
            if action == "renew" and held is not None:
                try:
                    info = graph().renew_subscription(held.subscription_id, now + SUBSCRIPTION_LIFETIME)
                except SubscriptionGone:
                    log.info("subscription of %s/%s is gone; creating a new one", mailbox, folder)
                else:
                    do_record_renewal(held, expires_at=info.expires_at)
                    done.renewed.append(folder)
                    continue
            _create(graph(), mailbox, folder, held, now)
            done.created.append(folder)
            catch_up.append(folder)
        except SourceError as exc:
            do_record_subscription_failure(mailbox, folder, error=str(exc))
            done.failed.append(folder)
            log.warning("push subscription of %s/%s failed: %s", mailbox, folder, exc)
    return done, catch_up


def _next_step(sub: GraphSubscription | None, now: datetime, *, renew: bool) -> str:
    """keep, renew or create: a live subscription is renewed near expiry (or when Graph asks), a failed one
    retried after RETRY_FAILED_AFTER (at once when Graph asks), any other made anew."""
    if sub is None:
        return "create"
    if _renewable(sub, now):
        near_expiry = sub.expires_at is not None and sub.expires_at - now < RENEW_BEFORE
        return "renew" if renew or near_expiry else "keep"
    if sub.status == SubscriptionStatus.FAILED and not renew and sub.updated_at > now - RETRY_FAILED_AFTER:
        return "keep"
    return "create"


def _renewable(sub: GraphSubscription, now: datetime) -> bool:
    return (
        sub.status == SubscriptionStatus.ACTIVE
        and bool(sub.subscription_id)
        and sub.expires_at is not None
        and sub.expires_at > now
    )


def _create(
    source: GraphSource, mailbox: Mailbox, folder: str, old: GraphSubscription | None, now: datetime
) -> None:
    if old is not None and old.subscription_id:
        try:
            source.delete_subscription(old.subscription_id)
        except SourceError as exc:
            log.info("could not delete the old subscription of %s/%s: %s", mailbox, folder, exc)
    notify, lifecycle = notification_urls()
    # 64 URL-safe characters; Graph allows clientState up to 128.
    client_state = secrets.token_urlsafe(48)
    info = source.create_subscription(
        folder,
        notification_url=notify,
        lifecycle_url=lifecycle,
        expires=now + SUBSCRIPTION_LIFETIME,
        client_state=client_state,
    )
    do_record_subscription(
        mailbox,
        folder,
        subscription_id=info.id,
        client_state=client_state,
        expires_at=info.expires_at,
        now=now,
    )
    log.info("subscribed to change notifications of %s/%s until %s", mailbox, folder, info.expires_at)


def mailboxes_needing_maintenance(now: datetime) -> list[int]:
    """Mailboxes whose subscriptions are missing, failed a while ago, near expiry, or no longer wanted.

    Over-selecting is harmless (maintain_mailbox decides); two queries whatever the number of mailboxes.
    """
    rules = load_rules()
    folders = set(push_folders(rules))
    subs: dict[int, dict[str, GraphSubscription]] = {}
    for sub in GraphSubscription.objects.all():
        subs.setdefault(sub.mailbox_id, {})[sub.folder] = sub
    wanted: set[int] = set()
    if push_base_url() is not None:
        wanted = set(
            Mailbox.objects.filter(
                profile__kind=ProfileKind.EXCHANGE_GRAPH,
                enabled=True,
                incoming_method=IncomingMethod.SERVER_SIDE_SYNC,
            ).values_list("pk", flat=True)
        )
    out = []
    for mailbox_id in sorted(wanted | subs.keys()):
        held = subs.get(mailbox_id, {})
        if mailbox_id not in wanted or set(held) != folders:
            out.append(mailbox_id)
            continue
        for sub in held.values():
            if sub.status == SubscriptionStatus.FAILED:
                stale = sub.updated_at <= now - RETRY_FAILED_AFTER
            else:
                stale = not _renewable(sub, now) or (
                    sub.expires_at is not None and sub.expires_at - now < RENEW_BEFORE
                )
            if stale:
                out.append(mailbox_id)
                break
    return out


# -- notifications ---------------------------------------------------------------------------------------


@dataclass
class Accepted:
    """What a POST of notifications asks for, once each has been checked: the jobs to queue."""

    scans: set[tuple[int, str]] = field(default_factory=set)  # (mailbox id, folder): a delta scan
    maintain: set[int] = field(default_factory=set)  # mailboxes to recreate a subscription of
    reauthorize: set[tuple[int, str]] = field(default_factory=set)  # (mailbox id, folder): renew now
    ignored: int = 0


def accept_notifications(payload: object, *, lifecycle: bool, now: datetime) -> Accepted:
    """Check each notification of a POST against the subscription it names (its clientState, in constant
    time) and say what to do; nothing else of a notification is used. Unknown subscriptions and wrong
    clientStates are ignored and logged."""
    out = Accepted()
    items = payload.get("value") if isinstance(payload, Mapping) else None
    if not isinstance(items, list):
        log.warning("graph notification without a value list ignored")
        out.ignored += 1
        return out
    items = [item for item in items[:MAX_NOTIFICATIONS] if isinstance(item, Mapping)]
    ids = {str(item.get("subscriptionId")) for item in items if isinstance(item.get("subscriptionId"), str)}
    subs = {
        s.subscription_id: s
        for s in GraphSubscription.objects.filter(subscription_id__in=ids).exclude(subscription_id="")
    }
    noted: list[int] = []
    for item in items:
        sub = subs.get(str(item.get("subscriptionId")))
        if sub is None or not sub.client_state_matches(item.get("clientState")):
            out.ignored += 1
            log.warning(
                "graph notification ignored: %s subscription %r",
                "wrong clientState for" if sub is not None else "unknown",
                str(item.get("subscriptionId"))[:100],
            )
            continue
        target = (sub.mailbox_id, sub.folder)
        event = item.get("lifecycleEvent")
        if not lifecycle or event is None:
            out.scans.add(target)
            noted.append(sub.pk)
        elif event == "missed":
            out.scans.add(target)
        elif event == "reauthorizationRequired":
            out.reauthorize.add(target)
        elif event == "subscriptionRemoved":
            do_mark_subscription_removed(sub)
            out.maintain.add(sub.mailbox_id)
        else:
            out.ignored += 1
            log.warning("unknown graph lifecycle event %r ignored", str(event)[:50])
    if noted:
        do_note_notifications(noted, now=now)
    return out
