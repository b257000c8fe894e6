"""How the scanning machinery is doing: the queue, its workers and scheduler, failing or overdue mailboxes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import django_rq
from redis.exceptions import RedisError
from rq import Worker, cron_scheduler_registry
from rq.registry import FailedJobRegistry, StartedJobRegistry

from tracking.choices import ScanStatus
from tracking.context import load_rules
from tracking.jobqueues import WORKER_COMMAND, WORKER_QUEUES
from tracking.jobs import QUEUE
from tracking.models import Mailbox, ScanRun


@dataclass
class Health:
    queue_available: bool
    queue_error: str = ""
    queued_jobs: int = 0
    running_jobs: int = 0
    failed_jobs: int = 0
    workers: int = 0
    cron_schedulers: int = 0
    scans_running: int = 0
    mailboxes_enabled: int = 0
    mailboxes_failing: list[str] = field(default_factory=list)
    mailboxes_overdue: list[str] = field(default_factory=list)  # due for more than two poll intervals

    @property
    def worker_command(self) -> str:
        return WORKER_COMMAND

    @property
    def problems(self) -> list[str]:
        out = []
        if not self.queue_available:
            out.append(f"the job queue is unavailable: {self.queue_error}")
        else:
            if self.workers == 0:
                out.append(f"no worker is running (start: {WORKER_COMMAND})")
            if self.cron_schedulers == 0:
                out.append("no scheduler is running (start: manage.py rqcron tracking/cron.py)")
        if self.mailboxes_overdue:
            out.append(f"{len(self.mailboxes_overdue)} mailbox(es) overdue by more than two poll intervals")
        return out

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "problems": self.problems}


def check_health(now: datetime) -> Health:
    rules = load_rules()
    overdue_before = now - 2 * timedelta(minutes=rules.poll_interval_minutes)
    health = Health(
        queue_available=True,
        scans_running=ScanRun.objects.filter(status=ScanStatus.RUNNING).count(),
        mailboxes_enabled=Mailbox.objects.filter(enabled=True).count(),
        mailboxes_failing=list(
            Mailbox.objects.filter(incoming_status="failure")
            .order_by("email_address")
            .values_list("email_address", flat=True)[:100]
        ),
        mailboxes_overdue=list(
            Mailbox.objects.due(rules, now)
            .filter(next_run_at__lt=overdue_before)
            .order_by("next_run_at")
            .values_list("email_address", flat=True)[:100]
        ),
    )
    try:
        connection = django_rq.get_connection(QUEUE)
        for name in WORKER_QUEUES:
            queue = django_rq.get_queue(name, connection=connection)
            health.queued_jobs += queue.count
            health.running_jobs += StartedJobRegistry(queue=queue).count
            health.failed_jobs += FailedJobRegistry(queue=queue).count
        health.workers = Worker.count(connection=connection)
        health.cron_schedulers = len(cron_scheduler_registry.get_keys(connection))
    except RedisError as exc:
        health.queue_available = False
        health.queue_error = str(exc)
    return health
