"""RQ jobs: thin, taking ids; the work is in tracking.scanning and tracking.actions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import django_rq
import django_rq.queues
from django.db import transaction
from django.utils import timezone
from rq import RateLimit, Retry, get_current_job
from rq.job import Job

from tracking import jobqueues
from tracking.actions import do_claim_due_mailboxes, do_postpone_scan
from tracking.choices import ScanStatus
from tracking.context import load_rules
from tracking.locks import connection_slot
from tracking.models import EmailServerProfile, Mailbox, ReprocessRound, ScanRun
from tracking.reprocessing import run_round_folder
from tracking.runs import do_close_interrupted_runs
from tracking.scanning import run_scan_cycle, run_test_and_enable, test_profile_connection

log = logging.getLogger(__name__)

# The queue of the jobs an admin waits for on a page; its connection is the Redis of every queue.
QUEUE = jobqueues.DEFAULT
SCAN_TIMEOUT = 3600  # seconds; also how long a dead worker can keep a claim or a connection slot
CLAIM_LEASE = timedelta(seconds=SCAN_TIMEOUT + 300)
BUSY_PROFILE_RETRY = timedelta(seconds=30)
CONNECTION_LEASE = 600  # seconds; renewed after every page, so a dead worker frees its slot within this


def enqueue_scan(mailbox_id: int, folder: str | None = None) -> Job | None:
    """Queue a scan; RQ's RateLimit keeps at most one scan of a mailbox queued or running at a time.

    Inside a transaction the job is sent when it commits, and None is returned.
    """
    queue = django_rq.get_queue(jobqueues.SCANS)
    return queue.enqueue_call(
        scan_mailbox,
        args=(mailbox_id, folder),
        timeout=SCAN_TIMEOUT,
        rate_limit=mailbox_rate_limit(mailbox_id),
        description=f"scan mailbox {mailbox_id}" + (f" {folder}" if folder else ""),
    )


# Jobs per Redis pipeline when the dispatcher queues many scans: one round trip each, a bounded buffer.
ENQUEUE_BATCH = 1000


def enqueue_scans(mailbox_ids: Sequence[int]) -> int:
    """Queue a scan of each mailbox, as enqueue_scan does, a batch of them per Redis round trip.

    RQ's enqueue_many leaves the RateLimit out, so each job goes through the rate-limited enqueue that
    enqueue_call uses, on a shared pipeline (RQ queues the job's writes and the slot's promotion on it).
    Call it after the claim has committed: a worker may take the first scan before this returns.
    """
    queue = django_rq.get_queue(jobqueues.SCANS, commit_mode="auto")
    queue.get_redis_server_version()  # once, not inside the pipeline for every job
    ttl = django_rq.queues.get_result_ttl(jobqueues.SCANS)
    for start in range(0, len(mailbox_ids), ENQUEUE_BATCH):
        # No MULTI: each job's writes and its slot's promotion (a Lua script, atomic) are sent in order, as
        # RQ's own enqueue sends them; a transaction would only add a reply per command to read.
        with queue.connection.pipeline(transaction=False) as pipe:
            for mailbox_id in mailbox_ids[start : start + ENQUEUE_BATCH]:
                job = queue.create_job(
                    scan_mailbox,
                    args=(mailbox_id, None),
                    timeout=SCAN_TIMEOUT,
                    result_ttl=ttl,
                    description=f"scan mailbox {mailbox_id}",
                    rate_limit=mailbox_rate_limit(mailbox_id),
                )
                queue._enqueue_rate_limited_job(job, pipeline=pipe)
            pipe.sadd(queue.redis_queues_keys, queue.key)
            pipe.execute()
    return len(mailbox_ids)


def enqueue_notification(
    func: Callable[..., object], *args: object, description: str, **options: Any
) -> Job | None:
    """Queue the work a push notification asks for (a folder's sync) on the notifications queue.

    `options` are enqueue_call's (job_id, timeout, rate_limit...); inside a transaction the job is sent
    when it commits, and None is returned.
    """
    return django_rq.get_queue(jobqueues.NOTIFICATIONS).enqueue_call(
        func, args=args, description=description, **options
    )


def scan_mailbox(mailbox_id: int, folder: str | None = None, *, reschedule: bool = True) -> str:
    """One scan cycle of a mailbox, holding one of its server profile's connection slots (`reschedule`
    False: a push scan, which leaves the next poll where it is)."""
    job = get_current_job()
    mailbox = Mailbox.objects.select_related("profile").get(pk=mailbox_id)
    profile = mailbox.profile
    connection = django_rq.get_connection(QUEUE)
    key = f"syncadmin:profile:{profile.pk}:connections"
    with connection_slot(connection, key, profile.max_concurrent_connections, CONNECTION_LEASE) as lease:
        if not lease.granted:
            do_postpone_scan(mailbox_id, until=timezone.now() + BUSY_PROFILE_RETRY)
            return f"postponed: profile {profile.name} has no free connection"
        return run_scan_cycle(
            mailbox_id,
            folder=folder,
            job_id=job.id if job else "",
            on_page=lambda run: lease.renew(),
            reschedule=reschedule,
        )


def mailbox_rate_limit(mailbox_id: int) -> RateLimit:
    """One job at a time per mailbox: a scan, or a folder of a reprocessing round."""
    return RateLimit(key=f"syncadmin:mailbox:{mailbox_id}", concurrency=1)


# A worker killed under a round's job: RQ gives the job up once its heartbeat expires and retries it, and
# the retry resumes the run after its last committed page (tracking.reprocessing).
ROUND_RETRIES = 3


def round_job_id(run_id: int) -> str:
    """A round run's job id: one job per run, which the dispatcher can look for."""
    return f"syncadmin-round-run-{run_id}"


def enqueue_round(round: ReprocessRound) -> None:
    """Queue a job per folder run of the round; inside a transaction they are sent when it commits."""
    runs = ScanRun.objects.filter(round=round).values_list("pk", "mailbox_id", "folder")
    for run_id, mailbox_id, folder in runs:
        _enqueue_round_run(run_id, mailbox_id, f"reprocess mailbox {mailbox_id} {folder} (round {round.pk})")


def _enqueue_round_run(run_id: int, mailbox_id: int, description: str) -> None:
    django_rq.get_queue(jobqueues.REPROCESSING).enqueue_call(
        reprocess_folder,
        args=(run_id,),
        job_id=round_job_id(run_id),
        timeout=SCAN_TIMEOUT,
        retry=Retry(max=ROUND_RETRIES),
        rate_limit=mailbox_rate_limit(mailbox_id),
        description=description,
    )


def requeue_lost_round_runs(*, now: datetime) -> int:
    """Queue again the queued round runs that have no job: Redis lost it, or was down when the round's
    transaction committed (its jobs are sent after the commit). Runs queued in the last minute are left
    to their own enqueue."""
    queued = ScanRun.objects.filter(
        round__isnull=False, status=ScanStatus.QUEUED, queued_at__lt=now - timedelta(minutes=1)
    ).values_list("pk", "mailbox_id", "folder", "round_id")
    connection = django_rq.get_connection(QUEUE)
    lost = [row for row in queued if not Job.exists(round_job_id(row[0]), connection=connection)]
    for run_id, mailbox_id, folder, round_id in lost:
        _enqueue_round_run(run_id, mailbox_id, f"reprocess mailbox {mailbox_id} {folder} (round {round_id})")
    if lost:
        log.warning("queued again %d reprocessing job(s) that Redis did not have", len(lost))
    return len(lost)


def reprocess_folder(run_id: int) -> str:
    """One folder of a reprocessing round."""
    job = get_current_job()
    run = run_round_folder(run_id, job_id=job.id if job else "")
    return f"{run.status}: {run.items_done} message(s) decided again"


def test_and_enable_job(mailbox_id: int) -> str:
    """Test & Enable queued from the mailbox page; the result is the mailbox's status and a new Alert."""
    ok, message = run_test_and_enable(mailbox_id)
    if ok:
        from tracking.pushjobs import enqueue_push_maintenance  # it imports this module

        enqueue_push_maintenance(mailbox_id)
    return f"{'enabled' if ok else 'not enabled'}: {message}"


def test_connection_job(profile_id: int, address: str) -> dict[str, object]:
    """Test connection queued from a server profile's page: sign in and read one inbox, store nothing.

    The result ({"ok", "message"}) is the job's return value, which the page that queued it shows.
    """
    profile = EmailServerProfile.objects.get(pk=profile_id)
    ok, message = test_profile_connection(profile, address)
    return {"ok": ok, "message": message}


def dispatch_due_mailboxes() -> int:
    """Enqueue a scan of every due mailbox (run by rqcron); returns how many were enqueued."""
    rules = load_rules()
    do_close_interrupted_runs(now=timezone.now())
    requeue_lost_round_runs(now=timezone.now())
    with transaction.atomic():
        claimed = do_claim_due_mailboxes(rules, now=timezone.now(), lease=CLAIM_LEASE)
        # Sent when the claim commits, not before (a worker taking one at once finds it claimed); when Redis
        # fails in between, the claimed mailboxes are due again once their lease ends.
        if claimed:
            transaction.on_commit(partial(enqueue_scans, claimed))
    if claimed:
        log.info("dispatched scans of %d mailbox(es)", len(claimed))
    return len(claimed)
