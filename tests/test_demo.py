"""The demo end to end: mailboxes read through the simulator with real exchangelib (EWS) and msal (Graph)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncadmin.devtools.simulators.server import Simulator
from tracking.choices import ScanStatus
from tracking.models import Decision, Mailbox, ScanRun, TrackedEmail
from tracking.scanning import scan_folder

DEMO_MAIL = Path(__file__).resolve().parent.parent / "demo" / "mail"

# Measured once with `ingest` of the same files into the same organisation: reading through EWS or
# Graph must decide exactly as reading the MIME files does.
EXPECTED = {
    # Allen's option 2 takes his mail with his deactivated personal contact (pallen70@hotmail.com):
    # the only record with that address resolves though inactive (tracking-rules §6).
    ("k..allen@enron.com", "inbox"): (66, 3),
    ("k..allen@enron.com", "sentitems"): (345, 109),
    ("mike.grigsby@enron.com", "inbox"): (77, 14),
    ("mike.grigsby@enron.com", "sentitems"): (292, 71),
    ("users@httpd.apache.org", "inbox"): (108, 108),
}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator.from_directory(DEMO_MAIL, cert_dir=tmp_path / "ca") as simulator:
        yield simulator


def load(cmd, sim: Simulator):
    return cmd("load_demo", "--simulator-url", sim.url, "--ca-file", str(sim.ca_file))


def decided() -> dict[tuple[str, str], tuple[int, int]]:
    out = {}
    for (address, folder), _ in EXPECTED.items():
        rows = Decision.objects.filter(mailbox__email_address=address, folder=folder)
        out[(address, folder)] = (rows.count(), rows.filter(outcome="tracked").count())
    return out


def test_it_loads_the_demo_through_ews_and_graph(db, cmd, sim):
    result = load(cmd, sim)
    assert "Test & Enable passed" in result.out
    assert decided() == EXPECTED
    assert sim.count("ews") > 0 and sim.count("graph") > 0
    assert all(m.enabled and m.incoming_status == "success" for m in Mailbox.objects.all())


def test_it_adds_nothing_when_loaded_again(db, cmd, sim):
    load(cmd, sim)
    decisions, tracked = Decision.objects.count(), TrackedEmail.objects.count()
    sim.clear_requests()
    load(cmd, sim)
    assert (Decision.objects.count(), TrackedEmail.objects.count()) == (decisions, tracked)
    # an unchanged folder costs one SyncFolderItems (EWS) or one delta request (Graph)
    assert sim.count("ews", "SyncFolderItems", "k..allen@enron.com") == 2
    assert sim.count("graph", "delta", "mike.grigsby@enron.com") == 2


def test_it_recovers_from_an_invalid_sync_state_without_duplicates(db, cmd, sim):
    load(cmd, sim)
    mailbox = Mailbox.objects.get(email_address="k..allen@enron.com")
    sim.store.invalidate_sync_states("k..allen@enron.com", "inbox")
    sim.store.add_message(
        "k..allen@enron.com",
        "inbox",
        b"From: buyer@fabrikam.example\r\nTo: k..allen@enron.com\r\nSubject: late arrival\r\n"
        b"Message-ID: <late@fabrikam.example>\r\nDate: Mon, 31 Dec 2001 10:00:00 +0000\r\n\r\nhi\r\n",
    )
    run = scan_folder(mailbox.pk, "inbox")
    assert run.status == ScanStatus.SUCCEEDED
    assert run.items_done == 1  # the 66 replayed messages were decided already
    assert Decision.objects.filter(mailbox=mailbox, folder="inbox").count() == 67
    assert ScanRun.objects.filter(mailbox=mailbox, folder="inbox", status=ScanStatus.FAILED).count() == 0
