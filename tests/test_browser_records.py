"""A record page in Chromium (issue 18): a user opens a contact from the CRM directory, reads its timeline,
filters it by direction and pages through it (htmx, the address following); on a phone the page is no
wider than the screen.

Playwright + Debian Chromium against live_server, with the fixtures of test_browser_details.py.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import T0
from tests.test_browser_details import (  # noqa: F401  (the browser fixtures)
    SCREENSHOTS,
    browser,
    desktop,
    overflow,
    people,
    phone,
    sign_in,
)
from tracking.actions import do_set_personal_options
from tracking.models import CrmRecord, EmailParty, TrackedEmail

pytestmark = [pytest.mark.browser]
expect = pytest.importorskip("playwright.sync_api").expect

LONG_SUBJECT = "Quarterly numbers for the Fabrikam account and the renewal of the support contract, " * 2


@pytest.fixture
def dana(people: dict[str, User]) -> CrmRecord:  # noqa: F811
    """Contact Dana on 25 of alice's tracked emails (12 outgoing), and on 3 of someone else's."""
    alice = people["alice"]
    do_set_personal_options(alice, rows_per_page=10)
    dana = CrmRecord.objects.create(
        kind="contact", name="Dana Smith", email1="dana.smith.with.a.long.address@fabrikam-holdings.example"
    )
    for i in range(28):
        tracked = TrackedEmail.objects.create(
            message_id=f"<t{i}@example.net>",
            direction="outgoing" if i % 2 else "incoming",
            subject=f"{LONG_SUBJECT}#{i}",
            sender="someone.with.a.long.address@fabrikam-holdings.example",
            sender_name="A Very Long Sender Name Indeed",
            regarding=dana if i % 3 == 0 else None,
            owner=alice if i < 25 else None,
            timeline_at=T0 + timedelta(minutes=i // 2),  # two emails at each time
        )
        if i % 3:
            EmailParty.objects.create(
                tracked_email=tracked,
                role="to",
                address=dana.email1,
                record=dana,
                timeline_at=tracked.timeline_at,
            )
    return dana


def subjects(page) -> list[int]:
    """The numbers of the subjects in the timeline, in page order."""
    cells = page.locator("#timeline tbody tr td:nth-child(3)").all_inner_texts()
    return [int(text.rsplit("#", 1)[1]) for text in cells]


def test_a_user_opens_a_contact_filters_and_pages_its_timeline(desktop, dana: CrmRecord) -> None:  # noqa: F811
    sign_in(desktop, "alice")
    desktop.goto(reverse("web-directory"))
    desktop.get_by_role("link", name="Dana Smith").click()
    desktop.wait_for_url(re.compile(rf"/records/contact/{dana.pk}/$"))
    assert desktop.locator("h1").inner_text() == "Dana Smith"
    newest_first = sorted(range(25), key=lambda i: (i // 2, i), reverse=True)
    assert subjects(desktop) == newest_first[:10]  # only alice's emails, newest first
    assert "regarding" in desktop.locator("#email-" + str(_pk(24))).inner_text()

    # the direction filter swaps the timeline in place and puts the filter in the address
    desktop.select_option("#id_direction", "outgoing")
    desktop.wait_for_url(re.compile(r"direction=outgoing"))
    outgoing = [i for i in newest_first if i % 2]
    expect(desktop.locator("#timeline tbody tr")).to_have_count(10)
    assert subjects(desktop) == outgoing[:10]

    desktop.get_by_role("link", name="Next page").click()
    desktop.wait_for_url(re.compile(r"after=\d+"))
    expect(desktop.locator("#timeline tbody tr")).to_have_count(2)
    assert subjects(desktop) == outgoing[10:]
    assert "direction=outgoing" in desktop.url
    assert desktop.get_by_role("link", name="Next page").count() == 0

    desktop.get_by_role("link", name="First page").click()
    expect(desktop.locator("#timeline tbody tr")).to_have_count(10)
    assert subjects(desktop) == outgoing[:10]

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    desktop.screenshot(path=str(SCREENSHOTS / "record.png"), full_page=True)

    # an email's subject opens its page
    desktop.locator("#timeline tbody tr").first.get_by_role("link").click()
    desktop.wait_for_url(re.compile(rf"/emails/{_pk(outgoing[0])}/$"))


def test_the_record_page_fits_a_phone(phone, dana: CrmRecord) -> None:  # noqa: F811
    sign_in(phone, "alice")
    phone.goto(reverse("web-record", args=["contact", dana.pk]))
    assert phone.locator("#timeline tbody tr").count() == 10
    assert overflow(phone) == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(SCREENSHOTS / "record-phone.png"), full_page=True)


def test_an_admin_reads_every_email_and_a_user_page(desktop, people, dana: CrmRecord) -> None:  # noqa: F811
    sign_in(desktop, "ada")
    desktop.goto(reverse("web-record", args=["contact", dana.pk]))
    assert subjects(desktop)[:2] == [27, 26]  # someone else's too
    desktop.goto(reverse("web-users"))
    desktop.get_by_role("link", name="alice", exact=True).click()
    desktop.wait_for_url(re.compile(rf"/records/user/{people['alice'].pk}/$"))
    assert desktop.get_by_role("link", name="alice@contoso.com").count() >= 1


def _pk(number: int) -> int:
    return TrackedEmail.objects.get(message_id=f"<t{number}@example.net>").pk
