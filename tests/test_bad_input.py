"""Wrong input to every CLI command and every web form (issue #7): a clear refusal, and nothing changed.

Each case is a row of a table. A CLI row must end in a CommandError naming the problem; a web row in a
page with the form's error (or 404 for another user's object). Either way every row of every tracking
model, the users and their groups — AuditEvent included — is the same afterwards as before.
The cases here are the ones tests/test_commands.py and tests/test_web_*.py do not already make.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import CommandError
from django.db.models import Model
from django.test import Client
from django.utils import timezone

from tests.conftest import CommandResult
from tracking.actions import ProfileValues, check_add_profile, do_add_exclusion
from tracking.models import CrmRecord, Decision, Mailbox, OrgSettings, PersonalOptions, Queue, ScanRun
from tracking.scanning import run_test_and_enable, scan_folder
from tracking.sources.base import SourceError

Cmd = Callable[..., CommandResult]
INT_OVER = str(2**31)  # one past the largest integer PostgreSQL stores in an integer column
HUGE = "9" * 30


def state() -> dict[str, list[dict[str, Any]]]:
    """Every row the product keeps (sign-in times aside), to compare before and after a refusal."""
    models: list[type[Model]] = [*apps.get_app_config("tracking").get_models(), User, Group]
    rows = {m._meta.label: list(m._default_manager.order_by("pk").values()) for m in models}
    for user in rows["auth.User"]:
        user.pop("last_login")
    return rows


@pytest.fixture
def world(alice: Mailbox, bob: Mailbox, tmp_path: Path) -> dict[str, Any]:
    """Two user mailboxes, a contact, a decision and an exclusion of bob's, and some bad files."""
    OrgSettings.load()  # pages create the settings row when they first read it; that is no change
    contact = CrmRecord.objects.create(kind="contact", name="Jane Doe", email1="jane@example.net")
    run = ScanRun.objects.create(mailbox=bob, folder="inbox", source="ingest")
    decision = Decision.objects.create(
        mailbox=bob,
        folder="inbox",
        scan_run=run,
        message_id="<bobs@example.net>",
        direction="incoming",
        outcome="not_tracked",
        reason="no_correlation",
        decided_at=timezone.now(),
    )
    assert bob.user is not None
    exclusion = do_add_exclusion("@bob-only.example", user=bob.user, acting_user=bob.user)
    (tmp_path / "garbage.csv").write_bytes(b"\x00\xff\xfe binary \x00 garbage")
    (tmp_path / "nul.csv").write_bytes(
        b"name,email\nJa\x00ne,jane2@example.net\nJane Three,jane3@example.net\n"
    )
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "empty.mbox").write_bytes(b"")
    (tmp_path / "mail").mkdir()
    return {
        "tmp": tmp_path,
        "contact": contact,
        "bobs_decision": decision,
        "bobs_exclusion": exclusion,
        "alice": alice,
        "bob": bob,
    }


# ---------------------------------------------------------------------------------------------
# CLI: (arguments, what the refusal says); {tmp} is a folder holding the bad files of `world`
# ---------------------------------------------------------------------------------------------

POLL = "MailboxPollIntervalMinutes"
CLI_CASES: list[tuple[list[str], str]] = [
    # orgsettings: wrong types, out of range, invalid regexes, unknown names
    *[
        (["orgsettings", "set", POLL, v], POLL)
        for v in ["-1", "0", "1441", INT_OVER, HUGE, "abc", "1.5", "", " "]
    ],
    *[
        (["orgsettings", "set", "TrackingTokenIdBase", v], "TrackingTokenIdBase")
        for v in ["-1", INT_OVER, HUGE]
    ],
    *[
        (["orgsettings", "set", "HashFilterKeywords", v], "not a valid regular expression")
        for v in ["([", "(?P<x", "*", "a{2,1}", "[z-a]", "(?<=a+)b", "\\"]
    ],
    (["orgsettings", "set", "TrackingPrefix", "CR\x00M"], "NUL"),
    (["orgsettings", "set", "HashFilterKeywords", "re\x00"], "NUL"),
    (["orgsettings", "set", "AutoTrackSentFolderItems", "2"], "AutoTrackSentFolderItems"),
    (["orgsettings", "set", "NoSuchSetting", "1"], "NoSuchSetting"),
    (["orgsettings", "get", "NoSuchSetting"], "NoSuchSetting"),
    (["orgsettings", "set", POLL], "value"),
    (["orgsettings", "frobnicate"], "invalid choice"),
    # profile
    *[
        (
            ["profile", "add", "p2", "--kind", "local", "--endpoint", "{tmp}", "--max-connections", v],
            "connections",
        )
        for v in ["-1", "0", "301", INT_OVER, HUGE]
    ],
    (["profile", "add", "p2", "--kind", "local", "--max-connections", "abc"], "invalid int value"),
    (["profile", "add", "p2", "--kind", "pop3"], "invalid choice"),
    (["profile", "add", "p2", "--kind", "imap", "--auth", "kerberos"], "invalid choice"),
    (
        ["profile", "add", "p2", "--kind", "local", "--endpoint", "{tmp}", "--process-after", "yesterday"],
        "ISO",
    ),
    (["profile", "add", "exchange", "--kind", "exchange_ews"], "already exists"),
    # mailbox
    (["mailbox", "add", "new@contoso.com", "--user", "nobody", "--profile", "exchange"], "nobody"),
    (
        ["mailbox", "add", "new@contoso.com", "--user", "nina", "--create-user", "--profile", "nosuch"],
        "nosuch",
    ),
    (["mailbox", "add", "not an address", "--queue", "Q", "--profile", "exchange"], "not an address"),
    *[
        (["mailbox", "add", address, "--queue", "Q", "--profile", "exchange"], "is not an email address")
        for address in [
            "a/../../x@contoso.com",
            "/etc@contoso.com",
            "a\\b@contoso.com",
            "x@../y",
            '"a b"@c.com',
        ]
    ],
    *[
        (
            ["mailbox", "add", "q@contoso.com", "--queue", "Q", "--profile", "exchange", "--track", v],
            "--track",
        )
        for v in ["-1", "5", "abc", INT_OVER]
    ],
    (["mailbox", "add", "bob@contoso.com", "--queue", "Q", "--profile", "exchange"], "bob@contoso.com"),
    *[
        (["mailbox", action, "nobody@contoso.com"], "nobody@contoso.com")
        for action in ["approve", "reject", "test"]
    ],
    # personaloptions
    (["personaloptions", "nobody"], "nobody"),
    *[(["personaloptions", "alice", "--track", v], "invalid choice") for v in ["-1", "5", INT_OVER, "most"]],
    (["personaloptions", "alice", "--auto-create", "account"], "invalid choice"),
    # import_records
    (["import_records", "invoice", "{tmp}/empty.csv"], "invalid choice"),
    (["import_records", "contact", "{tmp}/missing.csv"], "missing.csv"),
    (["import_records", "contact", "{tmp}/dir.csv"], "dir.csv"),
    (["import_records", "contact", "{tmp}/garbage.csv"], "UTF-8"),
    (["import_records", "contact", "{tmp}/empty.csv"], "header"),
    # ingest, explain, scan_mailbox
    (["ingest", "--mailbox", "nobody@contoso.com", "--folder", "inbox", "{tmp}/mail"], "nobody@contoso.com"),
    (
        ["ingest", "--mailbox", "alice@contoso.com", "--folder", "outbox", "{tmp}/mail"],
        "use inbox, sentitems or the path of a folder",
    ),
    (["ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", "{tmp}/nowhere"], "no such file"),
    (
        ["ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", "{tmp}/mail", "--regarding", "x:y"],
        "--regarding",
    ),
    (
        [
            "ingest",
            "--mailbox",
            "alice@contoso.com",
            "--folder",
            "inbox",
            "{tmp}/mail",
            "--regarding",
            "contact:Nobody",
        ],
        "Nobody",
    ),
    (
        ["explain", "--mailbox", "nobody@contoso.com", "--folder", "inbox", "{tmp}/empty.mbox"],
        "nobody@contoso.com",
    ),
    (["explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", "{tmp}/empty.mbox"], "no message"),
    (["scan_mailbox", "nobody@contoso.com"], "nobody@contoso.com"),
    (["scan_mailbox", "alice@contoso.com", "--folder", "drafts"], "invalid choice"),
    # generate_load
    *[
        (["generate_load", f"--{name}", "-1"], f"--{name}")
        for name in ["mailboxes", "records", "decisions", "days"]
    ],
    (["generate_load", "--days", HUGE], "--days"),
    (["generate_load", "--decisions", "1", "--days", "1000000000"], "--days"),
    (["generate_load", "--batch", "0"], "--batch"),
    (["generate_load", "--records", "1", "--until", "someday"], "--until"),
    (["generate_load", "--mailboxes", "1", "--profile", "nosuch"], "nosuch"),
    (["generate_load", "--mailboxes", "1", "--track", "9"], "invalid choice"),
    (["generate_load", "--mailboxes", "lots"], "invalid int value"),
    (["generate_load", "--records", "1", "--addresses-from", "{tmp}/missing.txt"], "--addresses-from"),
    # the long-running commands refuse before they start anything
    *[
        (["exchange_simulator", "--data", "{tmp}/mail", "--port", v], "--port")
        for v in ["-1", "65536", INT_OVER]
    ],
    (["exchange_simulator", "--data", "{tmp}/nowhere"], "not a directory"),
    (["exchange_simulator", "--data", "{tmp}/mail", "--credential", "nocolon"], "NAME:SECRET"),
    (["exchange_simulator", "--data", "{tmp}/mail", "--fault", "earthquake"], "--fault"),
    *[
        (["runall", f"--{name}", v], f"--{name}")
        for name in ["port", "simulator-port", "redis-port"]
        for v in ["0", "-1", "65536"]
    ],
    *[(["runall", "--workers", v], "--workers") for v in ["0", "-1"]],
    (["load_demo", "--simulator-url", "https://127.0.0.1:1", "--ca-file", "{tmp}/nowhere.pem"], "--ca-file"),
    (
        [
            "load_demo",
            "--simulator-url",
            "https://127.0.0.1:1",
            "--ca-file",
            "{tmp}/empty.csv",
            "--demo-dir",
            "{tmp}",
        ],
        "--demo-dir",
    ),
    (["rotate_encryption_key", "extra"], "unrecognized arguments"),
    (["health", "--verbose-json"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("args", "message"), CLI_CASES, ids=[" ".join(a)[:80] for a, _ in CLI_CASES])
def test_a_command_refuses_bad_input_with_a_clear_message_and_changes_nothing(
    args: list[str], message: str, world: dict[str, Any], cmd: Cmd
) -> None:
    argv = [a.replace("{tmp}", str(world["tmp"])) for a in args]
    before = state()

    with pytest.raises(CommandError) as refused:
        cmd(*argv)

    assert message in str(refused.value)
    assert state() == before


def test_the_django_admin_refuses_a_mailbox_address_that_is_no_email_address(
    world: dict[str, Any], client: Client
) -> None:
    client.force_login(User.objects.create_superuser("root", "root@contoso.com", "pw-root-123"))
    alice = world["alice"]
    before = state()

    for address in ["a/../../x@contoso.com", "/etc@contoso.com", "not an address"]:
        response = client.post(
            f"/admin/tracking/mailbox/{alice.pk}/change/",
            {
                "email_address": address,
                "user": alice.user_id,
                "profile": alice.profile_id,
                "incoming_method": alice.incoming_method,
                "approval": alice.approval,
                "incoming_status": alice.incoming_status,
                "transient_failure_count": 0,
            },
        )
        assert response.status_code == 403  # the Django admin is read-only (tests/test_admin_readonly.py)
    assert state() == before


ONE_MESSAGE = (
    b"From x@y Mon Jan  1 00:00:00 2024\nMessage-ID: <outside@example.net>\n"
    b"From: a@example.net\nTo: b@example.net\nSubject: outside\n\nhi\n"
)


@pytest.mark.parametrize("how", ["dot-dot", "absolute", "symlink"])
def test_a_local_profile_never_reads_outside_its_folder(tmp_path: Path, db: None, how: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "x@y.example"
    root.mkdir()
    (outside / "inbox.mbox").parent.mkdir()
    (outside / "inbox.mbox").write_bytes(ONE_MESSAGE)
    if how == "symlink":
        address = "link@contoso.com"
        (root / address).symlink_to(outside)
    else:
        # stored before addresses were validated: the source must still not follow it out of the folder
        address = "a/../../x@y.example" if how == "dot-dot" else str(outside)
    profile = check_add_profile(ProfileValues("loc", "local", endpoint=str(root)), actor_label="test")
    queue = Queue.objects.create(name="q", email="q@contoso.com")
    mailbox = Mailbox.objects.create(email_address=address, profile=profile, queue=queue, approval="approved")

    ok, message = run_test_and_enable(mailbox.pk)
    with pytest.raises(SourceError) as refused:
        scan_folder(mailbox.pk, "inbox")

    assert not ok and ("outside the profile's folder" in message or "not an email address" in message)
    assert refused.value.permanent
    assert not Decision.objects.exists()


def test_a_csv_row_with_a_nul_byte_is_rejected_alone(world: dict[str, Any], cmd: Cmd) -> None:
    """A NUL inside a CSV cell is a rejected row (PostgreSQL cannot store it), not a crash mid-import."""
    result = cmd("import_records", "contact", str(world["tmp"] / "nul.csv"))

    assert "created 1, updated 0, rejected 1" in result.out
    assert result.err.startswith("line 2: rejected:") and "NUL" in result.err
    assert CrmRecord.objects.filter(email1="jane3@example.net").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orgsettings", "set", POLL, INT_OVER], POLL),
        (["orgsettings", "set", "NoSuchSetting", "1"], "NoSuchSetting"),
        (["orgsettings", "set", "HashFilterKeywords", "(["], "not a valid regular expression"),
        (["mailbox", "add", "a/../../x@y.example", "--queue", "Q", "--profile", "p"], "not an email address"),
    ],
)
def test_a_refusing_command_exits_non_zero_with_one_line_on_stderr(
    args: list[str], message: str, tmp_path: Path
) -> None:
    """The real process: these are refused before the database is opened, so an empty one will do."""
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}"}
    done = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr


# ---------------------------------------------------------------------------------------------
# Web forms: (who, url, posted data, status, what the page says)
# ---------------------------------------------------------------------------------------------


def orgsetting(name: str, value: str) -> dict[str, str]:
    return {"setting": name, name: value}


WebCase = tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]], int, str]
WEB_CASES: list[WebCase] = [
    # System Settings: out of range, wrong types, invalid regexes, NUL, unknown names
    *[
        ("admin", "/settings/", lambda w, v=v: orgsetting(POLL, v), 400, POLL)
        for v in ["-1", "0", "1441", INT_OVER, HUGE, "abc", "1.5", ""]
    ],
    *[
        (
            "admin",
            "/settings/",
            lambda w, v=v: orgsetting("TrackingTokenIdBase", v),
            400,
            "TrackingTokenIdBase",
        )
        for v in ["-1", INT_OVER]
    ],
    *[
        ("admin", "/settings/", lambda w, v=v: orgsetting("HashFilterKeywords", v), 400, "HashFilterKeywords")
        for v in ["([", "(?P<x", "*", "a{2,1}", "\\"]
    ],
    ("admin", "/settings/", lambda w: orgsetting("TrackingPrefix", "CR\x00M"), 400, "TrackingPrefix"),
    ("admin", "/settings/", lambda w: orgsetting("HashFilterKeywords", "a\x00"), 400, "HashFilterKeywords"),
    (
        "admin",
        "/settings/",
        lambda w: {**orgsetting(POLL, "10"), **orgsetting("HashMaxCount", "0")},
        400,
        "HashMaxCount",
    ),
    ("admin", "/settings/", lambda w: orgsetting("NoSuchSetting", "1"), 302, ""),
    # server profiles
    *[
        (
            "admin",
            "/profiles/new/",
            lambda w, v=v: {
                "name": "p2",
                "kind": "local",
                "endpoint": str(w["tmp"]),
                "auth_method": "none",
                "max_concurrent_connections": v,
            },
            400,
            "max_concurrent_connections",
        )
        for v in ["-1", "0", "301", INT_OVER, HUGE, "abc"]
    ],
    (
        "admin",
        "/profiles/new/",
        lambda w: {"name": "p2", "kind": "pop3", "auth_method": "none", "max_concurrent_connections": "1"},
        400,
        "kind",
    ),
    (
        "admin",
        "/profiles/new/",
        lambda w: {
            "name": "p\x00",
            "kind": "local",
            "endpoint": str(w["tmp"]),
            "auth_method": "none",
            "max_concurrent_connections": "1",
        },
        400,
        "name",
    ),
    (
        "admin",
        "/profiles/new/",
        lambda w: {
            "name": "p2",
            "kind": "local",
            "endpoint": str(w["tmp"]),
            "auth_method": "none",
            "max_concurrent_connections": "1",
            "process_emails_received_after": "yesterday",
        },
        400,
        "process_emails_received_after",
    ),
    ("admin", "/profiles/999999/", lambda w: {"name": "p2"}, 404, ""),
    # Personal Options
    *[
        (
            "alice",
            "/me/options/",
            lambda w, v=v: {"tab": "general", "time_zone": "UTC", "language": "en", "rows_per_page": v},
            400,
            "rows_per_page",
        )
        for v in ["-1", "0", INT_OVER, HUGE, "abc"]
    ],
    (
        "alice",
        "/me/options/",
        lambda w: {
            "tab": "general",
            "time_zone": "Mars/Olympus_Mons",
            "language": "en",
            "rows_per_page": "50",
        },
        400,
        "time_zone",
    ),
    (
        "alice",
        "/me/options/",
        lambda w: {"tab": "general", "time_zone": "UTC", "language": "xx", "rows_per_page": "50"},
        400,
        "language",
    ),
    *[
        ("alice", "/me/options/", lambda w, v=v: {"tab": "email", "track": v}, 400, "track")
        for v in ["-1", "5", INT_OVER, "abc"]
    ],
    (
        "alice",
        "/me/folder-rules/",
        lambda w: {"folder": "Inbox/Projects", "regarding": "999999"},
        400,
        "regarding",
    ),
    ("alice", "/me/folder-rules/", lambda w: {"folder": "Inbox/Pro\x00jects"}, 400, "folder"),
    ("alice", "/me/folder-rules/", lambda w: {"folder": ""}, 400, "folder"),
    # the decision log and Explain
    ("alice", "/decisions/{bobs_decision}/track/", lambda w: {"regarding": str(w["contact"].pk)}, 404, ""),
    ("admin", "/decisions/{bobs_decision}/track/", lambda w: {"regarding": "999999"}, 400, "regarding"),
    ("admin", "/decisions/{bobs_decision}/track/", lambda w: {"regarding": "abc"}, 400, "regarding"),
    (
        "alice",
        "/explain/",
        lambda w: {"mailbox": str(w["bob"].pk), "folder": "inbox", "raw": "From: x@y.z\n\nhi"},
        404,
        "",
    ),
    (
        "admin",
        "/explain/",
        lambda w: {"mailbox": str(w["alice"].pk), "folder": "outbox", "raw": "From: x@y.z\n\nhi"},
        400,
        "folder",
    ),
    (
        "admin",
        "/explain/",
        lambda w: {"mailbox": "abc", "folder": "inbox", "raw": "From: x@y.z\n\nhi"},
        404,
        "",
    ),
    # the CRM directory and exclusions
    (
        "admin",
        "/directory/import/",
        lambda w: {"kind": "invoice", "file": (w["tmp"] / "empty.csv").open("rb")},
        400,
        "kind",
    ),
    (
        "admin",
        "/directory/import/",
        lambda w: {"kind": "contact", "file": (w["tmp"] / "garbage.csv").open("rb")},
        400,
        "file",
    ),
    ("alice", "/exclusions/", lambda w: {"scope": "personal", "pattern": "not an address"}, 400, "pattern"),
    ("alice", "/exclusions/", lambda w: {"scope": "personal", "pattern": "@exa\x00mple.com"}, 400, "pattern"),
    ("alice", "/exclusions/{bobs_exclusion}/delete/", lambda w: {}, 404, ""),
    # mailbox actions
    (
        "admin",
        "/mailboxes/{alice}/start-date/",
        lambda w: {"process_emails_received_after": "not a date"},
        400,
        "process_emails_received_after",
    ),
    (
        "admin",
        "/mailboxes/{alice}/start-date/",
        lambda w: {"process_emails_received_after": "99999-01-01T00:00"},
        400,
        "process_emails_received_after",
    ),
    (
        "admin",
        "/mailboxes/{alice}/reset-sync/",
        lambda w: {"folder": "drafts", "confirm": "on"},
        400,
        "folder",
    ),
    # a page that only reads refuses every POST, whoever owns the id (GET: 404, tests/test_web_urlconf.py)
    ("alice", "/mailboxes/{bob}/", lambda w: {}, 405, ""),
    ("admin", "/mailboxes/999999/approve/", lambda w: {}, 404, ""),
]


@pytest.mark.parametrize(
    ("who", "url", "data", "status", "message"),
    WEB_CASES,
    ids=[f"{c[0]} {c[1]} {i}" for i, c in enumerate(WEB_CASES)],
)
def test_a_form_refuses_bad_input_with_a_clear_message_and_changes_nothing(
    who: str,
    url: str,
    data: Callable[[dict[str, Any]], dict[str, Any]],
    status: int,
    message: str,
    world: dict[str, Any],
    admin: User,
    client: Client,
) -> None:
    user = admin if who == "admin" else world[who].user
    client.force_login(user)
    PersonalOptions.objects.of(user)  # pages create a user's options row when they first read it
    path = url.format(**{k: getattr(v, "pk", v) for k, v in world.items()})
    before = state()

    response = client.post(path, data(world))

    # 400: the form again, with its errors
    assert response.status_code == status
    if message:
        assert message in refused_fields(response)
    assert state() == before


def refused_fields(response: Any) -> set[str]:
    """The fields the page shows an error for: a Django form's, or a setting row's on System Settings."""
    fields: set[str] = set()
    for context in response.context:
        for value in context.flatten().values():
            form = getattr(value, "form", value)  # a FilterSet holds its form
            if isinstance(form, forms.BaseForm):
                fields |= {f or "__all__" for f, errs in form.errors.items() if errs}
        for section in context.get("sections") or []:
            fields |= {row.spec.name for row in section.rows if row.error}
    return fields


# ---------------------------------------------------------------------------------------------
# Forms and filters read from the query string: (who, url, status, the field refused)
# ---------------------------------------------------------------------------------------------

GET_CASES: list[tuple[str, str, int, str]] = [
    *[
        ("admin", f"/what-if/?mailbox={{alice}}&n={n}&change=track&track=0", 400, "n")
        for n in ["0", "-1", INT_OVER, HUGE, "abc"]
    ],
    ("admin", "/what-if/?mailbox={alice}&n=10&change=track&track=9", 400, "track"),
    ("admin", "/what-if/?mailbox={alice}&n=10&change=setting&setting=NoSuchSetting&value=1", 400, "setting"),
    (
        "admin",
        "/what-if/?mailbox={alice}&n=10&change=setting&setting=HashFilterKeywords&value=([",
        400,
        "value",
    ),
    (
        "admin",
        f"/what-if/?mailbox={{alice}}&n=10&change=setting&setting=HashMaxCount&value={INT_OVER}",
        400,
        "value",
    ),
    (
        "admin",
        "/what-if/?mailbox={alice}&n=10&change=setting&setting=TrackingPrefix&value=A%00",
        400,
        "value",
    ),
    ("alice", "/what-if/?mailbox={bob}&n=10&change=track&track=0", 404, ""),
    ("admin", "/what-if/?mailbox=999999&n=10&change=track&track=0", 404, ""),
    ("admin", "/decisions/?mailbox=999999", 200, "mailbox"),
    ("admin", "/decisions/?mailbox=abc", 200, "mailbox"),
    ("admin", "/decisions/?outcome=exploded", 200, "outcome"),
    ("admin", "/decisions/?received_from=2026-13-45", 200, "received_from"),
    ("admin", "/decisions/?q=%00", 200, "q"),
    ("admin", f"/decisions/?after={HUGE}", 200, ""),
    ("admin", f"/decisions/?before={INT_OVER}", 200, ""),
    ("alice", "/decisions/?mailbox={bob}", 200, "mailbox"),
    ("admin", "/mailboxes/?q=%00", 200, "q"),
    ("admin", "/mailboxes/?status=exploded&profile=abc", 200, "status"),
    ("admin", f"/mailboxes/?page={HUGE}", 200, ""),
    ("admin", "/mailboxes/?page=-1", 200, ""),
    ("admin", "/directory/?q=%00", 200, ""),
    ("admin", f"/directory/?after={HUGE}", 200, ""),
    ("admin", f"/settings/changes/?before={HUGE}", 200, ""),
    ("admin", "/settings/changes/?setting=%00", 200, ""),
    ("admin", "/decisions/{bobs_decision}/?record_q=%00", 200, ""),
]


@pytest.mark.parametrize(
    ("who", "url", "status", "field"), GET_CASES, ids=[f"{c[0]} {c[1]}" for c in GET_CASES]
)
def test_a_page_refuses_bad_query_parameters_and_changes_nothing(
    who: str, url: str, status: int, field: str, world: dict[str, Any], admin: User, client: Client
) -> None:
    user = admin if who == "admin" else world[who].user
    client.force_login(user)
    PersonalOptions.objects.of(user)
    path = url.format(**{k: getattr(v, "pk", v) for k, v in world.items()})
    before = state()

    response = client.get(path)

    # 400: a form's errors (What-if); 200: a list shown with its filters' errors
    assert response.status_code == status
    if field:
        assert field in refused_fields(response)
    assert state() == before
