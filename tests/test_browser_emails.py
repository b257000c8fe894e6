"""The tracked email page in Chromium (tracking-rules §2): a user goes from the decision log to the email,
reads its body with its inline image, asks for remote images, follows a party to its record and downloads
an attachment; an auditor reads the same page; another user gets 404; on a phone nothing is wider than the
screen. Screenshots go to build/screenshots/ (docs/screenshots/email.png is a copy).

Playwright + Debian Chromium against live_server, like test_browser.py.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import scan
from tracking.actions import do_set_personal_options
from tracking.models import CrmRecord, Decision, Mailbox, TrackedEmail

playwright_sync = pytest.importorskip("playwright.sync_api")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PASSWORDS = {"alice": "pw-alice-123", "audrey": "pw-audrey-123", "bob": "pw-bob-123"}
TIMEOUT_MS = 10_000
SCREENSHOTS = Path(settings.BASE_DIR) / "build" / "screenshots"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAGklEQVR42mNk+M9AEmAc1TCqYVTDqIZRDQMAAJ/RAf8ZeSfbAAAAAElFTkSuQmCC"
)
REMOTE_IMAGE = "https://images.fabrikam.example/banner.png"

if not Path(CHROMIUM).exists():  # pragma: no cover
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def open_tab(browser, live_server, viewport: dict[str, int]):
    context = browser.new_context(viewport=viewport, base_url=live_server.url, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    remote: list[str] = []

    def route(route: object) -> None:
        request = route.request  # type: ignore[attr-defined]
        if request.url.startswith(live_server.url):
            route.continue_()  # type: ignore[attr-defined]
        else:  # never the network: a remote image is answered here, and noted
            remote.append(request.url)
            route.fulfill(status=200, content_type="image/png", body=PNG)  # type: ignore[attr-defined]

    context.route("**/*", route)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    return tab, remote, errors


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORDS[username])
    page.locator("form[action='/login/'] button[type=submit]").click()
    page.wait_for_load_state()
    assert "/login/" not in page.url, f"{username} could not sign in"


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def newsletter() -> bytes:
    png = base64.encodebytes(PNG).decode().replace("\n", "\r\n")
    pdf = base64.encodebytes(b"%PDF-1.4 quote" * 20).decode().replace("\n", "\r\n")
    html = (
        "<p>Hello Alice,</p><p>here is the <b>quote</b> we discussed, with our logo:</p>"
        "<p><img alt='Fabrikam logo' src='cid:logo@fabrikam.example' width='48' height='48'></p>"
        f"<p><img alt='Banner' src='{REMOTE_IMAGE}' width='120' height='30'></p>"
        "<p>Kind regards,<br>Carla</p>"
    )
    return (
        "From: Carla Mendes <carla@fabrikam.example>\r\nTo: alice@contoso.com\r\n"
        "Cc: procurement@fabrikam.example\r\nSubject: Quote for the spring order\r\n"
        "Date: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: <journey@fabrikam.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="M"\r\n\r\n'
        '--M\r\nContent-Type: multipart/related; boundary="R"\r\n\r\n'
        f"--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
        "--R\r\nContent-Type: image/png\r\nContent-ID: <logo@fabrikam.example>\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{png}--R--\r\n"
        '--M\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="quote.pdf"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{pdf}--M--\r\n"
    ).encode()


@pytest.fixture
def tracked(transactional_db, alice: Mailbox, bob: Mailbox, auditor: User) -> Decision:
    for name, user in (("alice", alice.user), ("bob", bob.user), ("audrey", auditor)):
        assert isinstance(user, User)
        user.set_password(PASSWORDS[name])
        user.save(update_fields=["password"])
    assert alice.user is not None
    do_set_personal_options(alice.user, track=0)
    CrmRecord.objects.create(kind="contact", name="Carla Mendes", email1="carla@fabrikam.example")
    (decision,) = scan(alice, newsletter())
    assert decision.tracked_email_id is not None
    return decision


def test_a_user_reads_a_tracked_email_and_follows_it_to_its_records(browser, live_server, tracked):
    page, remote, errors = open_tab(browser, live_server, {"width": 1280, "height": 900})
    sign_in(page, "alice")
    page.goto(reverse("web-decisions"))
    page.locator("a.email-link").first.click()
    page.wait_for_load_state()
    assert page.url.endswith(reverse("web-email", args=[tracked.tracked_email_id]))
    page.get_by_role("heading", name="Quote for the spring order").wait_for()

    frame = page.frame_locator("iframe.email-body")
    assert "here is the quote we discussed" in frame.locator("body").inner_text()
    logo = frame.locator("img[alt='Fabrikam logo']")
    assert logo.evaluate("img => img.complete && img.naturalWidth > 0"), "the cid: image did not load"
    banner = frame.locator("img[alt=Banner]")
    assert banner.get_attribute("src") is None and remote == []
    screenshot(page, "email.png")

    page.get_by_role("link", name="Show remote images").click()
    page.wait_for_load_state()
    assert (
        page.frame_locator("iframe.email-body")
        .locator("img[alt=Banner]")
        .evaluate("img => img.complete && img.naturalWidth > 0")
    )
    assert remote == [REMOTE_IMAGE]

    with page.expect_download() as download:
        page.get_by_role("link", name="quote.pdf").click()
    assert download.value.suggested_filename == "quote.pdf"

    parties = page.locator("table.parties")
    assert re.search(r"From\s+carla@fabrikam.example\s+Carla Mendes", parties.inner_text())
    assert "unresolved" in parties.inner_text()  # procurement@ is in no record
    parties.get_by_role("link", name="Carla Mendes").click()
    page.wait_for_load_state()
    carla = CrmRecord.objects.get(name="Carla Mendes")
    assert page.url.endswith(reverse("web-record", args=["contact", carla.pk]))

    page.goto(reverse("web-decision", args=[tracked.pk]))
    page.get_by_role("link", name="Open the tracked email").click()
    page.wait_for_load_state()
    assert page.url.endswith(reverse("web-email", args=[tracked.tracked_email_id]))
    assert errors == []
    page.context.close()


def test_an_auditor_reads_it_another_user_gets_404_and_a_phone_keeps_it_in_the_screen(
    browser, live_server, tracked
):
    url = reverse("web-email", args=[tracked.tracked_email_id])
    page, _remote, errors = open_tab(browser, live_server, {"width": 1280, "height": 900})
    sign_in(page, "audrey")
    page.goto(url)
    assert "here is the quote" in page.frame_locator("iframe.email-body").locator("body").inner_text()
    assert (
        page.frame_locator("iframe.email-body")
        .locator("img[alt='Fabrikam logo']")
        .evaluate("img => img.naturalWidth > 0")
    )
    page.context.close()

    page, _remote, _ = open_tab(browser, live_server, {"width": 1280, "height": 900})
    sign_in(page, "bob")
    assert page.goto(url).status == 404
    page.context.close()

    page, _remote, phone_errors = open_tab(browser, live_server, {"width": 390, "height": 844})
    sign_in(page, "alice")
    page.goto(url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "email-phone.png")
    page.context.close()
    assert errors == [] and phone_errors == []
    assert TrackedEmail.objects.filter(pk=tracked.tracked_email_id, untracked_at__isnull=True).exists()
