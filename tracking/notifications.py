"""Alert mail (tracking-rules §9): an error alert mailed to the mailbox's owner and the admins, and a profile
alert to the admins when more than half of a profile's mailboxes fail.

`alert_mail_job` runs in a worker after the alert's transaction committed (see
tracking.actions.alerts). Each recipient gets the mail in their own language (Personal Options) unless
they turned alert mail off; a mailbox is mailed about at most once an hour. A mail server that refuses
or is down is logged and costs only the mail.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from tracking.actions.alerts import do_open_failure_episode, failing_share
from tracking.models import Alert, EmailServerProfile, Mailbox, PersonalOptions
from tracking.roles import ADMINS_GROUP

log = logging.getLogger(__name__)

MAIL_INTERVAL = timedelta(hours=1)


def admins_to_mail() -> list[User]:
    """Every active admin (superuser or group member) who has an email address."""
    User = get_user_model()
    return list(
        User.objects.filter(Q(is_superuser=True) | Q(groups__name=ADMINS_GROUP), is_active=True)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )


def _wants_mail(users: Iterable[User]) -> list[tuple[User, str]]:
    """(user, language) of those who have not turned alert mail off, one per address."""
    users = list(users)
    options = {o.user_id: o for o in PersonalOptions.objects.filter(user__in=users)}
    seen: set[str] = set()
    out = []
    for user in users:
        opts = options.get(user.pk)
        address = user.email.strip().lower()
        if not address or address in seen or (opts is not None and not opts.alert_mail):
            continue
        seen.add(address)
        out.append((user, opts.language if opts is not None else settings.LANGUAGE_CODE))
    return out


def _link(path: str) -> str:
    return f"{settings.SYNCADMIN_SITE_URL}{path}"


def _send(messages: list[EmailMessage]) -> int:
    if not messages:
        return 0
    try:
        return get_connection(fail_silently=False).send_messages(messages) or 0
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("alert mail not sent to %d recipient(s): %s", len(messages), exc)
        return 0


def _mailbox_mail(alert: Alert, mailbox: Mailbox, user: User, language: str) -> EmailMessage:
    with translation.override(language):
        subject = gettext("SyncAdmin: mailbox %(mailbox)s needs attention") % {"mailbox": mailbox}
        body = "\n\n".join(
            [
                gettext("An error alert was raised for the mailbox %(mailbox)s:") % {"mailbox": mailbox},
                alert.message,
                gettext("Open the mailbox: %(link)s")
                % {"link": _link(reverse("web-mailbox", kwargs={"pk": mailbox.pk}))},
                gettext("You can turn these mails off in Personal Options."),
            ]
        )
    return EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])


def _profile_mail(
    profile: EmailServerProfile, failing: int, total: int, language: str, to: str
) -> EmailMessage:
    with translation.override(language):
        subject = gettext("SyncAdmin: most mailboxes of server profile %(profile)s fail") % {
            "profile": profile.name
        }
        body = "\n\n".join(
            [
                gettext("%(failing)d of the %(total)d mailboxes of the server profile %(profile)s fail.")
                % {"failing": failing, "total": total, "profile": profile.name},
                gettext("Check the server and the profile's settings: %(link)s")
                % {"link": _link(reverse("web-profile-edit", kwargs={"pk": profile.pk}))},
                gettext("You can turn these mails off in Personal Options."),
            ]
        )
    return EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to])


def _claim_mailbox_mail(mailbox: Mailbox) -> bool:
    """Whether this job may mail about the mailbox now (at most once per MAIL_INTERVAL)."""
    now = timezone.now()
    recent = Q(alert_mailed_at__isnull=True) | Q(alert_mailed_at__lte=now - MAIL_INTERVAL)
    return bool(Mailbox.objects.filter(recent, pk=mailbox.pk).update(alert_mailed_at=now))


def alert_mail_job(alert_id: int) -> str:
    alert = Alert.objects.select_related("mailbox__user", "mailbox__profile").filter(pk=alert_id).first()
    if alert is None or alert.mailbox is None:
        return "no such mailbox alert"
    mailbox = alert.mailbox
    outcome = []
    if _claim_mailbox_mail(mailbox):
        people = ([mailbox.user] if mailbox.user is not None else []) + admins_to_mail()
        messages = [_mailbox_mail(alert, mailbox, u, lang) for u, lang in _wants_mail(people)]
        outcome.append(f"mailbox mail to {_send(messages)} of {len(messages)}")
    else:
        outcome.append("mailbox mailed within the hour")
    if do_open_failure_episode(mailbox.profile):
        failing, total = failing_share(mailbox.profile)
        messages = [
            _profile_mail(mailbox.profile, failing, total, lang, u.email)
            for u, lang in _wants_mail(admins_to_mail())
        ]
        outcome.append(f"profile mail to {_send(messages)} of {len(messages)}")
    return "; ".join(outcome)
