"""The message parser (tracking.messages.parse_message): odd, broken and hostile input never raises.

Most messages are built here byte by byte; a few come from the real corpora vendored in
tests/data/corpora.
"""

from __future__ import annotations

import base64
import mailbox
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import CORPORA
from tracking.messages import SUBJECT_MAX, Address, ParsedMessage, ParseFailure, parse_message

# NUL and lone surrogates: PostgreSQL text and JSON refuse them, so no parsed text may carry one.
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
CPYTHON_FILES = sorted((CORPORA / "cpython-test-email").glob("msg_*.txt"))


def build(*headers: str | bytes, body: bytes = b"Hello.\n", eol: bytes = b"\n") -> bytes:
    lines = [h if isinstance(h, bytes) else h.encode("ascii") for h in headers]
    return eol.join(lines) + eol + eol + body


def parse(raw: bytes, **kwargs: object) -> ParsedMessage:
    result = parse_message(raw, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, ParsedMessage), result
    return result


def encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode('ascii')}?="


def text_fields(msg: ParsedMessage) -> list[str]:
    fields = [msg.subject, msg.message_id, *msg.in_reply_to, *msg.references, msg.conversation_index]
    people = ([msg.sender] if msg.sender else []) + [a for _, a in msg.recipients]
    for person in people:
        fields += [person.address, person.name]
    return fields


def first_message_containing(path: Path, needle: bytes) -> bytes:
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            data = box.get_bytes(key)
            if needle in data:
                return data
    finally:
        box.close()
    raise AssertionError(f"{needle!r} not in {path}")


class TestEncodedWords:
    def test_it_decodes_utf8_subject_and_display_name(self):
        msg = parse(
            build(
                "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Example.COM>",
                "To: =?UTF-8?B?w4lsb2RpZQ==?= <elodie@example.fr>",
                "Subject: =?utf-8?b?w5xiZXJwcsO8ZnVuZw==?= der Daten",
            )
        )
        assert msg.subject == "Überprüfung der Daten"
        assert msg.sender == Address("juergen@example.com", "Jürgen Müller")
        assert msg.to == (Address("elodie@example.fr", "Élodie"),)

    def test_it_decodes_iso_8859_1(self):
        msg = parse(
            build(
                "From: =?iso-8859-1?q?Fran=E7ois_Lef=E8vre?= <f.lefevre@example.fr>",
                "Subject: =?ISO-8859-1?Q?R=E9sum=E9_de_la_r=E9union?=",
            )
        )
        assert msg.subject == "Résumé de la réunion"
        assert msg.sender is not None
        assert msg.sender.name == "François Lefèvre"

    def test_it_decodes_iso_2022_jp(self):
        msg = parse(
            build(
                f"From: {encoded_word('山田太郎', 'iso-2022-jp')} <yamada@example.jp>",
                f"Subject: {encoded_word('会議の件について', 'iso-2022-jp')}",
            )
        )
        assert msg.subject == "会議の件について"
        assert msg.sender == Address("yamada@example.jp", "山田太郎")

    def test_it_decodes_the_ansi_x3_4_1968_charset(self):
        # Enron's Outlook wrote ASCII under its glibc name; "?" stood for the characters it lost.
        msg = parse(
            build(
                "From: =?ANSI_X3.4-1968?Q?Louise_Kitchen?= <louise.kitchen@enron.com>",
                "Subject: =?ANSI_X3.4-1968?Q?FW:_Petrobr=3Fs_MTM_Sensitivity?=",
            )
        )
        assert msg.subject == "FW: Petrobr?s MTM Sensitivity"
        assert msg.sender == Address("louise.kitchen@enron.com", "Louise Kitchen")

    def test_it_survives_8bit_bytes_in_an_ascii_encoded_word(self):
        msg = parse(build("From: a@example.com", "Subject: =?ANSI_X3.4-1968?Q?caf=E9_cr=E8me?="))
        assert msg.subject.startswith("caf")
        assert "cr" in msg.subject and msg.subject.endswith("me")
        assert not UNSTORABLE.search(msg.subject)

    def test_it_reads_an_unknown_charset(self):
        msg = parse(
            build(
                "From: =?x-no-such-charset?q?Bj=F6rn?= <bjorn@example.se>",
                "Subject: =?x-no-such-charset?Q?Hello_W=F6rld?=",
            )
        )
        assert msg.subject.startswith("Hello W")
        assert msg.subject.endswith("rld")
        assert "=?" not in msg.subject
        assert msg.sender is not None
        assert msg.sender.address == "bjorn@example.se"
        assert msg.sender.name.startswith("Bj")
        assert not any(UNSTORABLE.search(f) for f in text_fields(msg))

    def test_it_joins_adjacent_encoded_words(self):
        # RFC 2047 §6.2: white space between two encoded words is not displayed.
        msg = parse(build("From: a@example.com", "Subject: =?utf-8?q?Gr=C3=BC?= =?utf-8?q?=C3=9Fe?="))
        assert msg.subject == "Grüße"

    def test_it_joins_encoded_words_of_different_charsets(self):
        msg = parse(build("From: a@example.com", "Subject: =?iso-8859-1?q?caf=E9?= =?utf-8?q?_na=C3=AFve?="))
        assert msg.subject == "café naïve"

    def test_it_joins_a_character_split_across_two_encoded_words(self):
        # "Ü" is C3 9C in UTF-8; long subjects get folded between those two bytes.
        msg = parse(build("From: a@example.com", "Subject: =?utf-8?b?w4=?=\n =?utf-8?b?nGJlcg==?="))
        assert msg.subject == "Über"

    def test_it_keeps_the_space_between_plain_text_and_an_encoded_word(self):
        msg = parse(build("From: a@example.com", "Subject: Re: =?utf-8?q?caf=C3=A9?= tomorrow"))
        assert msg.subject == "Re: café tomorrow"

    def test_it_does_not_split_a_display_name_on_an_encoded_comma(self):
        msg = parse(build("From: =?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?= <J.Mueller@Example.de>"))
        assert msg.sender == Address("j.mueller@example.de", "Müller, Jürgen")

    def test_it_decodes_an_encoded_word_inside_quotes(self):
        # Not allowed by RFC 2047, written by Outlook all the same.
        msg = parse(build('From: "=?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?=" <j.mueller@example.de>'))
        assert msg.sender == Address("j.mueller@example.de", "Müller, Jürgen")

    def test_it_keeps_a_malformed_encoded_word_as_text(self):
        msg = parse(build("From: a@example.com", "Subject: =?utf-8?q?never closed"))
        assert "never closed" in msg.subject


class TestRaw8BitHeaders:
    def test_it_decodes_a_raw_utf8_subject(self):
        msg = parse(build("From: a@example.com", "Subject: Grüße aus Köln".encode()))
        assert msg.subject == "Grüße aus Köln"

    def test_it_decodes_a_raw_utf8_display_name(self):
        msg = parse(build("From: Jürgen Müller <j@example.de>".encode(), "Subject: x"))
        assert msg.sender == Address("j@example.de", "Jürgen Müller")

    def test_it_keeps_a_raw_utf8_address(self):
        msg = parse(build("From: a@example.com", "To: Jürgen@Example.de".encode(), "Subject: x"))
        assert msg.to == (Address("jürgen@example.de", ""),)

    def test_it_reads_raw_latin1_headers_without_crashing(self):
        msg = parse(
            build(b"From: J\xf6rg <Joerg@Example.de>", b"Subject: caf\xe9 cr\xe8me", b"To: b@example.com")
        )
        assert msg.subject.startswith("caf")
        assert msg.subject.endswith("me")
        assert msg.sender is not None
        assert msg.sender.address == "joerg@example.de"
        assert msg.to == (Address("b@example.com", ""),)
        assert not any(UNSTORABLE.search(f) for f in text_fields(msg))

    def test_it_decodes_an_encoded_word_next_to_raw_utf8(self):
        msg = parse(build("From: a@example.com", "Subject: [liste] café =?utf-8?q?na=C3=AFve?=".encode()))
        assert msg.subject == "[liste] café naïve"

    def test_it_reads_control_and_high_bytes_in_every_header(self):
        junk = bytes(range(1, 32)).replace(b"\n", b"").replace(b"\r", b"") + bytes(range(0x80, 0x100))
        msg = parse(
            build(
                b"From: " + junk + b" <a@example.com>",
                b"Subject: " + junk,
                b"Message-ID: <id" + junk.replace(b" ", b"") + b"@example.com>",
                b"In-Reply-To: <p@example.com> " + junk,
            )
        )
        assert msg.sender is not None
        assert msg.sender.address == "a@example.com"
        assert msg.in_reply_to == ("<p@example.com>",)
        assert not any(UNSTORABLE.search(f) for f in text_fields(msg))


class TestAddresses:
    def test_it_keeps_broken_local_parts_and_lowercases_them(self):
        msg = parse(
            build(
                "From: Phillip K Allen <K..Allen@Enron.COM>",
                "To: John..Arnold@ENRON.com, .leading@enron.com, trailing.@Enron.com",
                "Cc: Mike Grigsby <Mike..Grigsby@enron.com>",
            )
        )
        assert msg.sender == Address("k..allen@enron.com", "Phillip K Allen")
        assert [a.address for a in msg.to] == [
            "john..arnold@enron.com",
            ".leading@enron.com",
            "trailing.@enron.com",
        ]
        assert msg.cc == (Address("mike..grigsby@enron.com", "Mike Grigsby"),)

    def test_it_reads_a_to_with_600_recipients(self):
        people = [f'"Trader {i}" <Trader.{i}@Enron.com>' for i in range(600)]
        msg = parse(build("From: a@enron.com", "To: " + ",\n\t".join(people), "Subject: all hands"))
        assert len(msg.to) == 600
        assert msg.to[0] == Address("trader.0@enron.com", "Trader 0")
        assert msg.to[-1] == Address("trader.599@enron.com", "Trader 599")
        assert [a.address for a in msg.to] == [f"trader.{i}@enron.com" for i in range(600)]
        assert msg.defects == ()

    def test_it_reads_to_cc_and_bcc_in_order(self):
        msg = parse(
            build(
                "From: a@example.com",
                "To: t1@example.com, t2@example.com",
                "Cc: c@example.com",
                "Bcc: b@example.com",
            )
        )
        assert [(field, a.address) for field, a in msg.recipients] == [
            ("to", "t1@example.com"),
            ("to", "t2@example.com"),
            ("cc", "c@example.com"),
            ("bcc", "b@example.com"),
        ]

    def test_it_notes_a_recipient_that_is_no_address(self):
        msg = parse(build("From: a@example.com", "To: XX, b@example.com"))
        assert msg.to == (Address("b@example.com", ""),)
        assert any(d.startswith("To:") for d in msg.defects)

    def test_it_reads_group_syntax_and_undisclosed_recipients(self):
        msg = parse(
            build(
                "From: a@example.com",
                "To: undisclosed-recipients:;",
                "Cc: team: x@example.com, y@example.com;",
            )
        )
        assert msg.to == ()
        assert [a.address for a in msg.cc] == ["x@example.com", "y@example.com"]

    def test_it_falls_back_to_sender_when_from_is_missing(self):
        msg = parse(build("Sender: Robot <Robot@Example.com>", "Subject: x"))
        assert msg.sender == Address("robot@example.com", "Robot")


class TestMessageIds:
    NO_ID = build(
        "From: Alice <alice@contoso.com>",
        "To: bob@contoso.com, carol@contoso.com",
        "Date: Tue, 03 Mar 2026 10:00:00 +0100",
        "Subject: Quarterly numbers",
    )

    def test_it_keeps_a_message_id(self):
        msg = parse(build("From: a@example.com", "Message-ID: <abc.123@mail.example.com>"))
        assert msg.message_id == "<abc.123@mail.example.com>"
        assert msg.message_id_synthetic is False

    def test_it_adds_angle_brackets_to_a_bare_message_id(self):
        msg = parse(build("From: a@example.com", "Message-ID: abc.123@mail.example.com"))
        assert msg.message_id == "<abc.123@mail.example.com>"
        assert msg.message_id_synthetic is False

    def test_it_makes_a_synthetic_id_when_there_is_none(self):
        msg = parse(self.NO_ID)
        assert msg.message_id_synthetic is True
        assert re.fullmatch(r"<[^<>\s@]+@[^<>\s@]+>", msg.message_id)

    def test_it_treats_an_empty_message_id_as_missing(self):
        msg = parse(build("From: a@example.com", "Message-ID:    ", "Subject: x"))
        assert msg.message_id_synthetic is True
        assert msg.message_id.startswith("<") and msg.message_id.endswith(">")

    def test_its_synthetic_id_is_stable(self):
        first = parse(self.NO_ID, provider_item_id="inbox/1")
        again = parse(self.NO_ID, provider_item_id="inbox/1")
        assert first.message_id == again.message_id

    def test_its_synthetic_id_does_not_depend_on_where_or_when_it_was_fetched(self):
        first = parse(
            self.NO_ID, provider_item_id="AAMkAD1=", received_at=datetime(2026, 3, 3, 9, tzinfo=UTC)
        )
        rescan = parse(
            self.NO_ID, provider_item_id="AAMkAD2=", received_at=datetime(2026, 3, 4, 9, tzinfo=UTC)
        )
        assert first.message_id == rescan.message_id

    def test_its_synthetic_id_ignores_transport_headers_and_body(self):
        relayed = b"Received: from relay.example.com by mx.contoso.com; Tue, 3 Mar 2026 10:00:05 +0100\n"
        other = parse(relayed + self.NO_ID.replace(b"Hello.", b"Hello again."))
        assert other.message_id == parse(self.NO_ID).message_id

    def test_its_synthetic_id_differs_when_the_subject_differs(self):
        other = parse(self.NO_ID.replace(b"Quarterly numbers", b"Quarterly numbers (corrected)"))
        assert other.message_id_synthetic is True
        assert other.message_id != parse(self.NO_ID).message_id

    def test_its_synthetic_id_differs_when_sender_date_or_recipients_differ(self):
        base = parse(self.NO_ID).message_id
        variants = [
            self.NO_ID.replace(b"alice@contoso.com", b"mallory@contoso.com"),
            self.NO_ID.replace(b"10:00:00", b"10:00:01"),
            self.NO_ID.replace(b"carol@contoso.com", b"dave@contoso.com"),
        ]
        ids = {parse(v).message_id for v in variants}
        assert len(ids) == 3
        assert base not in ids

    def test_it_cuts_no_message_id_beyond_what_the_database_stores(self):
        msg = parse(build("From: a@example.com", "Message-ID: <" + "x" * 2000 + "@example.com>"))
        assert len(msg.message_id) <= 998
        assert msg.message_id.startswith("<") and msg.message_id.endswith(">")
        assert parse(
            build("From: a@example.com", "Message-ID: <" + "x" * 2000 + "@example.com>")
        ).message_id == (msg.message_id)


class TestMissingHeaders:
    def test_it_reads_a_message_without_date(self):
        msg = parse(build("From: a@example.com", "Message-ID: <1@example.com>", "Subject: no date"))
        assert msg.sent_at is None
        assert msg.received_at is None

    def test_it_takes_received_at_from_the_source_when_there_is_no_date(self):
        when = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
        msg = parse(build("From: a@example.com", "Subject: no date"), received_at=when)
        assert msg.sent_at is None
        assert msg.received_at == when

    def test_it_reads_a_message_without_from(self):
        msg = parse(build("To: b@example.com", "Subject: anonymous", "Message-ID: <2@example.com>"))
        assert msg.sender is None
        assert msg.to == (Address("b@example.com", ""),)

    def test_it_reads_a_message_without_date_from_or_message_id(self):
        msg = parse(build("Subject: only a subject"))
        assert msg.sender is None
        assert msg.sent_at is None
        assert msg.message_id_synthetic is True
        assert parse(build("Subject: only a subject")).message_id == msg.message_id

    def test_it_reads_the_date_as_utc(self):
        msg = parse(build("From: a@example.com", "Date: Tue, 03 Mar 2026 10:00:00 +0100"))
        assert msg.sent_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
        assert msg.received_at == msg.sent_at

    def test_it_notes_an_unreadable_date(self):
        msg = parse(build("From: a@example.com", "Date: the day after tomorrow"))
        assert msg.sent_at is None
        assert any(d.startswith("Date:") for d in msg.defects)

    def test_it_reads_a_message_whose_date_is_out_of_range(self):
        result = parse_message(
            build("From: a@example.com", "Subject: hi", "Date: Fri, 31 Dec 9999 23:59:59 -0100")
        )
        assert isinstance(result, ParsedMessage), result
        assert result.subject == "hi"
        assert result.sent_at is None
        assert any(d.startswith("Date:") for d in result.defects)


class TestThreadHeaders:
    def test_it_reads_several_in_reply_to_ids(self):
        msg = parse(build("From: a@example.com", "In-Reply-To: <p1@example.com> <p2@example.com>"))
        assert msg.in_reply_to == ("<p1@example.com>", "<p2@example.com>")

    def test_it_ignores_comments_in_in_reply_to(self):
        msg = parse(
            build("From: a@example.com", 'In-Reply-To: <p1@example.com> (Bob\'s message of "Mon, 2 Mar")')
        )
        assert msg.in_reply_to == ("<p1@example.com>",)

    def test_it_reads_folded_references_in_order_once_each(self):
        msg = parse(
            build(
                "From: a@example.com",
                "References: <r1@example.com>\n <r2@example.com>\n\t<r3@example.com> <r2@example.com>",
            )
        )
        assert msg.references == ("<r1@example.com>", "<r2@example.com>", "<r3@example.com>")

    def test_it_converts_thread_index_to_hex(self):
        # A real Outlook Thread-Index (ponymail-asf-mbox/httpd-users-2020-07.mbox).
        msg = parse(build("From: a@example.com", "Thread-Index: AdZlXGVk0dRV0vq3SpOd/1TxrpX2kg=="))
        assert msg.conversation_index == "01d6655c6564d1d455d2fab74a939dff54f1ae95f692"

    def test_it_keeps_a_reply_thread_index_prefixed_by_its_parent(self):
        parent = bytes(range(1, 23))
        child = parent + b"\x00\x01\x02\x03\x04"
        p = parse(build("From: a@example.com", "Thread-Index: " + base64.b64encode(parent).decode()))
        c = parse(build("From: a@example.com", "Thread-Index: " + base64.b64encode(child).decode()))
        assert p.conversation_index == parent.hex()
        assert c.conversation_index == child.hex()
        assert c.conversation_index.startswith(p.conversation_index)

    def test_it_ignores_a_thread_index_that_is_not_base64(self):
        msg = parse(build("From: a@example.com", "Subject: x", "Thread-Index: !!not*base64!!"))
        assert msg.conversation_index == ""
        assert msg.subject == "x"
        assert any("Thread-Index" in d for d in msg.defects)


class TestCleaning:
    def test_it_removes_nul_bytes_from_the_subject(self):
        msg = parse(build(b"From: a@example.com", b"Subject: Inv\x00oice\x00 12"))
        assert msg.subject == "Invoice 12"

    def test_it_removes_encoded_nul_bytes(self):
        msg = parse(build("From: =?utf-8?q?Ev=00e?= <eve@example.com>", "Subject: =?utf-8?q?Inv=00oice?="))
        assert msg.subject == "Invoice"
        assert msg.sender == Address("eve@example.com", "Eve")

    def test_it_cuts_a_one_megabyte_subject(self):
        msg = parse(build(b"From: a@example.com", b"Subject: " + b"Spam " * 200_000))
        assert 0 < len(msg.subject) <= SUBJECT_MAX
        assert msg.subject.startswith("Spam Spam")
        assert any(d.startswith("Subject:") for d in msg.defects)

    def test_it_does_not_note_a_normal_subject(self):
        msg = parse(build("From: a@example.com", "Subject: " + "word " * 50))
        assert not any(d.startswith("Subject:") for d in msg.defects)


class TestFailures:
    def test_it_fails_on_empty_input(self):
        result = parse_message(b"", provider_item_id="inbox/7")
        assert isinstance(result, ParseFailure)
        assert "empty" in result.error
        assert result.provider_item_id == "inbox/7"
        assert result.message_id

    def test_it_fails_on_whitespace_only(self):
        result = parse_message(b" \r\n\t\r\n")
        assert isinstance(result, ParseFailure)
        assert result.error

    def test_it_fails_on_text_without_headers(self):
        result = parse_message(b"Dear team,\nplease find the figures attached.\n")
        assert isinstance(result, ParseFailure)
        assert "header" in result.error

    def test_it_fails_on_garbage_with_a_readable_error(self):
        rng = random.Random(2047)
        when = datetime(2026, 3, 3, tzinfo=UTC)
        for _ in range(20):
            garbage = bytes(rng.randrange(256) for _ in range(3000))
            result = parse_message(garbage, provider_item_id="x", received_at=when)
            assert isinstance(result, ParseFailure)
            assert result.error.isprintable()
            assert "header" in result.error
            assert result.received_at == when
            assert re.fullmatch(r"<[^<>\s]+>", result.message_id)

    def test_its_failure_id_is_stable(self):
        garbage = b"\x00\xff\xfe no headers here \x80\x81"
        first, again = parse_message(garbage), parse_message(garbage)
        assert isinstance(first, ParseFailure) and isinstance(again, ParseFailure)
        assert first.message_id == again.message_id
        other = parse_message(garbage + b"!")
        assert other.message_id != first.message_id


class TestLineEndings:
    HEADERS = (
        "From: Alice <alice@contoso.com>",
        "To: bob@contoso.com",
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "Date: Tue, 03 Mar 2026 10:00:00 +0000",
        "Message-ID: <crlf@contoso.com>",
        "In-Reply-To: <p@contoso.com>",
        "References: <r@contoso.com>\n <p@contoso.com>",
    )

    def test_it_reads_a_crlf_message_like_an_lf_one(self):
        lf = build(*self.HEADERS)
        crlf = build(*(h.replace("\n", "\r\n") for h in self.HEADERS), body=b"Hello.\r\n", eol=b"\r\n")
        a, b = parse(lf), parse(crlf)
        assert b == a
        assert b.subject == "Grüße"
        assert b.references == ("<r@contoso.com>", "<p@contoso.com>")
        assert not any("\r" in f for f in text_fields(b))

    def test_it_makes_the_same_synthetic_id_for_crlf_and_lf(self):
        headers = ("From: a@example.com", "Subject: no id", "Date: Tue, 03 Mar 2026 10:00:00 +0000")
        assert parse(build(*headers, eol=b"\r\n")).message_id == parse(build(*headers)).message_id


class TestRealFiles:
    @pytest.mark.parametrize("path", CPYTHON_FILES, ids=[p.name for p in CPYTHON_FILES])
    def test_it_parses_every_cpython_test_message(self, path):
        result = parse_message(path.read_bytes(), provider_item_id=path.name)
        assert isinstance(result, ParsedMessage | ParseFailure)
        if isinstance(result, ParseFailure):
            assert result.error and result.error.isprintable()
            return
        assert re.fullmatch(r"<[^<>\s]+>", result.message_id)
        assert not any(UNSTORABLE.search(f) for f in text_fields(result))
        people = ([result.sender] if result.sender else []) + [a for _, a in result.recipients]
        assert all(p.address == p.address.lower() and "@" in p.address for p in people)

    def test_the_cpython_corpus_is_all_there(self):
        assert len(CPYTHON_FILES) == 48

    def test_it_reads_the_cpython_crlf_message(self):
        msg = parse((CORPORA / "cpython-test-email/msg_26.txt").read_bytes())
        assert msg.subject == "IMAP file test"
        assert msg.sender == Address("father.time@xcar.wooster.local", "Father Time")
        assert msg.message_id == "<6df65d354b.father.time@rpc.wooster.local>"

    def test_it_gives_cpython_messages_without_message_id_a_synthetic_one(self):
        msg = parse((CORPORA / "cpython-test-email/msg_07.txt").read_bytes())
        assert msg.message_id_synthetic is True
        assert msg.subject == "Here is your dingus fish"

    def test_it_reads_an_enron_ansi_x3_4_1968_subject(self):
        raw = first_message_containing(CORPORA / "enron-mbox/lavorato-j/sent_items.mbox", b"Petrobr=3Fs_MTM")
        msg = parse(raw)
        assert msg.subject in {"FW: Petrobr?s MTM Sensitivity", "RE: New Petrobr?s MTM Sensitivity"}
        assert msg.message_id.endswith("JavaMail.evans@thyme>")

    def test_it_keeps_an_enron_double_dot_sender(self):
        raw = first_message_containing(
            CORPORA / "enron-mbox/allen-p/sent_items.mbox", b"From: k..allen@enron.com"
        )
        msg = parse(raw)
        assert msg.sender is not None
        assert msg.sender.address == "k..allen@enron.com"

    def test_it_reads_a_ponymail_iso_2022_jp_sender_and_thread_index(self):
        raw = first_message_containing(
            CORPORA / "ponymail-asf-mbox/httpd-users-2020-07.mbox",
            b"GyRCOjRGIz47OSgbKEIgLyBTQVRPVRskQiEkGyhCTUFTQUhJUk8=",
        )
        msg = parse(raw)
        assert msg.sender is not None
        assert msg.sender.address == "masahiro.satou.ey@hitachi-systems.com"
        assert msg.sender.name.startswith("佐藤昌宏")
        assert "SATOU" in msg.sender.name
        assert msg.conversation_index == "01d6655c6564d1d455d2fab74a939dff54f1ae95f692"
