"""The content of a tracked email on its page (/emails/<pk>/): the sanitized HTML body in a sandboxed frame
of its own, the text body, the attachments; and the attachment download (who may, which headers). Then in
a browser: the body renders and nothing in it runs (tracking-rules §2)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.conftest import login, scan
from tests.test_tracked_content import PDF, full_message, mime
from tracking.actions import check_set_org_setting, do_set_personal_options
from tracking.models import Decision, Mailbox, TrackedAttachment

HOSTILE = (
    "<p id='greeting'>Hello <b>Alice</b></p>"
    "<script>document.title='pwned'</script>"
    "<img src='https://tracker.example/pixel.gif' onerror=\"document.title='pwned'\">"
    "<a id='bad' href=\"javascript:document.title='pwned'\">click</a>"
)


@pytest.fixture
def tracked(alice: Mailbox) -> Decision:
    assert alice.user is not None
    do_set_personal_options(alice.user, track=0)
    check_set_org_setting("MaxTrackedAttachmentMB", "1")
    (decision,) = scan(alice, full_message())
    assert decision.tracked_email_id is not None
    return decision


def attachment(decision: Decision, name: str) -> TrackedAttachment:
    return TrackedAttachment.objects.get(tracked_email_id=decision.tracked_email_id, name=name)


def email_url(decision: Decision) -> str:
    return reverse("web-email", args=[decision.tracked_email_id])


def test_the_page_shows_the_body_in_a_sandboxed_frame_and_the_text_behind_a_toggle(client, tracked, alice):
    body = login(client, alice.user).get(email_url(tracked)).content.decode()
    frame = re.search(r"<iframe class=\"email-body\"[^>]*>", body)
    assert frame is not None
    assert 'sandbox=""' in frame.group(0) and 'referrerpolicy="no-referrer"' in frame.group(0)
    body_url = reverse("web-email-body", args=[tracked.tracked_email_id])
    assert f'src="{body_url}"' in frame.group(0)
    framed = client.get(body_url)
    assert "<p>Grüße <b>from</b> Ann.</p>" in framed.content.decode()
    assert framed["Content-Security-Policy"] == (
        "default-src 'none'; img-src 'self' data:; style-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'self'; sandbox"
    )
    assert framed["X-Frame-Options"] == "SAMEORIGIN"
    assert "<summary>Show as plain text</summary>" in body
    assert '<pre class="email-body-text">Grüße from Ann.</pre>' in body


def test_the_page_lists_attachments_with_a_download_only_for_kept_content(client, tracked, alice):
    big = b"\x01" * (1024 * 1024 + 1)
    (other,) = scan(alice, full_message("<big@example.net>", pdf=big))
    body = login(client, alice.user).get(email_url(other)).content.decode()
    eml = attachment(other, "Earlier.eml")
    assert f'<a href="{reverse("web-tracked-attachment", args=[eml.pk])}" download>Earlier.eml</a>' in body
    pdf = attachment(other, "quote.pdf")
    assert reverse("web-tracked-attachment", args=[pdf.pk]) not in body
    assert "<span>quote.pdf</span>" in body and "content not kept (over the size limit)" in body
    assert "application/pdf, 1.0\xa0MB" in body


def test_a_plain_text_email_shows_its_text_and_no_frame(client, alice):
    assert alice.user is not None
    do_set_personal_options(alice.user, track=0)
    (decision,) = scan(alice, mime("Just <text> & more.\r\n", mid="<plain@example.net>"))
    body = login(client, alice.user).get(email_url(decision)).content.decode()
    assert "<iframe" not in body
    assert '<pre class="email-body-text">Just &lt;text&gt; &amp; more.\r\n</pre>' in body
    assert "No attachments." in body


def test_the_page_reads_attachments_in_one_query_without_their_content(
    client, tracked, alice, django_assert_max_num_queries
):
    login(client, alice.user)
    url = email_url(tracked)
    client.get(url)
    scan(alice, *[full_message(f"<more-{i}@example.net>") for i in range(3)])
    with django_assert_max_num_queries(40) as captured:
        client.get(url)
    attachment_queries = [q["sql"] for q in captured.captured_queries if "trackedattachment" in q["sql"]]
    assert len(attachment_queries) == 1
    assert '"content"' not in attachment_queries[0].split("FROM")[0].replace('"content" IS NOT NULL', "")


def test_the_owner_downloads_an_attachment_as_a_file(client, tracked, alice):
    pdf = attachment(tracked, "quote.pdf")
    r = login(client, alice.user).get(reverse("web-tracked-attachment", args=[pdf.pk]))
    assert r.status_code == 200 and r.content == PDF
    assert r["Content-Type"] == "application/pdf"
    assert r["Content-Disposition"] == 'attachment; filename="quote.pdf"'
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_an_active_type_is_sent_as_octet_stream_and_an_odd_name_is_encoded(client, tracked, alice):
    html = TrackedAttachment.objects.create(
        tracked_email_id=tracked.tracked_email_id,
        name='évil"\r\nX-Injected: 1.html',
        content_type="text/html",
        size=20,
        content=b"<script>alert(1)</script>",
    )
    r = login(client, alice.user).get(reverse("web-tracked-attachment", args=[html.pk]))
    assert r.status_code == 200
    assert r["Content-Type"] == "application/octet-stream"
    assert r["Content-Disposition"].startswith("attachment; filename*=utf-8''")
    assert "X-Injected" not in r.headers or r.headers.get("X-Injected") is None


def test_others_get_404_auditors_and_admins_may_download(client, tracked, bob, auditor, admin):
    url = reverse("web-tracked-attachment", args=[attachment(tracked, "quote.pdf").pk])
    assert login(client, bob.user).get(url).status_code == 404
    assert login(Client(), auditor).get(url).status_code == 200
    assert login(Client(), admin).get(url).status_code == 200
    assert Client().get(url).status_code == 302  # to the sign-in page


def test_an_attachment_without_content_or_unknown_is_404(client, tracked, alice):
    kept_none = TrackedAttachment.objects.create(
        tracked_email_id=tracked.tracked_email_id, name="big.bin", content_type="x/y", size=10**9
    )
    login(client, alice.user)
    assert client.get(reverse("web-tracked-attachment", args=[kept_none.pk])).status_code == 404
    assert client.get(reverse("web-tracked-attachment", args=[999_999])).status_code == 404


def test_the_download_only_reads(client, tracked, alice):
    url = reverse("web-tracked-attachment", args=[attachment(tracked, "quote.pdf").pk])
    assert login(client, alice.user).post(url).status_code == 405


# --- in a browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():  # pragma: no cover
        pytest.skip("Debian chromium is not installed")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            headless=True,
        )
        yield chromium
        chromium.close()


@pytest.mark.browser
def test_in_a_browser_the_body_renders_and_nothing_in_it_runs(browser, live_server, transactional_db, alice):
    user = alice.user
    assert isinstance(user, User)
    user.set_password("pw-alice-123")
    user.save(update_fields=["password"])
    do_set_personal_options(user, track=0)
    (decision,) = scan(alice, mime(HOSTILE, mid="<hostile@example.net>", content_type="text/html"))
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    remote: list[str] = []
    page.on("request", lambda req: remote.append(req.url) if "tracker.example" in req.url else None)
    page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
    page.goto("/login/")
    page.locator("#id_username").fill("alice")
    page.locator("#id_password").fill("pw-alice-123")
    page.locator("form[action='/login/'] button[type=submit]").click()
    page.wait_for_load_state()
    page.goto(email_url(decision))
    title = page.title()
    frame = page.frame_locator("iframe.email-body")
    assert frame.locator("p").first.inner_text() == "Hello Alice"  # ids are not kept; the text is
    assert frame.locator("script").count() == 0
    frame.locator("a", has_text="click").click()  # its javascript: link was removed; nothing happens
    assert page.title() == title and "pwned" not in page.title()
    assert page.evaluate("document.querySelector('iframe.email-body').contentDocument") is None  # sandboxed
    assert remote == [] and errors == []
    context.close()


@pytest.mark.browser
def test_on_a_phone_long_content_keeps_the_page_within_the_screen(
    browser, live_server, transactional_db, alice
):
    user = alice.user
    assert isinstance(user, User)
    user.set_password("pw-alice-123")
    user.save(update_fields=["password"])
    do_set_personal_options(user, track=0)
    word = "x" * 400
    (decision,) = scan(alice, full_message("<wide@example.net>").replace(b"from Ann.", word.encode()))
    assert decision.tracked_email_id is not None
    TrackedAttachment.objects.create(
        tracked_email_id=decision.tracked_email_id,
        name=word[:200] + ".pdf",
        content_type="application/pdf",
        size=1,
    )
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/login/")
    page.locator("#id_username").fill("alice")
    page.locator("#id_password").fill("pw-alice-123")
    page.locator("form[action='/login/'] button[type=submit]").click()
    page.wait_for_load_state()
    page.goto(email_url(decision))
    page.locator("summary", has_text="Show as plain text").click()
    assert page.locator("pre.email-body-text").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
