"""Push for Exchange Server: the state of a mailbox's EWS streaming subscription (docs/push-ews.md)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class EwsStreamState(models.Model):
    """What the `ews_stream` process last knew of a mailbox's streaming notifications; written by that
    process only (tracking.actions.push_ews), read by is_push_healthy and the dashboard."""

    mailbox = models.OneToOneField(
        "tracking.Mailbox", on_delete=models.CASCADE, related_name="ews_stream_state"
    )
    subscription_id = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text=_("The server's streaming subscription; empty when none."),
    )
    folders = models.JSONField(default=list, help_text=_("The folders subscribed to."))
    connected_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Since when a GetStreamingEvents connection is open; empty when none."),
    )
    seen_at = models.DateTimeField(
        null=True, blank=True, help_text=_("The last answer on the connection (a heartbeat or an event).")
    )
    last_event_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    reconnects = models.PositiveIntegerField(default=0, help_text=_("Connections lost since subscribing."))

    class Meta:
        verbose_name = _("EWS stream state")

    def __str__(self) -> str:
        return f"{self.mailbox_id}: {self.subscription_id or 'no subscription'}"
