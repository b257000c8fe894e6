"""The search page (/search/) and the search box in the navigation: results link to the tracked email
page, passages are escaped, each role sees what it may; a browser check of the box and of a phone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import login, user_of
from tracking.actions import do_set_personal_options
from tracking.models import Mailbox, TrackedEmail
from tracking.search import RESULTS

T0 = timezone.now() - timedelta(days=3)


def email(n: int, owner: User, **fields: object) -> TrackedEmail:
    values: dict[str, object] = {
        "message_id": f"<web-search-{n}@example.net>",
        "direction": "incoming",
        "subject": f"Status report {n}",
        "sender": "carla@fabrikam.example",
        "sender_name": "Carla Diaz",
        "recipients": [["to", "alice@contoso.com"]],
        "body_text": "The turbine shipment is late.",
        "timeline_at": T0 + timedelta(minutes=n),
        "owner": owner,
    }
    values.update(fields)
    return TrackedEmail.objects.create(**values)


def test_results_link_to_the_email_page_with_a_marked_passage(client: Client, alice: Mailbox) -> None:
    one = email(1, user_of(alice), body_text="Hello <b>team</b>, the turbine & rotor ship today.")
    login(client, user_of(alice))
    page = client.get(reverse("web-search"), {"q": "turbine"})
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="{reverse("web-email", args=[one.pk])}"' in html
    assert "<mark>turbine</mark>" in html
    assert "<b>team</b>" not in html
    assert "Carla Diaz" in html


def test_a_user_finds_only_their_own_an_auditor_everything(
    client: Client, alice: Mailbox, bob: Mailbox, auditor: User
) -> None:
    mine = email(1, user_of(alice), subject="Zephyr plans")
    theirs = email(2, user_of(bob), subject="Zephyr secrets")
    login(client, user_of(alice))
    html = client.get(reverse("web-search"), {"q": "zephyr"}).content.decode()
    assert "Zephyr plans" in html and "Zephyr secrets" not in html
    login(client, auditor)
    html = client.get(reverse("web-search"), {"q": "zephyr"}).content.decode()
    assert "Zephyr plans" in html and "Zephyr secrets" in html
    assert {mine.pk, theirs.pk}


def test_htmx_asks_for_the_results_alone(client: Client, alice: Mailbox) -> None:
    email(1, user_of(alice))
    login(client, user_of(alice))
    page = client.get(
        reverse("web-search"), {"q": "turbine"}, headers={"HX-Request": "true", "HX-Target": "search-results"}
    )
    html = page.content.decode()
    assert html.startswith('<div id="search-results">')
    assert "<html" not in html and "Status report 1" in html


def test_more_results_on_request(client: Client, alice: Mailbox) -> None:
    for n in range(RESULTS + 3):
        email(n, user_of(alice))
    login(client, user_of(alice))
    html = client.get(reverse("web-search"), {"q": "turbine"}).content.decode()
    assert html.count('<tr id="email-') == RESULTS
    assert "more=1" in html
    html = client.get(reverse("web-search"), {"q": "turbine", "more": "1"}).content.decode()
    assert html.count('<tr id="email-') == RESULTS + 3
    assert "more=1" not in html


@pytest.mark.parametrize("text", ['"', "NEAR(", "*", ":", "-", "<script>alert(1)</script>", "x" * 2000])
def test_hostile_text_gets_a_page(client: Client, alice: Mailbox, text: str) -> None:
    email(1, user_of(alice))
    login(client, user_of(alice))
    page = client.get(reverse("web-search"), {"q": text})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.content.decode()


def test_every_signed_in_user_has_the_box_and_anonymous_is_sent_to_sign_in(
    client: Client, alice: Mailbox, auditor: User, admin: User
) -> None:
    for user in (user_of(alice), auditor, admin, User.objects.create_user("carol")):
        login(client, user)
        assert 'id="nav-search"' in client.get(reverse("web-directory")).content.decode()
    client.logout()
    page = client.get(reverse("web-search"), {"q": "x"})
    assert page.status_code == 302 and page["Location"].startswith("/login/")


def test_the_page_in_german(client: Client, alice: Mailbox) -> None:
    do_set_personal_options(user_of(alice), language="de")
    login(client, user_of(alice))
    html = client.get(reverse("web-search"), {"q": "nichts"}).content.decode()
    assert "Nachverfolgte E-Mails durchsuchen" in html
    assert "Keine nachverfolgte E-Mail, die Sie sehen dürfen, passt zu dieser Suche." in html
    assert 'placeholder="E-Mails durchsuchen"' in html


# -- in Chromium ------------------------------------------------------------------------------------------

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(settings.BASE_DIR) / "build" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():  # pragma: no cover
        pytest.skip("Debian chromium is not installed")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def signed_in_tab(browser, live_server, user: User, viewport: dict[str, int]):
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport=viewport, base_url=live_server.url)
    context.set_default_timeout(10_000)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    return context.new_page()


@pytest.mark.browser
def test_in_a_browser_the_nav_box_searches_and_a_phone_has_no_sideways_scroll(
    browser, live_server, transactional_db, alice: Mailbox
) -> None:
    owner = user_of(alice)
    email(
        1, owner, subject="Quarterly turbine numbers " * 6, sender="someone.with.a.long.address@example.net"
    )
    email(2, owner, subject="Lunch", body_text="turbine " + "verylongwordwithoutanyspaces" * 20)
    errors: list[str] = []
    tab = signed_in_tab(browser, live_server, owner, {"width": 1280, "height": 900})
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(reverse("web-decisions"))
    tab.locator("#nav-search").fill("turbine")
    tab.locator("#nav-search").press("Enter")
    tab.wait_for_url("**/search/?q=turbine")
    assert tab.locator("#search-results tbody tr").count() == 2
    assert tab.locator("#search-results mark").first.inner_text().lower() == "turbine"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)  # docs/screenshots/search.png
    # live search: typing in the page's box replaces the results without a reload
    tab.locator("#id_search_q").fill("lunch")
    playwright_sync.expect(tab.locator("#search-results tbody tr")).to_have_count(1)
    tab.locator("#search-results tbody a").first.click()
    tab.wait_for_url("**/emails/*/")
    tab.context.close()

    phone = signed_in_tab(browser, live_server, owner, {"width": 390, "height": 844})
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    phone.goto(reverse("web-search") + "?q=turbine")
    assert phone.locator("#search-results tbody tr").count() == 2
    assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    # the box is in the collapsed menu
    phone.locator(".menu-toggle").click()
    assert phone.locator("#nav-search").is_visible()
    assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    phone.context.close()
    assert not errors, errors
