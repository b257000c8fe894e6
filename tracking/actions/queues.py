"""Queue items: a queue's work list (tracking-rules §2). They are made by the page commit (scans.py); here
people work them off."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction

from tracking.actions.audit import audit, utc_text
from tracking.choices import AuditAction, QueueItemState
from tracking.models import QueueItem


@transaction.atomic
def do_mark_queue_item_done(
    item: QueueItem, *, now: datetime, acting_user: User | None, actor_label: str = "cli"
) -> bool:
    """Mark an item done, audited; False (and nothing written) when it was done already.

    The row is locked first, so two people pressing "Done" at once leave one audit row, not two.
    """
    item = QueueItem.objects.select_for_update().select_related("queue").get(pk=item.pk)
    if item.state == QueueItemState.DONE:
        return False
    item.state = QueueItemState.DONE
    item.done_at = now
    item.done_by = acting_user
    item.save(update_fields=["state", "done_at", "done_by"])
    audit(
        AuditAction.QUEUE_ITEM_DONE,
        f"{item.queue.name}: queue item {item.pk} (tracked email {item.tracked_email_id})"[:300],
        QueueItemState.ACTIVE.value,
        f"{QueueItemState.DONE.value} at {utc_text(now)}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return True
