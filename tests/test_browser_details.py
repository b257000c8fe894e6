"""The details a new user trips on (issue 18), seen in Chromium: phones (390 px) with no page wider than
the screen and a menu that collapses, the decision log's sorting and count, the focus after a wrong
password, dates in each language, the navigation each role gets.

Playwright + Debian Chromium against live_server, like test_browser.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import T0, make_decisions, raw, scan
from tracking.actions import do_add_exclusion, do_set_personal_options
from tracking.models import Decision, Mailbox

playwright_sync = pytest.importorskip("playwright.sync_api")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PASSWORDS = {"ada": "pw-ada-123", "audrey": "pw-audrey-123", "alice": "pw-alice-123", "carol": "pw-carol-123"}
TIMEOUT_MS = 10_000
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(settings.BASE_DIR) / "build" / "screenshots"

if not Path(CHROMIUM).exists():  # pragma: no cover
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def new_page(browser, live_server, viewport: dict[str, int], errors: list[str]):
    context = browser.new_context(viewport=viewport, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    return tab


@pytest.fixture
def phone(browser, live_server):
    errors: list[str] = []
    tab = new_page(browser, live_server, PHONE, errors)
    yield tab
    tab.context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def desktop(browser, live_server):
    errors: list[str] = []
    tab = new_page(browser, live_server, {"width": 1280, "height": 900}, errors)
    yield tab
    tab.context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def people(transactional_db, admin, auditor, alice) -> dict[str, User]:
    carol = User.objects.create_user("carol", "carol@contoso.com", "x")  # a user without a mailbox
    users = {"ada": admin, "audrey": auditor, "alice": alice.user, "carol": carol}
    for name, user in users.items():
        user.set_password(PASSWORDS[name])
        user.save(update_fields=["password"])
    return users


@pytest.fixture
def decisions(people, alice: Mailbox) -> list[Decision]:
    """Real decisions with traces (a long subject and sender), and enough rows to page."""
    long_subject = "Quarterly numbers for the Fabrikam account, " * 4
    made = scan(
        alice,
        raw(
            "<p1@example.net>",
            subject=long_subject,
            frm="A Very Long Name <someone.with.a.long.address@example.net>",
        ),
        raw("<p2@example.net>", subject="Re: lunch"),
    )
    make_decisions(alice, 30, received_at=None)
    do_add_exclusion("@newsletters-with-a-very-long-domain-name.example")
    return made


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORDS[username])
    page.locator("form[action='/login/'] button[type=submit]").click()
    page.wait_for_load_state()
    assert "/login/" not in page.url, f"{username} could not sign in"


def overflow(page) -> int:
    """How many CSS pixels the page is wider than the screen (0: no horizontal scroll)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_no_page_is_wider_than_a_phone_and_the_menu_collapses(phone, people, decisions, alice) -> None:
    decision = decisions[0]
    pages = [
        reverse("web-dashboard"),
        reverse("web-mailboxes"),
        reverse("web-mailbox", args=[alice.pk]),
        reverse("web-mailbox-edit", args=[alice.pk]),
        reverse("web-mailbox-create"),
        reverse("web-decisions"),
        reverse("web-decision", args=[decision.pk]),
        reverse("web-explain"),
        reverse("web-what-if"),
        reverse("web-directory"),
        reverse("web-search") + "?q=Quarterly",
        reverse("web-profiles"),
        reverse("web-profile-create"),
        reverse("web-profile-edit", args=[alice.profile_id]),
        reverse("web-orgsettings"),
        reverse("web-orgsettings") + "?tab=orgdb",
        reverse("web-orgsettings-changes"),
        reverse("web-audit"),
        reverse("web-users"),
        reverse("web-exclusions"),
        reverse("web-personal-options"),
        reverse("web-personal-options") + "?tab=email",
        reverse("web-directory-import"),
        reverse("web-mailbox-reset-sync", args=[alice.pk]),
    ]
    for anonymous in ("/login/", reverse("password_reset")):
        phone.goto(anonymous)
        assert overflow(phone) <= 0, anonymous
    sign_in(phone, "ada")
    too_wide = {}
    for language in ("en", "de"):  # German words are longer
        do_set_personal_options(people["ada"], language=language)
        for url in pages:
            response = phone.goto(url)
            assert response is not None and response.status == 200, url
            if (extra := overflow(phone)) > 0:
                too_wide[f"{language} {url}"] = extra
    assert too_wide == {}
    do_set_personal_options(people["ada"], language="en")
    # the menu: one button; the links appear when it is pressed
    phone.goto(reverse("web-decisions"))
    menu = phone.get_by_role("button", name="Menu")
    nav_link = phone.locator("#main-menu").get_by_role("link", name="Audit trail")
    assert menu.is_visible() and not nav_link.is_visible()
    assert phone.locator(".topbar").bounding_box()["height"] < 80
    menu.click()
    assert nav_link.is_visible() and menu.get_attribute("aria-expanded") == "true"
    nav_link.click()
    phone.wait_for_url(re.compile("/audit/"))
    # the decision log's filters stay on the screen, each one of them
    phone.goto(reverse("web-decisions"))
    for box in phone.locator(".decision-filters select, .decision-filters input").all():
        bounds = box.bounding_box()
        assert bounds is not None and bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= PHONE["width"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(SCREENSHOTS / "phone-decision-log.png"), full_page=False)


def test_a_user_on_a_phone_sees_their_pages_within_the_screen(phone, people, decisions, alice) -> None:
    sign_in(phone, "alice")
    for url in (reverse("web-mailbox", args=[alice.pk]), reverse("web-decisions"), reverse("web-exclusions")):
        phone.goto(url)
        assert overflow(phone) <= 0, url


def test_the_desktop_menu_shows_without_a_button(desktop, people) -> None:
    sign_in(desktop, "ada")
    assert not desktop.get_by_role("button", name="Menu").is_visible()
    assert desktop.locator("#main-menu").get_by_role("link", name="Audit trail").is_visible()


def test_after_a_wrong_password_the_focus_is_on_the_password(desktop, people) -> None:
    desktop.goto("/login/")
    assert desktop.evaluate("document.activeElement.id") == "id_username"
    desktop.locator("#id_username").fill("alice")
    desktop.locator("#id_password").fill("not-the-password")
    desktop.locator("form[action='/login/'] button[type=submit]").click()
    desktop.wait_for_load_state()
    assert desktop.locator("[role=alert]").is_visible()
    assert desktop.evaluate("document.activeElement.id") == "id_password"
    assert desktop.locator("#id_username").input_value() == "alice"
    assert desktop.locator("link[rel=icon]").get_attribute("href").endswith(".svg")


def test_the_decision_log_sorts_by_a_column_header_and_counts_in_german(desktop, people, decisions) -> None:
    do_set_personal_options(people["ada"], language="de", time_zone="Europe/Berlin", rows_per_page=10)
    sign_in(desktop, "ada")
    desktop.goto(reverse("web-decisions"))
    count = desktop.locator("#decision-count")
    assert count.inner_text().startswith("32 Entscheidungen")
    # first column: decided time, German format, in the user's zone, the zone named once
    first = desktop.locator(".decision-table tbody tr").first.locator("td").first.inner_text()
    assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d", first), first
    assert desktop.get_by_text(re.compile("Zeiten in Europe/Berlin")).count() == 1
    # sort by received time, oldest first after a second click; htmx swaps the table and the address
    desktop.get_by_role("link", name=re.compile("^Empfangen")).click()
    desktop.wait_for_url(re.compile(r"sort=-received"))
    header = desktop.locator("th", has=desktop.get_by_role("link", name=re.compile("^Empfangen")))
    assert header.get_attribute("aria-sort") == "descending"
    desktop.get_by_role("link", name=re.compile("^Empfangen")).click()
    desktop.wait_for_url(re.compile(r"sort=received"))
    assert header.get_attribute("aria-sort") == "ascending"
    received = desktop.locator(".decision-table tbody tr td:nth-child(2)").all_inner_texts()
    assert received[:2] != ["—", "—"]  # decided times fill in for the unknown received times
    # the next page keeps the order
    desktop.get_by_role("link", name=re.compile("Nächste Seite")).click()
    desktop.wait_for_url(re.compile(r"before=\d+"))
    assert "sort=received" in desktop.url
    # a filter keeps the order and the count follows it
    desktop.locator("#id_manual").select_option("yes")
    desktop.wait_for_url(re.compile(r"manual=yes"))
    assert "sort=received" in desktop.url
    assert desktop.locator("#decision-count").inner_text().startswith("0 Entscheidungen")


def test_each_role_gets_the_links_it_can_use(desktop, people, alice) -> None:
    sign_in(desktop, "audrey")  # an auditor without a mailbox cannot use Explain
    assert desktop.locator("#main-menu").get_by_role("link", name="Explain").count() == 0
    desktop.get_by_role("button", name="Sign out").click()
    sign_in(desktop, "alice")
    desktop.locator("#main-menu").get_by_role("link", name="My mailbox").click()
    desktop.wait_for_url(re.compile(rf"/mailboxes/{alice.pk}/$"))
    assert desktop.locator("#main-menu").get_by_role("link", name="Explain").count() == 1
    desktop.goto(reverse("web-exclusions"))
    assert desktop.locator("#personal_pattern").count() == 1
    desktop.get_by_role("button", name="Sign out").click()
    sign_in(desktop, "carol")  # no mailbox: no personal exclusion form, no Explain
    desktop.goto(reverse("web-exclusions"))
    assert desktop.locator("#personal_pattern").count() == 0
    assert desktop.locator("#no-own-mailbox").is_visible()
    assert desktop.locator("#main-menu").get_by_role("link", name="Explain").count() == 0


def test_relative_times_never_say_zero_minutes(desktop, people, alice) -> None:
    do_set_personal_options(people["ada"], language="de")
    Mailbox.objects.filter(pk=alice.pk).update(last_sync_succeeded_at=T0.__class__.now(T0.tzinfo))
    sign_in(desktop, "ada")
    desktop.goto(reverse("web-mailbox", args=[alice.pk]))
    status = desktop.locator("#mailbox-status").inner_text()
    assert "gerade eben" in status and "0 Minuten" not in status
    Mailbox.objects.filter(pk=alice.pk).update(
        last_sync_succeeded_at=T0.__class__.now(T0.tzinfo) - timedelta(minutes=3, seconds=5)
    )
    desktop.reload()
    assert "vor 3 Minuten" in desktop.locator("#mailbox-status").inner_text()
