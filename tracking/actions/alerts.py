"""Alerts: a mailbox's error / warning / information rows, and the mail they set off (tracking-rules §9).

Every alert of a mailbox is written here. When the transaction of an error alert commits, a job
(tracking.notifications.alert_mail_job) mails an error alert to the people who should know and checks
whether the mailbox's profile is failing as a whole. The job is queued after the commit and is
never part of the change that raised the alert: a mail server or a job queue that is down costs the
mail, never the scan.
"""

from __future__ import annotations

import logging
from functools import partial

import django_rq
from django.db import transaction

from tracking.choices import AlertLevel, IncomingMethod, MailboxStatus
from tracking.jobqueues import MAIL
from tracking.models import Alert, EmailServerProfile, Mailbox

log = logging.getLogger(__name__)

ALERT_MAIL_JOB = "tracking.notifications.alert_mail_job"
QUEUE = MAIL  # alert mail


def raise_alert(mailbox: Mailbox, level: AlertLevel, message: str) -> Alert:
    alert = Alert.objects.create(mailbox=mailbox, level=level, message=message)
    if level == AlertLevel.ERROR:
        transaction.on_commit(partial(_queue_alert_mail, alert.pk))
    return alert


def failing_share(profile: EmailServerProfile) -> tuple[int, int]:
    """(failing, all) of the profile's mailboxes that are scanned by server-side sync."""
    mailboxes = Mailbox.objects.filter(profile=profile, incoming_method=IncomingMethod.SERVER_SIDE_SYNC)
    return mailboxes.filter(incoming_status=MailboxStatus.FAILURE).count(), mailboxes.count()


def do_open_failure_episode(profile: EmailServerProfile) -> bool:
    """Mark the profile as failing (more than half its mailboxes); True if that is news to mail about."""
    failing, total = failing_share(profile)
    if total == 0 or failing * 2 <= total:
        do_close_failure_episode(profile)
        return False
    # A conditional UPDATE: two jobs finding it failing at once mail the admins once.
    return bool(
        EmailServerProfile.objects.filter(pk=profile.pk, failure_episode_open=False).update(
            failure_episode_open=True
        )
    )


def do_close_failure_episode(profile: EmailServerProfile) -> None:
    """End the profile's failing episode once at most half of its mailboxes fail."""
    failing, total = failing_share(profile)
    if failing * 2 <= total:
        EmailServerProfile.objects.filter(pk=profile.pk, failure_episode_open=True).update(
            failure_episode_open=False
        )


def _queue_alert_mail(alert_id: int) -> None:
    try:
        # "auto": this already runs after the commit; deferring again would put the send outside the try.
        queue = django_rq.get_queue(QUEUE, commit_mode="auto")
        queue.enqueue(ALERT_MAIL_JOB, alert_id, description=f"alert mail {alert_id}")
    except Exception:  # the queue being down must not fail the commit it follows (nor a scan)
        log.warning("alert %s: the mail job could not be queued", alert_id, exc_info=True)
