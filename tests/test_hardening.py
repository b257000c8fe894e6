"""Issue 17, hardening round 2: one test per numbered item, each reproducing the defect it fixes."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import CommandError
from django.test import Client, override_settings

from tests.conftest import raw as raw_message
from tests.conftest import run_command, user_of
from tests.rq_helpers import burst
from tests.test_security import BASE_DIR, production_env
from tracking.actions import (
    ActionError,
    check_add_folder_rule,
    do_add_exclusion,
    do_set_personal_options,
)
from tracking.messages import ADDRESSES_PER_HEADER_MAX, ParsedMessage, ParseFailure, RawItem, parse_message
from tracking.models import (
    CrmRecord,
    Decision,
    EmailServerProfile,
    ExclusionEntry,
    FolderTrackingRule,
    ImportRun,
    Mailbox,
    OrgSettings,
)
from tracking.sources.graph import message_from_graph
from tracking.sources.local import LocalSource

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


# -- 5. ids are parsed strictly ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/decisions/?before=%C2%B2",
        "/decisions/?after=%C2%B2",
        "/decisions/?mailbox=%C2%B2",
        "/directory/?after=%C2%B2",
        "/settings/changes/?before=%C2%B2",
        "/what-if/?mailbox=%C2%B2",
        "/what-if/?mailbox=%EF%BC%91",  # a fullwidth digit one
        "/decisions/?before=99999999999999999999999999",
        "/directory/?after=99999999999999999999999999",
    ],
)
def test_odd_ids_are_no_server_error(url: str, admin: User, alice: Mailbox) -> None:
    response = signed_in(admin).get(url)
    assert response.status_code in (200, 400, 404), response.status_code


def test_odd_mailbox_id_in_explain_post_is_no_server_error(admin: User, alice: Mailbox) -> None:
    response = signed_in(admin).post(
        "/explain/", {"mailbox": "²", "folder": "inbox", "message": "From: a@b.c\r\n\r\nx"}
    )
    assert response.status_code in (200, 400, 404), response.status_code


# -- 1. request bodies are capped before anything reads them -----------------------------------------------


def _multipart(size: int) -> tuple[bytes, str]:
    boundary = "hardeningboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + b"x" * size + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


@pytest.mark.parametrize("url", ["/login/", "/explain/"])
def test_oversized_body_is_refused_unread(url: str, tmp_path: Path, alice: Mailbox) -> None:
    """13 MB (over the default 12) to /login/ anonymously and to /explain/ signed in: 413, no temp file."""
    body, content_type = _multipart(13 * 1024 * 1024)
    client = Client(raise_request_exception=False) if url == "/login/" else signed_in(user_of(alice))
    before = os.stat(tmp_path).st_mtime_ns
    # Without the cap, the file part would be spooled to tmp_path (anything over 1 KB is).
    with override_settings(FILE_UPLOAD_TEMP_DIR=str(tmp_path), FILE_UPLOAD_MAX_MEMORY_SIZE=1024):
        response = client.generic("POST", url, body, content_type=content_type)
    assert response.status_code == 413
    assert "12 MB" in response.content.decode()
    assert list(tmp_path.iterdir()) == [] and os.stat(tmp_path).st_mtime_ns == before  # nothing made there


def test_chunked_body_is_counted(tmp_path: Path, db: None) -> None:
    """A body without Content-Length is read through a counter: 2 MB over a 1 MB cap is a 413.

    (Django parses no multipart body without a Content-Length, so nothing is spooled; a form body
    is read, and that read is what the counter stops.)"""
    body, content_type = b"username=" + b"x" * 2 * 1024 * 1024, "application/x-www-form-urlencoded"
    with override_settings(
        FILE_UPLOAD_TEMP_DIR=str(tmp_path), FILE_UPLOAD_MAX_MEMORY_SIZE=1024, MAX_REQUEST_BYTES=1024 * 1024
    ):
        response = Client(raise_request_exception=False).generic(
            "POST",
            "/login/",
            body,
            content_type=content_type,
            CONTENT_LENGTH="",
            HTTP_TRANSFER_ENCODING="chunked",
        )
    assert response.status_code == 413
    assert list(tmp_path.iterdir()) == []


def test_body_within_the_limit_passes(alice: Mailbox) -> None:
    response = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200


# -- 12. security headers on every page; nothing signed-in is cached ---------------------------------------


def test_security_headers_and_no_store(alice: Mailbox) -> None:
    anonymous = Client().get("/login/")
    assert "default-src 'self'" in anonymous["Content-Security-Policy"]
    assert "script-src 'self'" in anonymous["Content-Security-Policy"]
    assert "camera=()" in anonymous["Permissions-Policy"]
    client = signed_in(user_of(alice))
    for url in ("/mailboxes/", "/decisions/", "/decisions/export.csv", "/me/options/", "/directory/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "no-store" in response["Cache-Control"], url
        assert response["Content-Security-Policy"].startswith("default-src 'self'"), url
        assert "Permissions-Policy" in response, url
    page = client.get("/mailboxes/").content.decode()
    assert "<style" not in page and " style=" not in page and "<script>" not in page  # nothing inline


# -- 9. the encryption key is checked at start-up and by check --deploy ------------------------------------


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**production_env(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("key", ["", "garbage", "l6hVwQ1l0hZNMRqzCUjprJ6Or7i1yOeFPKy_Fn9FwcY=,short"])
def test_bad_encryption_key_is_refused(tmp_path: Path, key: str) -> None:
    started = _manage(tmp_path, "check", "--deploy", SYNCADMIN_ENCRYPTION_KEY=key)
    assert started.returncode != 0
    assert "SYNCADMIN_ENCRYPTION_KEY" in started.stderr and len(started.stderr.splitlines()) == 1
    assert "no issues" not in started.stdout
    # With DEBUG on the process starts (a development key is derived), but check --deploy says it.
    debug = _manage(tmp_path, "check", "--deploy", SYNCADMIN_ENCRYPTION_KEY=key, DEBUG="1")
    assert debug.returncode != 0
    assert "syncadmin.E001" in debug.stderr and "SYNCADMIN_ENCRYPTION_KEY" in debug.stderr


# -- 8. a typed secret never reaches Django's error page ---------------------------------------------------


TYPED_SECRET = "Typed-Secret-4711-zq"


def test_debug_error_page_hides_a_typed_secret(admin: User, exchange_profile: EmailServerProfile) -> None:
    """A key that cannot encrypt fails the save (a 500); with DEBUG on its page must not show the secret."""
    client = signed_in(admin)
    form = {
        "name": "leaky",
        "kind": "exchange_ews",
        "endpoint": "https://mail.example.com/EWS/Exchange.asmx",
        "auth_method": "basic",
        "username": "svc",
        "secret": TYPED_SECRET,
        "max_concurrent_connections": "10",
    }
    with override_settings(DEBUG=True, SYNCADMIN_ENCRYPTION_KEY="garbage"):
        created = client.post("/profiles/new/", form)
        edited = client.post(f"/profiles/{exchange_profile.pk}/", {**form, "name": "exchange"})
    for response in (created, edited):
        assert response.status_code == 500
        page = response.content.decode()
        assert "ImproperlyConfigured" in page  # the debug page, with its frames and POST data
        assert TYPED_SECRET not in page


# -- 2. the CRM import of the documented maximum runs as a job, in bulk -------------------------------------


def _largest_csv() -> bytes:
    """Just under the documented 5 MB: ~200,000 rows (the probe's file had 197,008)."""
    lines = ["name,email"]
    size = len(lines[0]) + 1
    i = 0
    while True:
        line = f"C {i},c{i}@ex.com"
        if size + len(line) + 1 > 5 * 1024 * 1024:
            break
        lines.append(line)
        size += len(line) + 1
        i += 1
    return ("\n".join(lines) + "\n").encode()


def test_import_of_the_largest_file_runs_as_a_job(
    admin: User, django_capture_on_commit_callbacks: Any, tmp_path: Path
) -> None:
    data = _largest_csv()
    rows = data.count(b"\n") - 1
    assert rows > 190_000
    client = signed_in(admin)
    upload = SimpleUploadedFile("contacts.csv", data, content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/directory/import/", {"kind": "contact", "file": upload})
    assert response.status_code == 302  # the request only checks the file and queues it
    run = ImportRun.objects.get()
    assert (run.status, run.rows_total, run.rows_done) == ("queued", rows, 0)
    burst()
    run.refresh_from_db()
    assert (run.status, run.rows_done, run.created, run.updated) == ("succeeded", rows, rows, 0)
    assert run.rejected == [] and run.text == ""
    assert CrmRecord.objects.count() == rows
    page = client.get(response["Location"]).content.decode()
    assert f'<div class="value">{rows:,}</div><div class="label">created</div>' in page
    # The same file again through the CLI: every row is an update, nothing is duplicated.
    path = tmp_path / "contacts.csv"
    path.write_bytes(data)
    out = run_command("import_records", "contact", str(path)).out
    assert out.strip() == f"created 0, updated {rows}, rejected 0"
    assert CrmRecord.objects.count() == rows


# -- 7. a malformed URL or an over-long CSV field: one clear error, no 500 and no traceback ------------------


@pytest.mark.parametrize("field", ["endpoint", "authority"])
def test_malformed_url_is_a_form_error(admin: User, field: str) -> None:
    form = {
        "name": "broken",
        "kind": "exchange_ews",
        "endpoint": "https://mail.example.com/EWS/Exchange.asmx",
        "auth_method": "basic",
        "max_concurrent_connections": "10",
        field: "https://[::1/EWS",
    }
    response = signed_in(admin).post("/profiles/new/", form)
    assert response.status_code in (200, 400)
    assert not EmailServerProfile.objects.exists()


@pytest.mark.parametrize("option", ["--endpoint", "--authority"])
def test_malformed_url_is_one_line_from_the_cli(option: str, db: None) -> None:
    """A CommandError is what manage.py prints as one line (a traceback was a ValueError)."""
    with pytest.raises(CommandError, match=r"EWS URL|https://host URL"):
        run_command("profile", "add", "broken", "--kind", "exchange_ews", option, "https://[::1/EWS")
    assert not EmailServerProfile.objects.exists()


def test_overlong_csv_field_is_one_clear_error(admin: User, tmp_path: Path) -> None:
    text = "name,email\n" + "A" * 140_000 + ",a@example.com\nB,b@example.com\n"
    response = signed_in(admin).post(
        "/directory/import/",
        {"kind": "contact", "file": SimpleUploadedFile("x.csv", text.encode(), content_type="text/csv")},
    )
    assert response.status_code == 400
    assert "longer than 131,072 characters" in response.content.decode()
    path = tmp_path / "x.csv"
    path.write_text(text)
    with pytest.raises(CommandError, match="line 2: a field is longer than 131,072 characters"):
        run_command("import_records", "contact", str(path))
    assert not CrmRecord.objects.exists() and not ImportRun.objects.exists()


# -- 11. the directory's owner filter lists only what the role needs ----------------------------------------


def test_owner_filter_lists_no_stranger_to_a_user(
    alice: Mailbox, bob: Mailbox, admin: User, auditor: User
) -> None:
    CrmRecord.objects.create(kind="contact", name="Dana", email1="dana@fabrikam.com", owner=user_of(bob))
    page = signed_in(user_of(alice)).get("/directory/").content.decode()
    options = page.split('name="owner"')[1].split("</select>")[0]
    assert ">bob<" in options  # owns a record the user sees
    for stranger in ("ada", "audrey", "alice"):
        assert f">{stranger}<" not in options
    readers = (
        signed_in(admin).get("/directory/").content.decode().split('name="owner"')[1].split("</select>")[0]
    )
    assert ">audrey<" in readers and ">bob<" in readers


# -- 6. dates are bounded: 400 / a form error / one line, never a 500 or a traceback ---------------------


def test_edge_dates_are_refused(alice: Mailbox, admin: User, exchange_profile: EmailServerProfile) -> None:
    do_set_personal_options(user_of(alice), time_zone="Europe/Berlin")
    client = signed_in(user_of(alice))
    listing = client.get("/decisions/?received_from=0001-01-01")
    assert listing.status_code == 200 and "1900-01-01 and 2999-12-31" in listing.content.decode()
    export = client.get("/decisions/export.csv?received_from=0001-01-01")
    assert export.status_code == 400 and "1900-01-01" in export.content.decode()
    do_set_personal_options(admin, time_zone="Etc/GMT+12")
    staff = signed_in(admin)
    form = {
        "name": "far",
        "kind": "exchange_ews",
        "endpoint": "https://mail.example.com/EWS/Exchange.asmx",
        "auth_method": "basic",
        "max_concurrent_connections": "10",
        "process_emails_received_after": "9999-12-31T23:59",
    }
    created = staff.post("/profiles/new/", form)
    assert created.status_code in (200, 400) and "1900-01-01 and 2999-12-31" in created.content.decode()
    start = staff.post(
        f"/mailboxes/{alice.pk}/start-date/", {"process_emails_received_after": "9999-12-31T23:59"}
    )
    assert start.status_code in (200, 302, 400)
    alice.refresh_from_db()
    assert alice.process_emails_received_after is None
    with pytest.raises(CommandError, match="1900-01-01 and 2999-12-31"):
        run_command(
            "profile", "add", "far", "--kind", "exchange_ews", "--process-after", "9999-12-31T23:59-12:00"
        )
    assert EmailServerProfile.objects.count() == 1


# -- 14. a killed ingest does not stay "running" ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_killed_ingest_run_is_closed(tmp_path: Path, exchange_profile: EmailServerProfile) -> None:
    from tests.conftest import make_mailbox
    from tests.rq_helpers import BackgroundProcess
    from tracking.choices import ScanStatus
    from tracking.models import ScanRun

    make_mailbox("alice@contoso.com", "alice", exchange_profile)
    admin_user = User.objects.create_superuser("root", "root@contoso.com", "pw")
    fifo = tmp_path / "incoming.eml"
    os.mkfifo(fifo)  # the ingest blocks reading it, with its run started
    ingest = BackgroundProcess(
        "ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(fifo), log_dir=tmp_path
    )
    try:
        for _ in range(600):
            if ScanRun.objects.filter(status=ScanStatus.RUNNING).exists():
                break
            time.sleep(0.1)
        else:
            raise AssertionError(ingest.output)
    finally:
        ingest.kill()
    ingest.wait(30)
    page = signed_in(admin_user).get("/dashboard/")
    assert page.status_code == 200
    run = ScanRun.objects.get()
    assert run.status == ScanStatus.FAILED and run.error.startswith("interrupted")


# -- 3. what a message may carry is bounded, for Explain and scans alike ------------------------------------


def _many_to(count: int) -> bytes:
    """A message whose To header names `count` distinct addresses (the probe: 465,146 in 10 MB)."""
    to = ", ".join(f"u{i}@ex.co" for i in range(count))
    return (
        f"From: ann@example.net\r\nTo: {to}\r\nSubject: many\r\nMessage-ID: <many-{count}@example.net>\r\n"
        "Date: Mon, 2 Mar 2026 09:00:00 +0000\r\n\r\nbody\r\n"
    ).encode()


@pytest.mark.parametrize("count", [465_146, ADDRESSES_PER_HEADER_MAX + 1])
def test_explain_refuses_a_message_with_too_many_addresses(alice: Mailbox, count: int) -> None:
    client = signed_in(user_of(alice))
    upload = SimpleUploadedFile("many.eml", _many_to(count), content_type="message/rfc822")
    response = client.post("/explain/", {"mailbox": alice.pk, "folder": "inbox", "eml": upload})
    assert response.status_code == 200
    text = response.content.decode()
    assert "a header may carry at most 1,000" in text
    assert 'class="badge failed"' in text and "(unparseable)" in text  # failed, not a slow success


def test_explain_at_the_address_limit_decides(alice: Mailbox) -> None:
    message = _many_to(ADDRESSES_PER_HEADER_MAX)
    result = parse_message(message)
    assert isinstance(result, ParsedMessage) and len(result.to) == ADDRESSES_PER_HEADER_MAX
    client = signed_in(user_of(alice))
    upload = SimpleUploadedFile("limit.eml", message, content_type="message/rfc822")
    response = client.post("/explain/", {"mailbox": alice.pk, "folder": "inbox", "eml": upload})
    assert response.status_code == 200
    assert "may carry at most" not in response.content.decode()


def test_scans_refuse_too_many_addresses(alice: Mailbox, tmp_path: Path) -> None:
    over = tmp_path / "over.eml"
    over.write_bytes(_many_to(ADDRESSES_PER_HEADER_MAX + 1))
    out = run_command("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(over)).out
    assert "failed/unparseable" in out and "a header may carry at most 1,000" in out
    rows = run_command(
        "ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(over), "--json"
    ).json_lines()
    assert [(r["outcome"], r["reason"]) for r in rows] == [("failed", "unparseable")]
    # Across headers: 800 To + 800 Cc + 800 Bcc is within each header's limit, over the message's.
    spread = parse_message(
        b"From: a@b.c\r\nTo: "
        + b", ".join(b"t%d@x.y" % i for i in range(800))
        + b"\r\nCc: "
        + b", ".join(b"c%d@x.y" % i for i in range(800))
        + b"\r\nBcc: "
        + b", ".join(b"b%d@x.y" % i for i in range(800))
        + b"\r\n\r\n"
    )
    assert isinstance(spread, ParseFailure) and "a message may carry at most 2,000" in spread.error
    # The server-side sources (EWS, Graph) read addresses from fields: the same limit.
    graph = message_from_graph(
        {
            "id": "AAMk1",
            "internetMessageId": "<g@x.y>",
            "toRecipients": [
                {"emailAddress": {"address": f"t{i}@x.y"}} for i in range(ADDRESSES_PER_HEADER_MAX + 1)
            ],
        }
    )
    assert isinstance(graph, ParseFailure) and graph.error.startswith("To: 1,001 addresses")


# -- 4. ingest and local profiles stream files and refuse an over-size message ------------------------------


def _limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


MEMORY_LIMIT = 1024 * 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_ingest_of_dev_zero_ends_in_bounded_memory(exchange_profile: EmailServerProfile) -> None:
    """Was: read /dev/zero whole, growing to 23.5 GB until the kernel killed it."""
    from tests.conftest import make_mailbox
    from tests.rq_helpers import subprocess_env

    make_mailbox("alice@contoso.com", "alice", exchange_profile)
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "ingest",
            "--mailbox",
            "alice@contoso.com",
            "--folder",
            "inbox",
            "/dev/zero",
        ],
        cwd=BASE_DIR,
        env=subprocess_env(SOURCE_MAX_RESPONSE_MB="2"),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited_memory,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        "/dev/zero: the message is larger than 2 MB (SOURCE_MAX_RESPONSE_MB); it was not read"
    )
    assert "failed 1" in done.stdout


@pytest.mark.django_db(transaction=True)
def test_an_mbox_is_streamed_and_an_over_size_message_fails(
    exchange_profile: EmailServerProfile, tmp_path: Path
) -> None:
    """A 300 MB message between two small ones, through a pipe, to an ingest limited to 1 GB of memory."""
    from tests.conftest import make_mailbox
    from tests.rq_helpers import subprocess_env

    make_mailbox("alice@contoso.com", "alice", exchange_profile)
    fifo = tmp_path / "big.mbox"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("wb") as fh:
            fh.write(b"From a\n" + raw_message("<one@x.y>") + b"\nFrom b\n" + raw_message("<big@x.y>"))
            line = b"y" * 1023 + b"\n"
            for _ in range(300 * 1024):
                fh.write(line)
            fh.write(b"\nFrom c\n" + raw_message("<three@x.y>"))

    writer = threading.Thread(target=write)
    writer.start()
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "ingest",
            "--mailbox",
            "alice@contoso.com",
            "--folder",
            "inbox",
            str(fifo),
        ],
        cwd=BASE_DIR,
        env=subprocess_env(SOURCE_MAX_RESPONSE_MB="2"),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limited_memory,
    )
    writer.join(60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        f"{fifo}#1: the message is larger than 2 MB (SOURCE_MAX_RESPONSE_MB); it was not read"
    )
    assert done.stdout.startswith("3 message(s)") and "failed 1" in done.stdout
    assert set(Decision.objects.values_list("message_id", flat=True)) >= {"<one@x.y>", "<three@x.y>"}


@override_settings(SOURCE_MAX_RESPONSE_BYTES=1024 * 1024)
def test_a_local_profile_scan_fails_an_over_size_message(tmp_path: Path) -> None:
    folder = tmp_path / "alice@contoso.com"
    folder.mkdir()
    (folder / "inbox.mbox").write_bytes(
        b"From a\n"
        + raw_message("<one@x.y>")
        + b"\nFrom b\n"
        + raw_message("<big@x.y>")
        + b"z" * (2 * 1024 * 1024)
        + b"\n\nFrom c\n"
        + raw_message("<three@x.y>")
    )
    source = LocalSource(tmp_path, "alice@contoso.com", page_size=2)
    pages = list(source.sync("inbox", ""))
    assert [len(p.items) for p in pages] == [2, 1] and [p.more for p in pages] == [True, False]
    [first, big, third] = [i for p in pages for i in p.items]
    assert isinstance(first, RawItem) and isinstance(third, RawItem)
    assert isinstance(big, ParseFailure) and "larger than 1 MB" in big.error
    assert [p.items for p in source.sync("inbox", pages[-1].state)] == [[]]


# -- 13. validation: exclusions, folder paths, TrackingPrefix, control characters ---------------------------


@pytest.mark.parametrize(
    "pattern",
    ["<a@b.example>", "a@b.example, c@d.example", "a@b.example\x07", "@b.example/../x", "@exa\u202emple.com"],
)
def test_an_exclusion_is_an_address_or_a_domain(alice: Mailbox, admin: User, pattern: str) -> None:
    response = signed_in(admin).post("/exclusions/", {"scope": "org", "pattern": pattern})
    assert response.status_code == 400 and "Enter an email address" in response.content.decode()
    with pytest.raises(ActionError, match="Enter an email address"):
        do_add_exclusion(pattern)  # the action itself refuses, whoever calls it
    assert not ExclusionEntry.objects.exists()


@pytest.mark.parametrize(
    "folder", ["Inbox/../../Sent", "..", "Inbox\\..\\x", "Inbox/A\x07B", "Inbox/\x1b[31mA"]
)
def test_a_folder_path_steps_nowhere_up(alice: Mailbox, folder: str) -> None:
    response = signed_in(user_of(alice)).post("/me/folder-rules/", {"folder": folder})
    assert response.status_code == 400  # the picker offers only the server's folders
    with pytest.raises(
        ActionError, match=r"may not contain “..” or control characters|Only folders under the Inbox"
    ):
        check_add_folder_rule(alice, folder, folder_id="f-x")
    assert not FolderTrackingRule.objects.exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TrackingPrefix", "CR-M", "letters and digits"),
        ("TrackingPrefix", "CRM:", "letters and digits"),
        ("TrackingPrefix", "CRM\u200b", "control character"),
        ("HashFilterKeywords", "^re:\n", "control character"),
        ("HashFilterKeywords", "^\u202ere:", "control character"),
    ],
)
def test_text_settings_refuse_odd_characters(admin: User, name: str, value: str, message: str) -> None:
    before = OrgSettings.load()
    response = signed_in(admin).post("/settings/", {"setting": name, name: value})
    assert response.status_code == 400 and message in response.content.decode()
    with pytest.raises(CommandError, match=message):
        run_command("orgsettings", "set", name, value)
    after = OrgSettings.load()
    assert (after.tracking_prefix, after.hash_filter_keywords) == (
        before.tracking_prefix,
        before.hash_filter_keywords,
    )
    assert run_command("orgsettings", "set", "TrackingPrefix", "Tkt2026").out is not None


# -- 10. Explain and What-if consider only what the user may see --------------------------------------------


def _trace_text(result: Any) -> str:
    return "\n".join(f"{s.check}: {s.result} — {s.detail}" for s in result.trace)


def test_explain_and_what_if_show_a_user_only_what_they_may_see(
    alice: Mailbox, bob: Mailbox, admin: User
) -> None:
    """Was: alice's Explain said bob's email was tracked, and named bob as a party."""
    from tests.conftest import scan
    from tracking.context import scope_of

    do_set_personal_options(user_of(bob), track=0)
    scan(
        bob,
        raw_message("<secret@contoso.com>", frm="carol@contoso.com", to="bob@contoso.com", subject="Deal"),
    )
    same = raw_message(
        "<secret@contoso.com>", frm="carol@contoso.com", to="alice@contoso.com", subject="Deal"
    )
    reply = raw_message(
        "<r1@northwind.example>",
        frm="bob@contoso.com",
        subject="Re: Deal",
        extra="In-Reply-To: <secret@contoso.com>\r\n",
    )
    leaks = ("is already tracked", "is a tracked email", "'bob' <bob@contoso.com>")
    note = scope_of(user_of(alice)).note()
    for user, everything in ((user_of(alice), False), (admin, True)):
        client = signed_in(user)
        texts = []
        for message in (same, reply):
            response = client.post(
                "/explain/", {"mailbox": alice.pk, "folder": "inbox", "raw": message.decode()}
            )
            assert response.status_code == 200
            texts.append(_trace_text(response.context["result"]))
        text = "\n".join(texts)
        assert all((leak in text) is everything for leak in leaks), (user, text)
        assert (note in text) is not everything
        assert texts[0].startswith("scope: limited") is not everything
    # What-if replays alice's reply: for her, without bob's email to correlate to; she is told so.
    do_set_personal_options(user_of(alice), track=0)
    scan(alice, reply)
    for user, everything in ((user_of(alice), False), (admin, True)):
        response = signed_in(user).get(
            "/what-if/", {"mailbox": str(alice.pk), "n": "10", "change": "track", "track": "4"}
        )
        assert response.status_code == 200
        [row] = response.context["report"].rows
        text = _trace_text(row.before)
        assert ("is a tracked email" in text) is everything
        assert ("Only what you may see was considered" in response.content.decode()) is not everything
