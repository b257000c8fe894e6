"""The message types every layer shares, and the parser.

RawItem is a message as a source hands it over; ParsedMessage the one form in which the engine sees a
message. This module is the bottom: it imports nothing of the project, so sources, the engine and the
pipeline all build on it.

Parsing never raises on bad mail: what can be read is read, each problem is noted in
`defects`, and only input with nothing to identify it becomes a `ParseFailure`.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.header
import email.utils
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser

SUBJECT_MAX = 2000  # longer subjects (seen in fuzzing: 1 MB) are cut; the cut is noted as a defect
MESSAGE_ID_MAX = 998  # RFC 5322 line limit; longer ids are replaced by a hash when parsed
SYNTHETIC_DOMAIN = "synthetic.syncadmin.invalid"
_ID_RE = re.compile(r"<([^<>\s]+)>")
_CONTROL_RE = re.compile(r"[\x00\ud800-\udfff]")
_SURROGATE_RE = re.compile(r"[\udc80-\udcff]")
ADDRESS_MAX = 254  # RFC 5321 path limit; anything longer is not a deliverable address
CONVERSATION_INDEX_MAX = 1000  # bytes: 22 + 5 per reply, so ~195 replies deep
_WS_RE = re.compile(r"\s+")
_IDENTIFYING_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "sender")
# What one message may carry (README "Limits"). Above either a message is a failed decision, not read:
# parsing 465,146 addresses took 22 s of CPU for one Explain. Exchange Online's own cap is 1,000 per message.
ADDRESSES_PER_HEADER_MAX = 1000
ADDRESSES_PER_MESSAGE_MAX = 2000


@dataclass(frozen=True)
class Address:
    """An email address as found in a header: lower-cased address, decoded display name."""

    address: str
    name: str = ""

    def label(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class ServerBody:
    """A body as a server's fields gave it (Graph `body`), for a message handed over without its MIME;
    what a CRM user reads of it is made by tracking.content (sanitized, cut)."""

    kind: str  # "text" or "html"
    content: str


@dataclass(frozen=True)
class ServerAttachment:
    """An attachment as a server listed it with the message (EWS GetItem `Attachments`): name, type and
    size, not its content; `ref` is the server's id to fetch the content by, once the message is tracked."""

    ref: str
    name: str
    content_type: str
    size: int  # bytes, as the server counts them
    is_inline: bool = False
    content_id: str = ""
    is_item: bool = False  # an attached message (EWS ItemAttachment), fetched as its MIME


@dataclass(frozen=True)
class ParsedMessage:
    provider_item_id: str
    message_id: str
    message_id_synthetic: bool
    subject: str
    sender: Address | None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    sent_at: datetime | None = None
    received_at: datetime | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    conversation_index: str = ""  # hex; Exchange's ConversationIndex or the Thread-Index header
    defects: tuple[str, ...] = field(default=(), compare=False)
    # When the message last changed in its folder (EWS LastModifiedTime, Graph lastModifiedDateTime): a
    # message moved into a folder today was modified today, whatever its received time (tracking-rules §3.4).
    last_modified: datetime | None = field(default=None, compare=False)
    # The body, when the source read the message from fields (no RFC 5322 bytes to read it from); the
    # engine never reads it, the page commit stores it when the message is tracked (tracking-rules §2).
    body: ServerBody | None = field(default=None, compare=False, repr=False)
    # Attachments the source listed with the message (EWS), and whether the server says it has any (EWS,
    # Graph); their content is fetched only for messages a page tracks (tracking.pipeline.contents_of).
    attachments: tuple[ServerAttachment, ...] = field(default=(), compare=False, repr=False)
    has_attachments: bool = field(default=False, compare=False, repr=False)

    @property
    def recipients(self) -> tuple[tuple[str, Address], ...]:
        """To, then Cc, then Bcc, each tagged with its field."""
        return (
            tuple(("to", a) for a in self.to)
            + tuple(("cc", a) for a in self.cc)
            + tuple(("bcc", a) for a in self.bcc)
        )


@dataclass(frozen=True)
class ParseFailure:
    """Input that could not be read as a message at all; becomes a failed/unparseable decision."""

    provider_item_id: str
    message_id: str
    error: str
    received_at: datetime | None = None
    subject: str = ""
    sender: str = ""
    fetch_failed: bool = False  # the source could not fetch it (reason fetch_error), rather than parse it


@dataclass(frozen=True)
class RawItem:
    """A message as a source hands it over: provider id, RFC 5322 bytes, received time if known."""

    provider_item_id: str
    data: bytes
    received_at: datetime | None = None


# What a source yields: raw bytes to parse, or a message it has already read from the server's fields.
Item = RawItem | ParsedMessage | ParseFailure


def clean_text(value: str) -> str:
    """Drop NUL and lone surrogates: PostgreSQL text and JSON refuse them."""
    return _CONTROL_RE.sub("", value)


def _recover_8bit(value: str) -> str:
    """Undo the compat32 parser's surrogate escapes of raw 8-bit header bytes: UTF-8, else Windows-1252."""
    if not _SURROGATE_RE.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _decode_bytes(chunk: bytes, charset: str | None) -> str:
    if charset is None:
        # decode_header hands back the plain (not encoded-word) parts of a str this way
        return chunk.decode("raw-unicode-escape", errors="replace")
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return chunk.decode(candidate, errors="replace")
        except (LookupError, ValueError):
            # An unknown charset, one that is no text encoding (rot13, base64, zlib: found by fuzzing),
            # a decoder that refuses errors="replace" (idna, undefined), or a NUL in the charset name.
            continue
    return chunk.decode("latin-1")


def decode_header_value(value: str | None) -> str:
    """Decode RFC 2047 words and stray 8-bit bytes of one raw header value into text; never raises."""
    if not value:
        return ""
    raw = _recover_8bit(value)
    try:
        parts = email.header.decode_header(raw)
    except (ValueError, AssertionError, LookupError, email.errors.HeaderParseError):
        # HeaderParseError: a base64 word that does not decode (found by fuzzing)
        return clean_text(_WS_RE.sub(" ", raw)).strip()
    out: list[str] = []
    for chunk, charset in parts:
        out.append(chunk if isinstance(chunk, str) else _decode_bytes(chunk, charset))
    # decode_header drops the space between an encoded word and plain text only on the str path.
    text = "".join(out) if all(isinstance(c, bytes) for c, _ in parts) else " ".join(o.strip() for o in out)
    return clean_text(_WS_RE.sub(" ", text)).strip()


def has_unstorable_characters(text: str) -> bool:
    """Whether clean_text would change anything in `text` (checked once for a whole file, it spares the
    check of each of its values)."""
    return _CONTROL_RE.search(text) is not None


def normalize_address(raw: str, *, clean: bool = True) -> str | None:
    """Lower-case an address and keep it only if it has a local part and a domain.

    `clean` False: `raw` is known to hold nothing clean_text would drop (has_unstorable_characters).
    """
    address = (clean_text(raw) if clean else raw).strip().strip("<>\"' ").lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address or len(address) > ADDRESS_MAX:
        return None
    return address


# A mailbox address as SyncAdmin accepts one for a mailbox: RFC 5322 atext and dots before the @ (no quoted
# local part, so never "/", "\\", spaces or a second @) and a host name after it. Addresses in messages are
# read more leniently (normalize_address); a mailbox's address also names its folder in a local profile.
_MAILBOX_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+=?^_`{|}~.-]{1,64}")
_MAILBOX_DOMAIN_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def is_email_address(value: str) -> bool:
    """Whether `value` is an email address a mailbox can have (see _MAILBOX_LOCAL_RE)."""
    local, at, domain = value.rpartition("@")
    return (
        bool(at)
        and len(value) <= ADDRESS_MAX
        and _MAILBOX_LOCAL_RE.fullmatch(local) is not None
        and _MAILBOX_DOMAIN_RE.fullmatch(domain) is not None
    )


class TooManyAddresses(ValueError):
    """A message carries more addresses than ADDRESSES_PER_HEADER_MAX or ADDRESSES_PER_MESSAGE_MAX."""


def too_many_in_header(header: str, count: int | None) -> TooManyAddresses:
    found = f"{count:,} addresses" if count is not None else "far more addresses than that"
    return TooManyAddresses(
        f"{header}: {found}; a header may carry at most {ADDRESSES_PER_HEADER_MAX:,} "
        f"and a message {ADDRESSES_PER_MESSAGE_MAX:,}, so the message is not processed"
    )


def too_many_in_message(count: int) -> TooManyAddresses:
    return TooManyAddresses(
        f"{count:,} addresses in From, To, Cc and Bcc together; a message may carry at most "
        f"{ADDRESSES_PER_MESSAGE_MAX:,} (and a header {ADDRESSES_PER_HEADER_MAX:,}), so it is not processed"
    )


def _check_address_count(counts: Sequence[int]) -> None:
    if sum(counts) > ADDRESSES_PER_MESSAGE_MAX:
        raise too_many_in_message(sum(counts))


def parse_addresses(values: Sequence[str], defects: list[str], header: str) -> tuple[Address, ...]:
    """The distinct addresses of a header's values; TooManyAddresses above ADDRESSES_PER_HEADER_MAX.

    Every address has an "@", and a display name seldom more than one: values with over twice the
    limit of them are refused before the (linear but slow: ~40 µs an address) stdlib parser sees them.
    """
    if sum(v.count("@") for v in values) > 2 * ADDRESSES_PER_HEADER_MAX:
        raise too_many_in_header(header, None)
    found: list[Address] = []
    seen: set[str] = set()
    for name, addr in email.utils.getaddresses([_recover_8bit(v) for v in values]):
        if not addr and not name:
            continue
        address = normalize_address(addr)
        if address is None:
            defects.append(f"{header}: ignored {clean_text(addr or name)[:80]!r}, not an email address")
            continue
        if address in seen:
            continue
        seen.add(address)
        found.append(Address(address, decode_header_value(name).strip("\"' ")))
    if len(found) > ADDRESSES_PER_HEADER_MAX:
        raise too_many_in_header(header, len(found))
    return tuple(found)


def parse_message_ids(value: object) -> tuple[str, ...]:
    text = clean_text(str(value or ""))
    return tuple(dict.fromkeys(f"<{m}>" for m in _ID_RE.findall(text) if len(m) + 2 <= MESSAGE_ID_MAX))


def normalize_message_id(value: object) -> str:
    text = clean_text(str(value or "")).strip()
    ids = parse_message_ids(text)
    if ids:
        return ids[0]
    bare = _WS_RE.sub("", text).strip("<>")
    if not bare:
        return ""
    candidate = f"<{bare}>"
    if len(candidate) > MESSAGE_ID_MAX:
        return f"<{hashlib.sha256(candidate.encode()).hexdigest()}@long-id.{SYNTHETIC_DOMAIN}>"
    return candidate


def synthetic_message_id(sender: str, date: datetime | None, subject: str, recipients: Iterable[str]) -> str:
    """A stable Message-ID for mail that has none (tracking-rules §7), so rescans stay idempotent."""
    material = "\n".join([sender, date.isoformat() if date else "", subject, ",".join(sorted(recipients))])
    return f"<{hashlib.sha256(material.encode('utf-8', 'replace')).hexdigest()[:40]}@{SYNTHETIC_DOMAIN}>"


def parse_date(value: str | None, defects: list[str]) -> datetime | None:
    if not value:
        return None
    text = decode_header_value(value)
    try:
        parsed = email.utils.parsedate_to_datetime(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        # OverflowError: a date at the edge of the calendar that moving to UTC pushes past it
        defects.append(f"Date: unreadable {text[:60]!r}")
        return None


def parse_conversation_index(value: object, defects: list[str]) -> str:
    text = clean_text(str(value or "")).strip()
    if not text:
        return ""
    try:
        raw = base64.b64decode(_WS_RE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        defects.append("Thread-Index: not base64, ignored")
        return ""
    if len(raw) < 22:
        defects.append("Thread-Index: shorter than 22 bytes, ignored")
        return ""
    if len(raw) > CONVERSATION_INDEX_MAX:
        defects.append(f"Thread-Index: {len(raw)} bytes, longer than {CONVERSATION_INDEX_MAX}, ignored")
        return ""
    return raw.hex()


def _headers(msg: Message, name: str) -> list[str]:
    """Raw values of a header (all occurrences): msg.get_all would turn 8-bit bytes into U+FFFD."""
    wanted = name.lower()
    return [str(v) for k, v in msg.raw_items() if k.lower() == wanted]


def _header(msg: Message, name: str) -> str | None:
    values = _headers(msg, name)
    return values[0] if values else None


def parse_message(
    raw: bytes, *, provider_item_id: str = "", received_at: datetime | None = None
) -> ParsedMessage | ParseFailure:
    """Parse RFC 5322 bytes; see the module docstring for what counts as unparseable."""
    fallback_id = f"<{hashlib.sha256(raw).hexdigest()[:40]}@unparseable.{SYNTHETIC_DOMAIN}>"
    if not raw.strip():
        return ParseFailure(provider_item_id, fallback_id, "the message is empty", received_at)
    try:
        # Headers only: nothing in the body is needed to decide, and the full parser takes seconds
        # on MIME nested 1,000 deep (seen in fuzzing) before it fails with RecursionError.
        msg = BytesParser().parsebytes(raw, headersonly=True)
        present = {k.lower() for k in msg}
    except Exception as exc:  # the stdlib parser is meant not to raise; a bug there must not stop a scan
        return ParseFailure(provider_item_id, fallback_id, f"{type(exc).__name__}: {exc}", received_at)
    if not present.intersection(_IDENTIFYING_HEADERS):
        detail = "; ".join(type(d).__name__ for d in msg.defects) or "no header fields found"
        return ParseFailure(
            provider_item_id,
            fallback_id,
            f"no From, To, Subject, Date or Message-ID header could be read ({detail})",
            received_at,
        )
    try:
        return _build(msg, provider_item_id, received_at)
    except TooManyAddresses as exc:
        return ParseFailure(provider_item_id, fallback_id, str(exc), received_at)
    except Exception as exc:  # same reasoning: one odd message becomes a failed decision, not a dead scan
        return ParseFailure(provider_item_id, fallback_id, f"{type(exc).__name__}: {exc}", received_at)


def _build(msg: Message, provider_item_id: str, received_at: datetime | None) -> ParsedMessage:
    defects: list[str] = [type(d).__name__ for d in msg.defects]
    subject = decode_header_value(_header(msg, "Subject"))
    if len(subject) > SUBJECT_MAX:
        defects.append(f"Subject: {len(subject)} characters, cut to {SUBJECT_MAX}")
        subject = subject[:SUBJECT_MAX]
    senders = parse_addresses(_headers(msg, "From") or _headers(msg, "Sender"), defects, "From")
    to = parse_addresses(_headers(msg, "To"), defects, "To")
    cc = parse_addresses(_headers(msg, "Cc"), defects, "Cc")
    bcc = parse_addresses(_headers(msg, "Bcc"), defects, "Bcc")
    _check_address_count([len(senders), len(to), len(cc), len(bcc)])
    sent_at = parse_date(_header(msg, "Date"), defects)
    sender = senders[0] if senders else None
    message_id = normalize_message_id(_header(msg, "Message-ID"))
    synthetic = not message_id
    if synthetic:
        message_id = synthetic_message_id(
            sender.address if sender else "", sent_at, subject, [a.address for a in to + cc + bcc]
        )
    return ParsedMessage(
        provider_item_id=provider_item_id,
        message_id=message_id,
        message_id_synthetic=synthetic,
        subject=subject,
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        sent_at=sent_at,
        received_at=received_at or sent_at,
        in_reply_to=parse_message_ids(_header(msg, "In-Reply-To")),
        references=parse_message_ids(" ".join(_headers(msg, "References"))),
        conversation_index=parse_conversation_index(_header(msg, "Thread-Index"), defects),
        defects=tuple(defects),
    )


def parsed_from_fields(
    *,
    provider_item_id: str,
    message_id: str | None,
    subject: str | None,
    sender: tuple[str, str] | None,
    to: Sequence[tuple[str, str]] = (),
    cc: Sequence[tuple[str, str]] = (),
    bcc: Sequence[tuple[str, str]] = (),
    sent_at: datetime | None = None,
    received_at: datetime | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    conversation_index: bytes | None = None,
    last_modified: datetime | None = None,
    body: ServerBody | None = None,
    attachments: Sequence[ServerAttachment] = (),
    has_attachments: bool = False,
) -> ParsedMessage:
    """Build a ParsedMessage from a server's structured fields (EWS, Graph): (name, address) pairs.

    The same normalisation as parse_message applies, so a message reads alike from MIME or from fields.
    """
    defects: list[str] = []

    def addresses(pairs: Sequence[tuple[str, str]], header: str) -> tuple[Address, ...]:
        if len(pairs) > ADDRESSES_PER_HEADER_MAX:
            raise too_many_in_header(header, len(pairs))
        out: list[Address] = []
        seen: set[str] = set()
        for name, raw in pairs:
            address = normalize_address(raw or "")
            if address is None:
                if raw or name:
                    defects.append(
                        f"{header}: ignored {clean_text(raw or name)[:80]!r}, not an email address"
                    )
                continue
            if address not in seen:
                seen.add(address)
                out.append(Address(address, clean_text(name or "").strip()))
        return tuple(out)

    text = clean_text(subject or "")
    if len(text) > SUBJECT_MAX:
        defects.append(f"Subject: {len(text)} characters, cut to {SUBJECT_MAX}")
        text = text[:SUBJECT_MAX]
    senders = addresses([sender] if sender else [], "From")
    to_a, cc_a, bcc_a = addresses(to, "To"), addresses(cc, "Cc"), addresses(bcc, "Bcc")
    _check_address_count([len(senders), len(to_a), len(cc_a), len(bcc_a)])
    for stamp in (sent_at, received_at):
        if stamp is not None and stamp.tzinfo is None:
            raise ValueError("sent_at and received_at must be timezone-aware")
    mid = normalize_message_id(message_id)
    synthetic = not mid
    if synthetic:
        mid = synthetic_message_id(
            senders[0].address if senders else "", sent_at, text, [a.address for a in to_a + cc_a + bcc_a]
        )
    index = ""
    if conversation_index:
        if len(conversation_index) >= 22:
            index = conversation_index.hex()
        else:
            defects.append("ConversationIndex: shorter than 22 bytes, ignored")
    return ParsedMessage(
        provider_item_id=provider_item_id,
        message_id=mid,
        message_id_synthetic=synthetic,
        subject=text,
        sender=senders[0] if senders else None,
        to=to_a,
        cc=cc_a,
        bcc=bcc_a,
        sent_at=sent_at,
        received_at=received_at or sent_at,
        in_reply_to=parse_message_ids(in_reply_to),
        references=parse_message_ids(references),
        conversation_index=index,
        defects=tuple(defects),
        last_modified=last_modified,
        body=body,
        attachments=tuple(attachments),
        has_attachments=has_attachments or bool(attachments),
    )


def message_snapshot(msg: ParsedMessage) -> dict[str, object]:
    """The parts of a message a Decision keeps, so that it can be tracked by hand later."""
    return {
        "sender_name": msg.sender.name if msg.sender else "",
        "to": [a.address for a in msg.to],
        "cc": [a.address for a in msg.cc],
        "bcc": [a.address for a in msg.bcc],
        "sent_at": msg.sent_at.isoformat() if msg.sent_at else None,
        "in_reply_to": list(msg.in_reply_to),
        "references": list(msg.references),
        "conversation_index": msg.conversation_index,
    }


def message_from_snapshot(
    *,
    provider_item_id: str,
    message_id: str,
    synthetic: bool,
    subject: str,
    sender: str,
    received_at: datetime | None,
    snapshot: dict[str, object],
) -> ParsedMessage:
    """The ParsedMessage a Decision was made about, from its stored fields and snapshot."""

    def addresses(key: str) -> tuple[Address, ...]:
        values = snapshot.get(key) or []
        return tuple(Address(str(a)) for a in values) if isinstance(values, list) else ()

    def ids(key: str) -> tuple[str, ...]:
        values = snapshot.get(key) or []
        return tuple(str(i) for i in values) if isinstance(values, list) else ()

    sent = snapshot.get("sent_at")
    return ParsedMessage(
        provider_item_id=provider_item_id,
        message_id=message_id,
        message_id_synthetic=synthetic,
        subject=subject,
        sender=Address(sender, str(snapshot.get("sender_name") or "")) if sender else None,
        to=addresses("to"),
        cc=addresses("cc"),
        bcc=addresses("bcc"),
        sent_at=datetime.fromisoformat(sent) if isinstance(sent, str) else None,
        received_at=received_at,
        in_reply_to=ids("in_reply_to"),
        references=ids("references"),
        conversation_index=str(snapshot.get("conversation_index") or ""),
    )
