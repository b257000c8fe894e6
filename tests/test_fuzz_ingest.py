"""Fuzzed and extreme mail through `ingest` (issue #7): every message ends decided, or failed/unparseable
with the parser's own error in its trace; no exception leaves ingest, and one bad file in a batch never
costs the good message beside it.

Hypothesis runs derandomized and without its example database, so CI sees the same examples every run.
Each example is one ingest of a folder (the bad files around one good message), rolled back afterwards.
"""

from __future__ import annotations

import base64
import email.utils
import json
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CommandResult, make_mailbox
from tracking.messages import ParseFailure, RawItem, parse_message
from tracking.models import Decision, EmailServerProfile, Mailbox, ScanRun
from tracking.sources.local import read_paths

Cmd = Callable[..., CommandResult]

DECIDED = {"tracked", "already_tracked", "not_tracked"}
# The only two ways parse_message may give up; anything else would be its catch-all hiding a crash.
PARSER_REFUSALS = ("the message is empty", "no From, To, Subject, Date or Message-ID header could be read")
# More addresses than a message may carry (issue 17.3): "To: 1,001 addresses; a header may carry at most …"
OVER_THE_ADDRESS_LIMIT = re.compile(
    r"(From|To|Cc|Bcc): .* a header may carry at most |[\d,]+ addresses in From"
)
GOOD_ID = "<the-good-one@fuzz.example>"
GOOD = (
    b"From: Ann Example <ann@example.net>\r\nTo: carol@contoso.com\r\nSubject: the good one\r\n"
    b"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\nMessage-ID: " + GOOD_ID.encode() + b"\r\n\r\nHello.\r\n"
)
REAL_HEADERS = (
    "From", "To", "Cc", "Bcc", "Sender", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "Thread-Index", "Content-Type", "Content-Transfer-Encoding", "MIME-Version", "Received",
    "FROM", "message-id", "tO",
)  # fmt: skip
CHARSETS = (
    "utf-8", "UTF-8", "iso-8859-1", "iso-2022-jp", "gb2312", "utf-16", "utf-32", "utf-7", "us-ascii",
    "unicode-escape", "rot13", "base64", "hex", "zlib", "quopri", "idna", "punycode", "undefined",
    "x-unknown", "", "?", "utf-8*en", "utf-8''", "cp65001", "\u00e9t\u00e9",
)  # fmt: skip


def fuzz(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        # One mailbox for every example: each example rolls back its own writes.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture
def carol(exchange_profile: EmailServerProfile) -> Mailbox:
    """carol@contoso.com on Exchange with Track option 0, so every readable message is tracked or not."""
    return make_mailbox("carol@contoso.com", "carol", exchange_profile, track=0)


def ingest_batch(cmd: Cmd, mailbox: Mailbox, bad: Sequence[bytes]) -> list[dict[str, Any]]:
    """Ingest the bad files with the good message among them, check every message, roll it all back."""
    with tempfile.TemporaryDirectory() as tmp, transaction.atomic():
        directory = Path(tmp)
        files = [*bad[: len(bad) // 2], GOOD, *bad[len(bad) // 2 :]]
        for number, data in enumerate(files):
            (directory / f"{number:04}.eml").write_bytes(data)
        items = list(read_paths([directory]))

        out = cmd("ingest", "--mailbox", mailbox.email_address, "--folder", "inbox", tmp, "--json").out
        # JSON Lines end at "\n" only: a value may hold U+0085 or U+2028, which str.splitlines splits on.
        rows = [json.loads(line) for line in out.split("\n") if line.strip()]

        assert len(rows) == len(items)
        for item, row in zip(items, rows, strict=True):
            assert isinstance(item, RawItem)
            expected = parse_message(item.data, provider_item_id=item.provider_item_id)
            assert row["message_id"] == expected.message_id
            if isinstance(expected, ParseFailure):
                assert expected.error.startswith(PARSER_REFUSALS) or OVER_THE_ADDRESS_LIMIT.match(
                    expected.error
                ), expected.error
                assert (row["outcome"], row["reason"]) == ("failed", "unparseable")
                assert row["trace"][0] == {"check": "parse", "result": "failed", "detail": expected.error}
            else:
                assert row["outcome"] in DECIDED, row
                assert row["trace"][0]["check"] == "parse" and row["trace"][0]["result"] == "ok"
        good = [r for r in rows if r["message_id"] == GOOD_ID]
        assert [(r["outcome"], r["reason"]) for r in good] == [("tracked", "accepted_all")]
        run = ScanRun.objects.latest("pk")
        # Messages that share a Message-ID (a real or a synthetic one) are decided once.
        distinct = len({r["message_id"] for r in rows})
        assert (run.status, run.items_done, run.error) == ("succeeded", distinct, "")
        stored = Decision.objects.filter(mailbox=mailbox, folder="inbox", scan_run=run)
        # Reading the rows back proves the database kept them as written (PostgreSQL refuses NUL).
        assert {d["message_id"] for d in stored.values("message_id", "trace", "message_snapshot")} == {
            r["message_id"] for r in rows
        }
        transaction.set_rollback(True)
    return rows


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

eol = st.sampled_from([b"\r\n", b"\n"])
header_name = st.one_of(
    st.sampled_from(REAL_HEADERS),
    st.text(st.characters(blacklist_characters=":\r\n"), min_size=1, max_size=30),
)
text_value = st.lists(st.text(max_size=80), min_size=1, max_size=4).map(
    lambda parts: "\r\n ".join(parts)  # folded lines
)
header_value = st.one_of(
    text_value.map(lambda v: v.encode("utf-8", "surrogatepass")),
    st.binary(max_size=120),
)


@st.composite
def messages_with_arbitrary_headers(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(header_name, header_value), max_size=12))
    end = draw(eol)
    head = end.join(name.encode("utf-8", "surrogatepass") + b": " + value for name, value in fields)
    return head + end + end + draw(st.binary(max_size=200))


@st.composite
def encoded_word(draw: st.DrawFn) -> str:
    charset = draw(st.one_of(st.sampled_from(CHARSETS), st.text(max_size=12)))
    encoding = draw(st.sampled_from("QqBbXx"))
    payload = draw(
        st.one_of(
            st.text(st.characters(whitelist_categories=("L", "N", "P", "S")), max_size=40),
            st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()[: len(b) + 3]),  # cut base64
            st.binary(max_size=30).map(lambda b: "".join(f"={c:02X}" for c in b)[:-1]),  # cut QP escape
        )
    )
    end = draw(st.sampled_from(["?=", "", "?", "?=?="]))  # "" is an unterminated word
    return f"=?{charset}?{encoding}?{payload}{end}"


@st.composite
def messages_with_rfc2047_garbage(draw: st.DrawFn) -> bytes:
    def words() -> str:
        separator = draw(st.sampled_from([" ", "", "\r\n ", "\t"]))
        return separator.join(draw(st.lists(encoded_word(), min_size=1, max_size=4)))

    lines = [
        f"From: {words()} <ann@example.net>",
        f"To: {words()} <carol@contoso.com>, {words()}",
        f"Subject: {words()}",
        f"Message-ID: {draw(st.sampled_from(['<rfc2047@fuzz.example>', words()]))}",
        f"Date: {draw(st.sampled_from(['Mon, 02 Mar 2026 09:00:00 +0000', words()]))}",
    ]
    return ("\r\n".join(draw(st.permutations(lines))) + "\r\n\r\nbody\r\n").encode("utf-8", "surrogatepass")


def base_message(number: int) -> bytes:
    return (
        "From: =?utf-8?b?w4RubmU=?= <ann@example.net>\r\n"
        "To: carol@contoso.com, Bob <bob@example.org>\r\nCc: dora@example.org\r\n"
        "Subject: =?iso-8859-1?q?R=E9union?= plain words\r\n"
        f"Date: {email.utils.format_datetime(datetime(2026, 3, 2, 9, number % 60, tzinfo=UTC))}\r\n"
        f"Message-ID: <base-{number}@fuzz.example>\r\nIn-Reply-To: <parent@fuzz.example>\r\n"
        "Thread-Index: AQHPVHnpvQ6X7gSyRWyEg8p9P8ZcMA==\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--b1--\r\n"
    ).encode()


@st.composite
def messages_with_control_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(base_message(draw(st.integers(0, 99))))
    control = st.sampled_from([bytes([c]) for c in [*range(0x20), 0x7F, 0x80, 0x9F, 0xFF]])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(control) * draw(st.integers(1, 3))
    return bytes(data)


@st.composite
def truncated_messages(draw: st.DrawFn) -> bytes:
    data = base_message(draw(st.integers(0, 99)))
    return data[: draw(st.integers(0, len(data)))]


def batches(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    return st.lists(strategy, min_size=1, max_size=3)


STRATEGIES = {
    "arbitrary headers": messages_with_arbitrary_headers(),
    "RFC 2047 garbage": messages_with_rfc2047_garbage(),
    "control bytes": messages_with_control_bytes(),
    "binary garbage": st.binary(max_size=2000),
    "truncated": truncated_messages(),
}
EXAMPLES = 150  # per strategy, each a batch of up to 3 bad files and the good one


# ---------------------------------------------------------------------------------------------
# Fuzzed batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_fuzzed_message_is_decided_or_unparseable_with_the_parsers_error(
    name: str, carol: Mailbox, cmd: Cmd
) -> None:
    @fuzz(EXAMPLES)
    @given(bad=batches(STRATEGIES[name]))
    def check(bad: list[bytes]) -> None:
        ingest_batch(cmd, carol, bad)

    check()


def test_encoded_word_garbage_never_makes_a_message_unparseable(carol: Mailbox, cmd: Cmd) -> None:
    """Bad charsets and bad base64 or QP in encoded words are read as well as they can be, never refused."""

    @fuzz(EXAMPLES)
    @given(bad=batches(messages_with_rfc2047_garbage()))
    def check(bad: list[bytes]) -> None:
        rows = ingest_batch(cmd, carol, bad)
        assert all(r["outcome"] in DECIDED for r in rows if r["message_id"] != GOOD_ID)

    check()


# ---------------------------------------------------------------------------------------------
# Hand-built extremes
# ---------------------------------------------------------------------------------------------


def recipients(count: int, domain: str) -> str:
    return ", ".join(f"Person {i} <p{i}@{domain}>" for i in range(count))


def nested_multipart(depth: int) -> bytes:
    head = b"From: ann@example.net\r\nTo: carol@contoso.com\r\nSubject: deep\r\nMessage-ID: <deep-mp@x>\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\ninnermost" + closing


def nested_rfc822(depth: int) -> bytes:
    head = b"From: ann@example.net\r\nTo: carol@contoso.com\r\nSubject: deep\r\nMessage-ID: <deep-822@x>\r\n"
    levels = b"".join(
        b"Content-Type: message/rfc822\r\n\r\nFrom: level%d@example.net\r\nSubject: level %d\r\n" % (i, i)
        for i in range(depth)
    )
    return head + levels + b"\r\ninnermost\r\n"


def garbage(size: int) -> bytes:
    return random.Random(7).randbytes(size)


EXTREMES: dict[str, bytes] = {
    "empty file": b"",
    "whitespace only": b" \t\r\n\r\n  \n",
    "one NUL": b"\x00",
    "an mbox separator and nothing else": b"From MAILER-DAEMON Mon Mar  2 09:00:00 2026\n",
    "a body and no header": b"\r\n\r\nJust a body.\r\n",
    "10,000 recipients in To and in Cc": (
        f"From: ann@example.net\r\nTo: {recipients(10_000, 'to.example')}\r\n"
        f"Cc: {recipients(10_000, 'cc.example')}\r\nSubject: many\r\nMessage-ID: <many@x>\r\n\r\nHi\r\n"
    ).encode(),
    "1 MB subject": b"From: ann@example.net\r\nSubject: " + b"x" * 1_000_000 + b"\r\n\r\nHi\r\n",
    "1 MB subject of encoded words": b"From: ann@example.net\r\nSubject: "
    + b"\r\n ".join([b"=?utf-8?b?w6TDtsO8?="] * 50_000)
    + b"\r\n\r\nHi\r\n",
    "multipart nested 1,000 deep": nested_multipart(1_000),
    "message/rfc822 nested 1,000 deep": nested_rfc822(1_000),
    "1 MB of binary garbage": garbage(1_000_000),
    "1 MB of NUL bytes": b"\x00" * 1_000_000,
    "1 MB header line without a colon": b"X" * 1_000_000 + b"\r\nFrom: ann@example.net\r\n\r\nHi\r\n",
    "a 10,000-character header name": b"X" * 10_000 + b": y\r\nFrom: ann@example.net\r\n\r\nHi\r\n",
    "10,000 duplicated From, To and Message-ID fields": b"".join(
        b"From: a%d@example.net\r\nTo: b%d@example.net\r\nMessage-ID: <dup-%d@x>\r\n" % (i, i, i)
        for i in range(10_000)
    )
    + b"\r\nHi\r\n",
    "a 100,000-character Message-ID": b"From: ann@example.net\r\nMessage-ID: <"
    + b"i" * 100_000
    + b"@x>\r\n\r\nHi\r\n",
    "every byte value in every header": b"\r\n".join(
        name + b": " + bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"")
        for name in (b"From", b"To", b"Subject", b"Message-ID", b"Date", b"Thread-Index", b"References")
    )
    + b"\r\n\r\nHi\r\n",
    "truncated inside an encoded word": b"From: ann@example.net\r\nSubject: =?utf-8?b?w6TD",
    "truncated inside a header name": b"From: ann@example.net\r\nMessage-I",
    "truncated inside a MIME boundary": nested_multipart(3)[:-12],
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_an_extreme_message_is_decided_or_unparseable_beside_a_good_one(
    name: str, carol: Mailbox, cmd: Cmd
) -> None:
    ingest_batch(cmd, carol, [EXTREMES[name]])


def test_all_the_extremes_in_one_batch_are_each_decided_once(carol: Mailbox, cmd: Cmd) -> None:
    rows = ingest_batch(cmd, carol, list(EXTREMES.values()))

    outcomes = {r["message_id"]: (r["outcome"], r["reason"]) for r in rows}
    # 10,000 To and 10,000 Cc carry more addresses than a message may (issue 17.3): failed, not read
    assert "<many@x>" not in outcomes
    assert any(r["trace"][0]["detail"].startswith("To: far more addresses than that") for r in rows)
    assert outcomes["<deep-mp@x>"][0] == "tracked"
    assert outcomes["<deep-822@x>"][0] == "tracked"
