"""The `ews_stream` process's record of each mailbox's streaming subscription (EwsStreamState)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import F

from tracking.models import EwsStreamState


def do_record_stream_subscribed(
    mailbox_id: int, subscription_id: str, folders: list[str], *, now: datetime
) -> None:
    EwsStreamState.objects.update_or_create(
        mailbox_id=mailbox_id,
        defaults={
            "subscription_id": subscription_id,
            "folders": folders,
            "connected_since": None,
            "seen_at": now,
        },
    )


def do_record_stream_seen(mailbox_id: int, *, now: datetime, event: bool = False) -> None:
    """An answer on the open connection: a heartbeat, or (`event`) notifications of changes."""
    fields: dict[str, object] = {"seen_at": now}
    if event:
        fields["last_event_at"] = now
    updated = EwsStreamState.objects.filter(mailbox_id=mailbox_id, connected_since__isnull=False).update(
        **fields
    )
    if not updated:
        EwsStreamState.objects.filter(mailbox_id=mailbox_id).update(connected_since=now, **fields)


def do_record_stream_lost(mailbox_id: int, error: str, *, now: datetime, subscription_lost: bool) -> None:
    """The connection ended on an error (the subscription with it when `subscription_lost`)."""
    fields: dict[str, object] = {
        "connected_since": None,
        "last_error": error[:2000],
        "last_error_at": now,
        "reconnects": F("reconnects") + 1,
    }
    if subscription_lost:
        fields["subscription_id"] = ""
    if not EwsStreamState.objects.filter(mailbox_id=mailbox_id).update(**fields):
        EwsStreamState.objects.create(mailbox_id=mailbox_id, last_error=error[:2000], last_error_at=now)


def do_record_stream_closed(mailbox_id: int) -> None:
    """The server closed the connection at its timeout, as it does: reconnected at once, nothing wrong."""
    EwsStreamState.objects.filter(mailbox_id=mailbox_id).update(connected_since=None)


def do_record_stream_not_started(mailbox_id: int, why: str, *, now: datetime) -> None:
    EwsStreamState.objects.update_or_create(
        mailbox_id=mailbox_id,
        defaults={
            "subscription_id": "",
            "connected_since": None,
            "last_error": why[:2000],
            "last_error_at": now,
        },
    )


def do_forget_streams(mailbox_ids: Iterable[int]) -> None:
    """Mailboxes no longer streamed (disabled, moved off EWS, the process stopping): polling only."""
    EwsStreamState.objects.filter(mailbox_id__in=list(mailbox_ids)).update(
        subscription_id="", connected_since=None
    )
