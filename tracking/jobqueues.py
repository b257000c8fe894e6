"""The RQ queues, one per purpose (docs/deployment.md, "Workers on several hosts").

A host can run workers for some purposes only, and a backlog of one purpose (10,000 scans after a
restart) never holds up another (a push notification, an alert mail, a Test & Enable someone waits for).
The settings build RQ_QUEUES from this module, so it imports nothing of Django's apps.
"""

from __future__ import annotations

# Scan cycles: the dispatcher's (tracking.jobs.enqueue_scan) and Scan now.
SCANS = "scans"
# A reprocessing round's folder runs.
REPROCESSING = "reprocessing"
# Push events (Graph change notifications, EWS streaming events): the folder's sync they ask for.
NOTIFICATIONS = "notifications"
# Alert mail (tracking-rules §9).
MAIL = "mail"
# What an admin waits for on a page (Test & Enable, Test connection, bulk operations, imports), the
# dispatcher that rqcron queues, and every job an earlier version queued before the queues were split.
DEFAULT = "default"

# A worker takes the first job of the first of its queues that has one: the short jobs somebody waits
# for first, the long background ones last. `manage.py rqworker` with these names, in this order.
WORKER_QUEUES = (NOTIFICATIONS, MAIL, DEFAULT, SCANS, REPROCESSING)
WORKER_COMMAND = "manage.py rqworker " + " ".join(WORKER_QUEUES)


def rq_queues(url: str, default_timeout: int) -> dict[str, dict[str, object]]:
    """RQ_QUEUES: every queue on one Redis (the rate limits and connection slots span all of them)."""
    return {name: {"URL": url, "DEFAULT_TIMEOUT": default_timeout} for name in WORKER_QUEUES}
