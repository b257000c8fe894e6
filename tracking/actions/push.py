"""Push: what Microsoft Graph subscriptions hold, as the push jobs learn it (tracking-rules §9)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from tracking.choices import SubscriptionStatus
from tracking.models import GraphSubscription, Mailbox
from tracking.models.push import client_state_digest


@transaction.atomic
def do_record_subscription(
    mailbox: Mailbox,
    folder: str,
    *,
    subscription_id: str,
    client_state: str,
    expires_at: datetime,
    now: datetime,
) -> GraphSubscription:
    """A subscription Graph created (after the validation handshake): active from now on."""
    sub, _ = GraphSubscription.objects.select_for_update().get_or_create(
        mailbox=mailbox, folder=folder, defaults={"status": SubscriptionStatus.ACTIVE}
    )
    sub.subscription_id = subscription_id
    sub.client_state_hash = client_state_digest(client_state)
    sub.expires_at = expires_at
    sub.status = SubscriptionStatus.ACTIVE
    sub.active_since = now
    sub.last_error = ""
    sub.save()
    return sub


def do_record_renewal(sub: GraphSubscription, *, expires_at: datetime) -> None:
    GraphSubscription.objects.filter(pk=sub.pk, subscription_id=sub.subscription_id).update(
        expires_at=expires_at, status=SubscriptionStatus.ACTIVE, last_error=""
    )


@transaction.atomic
def do_record_subscription_failure(mailbox: Mailbox, folder: str, *, error: str) -> None:
    """Creating or renewing failed: the folder is polled until the scheduler's next try."""
    sub, _ = GraphSubscription.objects.select_for_update().get_or_create(
        mailbox=mailbox, folder=folder, defaults={"status": SubscriptionStatus.FAILED}
    )
    sub.status = SubscriptionStatus.FAILED
    sub.last_error = error[:2000]
    sub.active_since = None
    sub.save()


def do_mark_subscription_removed(sub: GraphSubscription) -> None:
    """Graph removed it (subscriptionRemoved): its id and secret are no longer good for anything."""
    GraphSubscription.objects.filter(pk=sub.pk, subscription_id=sub.subscription_id).update(
        status=SubscriptionStatus.REMOVED, subscription_id="", client_state_hash="", active_since=None
    )


def do_note_notifications(subscription_pks: list[int], *, now: datetime) -> None:
    GraphSubscription.objects.filter(pk__in=subscription_pks).update(last_notification_at=now)


def do_forget_subscription(sub: GraphSubscription) -> None:
    GraphSubscription.objects.filter(pk=sub.pk).delete()
