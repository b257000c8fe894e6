"""The one schedule of SyncAdmin, run by `manage.py rqcron tracking/cron.py` (a single process)."""

from rq import cron

from tracking.jobs import QUEUE, dispatch_due_mailboxes
from tracking.pushjobs import maintain_push_subscriptions

DISPATCH_EVERY_SECONDS = 30

cron.register(dispatch_due_mailboxes, queue_name=QUEUE, interval=DISPATCH_EVERY_SECONDS, job_timeout=300)
# Push (Graph change notifications): create, renew and delete subscriptions, each mailbox in a job of its own.
PUSH_UPKEEP_EVERY_SECONDS = 300
cron.register(
    maintain_push_subscriptions, queue_name=QUEUE, interval=PUSH_UPKEEP_EVERY_SECONDS, job_timeout=300
)
