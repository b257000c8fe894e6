"""RQ jobs of push (Microsoft Graph change notifications): thin, taking ids; the work is in tracking.push."""

from __future__ import annotations

import logging

import django_rq
from django.utils import timezone
from rq.job import Job

from tracking.jobs import QUEUE, SCAN_TIMEOUT, enqueue_notification, mailbox_rate_limit, scan_mailbox
from tracking.push import Accepted, mailboxes_needing_maintenance, maintain_mailbox

log = logging.getLogger(__name__)

# While a folder's push scan is queued and not yet started, more notifications for it queue nothing: the
# scan will read them all. The job drops the key as it starts, so a notification during the scan queues
# the next one. The key's lifetime only matters if the queued job is lost with Redis.
PENDING_KEY = "syncadmin:push:pending:{mailbox_id}:{folder}"
PENDING_SECONDS = 600
MAINTAIN_TIMEOUT = 600


def enqueue_push_scan(mailbox_id: int, folder: str) -> bool:
    """Queue a delta scan of the folder unless one is already waiting; True if one was queued."""
    connection = django_rq.get_connection(QUEUE)
    key = PENDING_KEY.format(mailbox_id=mailbox_id, folder=folder)
    if not connection.set(key, "1", nx=True, ex=PENDING_SECONDS):
        return False
    enqueue_notification(
        push_scan,
        mailbox_id,
        folder,
        timeout=SCAN_TIMEOUT,
        rate_limit=mailbox_rate_limit(mailbox_id),
        description=f"push scan mailbox {mailbox_id} {folder}",
    )
    return True


def push_scan(mailbox_id: int, folder: str) -> str:
    """The folder's normal delta scan, after a notification; the mailbox's poll schedule is left as is."""
    django_rq.get_connection(QUEUE).delete(PENDING_KEY.format(mailbox_id=mailbox_id, folder=folder))
    return scan_mailbox(mailbox_id, folder, reschedule=False)


def maintain_job_id(mailbox_id: int) -> str:
    return f"syncadmin-push-maintain-{mailbox_id}"


def enqueue_push_maintenance(mailbox_id: int, *, renew: str | None = None) -> None:
    """Queue a pass over the mailbox's subscriptions (one queued pass per mailbox, or per renewal)."""
    job_id = maintain_job_id(mailbox_id) + (f"-renew-{renew}" if renew else "")
    connection = django_rq.get_connection(QUEUE)
    existing = Job.fetch_many([job_id], connection=connection)[0]
    # A running pass is left alone too (two jobs of one id would share one Redis hash); what it misses, the
    # scheduler's next upkeep finds.
    if existing is not None and existing.get_status(refresh=False) in (
        "queued",
        "deferred",
        "scheduled",
        "started",
    ):
        return
    django_rq.get_queue(QUEUE).enqueue_call(
        push_maintain,
        args=(mailbox_id, renew),
        job_id=job_id,
        timeout=MAINTAIN_TIMEOUT,
        description=f"push subscriptions of mailbox {mailbox_id}",
    )


def push_maintain(mailbox_id: int, renew: str | None = None) -> str:
    """Create, renew or delete the mailbox's subscriptions; then catch up on new subscriptions' folders."""
    done, catch_up = maintain_mailbox(mailbox_id, renew=renew)
    for folder in catch_up:
        enqueue_push_scan(mailbox_id, folder)
    return done.words()


def queue_accepted(accepted: Accepted) -> None:
    """The jobs a POST of notifications asked for (tracking.push.accept_notifications)."""
    for mailbox_id, folder in sorted(accepted.scans):
        enqueue_push_scan(mailbox_id, folder)
    for mailbox_id, folder in sorted(accepted.reauthorize):
        enqueue_push_maintenance(mailbox_id, renew=folder)
    for mailbox_id in sorted(accepted.maintain):
        enqueue_push_maintenance(mailbox_id)


def maintain_push_subscriptions() -> int:
    """Queue a pass over every mailbox whose subscriptions need one (run by rqcron); how many were queued."""
    mailbox_ids = mailboxes_needing_maintenance(timezone.now())
    for mailbox_id in mailbox_ids:
        enqueue_push_maintenance(mailbox_id)
    if mailbox_ids:
        log.info("queued push subscription upkeep of %d mailbox(es)", len(mailbox_ids))
    return len(mailbox_ids)
