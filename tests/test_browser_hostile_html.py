"""A corpus of hostile HTML bodies, tracked and opened on the tracked email page in Chromium: nothing in them
runs, nothing loads from anywhere but this site, and remote images load only after "Show remote images"
(tracking-rules §2).

Every request the browser makes is routed: one to a host that is not loopback fails the test, except the
remote images after the reader asked for them (answered here with a PNG, never from the network). Running
script would show as a dialog, a console message, a page error or a request to /pwned/ — each hooked.
The corpus runs twice: as the sanitizer stored it, and written raw into the store, as if the sanitizer
had let everything through, so that the frame's sandbox and CSP are shown to hold on their own.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import scan
from tracking.actions import do_set_personal_options
from tracking.models import Decision, Mailbox, TrackedEmail

playwright_sync = pytest.importorskip("playwright.sync_api")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# A 1×1 PNG: the inline (cid:) image and what a routed remote image is answered with.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
REMOTE_IMAGE = "https://images.remote.example/banner.png"

if not Path(CHROMIUM).exists():  # pragma: no cover
    pytest.skip("Debian chromium is not installed", allow_module_level=True)

# Each: what it tries. Everything that would run calls alert, logs "pwned" or fetches /pwned/.
CORPUS: dict[str, str] = {
    "script": "<script>alert('script');console.log('pwned script');fetch('/pwned/script')</script>",
    "event handlers": (
        "<img src=x onerror=\"alert('onerror');fetch('/pwned/onerror')\">"
        "<body onload=\"alert('onload')\"><div id=hover onmouseover=\"fetch('/pwned/hover')\">hover</div>"
        "<details open ontoggle=\"fetch('/pwned/toggle')\"><summary>s</summary></details>"
    ),
    "javascript: URLs": (
        "<a id=js href=\"javascript:fetch('/pwned/js-link')\">js link</a>"
        "<a id=js2 href=\"jAvAsCrIpT&colon;fetch('/pwned/js-link-2')\">js link 2</a>"
        "<img src=\"javascript:fetch('/pwned/js-img')\">"
    ),
    "CSS expressions and url()": (
        "<style>body{background:url('https://evil.example/style.png')}</style>"
        "<div style=\"background:url(https://evil.example/inline.png);width:expression(alert('expr'))\">css</div>"
        "<link rel=stylesheet href='https://evil.example/sheet.css'>"
    ),
    "SVG with script": (
        "<svg><script>alert('svg')</script><image href='https://evil.example/svg.png'/></svg>"
        "<svg onload=\"fetch('/pwned/svg-onload')\"><a href=\"javascript:fetch('/pwned/svg-a')\">"
        "<text y=20>svg link</text></a></svg>"
    ),
    "nested frames and plugins": (
        "<iframe src='https://evil.example/frame'></iframe>"
        "<iframe srcdoc=\"<script>parent.alert('srcdoc')</script>\"></iframe>"
        "<object data='https://evil.example/object'></object><embed src='https://evil.example/embed'>"
    ),
    "meta refresh": '<meta http-equiv=refresh content="0;url=https://evil.example/refresh">',
    "form and base": (
        "<base href='https://evil.example/'><a id=relative href='relative'>relative</a>"
        "<img src='relative.png'>"
        "<form action='https://evil.example/form' method=post><input name=q value=x>"
        "<button id=send>Send</button></form>"
    ),
    "media": (
        "<video poster='https://evil.example/poster.png' src='https://evil.example/v.mp4'></video>"
        "<audio src='https://evil.example/a.mp3' autoplay></audio>"
        "<img srcset='https://evil.example/srcset.png 2x'>"
    ),
}


def body_html(name: str, html: str) -> str:
    return (
        f"<p id=greeting>Hostile corpus: {name}</p>{html}"
        f"<p><img id=remote alt=remote src='{REMOTE_IMAGE}'></p>"
        "<p><img id=logo alt=logo src='cid:logo@hostile.example'></p>"
    )


def message(name: str, html: str, *, mid: str) -> bytes:
    """multipart/related: the HTML with a remote image and an inline image by Content-ID, and the image."""
    body = body_html(name, html)
    png = base64.encodebytes(PNG).decode().replace("\n", "\r\n")
    return (
        "From: Mallory <mallory@evil.example>\r\nTo: alice@contoso.com\r\n"
        f"Subject: {name}\r\nDate: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: {mid}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="REL"\r\n\r\n'
        "--REL\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
        "--REL\r\nContent-Type: image/png\r\nContent-ID: <logo@hostile.example>\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{png}"
        "--REL--\r\n"
    ).encode()


@dataclass
class Watch:
    """What the browser did that it must not have: dialogs, console words, page errors, requests."""

    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pwned: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    allow_remote_images: bool = False

    def clean(self) -> bool:
        return not (self.dialogs or self.console or self.errors or self.pwned or self.remote)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def reader(transactional_db, alice: Mailbox) -> User:
    user = alice.user
    assert isinstance(user, User)
    user.set_password("pw-alice-123")
    user.save(update_fields=["password"])
    do_set_personal_options(user, track=0)
    return user


@pytest.fixture
def watched(browser, live_server, reader) -> Iterator[tuple[object, Watch]]:
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    watch = Watch()

    def route(route: object) -> None:
        request = route.request  # type: ignore[attr-defined]
        host = urlsplit(request.url).hostname or ""
        if host in LOOPBACK:
            if "/pwned/" in request.url:
                watch.pwned.append(request.url)
            route.continue_()  # type: ignore[attr-defined]
        elif watch.allow_remote_images and request.url == REMOTE_IMAGE:
            route.fulfill(status=200, content_type="image/png", body=PNG)  # type: ignore[attr-defined]
        else:
            watch.remote.append(request.url)
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", route)
    page = context.new_page()

    def dialog(d: object) -> None:
        watch.dialogs.append(d.message)  # type: ignore[attr-defined]
        d.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", dialog)
    page.on("console", lambda m: watch.console.append(m.text) if "pwned" in m.text else None)
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    page.goto("/login/")
    page.locator("#id_username").fill("alice")
    page.locator("#id_password").fill("pw-alice-123")
    page.locator("form[action='/login/'] button[type=submit]").click()
    page.wait_for_load_state()
    yield page, watch
    context.close()


def poke(page) -> None:
    """Everything a reader might do in the frame: hover, click each link and button."""
    frame = page.frame_locator("iframe.email-body")
    for selector in ("#hover", "#js", "#js2", "#relative", "#send", "svg a"):
        target = frame.locator(selector)
        if target.count():
            target.first.click(force=True, timeout=2_000, no_wait_after=True)
    page.wait_for_timeout(300)


def image_loaded(page, selector: str) -> bool:
    frame = page.frame_locator("iframe.email-body").locator(selector)
    return bool(frame.evaluate("img => img.complete && img.naturalWidth > 0"))


def track(mailbox: Mailbox, name: str, html: str, n: int) -> TrackedEmail:
    (decision,) = scan(mailbox, message(name, html, mid=f"<hostile-{n}@evil.example>"))
    assert isinstance(decision, Decision) and decision.tracked_email_id is not None
    return TrackedEmail.objects.get(pk=decision.tracked_email_id)


@pytest.mark.parametrize("stored", ["sanitized", "raw"])
def test_nothing_in_a_hostile_body_runs_or_loads(watched, alice, stored):
    page, watch = watched
    for n, (name, html) in enumerate(CORPUS.items()):
        email = track(alice, name, html, n)
        if stored == "raw":
            # as if the sanitizer had kept everything: the frame's sandbox and CSP alone must hold
            TrackedEmail.objects.filter(pk=email.pk).update(body_html=body_html(name, html))
        page.goto(reverse("web-email", args=[email.pk]))
        frame = page.frame_locator("iframe.email-body")
        assert frame.locator("#greeting, p").first.inner_text().startswith("Hostile corpus")
        if (
            stored == "sanitized"
        ):  # raw HTML is not the sanitizer's output, whose cid: sources the page rewrites
            assert image_loaded(page, "img[alt=logo]"), f"{name}: the cid: image did not load"
        assert not image_loaded(page, "img[alt=remote]"), f"{name}: a remote image loaded unasked"
        poke(page)
        assert page.url.endswith(reverse("web-email", args=[email.pk])), f"{name}: the page navigated"
        assert watch.clean(), f"{name} ({stored}): {watch}"


def test_remote_images_load_only_after_show_remote_images(watched, alice):
    page, watch = watched
    email = track(alice, "remote images", "<p>Our newsletter</p>", 99)
    page.goto(reverse("web-email", args=[email.pk]))
    assert not image_loaded(page, "img[alt=remote]")
    assert watch.clean(), str(watch)

    watch.allow_remote_images = True
    page.get_by_role("link", name="Show remote images").click()
    page.wait_for_load_state()
    page.frame_locator("iframe.email-body").locator("img[alt=remote]").wait_for()
    assert image_loaded(page, "img[alt=remote]") and image_loaded(page, "img[alt=logo]")
    assert watch.clean(), str(watch)
    assert page.get_by_role("link", name="Block remote images").is_visible()
