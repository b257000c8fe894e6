"""IMAP mailboxes, on the standard library's imaplib.

Endpoint:
- `imaps://host[:993]` — TLS from the first byte.
- `imap://host[:143]` — STARTTLS whenever the server offers it, verified exactly like imaps; plain text
  only when the server offers no STARTTLS (an old internal server). An admin who needs TLS guaranteed
  writes imaps://; a server that refuses plain-text logins (LOGINDISABLED) without offering STARTTLS
  is a permanent error.
Certificates are checked against the system's CAs, or only against the profile's CA bundle when set.
Login: AUTHENTICATE PLAIN when offered (UTF-8 user names and passwords), else LOGIN, as
`settings.username` (a shared login may differ from the mailbox address; empty = the address).

Folders: "inbox" is the IMAP INBOX. Sent Items are never read (tracking-rules §3: an IMAP mailbox is not
Exchange). Any other name is taken as an IMAP folder name (folder-level tracking of sub-folders).

State: "UIDVALIDITY:LASTUID". UIDs only grow within one UIDVALIDITY, so everything above LASTUID is new;
a different UIDVALIDITY means the server renumbered the folder → SyncStateInvalid (full resync; the
pipeline's decisions keyed on Message-ID keep that free of duplicates). Messages are fetched with
BODY.PEEK[] on a folder opened with EXAMINE, so reading never marks anything \\Seen.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import imaplib
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar
from urllib.parse import urlsplit

from tracking.choices import ErrorKind
from tracking.messages import SYNTHETIC_DOMAIN, Item, ParseFailure, RawItem
from tracking.sources.base import ConnectionSettings, SourceError, SyncPage, SyncStateInvalid

log = logging.getLogger(__name__)

SENT_ITEMS_UNSUPPORTED = "Sent Items are tracked only for Exchange mailboxes"
DEFAULT_PORTS = {"imaps": 993, "imap": 143}
# RFC 5530 response codes that say "try again later" rather than "this will never work".
TRANSIENT_CODES = ("UNAVAILABLE", "SERVERBUG", "INUSE", "LIMIT", "OVERQUOTA", "EXPUNGEISSUED")

# The server profile's other methods are Exchange's (OAuth2 client credentials, NTLM).
UNSUPPORTED_AUTH = ("oauth2", "ntlm")

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_endpoint(endpoint: str) -> Endpoint:
    parts = urlsplit(endpoint.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in DEFAULT_PORTS or not parts.hostname or port == -1:
        raise SourceError(
            f"the IMAP endpoint must look like imaps://host:993 or imap://host:143, not {endpoint!r}",
            kind=ErrorKind.UNREACHABLE,
            permanent=True,
        )
    return Endpoint(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


def parse_state(state: str) -> tuple[int | None, int]:
    """(UIDVALIDITY, last UID) of a saved state; (None, 0) for a first sync."""
    if not state:
        return None, 0
    match = re.fullmatch(r"(\d+):(\d+)", state)
    if not match:
        raise SyncStateInvalid(f"the saved IMAP sync state {state[:40]!r} is not UIDVALIDITY:UID")
    return int(match.group(1)), int(match.group(2))


def uid_set(uids: Sequence[int]) -> str:
    """Sorted UIDs as an IMAP sequence set with ranges: 1:3,7,9:12."""
    out: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid != prev + 1:
            out.append(f"{start}:{prev}" if prev != start else str(start))
            start = uid
        prev = uid
    out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_INTERNALDATE_RE = re.compile(
    rb'INTERNALDATE "\s?(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([-+])(\d\d)(\d\d)"'
)


def parse_internaldate(meta: bytes) -> datetime | None:
    """INTERNALDATE as an aware UTC datetime (not imaplib's local-time tuple; month names are not locale)."""
    m = _INTERNALDATE_RE.search(meta)
    if not m or m.group(2).decode() not in _MONTHS:
        return None
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    tz = timezone(-offset if m.group(7) == b"-" else offset)
    try:
        when = datetime(
            int(m.group(3)), _MONTHS[m.group(2).decode()], int(m.group(1)),
            int(m.group(4)), int(m.group(5)), int(m.group(6)), tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        return None
    return when.astimezone(UTC)


def encode_mailbox_name(name: str) -> str:
    """A folder name as an IMAP quoted string in modified UTF-7 (RFC 3501 §5.1.3); imaplib does neither."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(b64).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    text = "".join(out)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TIMING_RE = re.compile(r"\s*\(\d+\.\d+( \+ \d+\.\d+)* secs\)\.?$")  # Dovecot's "(0.001 + 0.000 secs)."


def _text(data: object) -> str:
    """The server's words from an imaplib error or response list."""
    if isinstance(data, list) and data:
        data = data[0]
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    return _TIMING_RE.sub("", text.strip())


def _abort_text(exc: imaplib.IMAP4.abort) -> str:
    """imaplib's "command: UID => Server shutting down." without imaplib's prefix."""
    return re.sub(r"^command: \S+ => ", "", _text(exc.args[0] if exc.args else exc))


def _is_transient(text: str) -> bool:
    return any(f"[{code}" in text.upper() for code in TRANSIENT_CODES)


class ImapSource:
    """MailSource for one mailbox on an IMAP server; one connection per sync or test."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings

    # -- MailSource ------------------------------------------------------------------------------

    def test_connection(self, folders: Sequence[str]) -> None:
        names = [self._folder_name(f) for f in folders]
        with self._session() as session:
            for folder, name in zip(folders, names, strict=True):
                session.examine(folder, name)

    def sync(self, folder: str, state: str) -> Iterator[SyncPage]:
        name = self._folder_name(folder)
        saved_validity, last_uid = parse_state(state)
        with self._session() as session:
            validity = session.examine(folder, name)
            if saved_validity is not None and saved_validity != validity:
                raise SyncStateInvalid(
                    f"the IMAP server renumbered {folder} (UIDVALIDITY {saved_validity} → {validity}); "
                    "a full resync is needed"
                )
            uids = session.new_uids(last_uid)
            if not uids:
                yield SyncPage(items=[], state=f"{validity}:{last_uid}", more=False, estimated_total=0)
                return
            size = max(1, self.settings.page_size)
            for start in range(0, len(uids), size):
                chunk = uids[start : start + size]
                items = session.fetch(folder, validity, chunk)
                yield SyncPage(
                    items=items,
                    # The highest UID asked for, even if it vanished meanwhile: it must not be asked again.
                    state=f"{validity}:{chunk[-1]}",
                    more=start + size < len(uids),
                    estimated_total=len(uids),
                )

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _folder_name(folder: str) -> str:
        key = folder.strip().lower()
        if key == "sentitems":
            raise SourceError(SENT_ITEMS_UNSUPPORTED, kind=ErrorKind.NOT_FOUND, permanent=True)
        if key == "inbox":
            return "INBOX"
        if not folder.strip():
            raise SourceError("no folder name given", kind=ErrorKind.NOT_FOUND, permanent=True)
        return encode_mailbox_name(folder)

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        endpoint = parse_endpoint(self.settings.endpoint)
        session = _Session(self.settings, endpoint)
        try:
            session.open()
            yield session
        finally:
            session.close()


class _Session:
    """One logged-in connection; every imaplib call goes through `call` for the error mapping."""

    def __init__(self, settings: ConnectionSettings, endpoint: Endpoint) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.conn: imaplib.IMAP4 | None = None
        self.logged_in = False

    # -- connection ------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        cafile = self.settings.ca_bundle or None
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise SourceError(
                f"cannot read the CA bundle {cafile}: {getattr(exc, 'strerror', None) or exc}",
                kind=ErrorKind.TLS,
                permanent=True,
            ) from None

    def open(self) -> None:
        ctx = self._context()
        ep, timeout = self.endpoint, self.settings.timeout
        if ep.scheme == "imaps":
            self.conn = self.call(
                lambda: imaplib.IMAP4_SSL(ep.host, ep.port, ssl_context=ctx, timeout=timeout)
            )
        else:
            self.conn = self.call(lambda: imaplib.IMAP4(ep.host, ep.port, timeout=timeout))
            if "STARTTLS" in self.conn.capabilities:
                conn = self.conn
                self.call(lambda: conn.starttls(ssl_context=ctx))
            elif "LOGINDISABLED" in self.conn.capabilities:
                raise SourceError(
                    f"{ep.url} refuses logins without TLS and offers no STARTTLS; use imaps:// instead",
                    kind=ErrorKind.TLS,
                    permanent=True,
                )
            else:
                log.warning("%s offers no STARTTLS; logging in without TLS", ep.url)
        self._login()

    def _login(self) -> None:
        conn = self.conn
        assert conn is not None
        user = self.settings.username or self.settings.mailbox
        secret = self.settings.secret
        if self.settings.auth_method in UNSUPPORTED_AUTH:
            raise SourceError(
                f"IMAP profiles log in with a user name and password; {self.settings.auth_method} "
                "authentication is not supported for IMAP",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            )
        try:
            if "AUTH=PLAIN" in conn.capabilities:
                token = f"\0{user}\0{secret}".encode()
                self.call(lambda: conn.authenticate("PLAIN", lambda _challenge: token), rethrow_no=True)
            elif not (user + secret).isascii():
                # LOGIN's quoted strings are ASCII only (RFC 3501); AUTHENTICATE PLAIN carries UTF-8.
                raise SourceError(
                    f"{self.endpoint.url} offers no AUTHENTICATE PLAIN, and LOGIN cannot carry a user name "
                    "or password with non-ASCII characters",
                    kind=ErrorKind.CREDENTIALS,
                    permanent=True,
                )
            else:
                self.call(lambda: conn.login(user, secret), rethrow_no=True)
        except imaplib.IMAP4.error as exc:
            text = _text(exc.args[0] if exc.args else exc)
            if _is_transient(text):
                raise SourceError(
                    f"{self.endpoint.url} cannot log {user} in now: {text}",
                    kind=ErrorKind.SERVER_ERROR,
                    permanent=False,
                ) from None
            raise SourceError(
                f"the server refused the credentials (user {user} at {self.endpoint.url}: {text})",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            ) from None
        self.logged_in = True

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        # The connection is going away either way and the sync's outcome already stands; a LOGOUT on a
        # connection the server dropped fails before imaplib closes the socket, hence shutdown() too.
        if self.logged_in:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()
        with contextlib.suppress(OSError):
            conn.shutdown()  # closing twice is harmless

    def call(self, fn: Callable[[], T], *, rethrow_no: bool = False) -> T:
        """Run one imaplib call; network, TLS and BYE failures become transient SourceErrors."""
        url = self.endpoint.url
        doing = "lost the connection to" if self.logged_in else "cannot reach"
        try:
            return fn()
        except imaplib.IMAP4.error as exc:
            if self.conn is None or "unexpected response" in str(exc):
                # No IMAP greeting, or an answer that is not IMAP at all: the endpoint names another
                # service. Its banner would make the alert a port scanner's read-out, so its bytes go
                # to the log only.
                log.debug("%s: not an IMAP answer: %s", url, exc)
                said = (
                    "the server refused the connection (BYE)"
                    if "* BYE" in str(exc)
                    else "the service there does not answer as an IMAP server; check the endpoint's "
                    "host and port"
                )
                raise SourceError(
                    f"cannot reach {url}: {said}",
                    kind=ErrorKind.UNREACHABLE,
                    permanent=False,
                ) from None
            if isinstance(exc, imaplib.IMAP4.abort):  # BYE or a broken stream: the server went away
                raise SourceError(
                    f"{doing} {url}: {_abort_text(exc)}", kind=ErrorKind.UNREACHABLE, permanent=False
                ) from None
            if rethrow_no:
                raise
            text = _text(exc.args[0] if exc.args else exc)
            raise SourceError(
                f"{url} answered: {text}", kind=ErrorKind.SERVER_ERROR, permanent=not _is_transient(text)
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise SourceError(
                f"cannot reach {url}: the server's certificate is not trusted ({exc.verify_message}); "
                "if the server uses an internal CA, set the profile's CA bundle to that CA's file",
                # like EWS and Graph: retrying cannot make a certificate trusted, a person must act
                kind=ErrorKind.TLS,
                permanent=True,
            ) from None
        except ssl.SSLError as exc:
            raise SourceError(
                f"cannot reach {url}: TLS failed: {exc.reason or exc}", kind=ErrorKind.TLS, permanent=False
            ) from None
        except ConnectionRefusedError:
            raise SourceError(
                f"{doing} {url}: connection refused", kind=ErrorKind.UNREACHABLE, permanent=False
            ) from None
        except TimeoutError:
            raise SourceError(
                f"{doing} {url}: no answer within {self.settings.timeout:g} s",
                kind=ErrorKind.UNREACHABLE,
                permanent=False,
            ) from None
        except socket.gaierror as exc:
            raise SourceError(
                f"cannot reach {url}: unknown host ({exc.strerror})",
                kind=ErrorKind.UNREACHABLE,
                permanent=False,
            ) from None
        except OSError as exc:
            raise SourceError(
                f"{doing} {url}: {exc.strerror or exc}", kind=ErrorKind.UNREACHABLE, permanent=False
            ) from None

    def _ok(self, what: str, typ: str, data: list[object]) -> None:
        if typ != "OK":
            text = _text(data)
            raise SourceError(
                f"{self.endpoint.url}: {what} failed: {text}",
                kind=ErrorKind.SERVER_ERROR,
                permanent=not _is_transient(text),
            )

    # -- commands --------------------------------------------------------------------------------

    def examine(self, folder: str, name: str) -> int:
        """Open the folder read-only (EXAMINE); its UIDVALIDITY."""
        conn = self.conn
        assert conn is not None
        typ, data = self.call(lambda: conn.select(name, readonly=True))
        if typ != "OK":
            text = _text(data)
            if _is_transient(text):
                raise SourceError(
                    f"{self.endpoint.url} cannot open {folder} now: {text}",
                    kind=ErrorKind.SERVER_ERROR,
                    permanent=False,
                )
            raise SourceError(
                f"mailbox folder {folder} not found or not readable for {self.settings.mailbox}: {text}",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        _, values = conn.response("UIDVALIDITY")
        try:
            return int(_text(values))
        except ValueError:
            raise SourceError(
                f"{self.endpoint.url} gave no UIDVALIDITY for {folder}; it cannot be synced incrementally",
                kind=ErrorKind.SERVER_ERROR,
                permanent=True,
            ) from None

    def new_uids(self, last_uid: int) -> list[int]:
        conn = self.conn
        assert conn is not None
        typ, data = self.call(lambda: conn.uid("SEARCH", f"UID {last_uid + 1}:*"))
        self._ok("UID SEARCH", typ, data)
        found = {int(x) for line in data if isinstance(line, bytes) for x in line.split()}
        # "n:*" with n above every UID still matches the highest one (RFC 3501 §6.4.8), hence the filter.
        return sorted(uid for uid in found if uid > last_uid)

    def fetch(self, folder: str, validity: int, uids: Sequence[int]) -> list[Item]:
        """The messages in UID order; one the server cannot deliver becomes a ParseFailure, not a stall."""
        conn = self.conn
        assert conn is not None
        typ, data = self.call(lambda: conn.uid("FETCH", uid_set(uids), "(BODY.PEEK[] INTERNALDATE)"))
        if typ == "OK":
            got = _parse_fetch(data)
            # UIDs missing from the answer were expunged since the search: nothing to decide.
            return [self._raw_item(validity, uid, *got[uid]) for uid in uids if uid in got]
        text = _text(data) or "no reason given"
        # imaplib leaves the untagged FETCH lines of a failed command behind; they would otherwise
        # surface in the next command's answer.
        partial = conn.untagged_responses.pop("FETCH", [])
        if _is_transient(text) and "SERVERBUG" not in text.upper():
            raise SourceError(
                f"{self.endpoint.url}: UID FETCH failed: {text}", kind=ErrorKind.SERVER_ERROR, permanent=False
            )
        got, answered = _parse_fetch(partial), _uids_answered(partial)
        # A message the server cannot read (SERVERBUG, no code) fails the same way every time: it
        # becomes a fetch_error decision instead of blocking the folder. It is the one the server
        # answered without a body; asking again in this session would not help (Dovecot even hangs up
        # on a client that retries a failed message). Those a server never got to are asked alone.
        out: list[Item] = []
        for uid in uids:
            if uid in got:
                out.append(self._raw_item(validity, uid, *got[uid]))
            elif uid in answered or len(uids) == 1:
                out.append(self._failure(folder, validity, uid, text))
            else:
                out.extend(self.fetch(folder, validity, [uid]))
        if len(uids) > 1 and all(isinstance(i, ParseFailure) for i in out):
            # Not one readable message: the server is in trouble, not a message. Retry later rather
            # than turn a whole page of mail into failures.
            raise SourceError(
                f"{self.endpoint.url}: UID FETCH failed for every message: {text}",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        return out

    @staticmethod
    def _raw_item(validity: int, uid: int, body: bytes, received_at: datetime | None) -> RawItem:
        return RawItem(provider_item_id=f"{validity}:{uid}", data=body, received_at=received_at)

    def _failure(self, folder: str, validity: int, uid: int, text: str) -> ParseFailure:
        item_id = f"{validity}:{uid}"
        material = f"imap\n{self.settings.mailbox.lower()}\n{folder}\n{item_id}"
        digest = hashlib.sha256(material.encode()).hexdigest()[:40]
        return ParseFailure(
            provider_item_id=item_id,
            message_id=f"<{digest}@fetch-error.{SYNTHETIC_DOMAIN}>",
            error=f"the IMAP server could not deliver UID {uid}: {text}",
            fetch_failed=True,
        )


_UID_RE = re.compile(rb"\bUID (\d+)")
_FETCH_LINE_RE = re.compile(rb"^\d+ \(.*?\bUID (\d+)")


def _uids_answered(data: Sequence[object]) -> set[int]:
    """UIDs of every FETCH line in the answer, with or without a body."""
    out = set()
    for part in data:
        line = part[0] if isinstance(part, tuple) and part else part
        if isinstance(line, bytes) and (m := _FETCH_LINE_RE.match(line)):
            out.add(int(m.group(1)))
    return out


def _parse_fetch(data: Sequence[object]) -> dict[int, tuple[bytes, datetime | None]]:
    """UID → (body, INTERNALDATE) from imaplib's FETCH answer.

    imaplib gives (b'1 (UID 5 INTERNALDATE "…" BODY[] {n}', body) then b')' — or b' INTERNALDATE "…")'
    when a server puts attributes after the literal; unsolicited FLAGS-only lines come as plain bytes.
    """
    out: dict[int, tuple[bytes, datetime | None]] = {}
    for i, part in enumerate(data):
        if not isinstance(part, tuple) or len(part) != 2:
            continue
        meta, body = part
        if not isinstance(meta, bytes) or not isinstance(body, bytes) or b"BODY[]" not in meta.upper():
            continue
        tail = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
        assert isinstance(tail, bytes)
        full = meta + b" " + tail
        uid = _UID_RE.search(full)
        if uid:
            out[int(uid.group(1))] = (body, parse_internaldate(full))
    return out
