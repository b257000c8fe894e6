"""Browser step of queue items (issue 14 item 7), in Debian's Chromium driven by Playwright: an admin opens a
queue's page, filters its work list to the active items (htmx), marks one done, finds it under "done", and
an auditor reads the list without the button."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from tests.conftest import raw, scan
from tests.test_browser import (  # noqa: F401  (the browser fixtures)
    PASSWORDS,
    browser,
    page,
    screenshot,
    sign_in,
)
from tracking.actions import check_add_mailbox
from tracking.choices import QueueItemState
from tracking.models import AuditEvent, Mailbox, Queue, QueueItem

pytestmark = [pytest.mark.browser]


@pytest.fixture
def support(transactional_db: None, admin: User, auditor: User, exchange_profile) -> Queue:
    """Queue Support, whose mailbox tracked two messages (its Track option is 0): two active items."""
    for person in (admin, auditor):
        person.set_password(PASSWORDS[person.get_username()])
        person.save(update_fields=["password"])
    mailbox = check_add_mailbox(
        "support@contoso.com", profile_name=exchange_profile.name, queue_name="Support", approve=True
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(enabled=True)
    scan(
        mailbox,
        raw("<printer@example.net>", to="support@contoso.com", subject="The printer is on fire"),
        raw("<vpn@example.net>", to="support@contoso.com", subject="VPN refuses my password"),
    )
    assert QueueItem.objects.filter(state=QueueItemState.ACTIVE).count() == 2
    return Queue.objects.get(name="Support")


def test_an_admin_marks_a_queue_item_done(page, support) -> None:  # noqa: F811
    sign_in(page, "ada")
    page.goto(f"/queues/{support.pk}/")
    rows = page.locator("#queue-items tbody tr")
    assert rows.count() == 2
    assert "VPN refuses my password" in rows.first.inner_text()  # newest first

    # the state filter swaps the list in place (htmx) and puts the filter in the address
    page.select_option("#id_state", "active")
    page.wait_for_url(re.compile(r"state=active"))
    assert rows.count() == 2

    # mark the printer done: it leaves the active list, with a message saying so
    printer = rows.filter(has_text="The printer is on fire")
    printer.get_by_role("button", name="Mark done").click()
    page.get_by_text("Marked the item done.").wait_for()
    assert re.search(r"state=active", page.url)
    assert page.locator("#queue-items tbody tr").count() == 1
    item = QueueItem.objects.get(tracked_email__subject="The printer is on fire")
    assert item.state == QueueItemState.DONE and item.done_by is not None
    assert item.done_by.get_username() == "ada"
    assert AuditEvent.objects.filter(action="queue_item_done", actor__username="ada").count() == 1

    # under "done" it is listed with who did it; its subject opens the decision that tracked it
    page.select_option("#id_state", "done")
    page.wait_for_url(re.compile(r"state=done"))
    done = page.locator("#queue-items tbody tr")
    done.filter(has_text="ada").wait_for()
    assert done.count() == 1
    assert done.get_by_role("button", name="Mark done").count() == 0
    screenshot(page, "queue-items.png")
    done.get_by_role("link", name="The printer is on fire").click()
    page.wait_for_url(re.compile(r"/decisions/\d+/$"))


def test_an_auditor_reads_the_queue_items_without_marking_them(page, support) -> None:  # noqa: F811
    sign_in(page, "audrey")
    page.goto(f"/queues/{support.pk}/")
    assert page.locator("#queue-items tbody tr").count() == 2
    assert page.get_by_role("button", name="Mark done").count() == 0
