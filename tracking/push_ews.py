"""Push for Exchange Server (EWS streaming notifications): which folders a mailbox's subscription watches,
the job an event queues, and whether a mailbox's push is healthy (docs/push-ews.md).

An event never carries what is tracked: it only says "this folder changed", and queues that folder's
ordinary sync (SyncFolderItems from the saved state), deduplicated so that a burst of events queues one
job. The stream process itself is tracking.ews_stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import django_rq
from django.utils import timezone
from rq import get_current_job

from tracking.actions import do_postpone_scan
from tracking.decisions import OrgRules
from tracking.folders import folder_tracking_on, mapped_folders
from tracking.locks import connection_slot
from tracking.models import Mailbox
from tracking.scanning import run_push_scan, sent_items_refusal

# How long a queued push job keeps further events of its folder from queueing another: until the job
# starts (it clears the mark), or this long if it never does (Redis lost it, a worker died with it).
PENDING_TTL = 300  # seconds
BUSY_PROFILE_RETRY = timedelta(seconds=30)


@dataclass(frozen=True)
class PushFolder:
    folder: str  # as scans name it: inbox, sentitems, or a mapped folder's display path
    source_folder: str  # as EwsSource reads it: inbox, sentitems, or "id:" + the server's folder id


def push_folders(mailbox: Mailbox, rules: OrgRules) -> list[PushFolder]:
    """The folders a scan cycle of this mailbox reads, which its subscription watches."""
    folders = [PushFolder("inbox", "inbox")]
    if sent_items_refusal(mailbox, rules) is None:
        folders.append(PushFolder("sentitems", "sentitems"))
    if folder_tracking_on(mailbox, rules):
        folders += [PushFolder(rule.folder, rule.source_folder) for rule in mapped_folders(mailbox)]
    return folders


# -- the job ---------------------------------------------------------------------------------------------


def pending_key(mailbox_id: int, folder: str) -> str:
    return f"syncadmin:ews-push:pending:{mailbox_id}:{folder}"


def enqueue_folder_sync(mailbox_id: int, folder: str) -> bool:
    """Queue a sync of the folder unless one is already queued and not started; True when queued."""
    from tracking.jobs import QUEUE, SCAN_TIMEOUT, enqueue_notification, mailbox_rate_limit

    connection = django_rq.get_connection(QUEUE)
    if not connection.set(pending_key(mailbox_id, folder), "1", nx=True, ex=PENDING_TTL):
        return False
    enqueue_notification(
        push_sync_folder,
        mailbox_id,
        folder,
        timeout=SCAN_TIMEOUT,
        # one job at a time per mailbox, scans and reprocessing included
        rate_limit=mailbox_rate_limit(mailbox_id),
        description=f"push: sync mailbox {mailbox_id} {folder}",
    )
    return True


def push_sync_folder(mailbox_id: int, folder: str) -> str:
    """The RQ job an event queues: the folder's ordinary sync, holding a connection slot of its profile."""
    from tracking.jobs import CONNECTION_LEASE, QUEUE

    connection = django_rq.get_connection(QUEUE)
    # Cleared before reading the server: an event arriving from now on queues a new job, so nothing that
    # happens after this sync has read the folder is left waiting for the next poll.
    connection.delete(pending_key(mailbox_id, folder))
    job = get_current_job()
    mailbox = Mailbox.objects.select_related("profile").get(pk=mailbox_id)
    profile = mailbox.profile
    key = f"syncadmin:profile:{profile.pk}:connections"
    with connection_slot(connection, key, profile.max_concurrent_connections, CONNECTION_LEASE) as lease:
        if not lease.granted:
            # the poll comes soon instead and reads every folder from its state
            do_postpone_scan(mailbox_id, until=timezone.now() + BUSY_PROFILE_RETRY)
            return f"postponed: profile {profile.name} has no free connection"
        return run_push_scan(mailbox_id, folder, job_id=job.id if job else "")
