"""Attachments of tracked emails read from EWS and Graph (tracking-rules §2): scans of the simulator over
HTTPS with the real clients. Name, type and size of every attachment; content under
MaxTrackedAttachmentMB, fetched after the decision and only for the messages tracked, in batched calls."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests import rq_helpers as h
from tracking.actions import check_set_org_setting
from tracking.choices import Outcome, ScanStatus
from tracking.models import Decision, Mailbox, ScanRun, TrackedAttachment, TrackedEmail
from tracking.scanning import run_scan_cycle

MB = 1024 * 1024
SMALL = bytes(range(256)) * 8  # 2 KB
BIG = b"\x01" * (MB + 1)
INNER = (
    b"From: bob@example.org\r\nSubject: Earlier\r\nMessage-ID: <earlier@example.org>\r\n\r\n"
    b"The earlier one.\r\n"
)
PROTOCOL = {"exchange_ews": "ews", "exchange_graph": "graph"}


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


def with_attachments(mid: str) -> bytes:
    """Text body, a small PDF, a file over 1 MB, an inline image with a Content-ID, an attached message."""
    return (
        "From: Ann Example <ann@example.net>\r\nTo: alice@contoso.com\r\nSubject: Quote\r\n"
        f"Date: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="OUTER"\r\n\r\n'
        "--OUTER\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe quote is attached.\r\n"
        "--OUTER\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="quote.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{b64(SMALL)}"
        "--OUTER\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{b64(BIG)}"
        "--OUTER\r\nContent-Type: image/png\r\nContent-ID: <logo@example.net>\r\n"
        'Content-Disposition: inline; filename="logo.png"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{b64(b'PNG-ish')}"
        "--OUTER\r\nContent-Type: message/rfc822\r\n\r\n" + INNER.decode() + "--OUTER--\r\n"
    ).encode()


def plain(mid: str) -> bytes:
    return (
        "From: Ann Example <ann@example.net>\r\nTo: alice@contoso.com\r\nSubject: Hello\r\n"
        f"Date: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: {mid}\r\n\r\nNo attachments.\r\n"
    ).encode()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(MailStore(), cert_dir=tmp_path / "sim", credentials=h.SIM_CREDENTIALS) as simulator:
        yield simulator


def mailbox(sim: Simulator, kind: str, *, track: int = 0) -> Mailbox:
    profile = h.add_sim_profile(sim, f"sim-{kind}", kind)
    return h.add_enabled_mailbox("alice@contoso.com", profile, track=track, username="alice")


def add(sim: Simulator, box: Mailbox, *messages: bytes) -> None:
    for raw in messages:
        sim.store.add_message(box.email_address, "inbox", raw, datetime.now(UTC))


def rows(mid: str) -> dict[str, TrackedAttachment]:
    email = TrackedEmail.objects.get(message_id=mid)
    return {a.name: a for a in email.attachments.all()}


def content_requests(sim: Simulator, kind: str) -> int:
    """The requests that carry attachments: EWS GetAttachment, Graph $batch (listings and content)."""
    return sim.count("ews", "GetAttachment") if kind == "exchange_ews" else sim.count("graph", "batch")


def last_scan(box: Mailbox) -> ScanRun:
    return ScanRun.objects.filter(mailbox=box).latest("pk")


KINDS = pytest.mark.parametrize("kind", ["exchange_ews", "exchange_graph"])


@KINDS
def test_a_tracked_message_keeps_every_attachment_and_the_content_under_the_limit(
    sim: Simulator, db: None, kind: str
):
    check_set_org_setting("MaxTrackedAttachmentMB", "1")
    box = mailbox(sim, kind)
    add(
        sim,
        box,
        with_attachments("<a1@example.net>"),
        with_attachments("<a2@example.net>"),
        plain("<p@x.net>"),
    )

    run_scan_cycle(box.pk)

    assert last_scan(box).status == ScanStatus.SUCCEEDED
    for mid in ("<a1@example.net>", "<a2@example.net>"):
        got = rows(mid)
        assert set(got) == {"quote.pdf", "big.bin", "logo.png", "Earlier.eml"}
        pdf, big, logo, inner = got["quote.pdf"], got["big.bin"], got["logo.png"], got["Earlier.eml"]
        assert (pdf.content_type, pdf.size, bytes(pdf.content or b"")) == (
            "application/pdf",
            len(SMALL),
            SMALL,
        )
        assert (big.content_type, big.size, big.content) == ("application/octet-stream", MB + 1, None)
        assert (logo.content_type, bytes(logo.content or b"")) == ("image/png", b"PNG-ish")
        assert inner.content_type == "message/rfc822"
        # an attached message comes as its MIME (EWS IncludeMimeContent, Graph $value)
        assert inner.content is not None and b"Subject: Earlier" in bytes(inner.content)
    assert not TrackedEmail.objects.get(message_id="<p@x.net>").attachments.exists()
    # Both messages' content in one GetAttachment; for Graph one $batch of listings, one of content.
    assert content_requests(sim, kind) == (1 if kind == "exchange_ews" else 2)
    # bodies came with the messages: no request per message
    assert sim.count(PROTOCOL[kind], "GetItem") <= 1 and sim.count("graph", "message") == 0


@KINDS
def test_a_limit_of_zero_keeps_metadata_only_and_fetches_no_content(sim: Simulator, db: None, kind: str):
    check_set_org_setting("MaxTrackedAttachmentMB", "0")
    box = mailbox(sim, kind)
    add(sim, box, with_attachments("<z@example.net>"))

    run_scan_cycle(box.pk)

    got = rows("<z@example.net>")
    assert set(got) == {"quote.pdf", "big.bin", "logo.png", "Earlier.eml"}
    assert all(a.content is None for a in got.values())
    assert got["quote.pdf"].size == len(SMALL)
    # EWS listed them with the message; Graph needs its one listing call, never a content call
    assert content_requests(sim, kind) == (0 if kind == "exchange_ews" else 1)


@KINDS
def test_messages_not_tracked_cost_no_attachment_request(sim: Simulator, db: None, kind: str):
    box = mailbox(sim, kind, track=1)  # replies to CRM email only: a new message is not tracked
    add(sim, box, with_attachments("<n@example.net>"))

    run_scan_cycle(box.pk)

    assert Decision.objects.get(message_id="<n@example.net>").outcome == Outcome.NOT_TRACKED
    assert content_requests(sim, kind) == 0
    assert sim.count("graph", "attachments") == 0
    assert not TrackedAttachment.objects.exists()


@pytest.mark.parametrize(
    "kind, fault",
    [
        ("exchange_ews", Fault("http_status", protocol="ews", operation="GetAttachment", status=500)),
        ("exchange_ews", Fault("drop", protocol="ews", operation="GetAttachment")),
        # the content steps of the batch fail, the listing (the first attachments request) does not
        (
            "exchange_graph",
            Fault("http_status", protocol="graph", operation="attachments", after=1, times=-1),
        ),
    ],
)
def test_content_the_server_will_not_give_leaves_the_metadata_and_the_scan_succeeds(
    sim: Simulator, db: None, kind: str, fault: Fault
):
    box = mailbox(sim, kind)
    add(sim, box, with_attachments("<f@example.net>"))
    sim.faults.add(fault)

    run_scan_cycle(box.pk)

    assert last_scan(box).status == ScanStatus.SUCCEEDED
    got = rows("<f@example.net>")
    assert set(got) == {"quote.pdf", "big.bin", "logo.png", "Earlier.eml"}
    assert all(a.content is None for a in got.values())
    assert got["quote.pdf"].size == len(SMALL)


def test_a_graph_batch_refused_whole_tracks_the_email_without_attachments(sim: Simulator, db: None):
    box = mailbox(sim, "exchange_graph")
    add(sim, box, with_attachments("<g@example.net>"))
    sim.faults.add(Fault("http_status", protocol="graph", operation="batch", status=503, times=-1))

    run_scan_cycle(box.pk)

    assert last_scan(box).status == ScanStatus.SUCCEEDED
    email = TrackedEmail.objects.get(message_id="<g@example.net>")
    assert email.body_text.strip() == "The quote is attached." and not email.attachments.exists()


def test_graph_batches_twenty_messages_a_call(sim: Simulator, db: None):
    box = mailbox(sim, "exchange_graph")
    add(
        sim,
        box,
        *(with_attachments(f"<b{n}@example.net>").replace(b64(BIG).encode(), b"") for n in range(25)),
    )
    check_set_org_setting("MaxTrackedAttachmentMB", "0")

    run_scan_cycle(box.pk)

    assert TrackedAttachment.objects.count() == 25 * 4
    # 25 listings in pages of the scan: never one call per message
    assert sim.count("graph", "attachments") == 25
    assert sim.count("graph", "batch") == 2  # 20 listings, then 5


@KINDS
def test_the_sources_keep_an_inline_images_content_id(sim: Simulator, db: None, kind: str):
    """What the CID of a `cid:` image in a tracked body is resolved by (the stored attachment's)."""
    from tracking.messages import ParsedMessage
    from tracking.scanning import source_for

    box = mailbox(sim, kind)
    add(sim, box, with_attachments("<cid@example.net>"))
    source = source_for(box)
    (msg,) = [i for page in source.sync("inbox", "") for i in page.items]
    assert isinstance(msg, ParsedMessage) and msg.has_attachments
    if kind == "exchange_ews":  # listed with the message
        logo = next(a for a in msg.attachments if a.name == "logo.png")
        assert (logo.content_id, logo.is_inline) == ("logo@example.net", True)
    fetched = source.fetch_attachments([msg], MB)  # type: ignore[attr-defined]
    # exchangelib lists item attachments before file attachments, whatever the server's order
    assert sorted(a.name for a in fetched[msg.provider_item_id].attachments) == [
        "Earlier.eml",
        "big.bin",
        "logo.png",
        "quote.pdf",
    ]


def test_graph_fetches_the_inline_images_an_html_body_shows(sim: Simulator, db: None):
    """Graph's hasAttachments is false when the only attachments are inline: the `cid:` in the body says."""
    box = mailbox(sim, "exchange_graph")
    add(
        sim,
        box,
        (
            "From: Ann Example <ann@example.net>\r\nTo: alice@contoso.com\r\nSubject: Logo\r\n"
            "Date: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: <inline@example.net>\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/related; boundary="R"\r\n\r\n'
            '--R\r\nContent-Type: text/html\r\n\r\n<p>Our logo: <img src="cid:logo@example.net"></p>\r\n'
            "--R\r\nContent-Type: image/png\r\nContent-ID: <logo@example.net>\r\n"
            'Content-Disposition: inline; filename="logo.png"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{b64(b'PNG-ish')}--R--\r\n"
        ).encode(),
    )

    run_scan_cycle(box.pk)

    email = TrackedEmail.objects.get(message_id="<inline@example.net>")
    assert 'src="cid:logo@example.net"' in email.body_html
    (logo,) = email.attachments.all()
    assert (logo.name, bytes(logo.content or b"")) == ("logo.png", b"PNG-ish")
