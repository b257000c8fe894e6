"""The main journeys in a real browser (Playwright + Debian Chromium, headless) against live_server.

Each role signs in through the /login/ form. Screenshots for the README are written to build/screenshots/.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from tests.conftest import run_command
from tracking.actions import (
    ProfileValues,
    check_add_mailbox,
    check_add_profile,
    do_add_exclusion,
    do_record_test_result,
)
from tracking.choices import ErrorKind
from tracking.models import (
    AuditEvent,
    CrmRecord,
    Decision,
    EmailServerProfile,
    Mailbox,
    PersonalOptions,
    TrackedEmail,
)

playwright_sync = pytest.importorskip("playwright.sync_api")

# Playwright's sync API runs an event loop in this thread; the live server's ORM calls are in other threads,
# but the test's own ORM calls between page actions would otherwise be refused as "async unsafe".
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "build" / "screenshots"
PASSWORDS = {"ada": "pw-ada-123", "audrey": "pw-audrey-123", "alice": "pw-alice-123", "bob": "pw-bob-123"}
TIMEOUT_MS = 10_000
MESSAGES = 14

if not Path(CHROMIUM).exists():  # pragma: no cover
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


# -- browser ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=live_server.url, accept_downloads=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label(re.compile("user ?name", re.I)).fill(username)
    page.get_by_label(re.compile("password", re.I)).fill(PASSWORDS[username])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/login/" not in page.url, f"{username} could not sign in"


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def post_forms(page) -> list[str]:
    """The action of every <form method=post> on the page (resolved to a path)."""
    return page.eval_on_selector_all(
        "form",
        """forms => forms
            .filter(f => (f.getAttribute('method') || '').toLowerCase() === 'post')
            .map(f => new URL(f.action, location.href).pathname
                      + '|' + ((f.querySelector('[name=scope]') || {}).value || ''))""",
    )


# -- data ------------------------------------------------------------------------------------------------


def passwords_for(*users: User) -> None:
    for user in users:
        user.set_password(PASSWORDS[user.username])
        user.save(update_fields=["password"])


def write_eml(path: Path, *, sender: str, to: str, subject: str, when, message_id: str) -> Path:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id
    msg.set_content(f"{subject}\n\nRegards")
    path.write_bytes(bytes(msg))
    return path


@pytest.fixture
def people(transactional_db, admin, auditor, alice, bob) -> dict[str, object]:
    alice_user = alice.user
    bob_user = bob.user
    passwords_for(admin, auditor, alice_user, bob_user)
    return {"admin": admin, "auditor": auditor, "alice": alice, "bob": bob}


@pytest.fixture
def decisions(people, tmp_path) -> list[Decision]:
    """A handful of ingested messages in alice's inbox, decided over the last ten days."""
    run_command("personaloptions", "alice", "--track", "0")
    do_add_exclusion("@newsletter.example", user=None)
    now = timezone.now()
    senders = ["carla@fabrikam.example", "dan@northwind.example", "noreply@newsletter.example"]
    paths = [
        write_eml(
            tmp_path / f"m{i}.eml",
            sender=senders[i % len(senders)],
            to="alice@contoso.com",
            subject=f"Quarterly numbers {i}" if i % 2 else f"Lunch on day {i}",
            when=now - timedelta(days=i % 10, hours=i),
            message_id=f"<browser-{i}@fabrikam.example>",
        )
        for i in range(MESSAGES)
    ]
    run_command("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", *map(str, paths))
    found = list(Decision.objects.order_by("id"))
    assert len(found) == MESSAGES
    for i, decision in enumerate(found):
        Decision.objects.filter(pk=decision.pk).update(decided_at=now - timedelta(days=i % 10, hours=i))
    return found


@pytest.fixture
def local_mailbox(people, tmp_path) -> Mailbox:
    """carol@contoso.com on a `local` profile, waiting for approval; her inbox is a small mbox."""
    root = tmp_path / "mail"
    (root / "carol@contoso.com").mkdir(parents=True)
    (root / "carol@contoso.com" / "inbox.mbox").write_text("")
    profile: EmailServerProfile = check_add_profile(
        ProfileValues("local folders", "local", endpoint=str(root))
    )
    return check_add_mailbox(
        "carol@contoso.com", profile_name=profile.name, username="carol", create_user=True, approve=False
    )


@pytest.fixture
def clean_redis():
    import django_rq

    from tracking.jobs import QUEUE

    connection = django_rq.get_connection(QUEUE)
    connection.flushdb()
    yield connection
    connection.flushdb()


def burst() -> None:
    import django_rq

    from tracking.jobqueues import WORKER_QUEUES
    from tracking.workers import SimpleWorker

    queues = [django_rq.get_queue(name) for name in WORKER_QUEUES]
    SimpleWorker(queues, connection=queues[0].connection).work(burst=True)


# -- admin -----------------------------------------------------------------------------------------------


def test_it_lets_an_admin_approve_test_and_enable_a_mailbox_and_change_a_setting(
    page, people, decisions, local_mailbox, clean_redis
):
    bob = people["bob"]
    do_record_test_result(
        bob,
        ok=False,
        message="the server refused the credentials (401 Unauthorized)",
        kind=ErrorKind.CREDENTIALS,
        now=timezone.now(),
    )
    sign_in(page, "ada")

    # the dashboard, with mailboxes, decisions over several days and an alert
    page.goto("/dashboard/")
    page.get_by_role("heading", name=re.compile("Dashboard", re.I)).first.wait_for()
    assert page.locator("svg").count() >= 1, "no chart on the dashboard"
    assert "401" in page.content() or "credentials" in page.content()
    screenshot(page, "dashboard.png")

    # a pending mailbox: approve it
    page.goto("/mailboxes/")
    page.get_by_role("link", name="carol@contoso.com").first.click()
    page.wait_for_url(f"**/mailboxes/{local_mailbox.pk}/")
    page.get_by_role("button", name="Approve email").click()
    page.wait_for_load_state()
    assert page.get_by_text("Approved the email address").count() == 1
    local_mailbox.refresh_from_db()
    assert local_mailbox.approval == "approved"

    # Test & Enable: queued, run by an in-process worker, the result shown on the page
    page.get_by_role("button", name="Test & Enable").click()
    page.wait_for_load_state()
    assert page.get_by_text("Test & Enable queued for carol@contoso.com").count() >= 1
    burst()
    page.reload()
    result = page.locator(".test-result")
    result.wait_for()
    assert "connected" in result.inner_text()
    local_mailbox.refresh_from_db()
    assert local_mailbox.enabled
    assert local_mailbox.incoming_status == "success"
    screenshot(page, "mailbox.png")

    # an org setting: AutoTrackSentFolderItems off → saved → listed in the changes
    page.goto("/settings/")
    box = page.locator("#id_AutoTrackSentFolderItems")
    was = box.is_checked()
    box.set_checked(not was)
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_load_state()
    assert page.get_by_text(re.compile("Saved 1 change")).count() == 1
    screenshot(page, "org-settings.png")
    page.goto("/settings/changes/")
    row = page.locator("table tr", has_text="AutoTrackSentFolderItems")
    assert row.count() == 1
    assert "ada" in row.inner_text()
    assert (
        AuditEvent.objects.filter(action="orgsetting_changed", target="AutoTrackSentFolderItems").count() == 1
    )


# -- user ------------------------------------------------------------------------------------------------


def test_it_lets_a_user_change_their_track_option_and_nobody_elses(page, people):
    alice, bob = people["alice"], people["bob"]
    sign_in(page, "alice")

    page.goto("/me/options/?tab=email")
    option = page.get_by_label("Email messages from SyncAdmin Leads, Contacts, and Accounts")
    option.check()
    screenshot(page, "personal-options.png")
    page.get_by_role("button", name="Save").first.click()
    page.wait_for_load_state()
    assert page.get_by_text("Your personal options are saved.").count() == 1
    page.goto("/me/options/?tab=email")
    assert page.get_by_label("Email messages from SyncAdmin Leads, Contacts, and Accounts").is_checked()
    assert PersonalOptions.objects.get(user=alice.user).track == 2
    assert PersonalOptions.objects.get(user=bob.user).track == 1

    # the options page is alice's alone: her name, never bob's, and no id in the URL to change
    assert "alice" in page.locator("header").inner_text()
    assert "bob" not in page.content()

    # there is no URL to another user's options: an id in the query is ignored
    page.goto(f"/me/options/?tab=email&user={bob.user.pk}&user_id={bob.user.pk}")
    assert page.get_by_label("Email messages from SyncAdmin Leads, Contacts, and Accounts").is_checked()
    assert "bob" not in page.content()

    # bob's mailbox page is a 404 for her
    response = page.goto(f"/mailboxes/{bob.pk}/")
    assert response is not None and response.status == 404
    response = page.goto(f"/mailboxes/{alice.pk}/")
    assert response is not None and response.status == 200


# -- auditor ---------------------------------------------------------------------------------------------

EDIT_BUTTONS = re.compile(r"^\s*(Approve|Test|Scan|Disable|Reset|Save)", re.I)


def test_it_lets_an_auditor_read_filter_and_export_but_change_nothing(page, people, decisions, tmp_path):
    sign_in(page, "audrey")
    quarterly = [d for d in decisions if "Quarterly" in d.subject]

    # filter the decision log by a subject search
    page.goto("/decisions/")
    page.get_by_role("table").first.wait_for()
    search = page.locator("main input[name=q]")  # main: the navigation has a search box too
    search.fill("Quarterly")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    page.wait_for_function("() => !document.body.innerText.includes('Lunch on day')")
    rows = page.locator("table tbody tr")
    assert rows.count() == len(quarterly)
    screenshot(page, "decision-log.png")

    # the export of the current filter
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("CSV", re.I)).first.click()
    download = info.value
    target = tmp_path / "export.csv"
    download.save_as(target)
    exported = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    body = exported[1:]
    assert len(body) == len(quarterly), exported
    assert all(any("Quarterly" in cell for cell in row) for row in body)

    # a decision's trace
    page.goto("/decisions/?q=Quarterly")
    page.locator("table tbody tr a").first.click()
    page.wait_for_url(re.compile(r"/decisions/\d+/"))
    trace = page.locator("ol.trace li")
    assert trace.count() >= 1
    screenshot(page, "decision-trace.png")

    # no edit controls anywhere in the nav (and on the pages one click further for admins' objects)
    nav_links = page.eval_on_selector_all(
        "header a[href], nav a[href]",
        "links => links.map(a => new URL(a.href).pathname + new URL(a.href).search)",
    )
    alice = people["alice"]
    pages = sorted(
        set(nav_links)
        | {
            f"/mailboxes/{alice.pk}/",
            f"/decisions/{decisions[0].pk}/",
            "/settings/?tab=orgdb",
            "/settings/changes/",
            f"/profiles/{alice.profile_id}/",
            "/me/options/?tab=email",
            "/me/options/?tab=general",
        }
    )
    allowed = {"/logout/|", "/me/options/|", "/exclusions/|personal", "/i18n/setlang/|"}
    problems = []
    for url in pages:
        if url.startswith(("/logout", "/admin")):
            continue
        response = page.goto(url)
        assert response is not None
        if response.status != 200:
            problems.append(f"{url}: HTTP {response.status}")
            continue
        for action in post_forms(page):
            if action not in allowed:
                problems.append(f"{url}: POST form to {action}")
        if not url.startswith(("/me/", "/exclusions/")):
            here = url.split("?")[0]
            for button in page.locator("button, input[type=submit], a.button").all():
                label = (button.inner_text() or button.get_attribute("value") or "").strip()
                href = button.get_attribute("href")
                if href is not None and href.split("?")[0] == here:
                    continue  # a link back to this page, e.g. the filter's "Reset"
                if EDIT_BUTTONS.match(label):
                    problems.append(f"{url}: control {label!r}")
    assert not problems, problems
    assert len(pages) >= 8


# -- screenshots for docs --------------------------------------------------------------------------------


def copy_screenshots_to_docs() -> None:  # pragma: no cover  (run by hand: see the report)
    docs = Path(settings.BASE_DIR) / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for png in SCREENSHOTS.glob("*.png"):
        shutil.copy(png, docs / png.name)


def test_it_lets_the_owner_set_regarding_and_untrack_a_tracked_email(page, people, decisions):
    record = CrmRecord.objects.create(kind="account", name="Fabrikam", email1="carla@fabrikam.example")
    tracked = next(d for d in decisions if d.outcome == "tracked" and d.sender == "carla@fabrikam.example")
    sign_in(page, "alice")
    page.goto(f"/decisions/{tracked.pk}/")
    page.get_by_label("Regarding", exact=True).select_option(str(record.pk))
    page.get_by_role("button", name="Set regarding").click()
    page.wait_for_load_state()
    assert "The email is now regarding" in page.content()
    assert TrackedEmail.objects.get(message_id=tracked.message_id).regarding == record

    page.get_by_role("button", name="Untrack").click()
    page.wait_for_load_state()
    assert "scans will not track it again" in page.content()
    assert "alice, by hand" in page.content()
    assert TrackedEmail.objects.get(message_id=tracked.message_id).untracked_at is not None
    # the decision log's current decision for the message is the untrack
    page.goto("/decisions/?outcome=not_tracked&reason=untracked")
    assert tracked.subject in page.content()
