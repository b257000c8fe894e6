"""Folder-level tracking (tracking-rules §3.4) end to end: the real exchangelib and msal/requests clients
against the
simulator serving DIR/<address>/inbox/Projects/Contoso.mbox as the folder Inbox/Projects/Contoso."""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from django.core.management.base import CommandError

from syncadmin.devtools.simulators.server import Simulator
from tests.conftest import raw, run_command
from tests.rq_helpers import add_enabled_mailbox, add_sim_profile
from tracking.actions import (
    ActionError,
    check_add_folder_rule,
    check_set_org_setting,
    do_set_personal_options,
)
from tracking.choices import AlertLevel, AuditAction, Outcome, Reason
from tracking.folders import add_folder_rule
from tracking.models import (
    Alert,
    AuditEvent,
    CrmRecord,
    Decision,
    FolderTrackingRule,
    Mailbox,
    ScanRun,
    TrackedEmail,
)
from tracking.scanning import run_scan_cycle

ADDRESS = "alice@contoso.com"
CONTOSO = "Inbox/Projects/Contoso"
KEY = "inbox/projects/contoso"


def _mbox(path: Path, *messages: bytes) -> None:
    box = stdlib_mailbox.mbox(path)
    for m in messages:
        box.add(m)
    box.flush()
    box.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    inbox = tmp_path / "data" / ADDRESS / "inbox"
    (inbox / "Projects" / "Other").mkdir(parents=True)
    (inbox / "inbox-1.eml").write_bytes(raw("<inbox-1@example.net>", subject="In the Inbox"))
    _mbox(
        inbox / "Projects" / "Contoso.mbox",
        raw("<contoso-1@example.net>", subject="Contoso kickoff"),
        raw("<contoso-2@example.net>", subject="Contoso budget"),
    )
    (inbox / "Projects" / "Other" / "other-1.eml").write_bytes(raw("<other-1@example.net>", subject="Other"))
    return tmp_path / "data"


@pytest.fixture
def sim(data_dir: Path, tmp_path: Path) -> Iterator[Simulator]:
    with Simulator.from_directory(data_dir, cert_dir=tmp_path / "ca") as simulator:
        yield simulator


@pytest.fixture(params=["exchange_ews", "exchange_graph"])
def alice(request: pytest.FixtureRequest, sim: Simulator, db: None) -> Mailbox:
    profile = add_sim_profile(sim, f"sim-{request.param}", request.param)
    # Track option 4, "No email messages": a folder rule tracks whatever the option says.
    return add_enabled_mailbox(ADDRESS, profile, track=4, username="alice")


@pytest.fixture
def contoso(db: None) -> CrmRecord:
    return CrmRecord.objects.create(kind="account", name="Contoso", email1="info@contoso.example")


def control(sim: Simulator, method: str, what: str, *, json: object = None, **query: str) -> object:
    """The simulator's control API, over HTTPS like any client."""
    response = requests.request(
        method,
        f"{sim.url}/_simulator/{what}",
        params={"mailbox": ADDRESS, **query},
        json=json,
        verify=str(sim.ca_file),
        timeout=10,
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _map(path: str = "inbox/projects/contoso") -> FolderTrackingRule:
    out = run_command("folderrules", "alice", "add", path, "--regarding", "account:Contoso")
    assert out.out.strip() == f"added {CONTOSO} regarding account:Contoso"
    return FolderTrackingRule.objects.get()


def _decisions(folder: str) -> list[Decision]:
    return list(Decision.objects.filter(folder=folder).order_by("message_id"))


def test_a_mapped_folder_is_tracked_regarding_its_record_whatever_the_track_option(alice, contoso):
    rule = _map()
    assert rule.folder_id and rule.folder == CONTOSO

    run_scan_cycle(alice.pk)

    mapped = _decisions(CONTOSO)
    assert [(d.message_id, d.outcome, d.reason, d.regarding_id) for d in mapped] == [
        ("<contoso-1@example.net>", Outcome.TRACKED, Reason.FOLDER_RULE, contoso.pk),
        ("<contoso-2@example.net>", Outcome.TRACKED, Reason.FOLDER_RULE, contoso.pk),
    ]
    assert TrackedEmail.objects.get(message_id="<contoso-1@example.net>").regarding_id == contoso.pk
    # the Inbox follows the Track option ("No email messages"); the unmapped sibling is never read
    assert _decisions("inbox")[0].outcome == Outcome.NOT_TRACKED
    assert not Decision.objects.filter(message_id="<other-1@example.net>").exists()
    assert not ScanRun.objects.filter(folder__icontains="other").exists()
    listed = run_command("folderrules", "alice", "list", "--json").json_lines()
    assert listed == [
        {
            "path": CONTOSO,
            "folder_id": rule.folder_id,
            "state": "active",
            "regarding": {"kind": "account", "name": "Contoso"},
            "messages": 2,
            "last_scan": listed[0]["last_scan"],
        }
    ]
    assert listed[0]["last_scan"] is not None


def test_renaming_the_folder_keeps_its_rule_and_sync_state(alice, contoso, sim):
    rule = _map()
    run_scan_cycle(alice.pk)
    renamed = control(sim, "POST", "folders", folder=CONTOSO, json={"name": "Contoso Ltd"})
    assert renamed == {"path": "Inbox/Projects/Contoso Ltd"}
    sim.store.add_message(
        ADDRESS, KEY, raw("<contoso-3@example.net>", subject="After the rename"), datetime.now(UTC)
    )

    run_scan_cycle(alice.pk)

    rule.refresh_from_db()
    assert rule.folder == "Inbox/Projects/Contoso Ltd" and rule.folder_deleted_at is None
    renamed = _decisions("Inbox/Projects/Contoso Ltd")
    # incremental: only the new message, nothing read again
    assert [(d.message_id, d.reason) for d in renamed] == [("<contoso-3@example.net>", Reason.FOLDER_RULE)]
    assert renamed[0].regarding_id == contoso.pk
    assert (
        run_command(
            "ingest",
            "--mailbox",
            ADDRESS,
            "--folder",
            "INBOX/projects/contoso ltd",
            "--json",
            str(_eml(sim, "<contoso-4@example.net>")),
        ).json_lines()[0]["folder"]
        == rule.folder
    )


def _eml(sim: Simulator, message_id: str) -> Path:
    path = Path(sim.ca_file).parent / "one.eml"
    path.write_bytes(raw(message_id, subject="Ingested"))
    return path


def test_deleting_the_folder_makes_the_rule_inactive_with_a_warning(alice, contoso, sim):
    rule = _map()
    run_scan_cycle(alice.pk)
    control(sim, "DELETE", "folders", folder="Inbox/Projects")

    result = run_scan_cycle(alice.pk)

    assert result.startswith("scanned")
    rule.refresh_from_db()
    assert rule.folder_deleted_at is not None
    alert = Alert.objects.get(mailbox=alice, level=AlertLevel.WARNING)
    assert CONTOSO in alert.message
    assert AuditEvent.objects.filter(action=AuditAction.FOLDER_RULE_FOLDER_GONE).count() == 1
    assert ScanRun.objects.filter(folder=CONTOSO).count() == 1  # the first cycle's only
    run_scan_cycle(alice.pk)
    assert Alert.objects.filter(level=AlertLevel.WARNING).count() == 1  # said once
    assert run_command("folderrules", "alice", "list", "--json").json_lines()[0]["state"] == "folder_deleted"
    with pytest.raises(CommandError, match="deleted"):
        run_command("ingest", "--mailbox", ADDRESS, "--folder", CONTOSO, str(_eml(sim, "<x@example.net>")))


def test_a_tracked_message_moved_into_the_folder_gets_its_regarding_not_a_second_email(alice, contoso, sim):
    do_set_personal_options(alice.user, track=0)  # the Inbox message is tracked first, regarding nothing
    _map()
    run_scan_cycle(alice.pk)
    first = TrackedEmail.objects.get(message_id="<inbox-1@example.net>")
    assert first.regarding_id is None
    control(sim, "POST", "move", message_id="<inbox-1@example.net>", to=CONTOSO)

    run_scan_cycle(alice.pk)

    assert TrackedEmail.objects.filter(message_id="<inbox-1@example.net>").count() == 1
    first.refresh_from_db()
    assert first.regarding_id == contoso.pk
    moved = Decision.objects.get(folder=CONTOSO, message_id="<inbox-1@example.net>")
    assert (moved.outcome, moved.reason, moved.tracked_email_id) == (
        Outcome.TRACKED,
        Reason.FOLDER_RULE,
        first.pk,
    )
    event = AuditEvent.objects.get(action=AuditAction.FOLDER_RULE_REGARDING)
    assert event.old_value == "(no regarding record)" and "Contoso" in event.new_value


def test_the_start_date_counts_from_when_a_message_was_moved_in(alice, contoso, sim):
    Mailbox.objects.filter(pk=alice.pk).update(process_emails_received_after=datetime(2026, 6, 1, tzinfo=UTC))
    _map()
    [moving] = [m for m in sim.store.all_messages(ADDRESS, "inbox")]
    sim.store.move_message(ADDRESS, moving.item_id, KEY)

    run_scan_cycle(alice.pk)

    outcomes = {d.message_id: (d.outcome, d.reason) for d in _decisions(CONTOSO)}
    # received in March, before the start date; filed into the folder today
    assert outcomes["<inbox-1@example.net>"] == (Outcome.TRACKED, Reason.FOLDER_RULE)
    assert outcomes["<contoso-1@example.net>"] == (Outcome.NOT_TRACKED, Reason.BEFORE_WATERMARK)


def test_with_folder_tracking_off_rules_are_kept_but_not_scanned(alice, contoso):
    rule = _map()
    check_set_org_setting("IsFolderBasedTrackingEnabled", "false", actor_label="test")

    run_scan_cycle(alice.pk)

    assert FolderTrackingRule.objects.filter(pk=rule.pk).exists()
    assert not ScanRun.objects.filter(folder=CONTOSO).exists()
    assert run_command("folderrules", "alice", "list", "--json").json_lines()[0]["state"] == "tracking_off"
    with pytest.raises(CommandError, match="turned off"):
        run_command("folderrules", "alice", "add", "Inbox/Projects/Other")


def test_an_unchanged_mapped_folder_costs_at_most_two_requests_a_cycle(alice, contoso, sim):
    _map()
    run_command("folderrules", "alice", "add", "Inbox/Projects/Other")
    run_scan_cycle(alice.pk)
    sim.clear_requests()

    run_scan_cycle(alice.pk)

    made = sum(1 for r in sim.requests if r.protocol in ("ews", "graph"))
    scanned_folders = 3  # the Inbox and two mapped folders
    assert made <= 2 * scanned_folders
    assert Decision.objects.count() == 4  # nothing decided twice


def test_the_twenty_sixth_rule_is_refused(alice, contoso):
    for n in range(25):
        check_add_folder_rule(alice, f"Inbox/Folder {n}", folder_id=f"id-{n}")
    with pytest.raises(CommandError, match="25 folder tracking rules"):
        run_command("folderrules", "alice", "add", CONTOSO)
    assert FolderTrackingRule.objects.count() == 25


def test_a_folder_not_on_the_server_or_outside_the_inbox_is_refused(alice, contoso):
    with pytest.raises(CommandError, match="not found on the server"):
        run_command("folderrules", "alice", "add", "Inbox/Projects/Nope")
    with pytest.raises(CommandError, match="under the Inbox"):
        run_command("folderrules", "alice", "add", "Sent Items/Contoso")
    _map()
    out = run_command("folderrules", "alice", "remove", "INBOX/PROJECTS/CONTOSO")
    assert out.out.strip() == f"removed {CONTOSO}"
    assert not FolderTrackingRule.objects.exists()


@pytest.mark.parametrize("kind", ["queue", "imap"])
def test_queue_and_imap_mailboxes_have_no_folder_rules(kind, db, sim, imap_profile, contoso):
    if kind == "queue":
        profile = add_sim_profile(sim, "sim-ews", "exchange_ews")
        mailbox = run_mailbox_add_queue(profile.name)
        with pytest.raises(ActionError, match="not queues"):
            add_folder_rule(mailbox, CONTOSO)
    else:
        add_enabled_mailbox(ADDRESS, imap_profile, username="alice")
        with pytest.raises(CommandError, match="IMAP"):
            run_command("folderrules", "alice", "add", CONTOSO)
    assert not FolderTrackingRule.objects.exists()


def run_mailbox_add_queue(profile: str) -> Mailbox:
    run_command(
        "mailbox", "add", "support@contoso.com", "--queue", "Support", "--profile", profile, "--approve"
    )
    return Mailbox.objects.get(email_address="support@contoso.com")


def test_scan_mailbox_all_scans_the_mapped_folders_too(alice, contoso):
    _map()
    out = run_command("scan_mailbox", ADDRESS, "--json").json_lines()
    assert [(o["folder"], o["tracked"]) for o in out] == [("inbox", 0), (CONTOSO, 2)]
