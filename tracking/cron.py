"""The one schedule of SyncAdmin, run by `manage.py rqcron tracking/cron.py` (a single process)."""

from rq import cron

from tracking.jobs import QUEUE, dispatch_due_mailboxes

DISPATCH_EVERY_SECONDS = 30

cron.register(dispatch_due_mailboxes, queue_name=QUEUE, interval=DISPATCH_EVERY_SECONDS, job_timeout=300)
