"""Shared fixtures: people, a server profile, mailboxes, decision rows, running management commands."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone, translation

from tracking.actions import ProfileValues, check_add_mailbox, check_add_profile, do_set_personal_options
from tracking.context import mailbox_for_scan
from tracking.messages import RawItem
from tracking.models import Decision, EmailServerProfile, Mailbox
from tracking.pipeline import process_page

# sim, ews and clean_redis, for the tests that run scans through RQ
pytest_plugins = ["tests.worker_fixtures"]

# The real-mail corpora vendored for the tests (see tests/data/corpora/README.md).
CORPORA = Path(__file__).resolve().parent / "data" / "corpora"
# When make_decisions' rows are decided; row i was received i minutes later.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class CommandResult:
    def __init__(self, out: str, err: str) -> None:
        self.out = out
        self.err = err

    def json_lines(self) -> list[dict[str, Any]]:
        # JSON Lines end at "\n" only: str.splitlines would also split inside values holding U+0085 or U+2028.
        return [json.loads(line) for line in self.out.split("\n") if line.strip()]


def run_command(*args: str) -> CommandResult:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return CommandResult(out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def language_of_the_settings_after_each_test() -> Iterator[None]:
    """A request by a German-speaking user leaves German active in this thread (the preferences middleware
    switches per request, as LocaleMiddleware does); the next test must not inherit it."""
    yield
    translation.deactivate()


@pytest.fixture
def cmd() -> Callable[..., CommandResult]:
    return run_command


@pytest.fixture
def exchange_profile(db: None) -> EmailServerProfile:
    return check_add_profile(
        ProfileValues("exchange", "exchange_ews", endpoint="https://mail.example.com/EWS/Exchange.asmx")
    )


@pytest.fixture
def imap_profile(db: None) -> EmailServerProfile:
    return check_add_profile(ProfileValues("imap", "imap", endpoint="imaps://mail.example.com:993"))


def make_mailbox(address: str, username: str, profile: EmailServerProfile, track: int = 1) -> Mailbox:
    mailbox = check_add_mailbox(
        address, profile_name=profile.name, username=username, create_user=True, approve=True
    )
    assert mailbox.user is not None
    do_set_personal_options(mailbox.user, track=track)
    return mailbox


# Messages decided the way a scan decides them, for the web tests.


def raw(
    message_id: str,
    *,
    frm: str = "Ann Example <ann@example.net>",
    to: str = "alice@contoso.com",
    subject: str = "Hello",
    extra: str = "",
) -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
        f"Date: Mon, 2 Mar 2026 09:00:00 +0000\r\n{extra}\r\nbody\r\n"
    ).encode()


def scan(
    mailbox: Mailbox, *messages: bytes, folder: str = "inbox", received: datetime = T0
) -> list[Decision]:
    """Decide messages the way a scan does (through the pipeline), one minute apart."""
    items = [
        RawItem(f"item-{i}-{received.timestamp()}", m, received_at=received + timedelta(minutes=i))
        for i, m in enumerate(messages)
    ]
    done = process_page(mailbox_for_scan(mailbox.pk), folder, items, scan_run=None, now=timezone.now())
    return [p.decision for p in done]


def login(client: Client, user: User) -> Client:
    """The test client, signed in as `user` (without the sign-in form)."""
    client.force_login(user)
    return client


def user_of(mailbox: Mailbox) -> User:
    assert isinstance(mailbox.user, User)
    return mailbox.user


def make_decisions(mailbox: Mailbox, n: int, *, start: int = 0, **fields: object) -> list[Decision]:
    """`n` plain decision rows numbered from `start`, written directly (not through a scan), for lists,
    exports and purges that only read them; `fields` replace any column's value, the Message-ID's too."""

    def row(i: int) -> Decision:
        values: dict[str, object] = {
            "message_id": f"<bulk-{mailbox.pk}-{i}@example.net>",
            "folder": "inbox",
            "direction": "incoming",
            "outcome": "not_tracked",
            "reason": "no_correlation",
            "sender": "ann@example.net",
            "subject": f"Bulk {i}",
            "received_at": T0 + timedelta(minutes=i),
            "decided_at": T0,
        }
        values.update(fields)
        return Decision(mailbox=mailbox, **values)

    return Decision.objects.bulk_create(row(i) for i in range(start, start + n))


@pytest.fixture
def alice(exchange_profile: EmailServerProfile) -> Mailbox:
    """alice@contoso.com, a user mailbox on Exchange, Track option 1 (the default)."""
    return make_mailbox("alice@contoso.com", "alice", exchange_profile)


@pytest.fixture
def bob(exchange_profile: EmailServerProfile) -> Mailbox:
    """bob@contoso.com, a second user mailbox on Exchange, Track option 1."""
    return make_mailbox("bob@contoso.com", "bob", exchange_profile)


@pytest.fixture
def alice_user(alice: Mailbox) -> User:
    assert isinstance(alice.user, User)
    return alice.user


@pytest.fixture
def admin(db: None) -> User:
    """ada, an admin by group (not a superuser)."""
    from django.contrib.auth.models import Group

    user = User.objects.create_user("ada", "ada@contoso.com", "pw-ada-123")
    user.groups.add(Group.objects.get_or_create(name="syncadmin-admins")[0])
    return user


@pytest.fixture
def auditor(db: None) -> User:
    """audrey, an auditor: reads everything, changes nothing."""
    from django.contrib.auth.models import Group

    user = User.objects.create_user("audrey", "audrey@contoso.com", "pw-audrey-123")
    user.groups.add(Group.objects.get_or_create(name="syncadmin-auditors")[0])
    return user
