"""Push: Microsoft Graph change-notification subscriptions, one per mailbox folder (tracking-rules §9)."""

from __future__ import annotations

import hashlib
import hmac

from django.db import models

from tracking.choices import SubscriptionStatus
from tracking.models.mailboxes import Mailbox


def client_state_digest(client_state: str) -> str:
    """What is stored of a subscription's clientState: its SHA-256, so the table alone cannot forge one."""
    return hashlib.sha256(client_state.encode()).hexdigest()


class GraphSubscription(models.Model):
    """A subscription Microsoft Graph holds for one folder of a mailbox: notifications about it make a scan
    of the folder; they never say what the scan decides."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="graph_subscriptions")
    folder = models.CharField(max_length=255)
    # Graph's id of the subscription; empty while none exists (creating it failed, or it was removed).
    subscription_id = models.CharField(max_length=100, blank=True)
    # SHA-256 of the clientState secret sent with the subscription; every notification must carry it.
    client_state_hash = models.CharField(max_length=64, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=SubscriptionStatus.choices)
    active_since = models.DateTimeField(null=True, blank=True)
    last_notification_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "folder"], name="graphsubscription_unique_folder"),
        ]
        indexes = [models.Index(fields=["subscription_id"], name="graphsubscription_id")]

    def __str__(self) -> str:
        return f"{self.mailbox} / {self.folder} ({self.status})"

    def client_state_matches(self, client_state: object) -> bool:
        """Constant-time: a wrong clientState tells its sender nothing about the right one."""
        if not isinstance(client_state, str) or not self.client_state_hash:
            return False
        return hmac.compare_digest(client_state_digest(client_state), self.client_state_hash)
