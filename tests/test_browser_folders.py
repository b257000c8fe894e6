"""Folder tracking in a real browser: a user picks a real folder of her Exchange mailbox (listed by the
simulator over EWS), a scan tracks its mail, and the decision log shows the folder rule."""

from __future__ import annotations

import mailbox as stdlib_mailbox
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncadmin.devtools.simulators.server import Simulator
from tests.conftest import raw
from tests.rq_helpers import add_enabled_mailbox, add_sim_profile
from tests.test_browser import CHROMIUM, browser, page, screenshot  # noqa: F401 (fixtures)
from tracking.models import CrmRecord, Decision, FolderTrackingRule
from tracking.scanning import run_scan_cycle

pytestmark = [pytest.mark.browser]

ADDRESS = "alice@contoso.com"
PASSWORD = "pw-alice-folders"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    inbox = tmp_path / "data" / ADDRESS / "inbox"
    (inbox / "Projects").mkdir(parents=True)
    (inbox / "Projects" / "Fabrikam").mkdir()
    box = stdlib_mailbox.mbox(inbox / "Projects" / "Contoso.mbox")
    box.add(raw("<kickoff@contoso.example>", frm="Carla <carla@contoso.example>", subject="Kickoff"))
    box.flush()
    box.close()
    with Simulator.from_directory(tmp_path / "data", cert_dir=tmp_path / "ca") as simulator:
        yield simulator


def test_a_user_maps_a_real_folder_and_its_mail_is_tracked(page, transactional_db, sim):  # noqa: F811
    from django.core.cache import cache

    cache.clear()
    profile = add_sim_profile(sim, "exchange", "exchange_ews")
    alice = add_enabled_mailbox(ADDRESS, profile, track=4, username="alice")
    assert alice.user is not None
    alice.user.set_password(PASSWORD)
    alice.user.save(update_fields=["password"])
    contoso = CrmRecord.objects.create(kind="account", name="Contoso", email1="info@contoso.example")

    page.goto("/login/")
    page.get_by_label(re.compile("user ?name", re.I)).fill("alice")
    page.get_by_label(re.compile("password", re.I)).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()

    page.goto("/me/options/?tab=email")
    picker = page.locator("#folder-rules").get_by_label("Folder")
    options = picker.locator("option").all_inner_texts()
    assert "Inbox/Projects/Contoso" in options and "Inbox/Projects/Fabrikam" in options
    picker.select_option("Inbox/Projects/Contoso")
    page.locator("#folder-rules").get_by_label("Regarding").select_option(str(contoso.pk))
    page.get_by_role("button", name="Add rule").click()
    page.wait_for_load_state()
    assert page.get_by_text("Messages in Inbox/Projects/Contoso will be tracked.").count() == 1
    rule = FolderTrackingRule.objects.get()
    assert rule.folder == "Inbox/Projects/Contoso" and rule.regarding == contoso

    run_scan_cycle(alice.pk)  # what the scheduler's next cycle does

    page.goto("/me/options/?tab=email")
    row = page.locator("#folder-rules tr", has_text="Inbox/Projects/Contoso")
    assert "active" in row.inner_text() and "1" in row.inner_text()
    screenshot(page, "folder-rules.png")
    page.goto("/decisions/")
    log_row = page.locator("tr", has_text="Kickoff")
    assert "Folder tracking rule" in log_row.inner_text()
    assert Decision.objects.get().reason == "folder_rule"
