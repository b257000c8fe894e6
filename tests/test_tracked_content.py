"""The content of a tracked email (tracking-rules §2): bodies as text and sanitized HTML, attachments
with their content under MaxTrackedAttachmentMB; read from the message a source hands over, stored with
the page."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests import rq_helpers as h
from tests.conftest import T0, make_mailbox, scan
from tracking import pipeline
from tracking.actions import check_set_org_setting
from tracking.choices import Folder, Outcome
from tracking.content import (
    BODY_MAX,
    MULTIPART_MAX,
    extract_content,
    frame_html,
    has_remote_images,
    sanitize_html,
)
from tracking.context import load_scan_rules, mailbox_for_scan
from tracking.messages import RawItem
from tracking.models import Decision, Mailbox, TrackedAttachment, TrackedEmail
from tracking.scanning import run_scan_cycle

MB = 1024 * 1024
HEAD = (
    "From: Ann Example <ann@example.net>\r\nTo: alice@contoso.com\r\nSubject: Quote\r\n"
    "Date: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\n"
)


def mime(body: str, *, mid: str = "<content@example.net>", content_type: str = "") -> bytes:
    head = HEAD.format(mid=mid) + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return (head + "\r\n" + body).encode()


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


PDF = b"%PDF-1.4 a small document" * 10


def full_message(mid: str = "<content@example.net>", *, pdf: bytes = PDF) -> bytes:
    """multipart/mixed: an alternative (text, HTML) nested inside, a PDF and an attached message."""
    return mime(
        "--OUTER\r\n"
        'Content-Type: multipart/alternative; boundary="ALT"\r\n\r\n'
        "--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Gr=C3=BC=C3=9Fe from Ann.\r\n"
        "--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<p>Gr\u00fc\u00dfe <b>from</b> Ann.</p><script>alert(1)</script>\r\n"
        "--ALT--\r\n"
        "--OUTER\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="quote.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{b64(pdf)}"
        "--OUTER\r\nContent-Type: message/rfc822\r\n\r\n"
        "From: bob@example.org\r\nSubject: Earlier\r\n\r\nThe earlier one.\r\n"
        "--OUTER--\r\n",
        mid=mid,
        content_type='multipart/mixed; boundary="OUTER"',
    )


# --- extraction (pure) -----------------------------------------------------------------------------


def test_a_plain_message_has_a_text_body_and_nothing_else():
    content = extract_content(mime("Hello there.\r\n"), attachment_limit_bytes=MB)
    assert content.text == "Hello there.\r\n"
    assert content.html == "" and content.attachments == () and content.notes == ()


def test_an_html_only_message_has_a_sanitized_html_body():
    content = extract_content(
        mime("<p onclick='x()'>Hi</p><script>steal()</script>", content_type="text/html; charset=utf-8"),
        attachment_limit_bytes=MB,
    )
    assert content.text == ""
    assert content.html == "<p>Hi</p>"


def test_nested_alternative_with_attachments():
    content = extract_content(full_message(), attachment_limit_bytes=MB)
    assert content.text == "Grüße from Ann."
    assert content.html == "<p>Grüße <b>from</b> Ann.</p>"
    pdf, eml = content.attachments
    assert (pdf.name, pdf.content_type, pdf.size, pdf.content) == (
        "quote.pdf",
        "application/pdf",
        len(PDF),
        PDF,
    )
    assert (eml.name, eml.content_type) == ("Earlier.eml", "message/rfc822")
    assert eml.content is not None and b"The earlier one." in eml.content


def test_attachment_content_is_kept_up_to_the_limit_only():
    at_limit = extract_content(full_message(), attachment_limit_bytes=len(PDF)).attachments[0]
    assert at_limit.content == PDF
    over = extract_content(full_message(), attachment_limit_bytes=len(PDF) - 1).attachments[0]
    assert (over.name, over.size, over.content) == ("quote.pdf", len(PDF), None)
    none = extract_content(full_message(), attachment_limit_bytes=0).attachments
    assert [a.content for a in none] == [None, None] and none[0].size == len(PDF)


@pytest.mark.parametrize(
    "hostile, gone",
    [
        ("<script>alert(1)</script>", "alert"),
        ('<img src="x" onerror="alert(1)">', "onerror"),
        ('<a href="javascript:alert(1)">x</a>', "javascript"),
        ('<a href="data:text/html,&lt;script&gt;">x</a>', "data:text"),
        ('<img src="https://tracker.example/pixel.gif">', "tracker.example"),
        ('<img srcset="https://tracker.example/a.png 2x">', "tracker.example"),
        ('<link rel="stylesheet" href="https://css.example/a.css">', "css.example"),
        ("<style>@import url(https://css.example/a.css); p {color: red}</style>", "css.example"),
        ('<p style="background: url(https://tracker.example/bg.png)">x</p>', "tracker.example"),
        ('<table background="https://tracker.example/bg.png"><tr><td>x</td></tr></table>', "tracker.example"),
        ('<iframe src="https://evil.example/"></iframe>', "evil.example"),
        ('<object data="https://evil.example/x.swf"></object>', "evil.example"),
        ('<svg><image href="https://tracker.example/x.png"/></svg>', "tracker.example"),
        ('<form action="https://evil.example/"><input name="password"></form>', "evil.example"),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example/">', "evil.example"),
        ('<base href="https://evil.example/">', "evil.example"),
        ('<body onload="alert(1)">x</body>', "onload"),
        ('<video poster="https://tracker.example/p.png"></video>', "tracker.example"),
    ],
)
def test_hostile_html_loses_scripts_handlers_and_remote_loads(hostile, gone):
    clean = sanitize_html(f"<p>before</p>{hostile}<p>after</p>")
    # a remote image's address survives only as data-remote-src, which loads nothing
    assert gone not in clean.replace('data-remote-src="https://tracker.example/pixel.gif"', "")
    assert " src=" not in clean.replace('data-remote-src="', "")
    assert "<script" not in clean and "<style" not in clean
    assert "<p>before</p>" in clean and "<p>after</p>" in clean


def test_images_from_the_message_itself_and_web_links_stay():
    clean = sanitize_html(
        '<img src="cid:logo@x" alt="logo"><img src="data:image/png;base64,iVBORw0KGgo=">'
        '<a href="https://example.net/">site</a><a href="mailto:ann@example.net">mail</a>'
    )
    assert 'src="cid:logo@x"' in clean and 'src="data:image/png;base64,iVBORw0KGgo="' in clean
    assert 'href="https://example.net/"' in clean and 'href="mailto:ann@example.net"' in clean
    assert 'rel="noopener noreferrer nofollow"' in clean


def test_a_remote_image_is_parked_and_the_frame_gives_it_back_only_when_asked():
    clean = sanitize_html(
        '<img alt="a>b" src="https://t.example/p.gif?a=1&b=2" onerror="x()">'
        '<img src="http://t.example/q.gif" data-remote-src="javascript:alert(1)">'
    )
    assert clean == (
        '<img alt="a&gt;b" data-remote-src="https://t.example/p.gif?a=1&amp;b=2">'
        '<img data-remote-src="http://t.example/q.gif">'
    )
    assert frame_html(clean, {}, remote_images=False) == clean
    shown = frame_html(clean, {}, remote_images=True)
    assert (
        'data-remote-src="https://t.example/p.gif?a=1&amp;b=2" src="https://t.example/p.gif?a=1&amp;b=2"'
        in shown
    )
    assert has_remote_images(clean) and not has_remote_images("<img>")


def test_the_frame_points_cid_images_at_stored_attachments_and_drops_unknown_ones():
    clean = sanitize_html(
        '<img src="cid:Logo@X"><img src="cid:&lt;gone@x&gt;"><img src="data:image/png;base64,AA">'
    )
    shown = frame_html(clean, {"logo@x": "/emails/1/inline/2/"}, remote_images=False)
    assert shown == '<img src="/emails/1/inline/2/"><img><img src="data:image/png;base64,AA">'


def test_an_attachment_keeps_its_content_id():
    raw = (
        b"Message-ID: <cid@example.net>\r\nFrom: a@example.net\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="b"\r\n\r\n'
        b'--b\r\nContent-Type: text/html\r\n\r\n<img src="cid:logo@x">\r\n'
        b"--b\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"iVBORw0KGgo=\r\n--b--\r\n"
    )
    content = extract_content(raw, attachment_limit_bytes=MB)
    (image,) = content.attachments
    assert image.content_id == "logo@x" and image.content == b"\x89PNG\r\n\x1a\n"
    assert content.html.strip() == '<img src="cid:logo@x">'


def test_a_long_body_is_cut_with_a_note():
    content = extract_content(mime("x" * (BODY_MAX + 10)), attachment_limit_bytes=MB)
    assert content.text.startswith("x" * BODY_MAX)
    assert "was cut at 500,000" in content.text
    assert len(content.text) < BODY_MAX + 200
    html = extract_content(
        mime("<p>" + "y" * (BODY_MAX + 10) + "</p>", content_type="text/html"), attachment_limit_bytes=MB
    )
    assert "was cut at 500,000" in html.html and len(html.html) < BODY_MAX + 300
    assert any("cut" in n for n in content.notes) and any("cut" in n for n in html.notes)


def test_a_malformed_part_is_skipped_never_raised():
    # an unknown charset, a broken base64 attachment, no closing boundary, binary junk
    raw = mime(
        "--B\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nstill read\r\n"
        '--B\r\nContent-Type: application/octet-stream; name="junk.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\x00\r\n"
        "--B\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>\xff\xfe</p",
        content_type="multipart/mixed; boundary=B",
    )
    content = extract_content(raw, attachment_limit_bytes=MB)
    assert content.text == "still read"
    assert [a.name for a in content.attachments] == ["junk.bin"]
    assert content.html.startswith("<p>")


def test_deeply_nested_mime_is_not_read_at_all():
    depth = MULTIPART_MAX + 5
    body = "".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(depth)
    )
    content = extract_content(
        mime(body, content_type="multipart/mixed; boundary=b0"), attachment_limit_bytes=MB
    )
    assert content.text == "" and content.attachments == ()
    assert "not read" in content.notes[0]


def test_garbage_never_raises():
    for raw in (b"", b"\x00" * 100, b"Content-Type: multipart/mixed\r\n\r\n--\r\n", bytes(range(256)) * 20):
        extract_content(raw, attachment_limit_bytes=MB)


# --- storage through the pipeline ----------------------------------------------------------------


@pytest.fixture
def tracking_alice(alice: Mailbox) -> Mailbox:
    """Alice tracks all her mail (track 0), so every message below is tracked."""
    from tracking.actions import do_set_personal_options

    assert alice.user is not None
    do_set_personal_options(alice.user, track=0)
    return alice


def test_a_tracked_email_stores_its_bodies_and_attachments(tracking_alice: Mailbox):
    (decision,) = scan(tracking_alice, full_message())
    assert decision.outcome == Outcome.TRACKED
    email = TrackedEmail.objects.get(decisions=decision)
    assert email.body_text == "Grüße from Ann."
    assert email.body_html == "<p>Grüße <b>from</b> Ann.</p>"
    rows = list(email.attachments.all())
    assert [(a.name, a.content_type, a.size) for a in rows] == [
        ("quote.pdf", "application/pdf", len(PDF)),
        ("Earlier.eml", "message/rfc822", rows[1].size),
    ]
    assert rows[0].content is not None and bytes(rows[0].content) == PDF


def test_over_the_limit_only_name_type_and_size_are_kept(tracking_alice: Mailbox):
    check_set_org_setting("MaxTrackedAttachmentMB", "1")
    big = b"\x01" * (MB + 1)
    (decision,) = scan(tracking_alice, full_message("<big@example.net>", pdf=big))
    pdf = TrackedAttachment.objects.get(tracked_email_id=decision.tracked_email_id, name="quote.pdf")
    assert (pdf.size, pdf.content) == (MB + 1, None)
    check_set_org_setting("MaxTrackedAttachmentMB", "0")
    (decision,) = scan(tracking_alice, full_message("<none@example.net>"))
    rows = TrackedAttachment.objects.filter(tracked_email_id=decision.tracked_email_id)
    assert rows.count() == 2 and not rows.exclude(content=None).exists()


def test_messages_not_tracked_store_nothing(alice: Mailbox):
    (decision,) = scan(alice, full_message("<untracked@example.net>"))
    assert decision.outcome == Outcome.NOT_TRACKED
    assert not TrackedAttachment.objects.exists()


def test_a_rescan_adds_no_second_attachment(tracking_alice: Mailbox):
    scan(tracking_alice, full_message())
    scan(tracking_alice, full_message())
    assert TrackedEmail.objects.count() == 1 and TrackedAttachment.objects.count() == 2


def test_attachments_cost_one_insert_per_page(tracking_alice: Mailbox, exchange_profile):
    """A page's attachments go in one statement at any page size (tests/test_query_count.py's budget)."""
    rules = load_scan_rules()

    def measure(tag: str, size: int) -> int:
        box = make_mailbox(f"{tag}@contoso.com", tag, exchange_profile, track=0)
        box = mailbox_for_scan(box.pk)
        items = [
            RawItem(
                f"{tag}-{i}", full_message(f"<{tag}-{i}@example.net>"), received_at=T0 + timedelta(minutes=i)
            )
            for i in range(size)
        ]
        with CaptureQueriesContext(connection) as ctx:
            done = pipeline.process_page(box, Folder.INBOX, items, scan_run=None, now=T0, rules=rules)
        assert all(p.decision.outcome == Outcome.TRACKED for p in done)
        assert TrackedAttachment.objects.filter(tracked_email__receiving_mailbox=box).count() == 2 * size
        return len(ctx.captured_queries)

    assert measure("few", 5) == measure("many", 50)
    assert Decision.objects.count() == 55


# --- through a scan of the Exchange simulator (Graph: the body Graph sends with the message) ----------


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(MailStore(), cert_dir=tmp_path / "sim", credentials=h.SIM_CREDENTIALS) as simulator:
        yield simulator


@pytest.mark.parametrize("kind", ["exchange_graph", "exchange_ews"])
def test_a_scan_stores_the_body_the_server_sends(sim: Simulator, db: None, kind: str):
    profile = h.add_sim_profile(sim, f"sim-{kind}", kind)
    box = h.add_enabled_mailbox("alice@contoso.com", profile, track=0, username="alice")
    hostile = "<p>Hi <b>Alice</b></p><script>steal()</script><img src='https://tracker.example/p.gif'>"
    now = datetime.now(UTC)
    sim.store.add_message(
        box.email_address, "inbox", mime(hostile, mid="<g-html@example.net>", content_type="text/html"), now
    )
    sim.store.add_message(
        box.email_address, "inbox", mime("Plain words.\r\n", mid="<g-text@example.net>"), now
    )
    sim.store.add_message(box.email_address, "inbox", full_message(), now)

    run_scan_cycle(box.pk)

    html = TrackedEmail.objects.get(message_id="<g-html@example.net>")
    # the remote image's address is kept aside (shown on request), never as a source
    expected_html = '<p>Hi <b>Alice</b></p><img data-remote-src="https://tracker.example/p.gif">'
    assert html.body_html == expected_html and html.body_text == ""
    text = TrackedEmail.objects.get(message_id="<g-text@example.net>")
    assert text.body_text.strip() == "Plain words." and text.body_html == ""
    # Exchange sends the best body (HTML when there is one): a multipart/alternative message keeps that
    both = TrackedEmail.objects.get(message_id="<content@example.net>")
    expected = ("<p>Grüße <b>from</b> Ann.</p>", "") if kind == "exchange_ews" else ("", "Grüße from Ann.")
    assert (both.body_html.strip(), both.body_text.strip()) == expected
    # attachments of the one message with any, fetched after the decision (test_source_attachments.py)
    assert set(both.attachments.values_list("name", flat=True)) == {"quote.pdf", "Earlier.eml"}
