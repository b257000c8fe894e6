"""Nothing missed (tracking-rules §3.5): mail that turns up late in a scanned folder is evaluated when it
appears, over the real EWS and Graph clients and the simulator. No progress time turns it away."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tracking.choices import TrackOption
from tracking.models import Decision, Mailbox
from tracking.scanning import scan_folder

LATE = (
    b"From: someone@fabrikam.example\r\nTo: {address}\r\nSubject: moved out of Junk Email\r\n"
    b"Message-ID: <late-{tag}@fabrikam.example>\r\nDate: Tue, 1 Jan 2002 08:00:00 +0000\r\n\r\nhello\r\n"
)


@pytest.mark.parametrize("kind", ["exchange_ews", "exchange_graph"])
def test_a_message_moved_into_the_inbox_with_an_old_received_time_is_tracked_on_the_next_scan(
    sim: Simulator, kind: str
) -> None:
    profile = h.add_sim_profile(sim, kind, kind=kind)
    address = f"late-{kind.replace('_', '-')}@contoso.example"
    h.fill(sim, address, count=5)
    mailbox: Mailbox = h.add_enabled_mailbox(address, profile, track=TrackOption.ALL)
    assert scan_folder(mailbox.pk, "inbox").tracked == 5
    newest = max(
        d for d in Decision.objects.filter(mailbox=mailbox).values_list("received_at", flat=True) if d
    )
    # older than every message already processed, as a message sitting in Junk Email for weeks would be
    raw = LATE.replace(b"{address}", address.encode()).replace(b"{tag}", kind.encode())
    junk = sim.store.add_message(address, "junkemail", raw, received_at=datetime(2001, 1, 1, tzinfo=UTC))
    assert junk.received_at < newest
    sim.store.move_message(address, junk.item_id, "inbox")

    second = scan_folder(mailbox.pk, "inbox")

    assert (second.items_done, second.tracked) == (1, 1)
    late = Decision.objects.get(mailbox=mailbox, message_id=f"<late-{kind}@fabrikam.example>")
    assert (late.outcome, late.reason) == ("tracked", "accepted_all")
