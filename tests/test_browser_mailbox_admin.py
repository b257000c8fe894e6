"""Browser journey of mailbox administration (issue 16), in Debian's Chromium driven by Playwright: an admin
creates a server profile (the form shows only the kind's fields and refuses a broken one), tests its
connection against the Exchange simulator (a job; the page shows its result), creates three mailboxes (one
for a new user, invited by email), bulk-approves them, bulk Test & Enables them while the progress page
fills in, and the decision log fills once they are scanned."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core import mail

from tests import rq_helpers as h
from tests.test_browser import (  # noqa: F401  (the browser fixtures)
    PASSWORDS,
    browser,
    page,
    screenshot,
    sign_in,
)
from tracking.jobs import dispatch_due_mailboxes
from tracking.models import AuditEvent, Decision, EmailServerProfile, Mailbox

pytestmark = [pytest.mark.browser]

ADDRESSES = ("dana@contoso.com", "erin@contoso.com", "fred@contoso.com")


def burst() -> None:
    h.burst()


@pytest.fixture
def people(transactional_db: None, admin: User, auditor: User, sim) -> dict[str, object]:
    admin.set_password(PASSWORDS["ada"])
    admin.save(update_fields=["password"])
    for address in ADDRESSES:
        h.fill(sim, address, count=3)
    for address in ADDRESSES[:2]:  # the third person is new: invited with their mailbox
        User.objects.create_user(address.split("@")[0], address)
    return {"admin": admin, "sim": sim}


def test_an_admin_onboards_three_mailboxes_in_bulk(page, people) -> None:  # noqa: F811
    sim = people["sim"]
    sign_in(page, "ada")

    # a profile by kind: Graph by default (no user name field); EWS swaps its fields in
    page.goto("/profiles/new/")
    page.locator("#id_tenant_id").wait_for()
    assert page.locator("#id_username").count() == 0
    page.select_option("#id_kind", "exchange_ews")
    page.locator("#id_username").wait_for()
    assert page.locator("#id_use_impersonation").count() == 1
    page.fill("#id_name", "Contoso Exchange")
    page.fill("#id_endpoint", f"{sim.url}/EWS/Exchange.asmx")
    page.fill("#id_ca_bundle", str(sim.ca_file))
    page.select_option("#id_auth_method", "basic")
    page.fill("#id_username", h.SIM_USER)
    page.get_by_role("button", name="Create server profile").click()
    page.wait_for_load_state()
    # no secret: Test & Enable would fail, so the form refuses it
    assert page.locator("#id_secret_error").inner_text().startswith("Test & Enable needs a secret")
    assert not EmailServerProfile.objects.exists()
    page.fill("#id_secret", h.SIM_SECRET)
    page.check("#id_use_impersonation")
    page.get_by_role("button", name="Create server profile").click()
    page.wait_for_url(re.compile(r"/profiles/\d+/$"))
    profile = EmailServerProfile.objects.get(name="Contoso Exchange")

    # Test connection against the simulator, and make it the default for new mailboxes
    page.fill("#id_address", ADDRESSES[0])
    page.get_by_role("button", name="Test connection").click()
    page.get_by_text("Test connection queued").wait_for()
    burst()  # a worker signs in and reads the inbox; the page, polling, shows the result
    page.get_by_text(re.compile("Test connection succeeded")).wait_for()
    page.get_by_role("button", name="Make default for new mailboxes").click()
    page.wait_for_load_state()
    profile.refresh_from_db()
    assert profile.is_default
    screenshot(page, "profile-by-kind.png")

    # three mailboxes, the default profile preselected: two for existing users, one for a new user
    for address in ADDRESSES:
        page.goto("/mailboxes/new/")
        page.fill("#id_email_address", address)
        if address == ADDRESSES[2]:
            page.get_by_label("A new user, invited by email").check()
        else:
            page.select_option("#id_user", label=address.split("@")[0])
        assert page.locator("#id_profile").input_value() == str(profile.pk)
        page.get_by_role("button", name="Create mailbox").click()
        page.wait_for_url(re.compile(r"/mailboxes/\d+/$"))
    assert Mailbox.objects.filter(profile=profile, approval="pending").count() == 3
    assert page.get_by_text(f"Invited {ADDRESSES[2]}").count() == 1
    assert [m.to for m in mail.outbox] == [[ADDRESSES[2]]]

    # bulk approve the ticked mailboxes; the progress page fills in as the job runs
    page.goto("/mailboxes/")
    for address in ADDRESSES:
        page.get_by_label(f"Select {address}").check()
    page.select_option("#bulk-action", "approve")
    page.get_by_role("button", name="Apply to selected").click()
    page.wait_for_url(re.compile(r"/mailboxes/bulk/\d+/$"))
    assert page.get_by_text("0 of 3 done").count() == 1
    burst()
    page.get_by_text("Finished: 3 done, 0 failed.").wait_for()
    assert AuditEvent.objects.filter(action="mailbox_approved").count() == 3

    # bulk Test & Enable every mailbox matching the filter (approved)
    page.goto("/mailboxes/?approval=approved")
    page.select_option("#bulk-action", "test")
    page.get_by_role("button", name=re.compile("Apply to all 3 matching")).click()
    page.wait_for_url(re.compile(r"/mailboxes/bulk/\d+/$"))
    burst()
    page.get_by_text("Finished: 3 done, 0 failed.").wait_for()
    screenshot(page, "bulk-progress.png")
    assert Mailbox.objects.filter(enabled=True, incoming_status="success").count() == 3
    assert AuditEvent.objects.filter(action="mailbox_tested", actor=people["admin"]).count() == 3

    # the scheduler scans them, and the decision log fills
    assert dispatch_due_mailboxes() == 3
    burst()
    page.goto("/decisions/")
    page.locator("table.decision-table tbody tr").first.wait_for()
    assert Decision.objects.filter(mailbox__email_address__in=ADDRESSES).count() == 9
