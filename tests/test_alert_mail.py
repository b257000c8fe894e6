"""Alert mail (tracking-rules §9, issue 16) through Django's SMTP backend to a real SMTP server on loopback
(aiosmtpd): an error alert mails the owner and each admin once an hour, in their language, with a link;
a profile with more than half of its mailboxes failing mails the admins once; SMTP down fails no scan."""

from __future__ import annotations

import email
import email.header
import socket
from collections.abc import Iterator
from email.message import Message

import django_rq
import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth.models import Group, User
from django.test import override_settings
from django.utils import timezone
from rq import Queue

from tests.conftest import make_mailbox
from tracking.actions import (
    ProfileValues,
    check_add_profile,
    do_record_cycle_failure,
    do_set_personal_options,
)
from tracking.choices import ErrorKind
from tracking.context import load_rules
from tracking.jobqueues import MAIL, rq_queues
from tracking.models import EmailServerProfile, Mailbox
from tracking.workers import SimpleWorker

SITE = "https://syncadmin.example.com"


class Inbox:
    """Collects what the SMTP server receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


def subject(message: Message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def profile_mails(inbox: Inbox) -> list[Message]:
    return [m for m in inbox.messages if "exchange" in subject(m)]


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
            EMAIL_USE_TLS=False,
            DEFAULT_FROM_EMAIL="syncadmin@example.com",
            SYNCADMIN_SITE_URL=SITE,
        ):
            yield inbox
    finally:
        controller.stop()


@pytest.fixture
def rq_queue() -> Iterator[Queue]:
    q = django_rq.get_queue(MAIL)
    q.empty()
    yield q
    q.empty()


def burst(q: Queue) -> None:
    SimpleWorker([q], connection=q.connection).work(burst=True)


@pytest.fixture
def admins(db: None) -> list[User]:
    group = Group.objects.get_or_create(name="syncadmin-admins")[0]
    ada = User.objects.create_user("ada", "ada@contoso.com")
    ada.groups.add(group)
    bert = User.objects.create_user("bert", "bert@contoso.com")
    bert.groups.add(group)
    do_set_personal_options(bert, language="de")
    User.objects.create_user("nomail", "").groups.add(group)  # an admin without an address gets nothing
    return [ada, bert]


@pytest.fixture
def profile(db: None) -> EmailServerProfile:
    return check_add_profile(
        ProfileValues("exchange", "exchange_ews", endpoint="https://m.example.com/EWS/Exchange.asmx")
    )


def fail(mailbox: Mailbox, q: Queue, django_capture_on_commit_callbacks: object) -> str:
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_record_cycle_failure(
            mailbox.pk,
            load_rules(),
            error="the server refused the credentials",
            kind=ErrorKind.CREDENTIALS,
            permanent=True,
            retry_after=None,
            now=timezone.now(),
        )
    burst(q)
    return result


def test_a_permanent_failure_mails_the_owner_and_each_admin_once_an_hour(
    smtp: Inbox,
    admins: list[User],
    profile: EmailServerProfile,
    rq_queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    alice = make_mailbox("alice@contoso.com", "alice", profile)
    others = [
        make_mailbox(f"u{i}@contoso.com", f"u{i}", profile) for i in range(3)
    ]  # keep the profile healthy
    assert others
    assert fail(alice, rq_queue, django_capture_on_commit_callbacks) == "disabled"
    assert sorted(m["To"] for m in smtp.messages) == [
        "ada@contoso.com",
        "alice@contoso.com",
        "bert@contoso.com",
    ]
    english = smtp.to("alice@contoso.com")[0]
    assert english["Subject"] == "SyncAdmin: mailbox alice@contoso.com needs attention"
    body = body_of(english)
    assert "the server refused the credentials" in body
    assert f"{SITE}/mailboxes/{alice.pk}/" in body
    german = smtp.to("bert@contoso.com")[0]
    assert "benötigt Aufmerksamkeit" in str(
        email.header.make_header(email.header.decode_header(german["Subject"]))
    )
    # a second failure within the hour mails nobody
    fail(alice, rq_queue, django_capture_on_commit_callbacks)
    assert len(smtp.messages) == 3


def test_a_person_can_turn_alert_mail_off(
    smtp: Inbox,
    admins: list[User],
    profile: EmailServerProfile,
    rq_queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    alice = make_mailbox("alice@contoso.com", "alice", profile)
    [make_mailbox(f"u{i}@contoso.com", f"u{i}", profile) for i in range(3)]
    assert alice.user is not None
    do_set_personal_options(alice.user, alert_mail=False)
    fail(alice, rq_queue, django_capture_on_commit_callbacks)
    assert sorted(m["To"] for m in smtp.messages) == ["ada@contoso.com", "bert@contoso.com"]


def test_most_of_a_profiles_mailboxes_failing_mails_the_admins_once(
    smtp: Inbox,
    admins: list[User],
    profile: EmailServerProfile,
    rq_queue: Queue,
    django_capture_on_commit_callbacks,
) -> None:
    boxes = [make_mailbox(f"{n}@contoso.com", n, profile) for n in ("ann", "ben", "cat")]
    fail(boxes[0], rq_queue, django_capture_on_commit_callbacks)  # 1 of 3 fail
    assert profile_mails(smtp) == []
    fail(boxes[1], rq_queue, django_capture_on_commit_callbacks)  # 2 of 3 fail
    assert sorted(m["To"] for m in profile_mails(smtp)) == ["ada@contoso.com", "bert@contoso.com"]
    english = next(m for m in profile_mails(smtp) if m["To"] == "ada@contoso.com")
    assert "2 of the 3 mailboxes" in body_of(english)
    fail(boxes[2], rq_queue, django_capture_on_commit_callbacks)  # the same episode: no second profile mail
    assert len(profile_mails(smtp)) == 2


def test_a_mail_server_that_is_down_fails_no_scan(
    admins: list[User], profile: EmailServerProfile, rq_queue: Queue, django_capture_on_commit_callbacks
) -> None:
    alice = make_mailbox("alice@contoso.com", "alice", profile)
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=free_port(),
    ):
        assert fail(alice, rq_queue, django_capture_on_commit_callbacks) == "disabled"
        assert rq_queue.failed_job_registry.count == 0
    alice.refresh_from_db()
    assert not alice.enabled and alice.alerts.filter(level="error").count() == 1


@override_settings(RQ_QUEUES=rq_queues("redis://127.0.0.1:1/0", 60))
def test_a_job_queue_that_is_down_fails_no_scan(
    admins: list[User], profile: EmailServerProfile, django_capture_on_commit_callbacks
) -> None:
    alice = make_mailbox("alice@contoso.com", "alice", profile)
    with django_capture_on_commit_callbacks(execute=True):
        result = do_record_cycle_failure(
            alice.pk,
            load_rules(),
            error="gone",
            kind=ErrorKind.UNREACHABLE,
            permanent=True,
            retry_after=None,
            now=timezone.now(),
        )
    assert result == "disabled"
