"""`records show KIND:NAME [--json] [--limit N]` (issue 18): a record and its timeline, newest first."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import ManagementUtility
from django.core.management.base import CommandError

from tests.conftest import CommandResult
from tracking.models import CrmRecord, EmailParty, Queue, TrackedEmail
from tracking.timeline import WINDOW

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
Cmd = Callable[..., CommandResult]


def email(
    n: int, *, minutes: int, regarding: CrmRecord | None = None, direction: str = "incoming"
) -> TrackedEmail:
    return TrackedEmail.objects.create(
        message_id=f"<r{n}@example.net>",
        direction=direction,
        subject=f"Subject {n}",
        sender="ann@example.net",
        regarding=regarding,
        timeline_at=T0 + timedelta(minutes=minutes),
    )


def party(tracked: TrackedEmail, role: str, **to: object) -> None:
    EmailParty.objects.create(
        tracked_email=tracked, role=role, address="x@example.net", timeline_at=tracked.timeline_at, **to
    )


@pytest.fixture
def dana(db: None) -> CrmRecord:
    owner = User.objects.create_user("olga")
    return CrmRecord.objects.create(
        kind="contact", name="Dana Smith", email1="dana@fabrikam.com", owner=owner
    )


@pytest.fixture
def timeline(dana: CrmRecord) -> list[TrackedEmail]:
    """Newest first: a party twice (to, cc), regarding and from, regarding only."""
    first = email(1, minutes=0, regarding=dana)
    both = email(2, minutes=5, regarding=dana, direction="outgoing")
    party(both, "from", record=dana)
    twice = email(3, minutes=10)
    party(twice, "to", record=dana)
    party(twice, "cc", record=dana)
    email(4, minutes=20)  # someone else's
    return [twice, both, first]


def test_json_is_the_record_and_its_timeline_newest_first(
    cmd: Cmd, dana: CrmRecord, timeline: list[TrackedEmail]
) -> None:
    out = json.loads(cmd("records", "show", "contact:Dana Smith", "--json").out)
    assert out["record"] == {
        "kind": "contact",
        "other_kind": "",
        "name": "Dana Smith",
        "addresses": ["dana@fabrikam.com"],
        "owner": "olga",
        "active": True,
    }
    assert out["timeline"] == [
        {"message_id": f"<r{n}@example.net>", "subject": f"Subject {n}", "received_at": at, "direction": d}
        for n, at, d in [
            (3, "2026-05-04T12:10:00+00:00", "incoming"),
            (2, "2026-05-04T12:05:00+00:00", "outgoing"),
            (1, "2026-05-04T12:00:00+00:00", "incoming"),
        ]
    ]


def test_text_shows_the_record_then_one_line_an_email(
    cmd: Cmd, dana: CrmRecord, timeline: list[TrackedEmail]
) -> None:
    lines = cmd("records", "show", "contact:Dana Smith").out.splitlines()
    assert lines[0] == "contact: Dana Smith (dana@fabrikam.com; owner olga; active)"
    assert lines[1:] == [
        "2026-05-04T12:10+00:00  incoming  Subject 3  <r3@example.net>  [to, cc]",
        "2026-05-04T12:05+00:00  outgoing  Subject 2  <r2@example.net>  [regarding, from]",
        "2026-05-04T12:00+00:00  incoming  Subject 1  <r1@example.net>  [regarding]",
    ]


def test_limit_shows_the_newest_and_says_there_is_more(
    cmd: Cmd, dana: CrmRecord, timeline: list[TrackedEmail]
) -> None:
    out = json.loads(cmd("records", "show", "contact:Dana Smith", "--json", "--limit", "2").out)
    assert [e["message_id"] for e in out["timeline"]] == ["<r3@example.net>", "<r2@example.net>"]
    assert cmd("records", "show", "contact:Dana Smith", "--limit", "2").out.endswith(
        "(the 2 newest; --limit N shows more)\n"
    )
    with pytest.raises(CommandError, match="--limit 0: use 1 to"):
        cmd("records", "show", "contact:Dana Smith", "--limit", "0")


def test_a_record_without_emails(cmd: Cmd, dana: CrmRecord) -> None:
    assert cmd("records", "show", "contact:Dana Smith").out.splitlines()[1] == "no tracked emails"
    assert json.loads(cmd("records", "show", "contact:Dana Smith", "--json").out)["timeline"] == []


def test_users_and_queues_by_username_and_name(cmd: Cmd, db: None) -> None:
    user = User.objects.create_user("alice", "alice@contoso.com", first_name="Alice", last_name="Ng")
    queue = Queue.objects.create(name="Support", email="support@contoso.com", owner=user)
    tracked = email(1, minutes=0)
    party(tracked, "to", queue=queue)
    party(tracked, "from", user=user)
    out = json.loads(cmd("records", "show", "user:alice", "--json").out)
    assert out["record"] == {
        "kind": "user",
        "name": "alice",
        "addresses": ["alice@contoso.com"],
        "owner": None,
        "active": True,
    }
    assert [e["message_id"] for e in out["timeline"]] == ["<r1@example.net>"]
    assert cmd("records", "show", "user:alice").out.startswith(
        "user: Alice Ng (alice) (alice@contoso.com; active)"
    )
    out = json.loads(cmd("records", "show", "queue:Support", "--json").out)
    assert out["record"]["owner"] == "alice" and len(out["timeline"]) == 1


def test_an_unknown_record_is_an_error(cmd: Cmd, dana: CrmRecord) -> None:
    with pytest.raises(CommandError, match="no lead named 'Dana Smith'"):
        cmd("records", "show", "lead:Dana Smith")
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        cmd("records", "show", "user:nobody")
    with pytest.raises(CommandError, match="use KIND:NAME with KIND one of user, queue, contact"):
        cmd("records", "show", "planet:Mars")
    with pytest.raises(CommandError, match="use KIND:NAME"):
        cmd("records", "show", "Dana Smith")


def test_an_ambiguous_name_lists_the_records(cmd: Cmd, dana: CrmRecord) -> None:
    other = CrmRecord.objects.create(kind="contact", name="Dana Smith", email1="dana@elsewhere.example")
    with pytest.raises(CommandError) as raised:
        cmd("records", "show", "contact:Dana Smith")
    message = str(raised.value)
    assert "several contact records are named 'Dana Smith'" in message
    assert (
        f"id {dana.pk} (dana@fabrikam.com)" in message
        and f"id {other.pk} (dana@elsewhere.example)" in message
    )


def test_it_exits_non_zero_from_the_command_line(dana: CrmRecord, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "records", "show", "contact:Nobody"]).execute()
    assert exited.value.code == 1
    assert "no contact named 'Nobody'" in capsys.readouterr().err


def test_a_limit_beyond_the_web_pages_window_shows_that_many(cmd: Cmd, dana: CrmRecord) -> None:
    TrackedEmail.objects.bulk_create(
        TrackedEmail(
            message_id=f"<many{i}@example.net>",
            direction="incoming",
            regarding=dana,
            timeline_at=T0 + timedelta(minutes=i),
        )
        for i in range(WINDOW + 100)
    )
    out = json.loads(cmd("records", "show", "contact:Dana Smith", "--json", "--limit", str(WINDOW + 50)).out)
    assert len(out["timeline"]) == WINDOW + 50
    assert out["timeline"][0]["message_id"] == f"<many{WINDOW + 99}@example.net>"
