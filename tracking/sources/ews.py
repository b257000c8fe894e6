"""Exchange Server mailboxes over EWS, on exchangelib.

Built to make as few requests as possible and to fail in words an admin can act on:
- version (Exchange2016) and auth type are pinned and autodiscover is off, so nothing is probed;
- Inbox and Sent Items are built from their distinguished ids, so no GetFolder precedes a sync;
- SyncFolderItems is called page by page (exchangelib's `sync_items` keeps the state only once the whole
  folder has been read), each page yielding the state that resumes right after it; the created or changed
  items of a page are then fetched with GetItem in chunks, with only the fields the engine reads;
- FailFast: a busy server becomes a transient SourceError carrying its back-off instead of sleeping here;
- a response is read up to SOURCE_MAX_RESPONSE_MB and must be well-formed XML without a DTD (Exchange
  never sends one), so entity expansion, external entities and oversized answers are refused before
  exchangelib's forgiving parser sees them.

NTLM is supported as exchangelib does it (requests_ntlm) but the simulator cannot do NTLM, so only Basic
and OAuth 2.0 client credentials are exercised by the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import socket
import threading
import xml.parsers.expat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import partial
from http.client import RemoteDisconnected
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Build,
    Configuration,
    Credentials,
    FailFast,
    HTMLBody,
    Identity,
    OAuth2Credentials,
    Version,
)
from exchangelib import UTC as EWS_UTC
from exchangelib.attachments import AttachmentId, FileAttachment, ItemAttachment
from exchangelib.errors import (
    CASError,
    ErrorAccessDenied,
    ErrorConnectionFailed,
    ErrorExceededConnectionCount,
    ErrorFolderNotFound,
    ErrorImpersonateUserDenied,
    ErrorImpersonationDenied,
    ErrorInternalServerError,
    ErrorInternalServerTransientError,
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    ErrorSyncFolderNotFound,
    ErrorTimeoutExpired,
    ErrorTooManyObjectsOpened,
    EWSError,
    MalformedResponseError,
    RateLimitError,
    RedirectError,
    SOAPError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.fields import FieldPath
from exchangelib.folders import Folder, Inbox, Root, SentItems
from exchangelib.items import ID_ONLY
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import BaseProtocol, CachingProtocol
from exchangelib.services import FindFolder, GetAttachment, GetFolder, SyncFolderItems
from exchangelib.util import is_xml
from oauthlib.oauth2 import OAuth2Error, TokenExpiredError

from tracking.choices import ErrorKind
from tracking.content import ATTACHMENTS_MAX, attachment_from_server
from tracking.messages import (
    SYNTHETIC_DOMAIN,
    Item,
    ParsedMessage,
    ParseFailure,
    ServerAttachment,
    ServerBody,
    TooManyAddresses,
    parsed_from_fields,
)
from tracking.sources.base import (
    READ_CHUNK,
    ConnectionSettings,
    FetchedAttachments,
    FolderInfo,
    SourceError,
    SyncPage,
    SyncStateInvalid,
    configured_max_response_bytes,
    exception_chain,
    folder_id_of,
    read_limited,
    retry_after_seconds,
    too_large_error,
)

log = logging.getLogger(__name__)

PINNED_VERSION = Version(build=Build(15, 1), api_version="Exchange2016")
EWS_PATH = "/EWS/Exchange.asmx"
MAX_CHANGES = 512  # Exchange returns at most this many changes per SyncFolderItems call
MAX_FETCH_CHUNK = 100
FOLDERS = {"inbox": (Inbox, "Inbox"), "sentitems": (SentItems, "Sent Items")}
# what the engine reads (GetItem only: SyncFolderItems cannot return recipients or headers)
FETCH_FIELDS = (
    "message_id",
    "in_reply_to",
    "references",
    "conversation_index",
    "author",
    "sender",
    "to_recipients",
    "cc_recipients",
    "bcc_recipients",
    "subject",
    "datetime_sent",
    "datetime_received",
    "last_modified_time",
    "headers",
    "body",  # what a CRM user reads of a tracked email (tracking-rules §2)
    # Name, type, size and id of each attachment, in the same GetItem: their content is fetched with
    # GetAttachment only for the messages a page tracks (EwsSource.fetch_attachments).
    "attachments",
)
# Attachment content asked for in one GetAttachment: at most this many ids, and base64 of at most this
# share of SOURCE_MAX_RESPONSE_MB, so an answer full of large attachments is never refused as too large.
MAX_ATTACHMENT_IDS = 100
ATTACHMENT_RESPONSE_SHARE = 0.8
FOLDER_PAGE = 1000  # FindFolder page; a mailbox with more folders under its Inbox takes one request more each
PERMANENT_OAUTH_ERRORS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "invalid_grant",
        "invalid_scope",
        "invalid_request",
        "unsupported_grant_type",
        "access_denied",
    }
)


# -- HTTP plumbing -------------------------------------------------------------------------------------------


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


class CaBundleAdapter(requests.adapters.HTTPAdapter):
    """Trusts, per server, the CA bundle its profile names, and reads no more than the response limit.

    exchangelib creates its sessions itself, mounts one adapter class for every endpoint and never passes
    `verify=`, so requests would take REQUESTS_CA_BUNDLE from the environment. The adapter sees each request
    and swaps in the bundle registered for its origin, so two profiles can trust two different internal
    CAs in one process. Origins with no bundle keep requests' usual verification. It also streams every
    response and stops reading past SOURCE_MAX_RESPONSE_MB, since exchangelib would read any
    answer whole into memory and then build a tree of it.
    """

    _bundles: ClassVar[dict[str, str]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def trust(cls, url: str, ca_bundle: str) -> None:
        with cls._lock:
            cls._bundles[origin_of(url)] = ca_bundle

    @classmethod
    def bundle_for(cls, url: str) -> str | None:
        with cls._lock:
            return cls._bundles.get(origin_of(url))

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        bundle = self.bundle_for(request.url or "")
        response = super().send(
            request, stream=True, timeout=timeout, verify=bundle or verify, cert=cert, proxies=proxies
        )
        if not stream:
            read_limited(response, configured_max_response_bytes())
            # exchangelib parses `response.iter_content()`, whose default chunk is one byte: slicing a read
            # body into single bytes was a third of a fetch's CPU (docs/performance.md, B2).
            response.iter_content = partial(  # type: ignore[method-assign]
                requests.Response.iter_content, response, READ_CHUNK
            )
        return response


BaseProtocol.HTTP_ADAPTER_CLS = CaBundleAdapter


class _RedactAuthorization(logging.Filter):
    """exchangelib logs request headers at DEBUG, Authorization included; secrets must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping) and "request_headers" in args:
            headers = args["request_headers"]
            if isinstance(headers, Mapping) and any(k.lower() == "authorization" for k in headers):
                clean = {k: ("[redacted]" if k.lower() == "authorization" else v) for k, v in headers.items()}
                record.args = {**args, "request_headers": clean}
        return True


class _DropDebug(logging.Filter):
    """requests_oauthlib logs the token request body (client secret), the token and the refresh arguments
    of every request at DEBUG; none of it may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


logging.getLogger("exchangelib.util").addFilter(_RedactAuthorization())
logging.getLogger("requests_oauthlib.oauth2_session").addFilter(_DropDebug())


class EwsHttpError(TransportError):
    """An HTTP status exchangelib would only report as an unreadable response."""

    def __init__(self, status: int, url: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status
        self.url = url
        self.retry_after = retry_after


_INVALID_TOKEN = re.compile(r'\berror\s*=\s*"?invalid_token"?', re.IGNORECASE)
# Response codes by which Exchange refuses a saved sync state (EWS ResponseCodeType); like Graph's codes,
# they mean a full resync whatever the HTTP status they come with.
SYNC_STATE_CODES = (b"ErrorInvalidSyncStateData",)


def refused_token(response: requests.Response) -> bool:
    """A 401 whose Bearer challenge says the access token itself is no good (expired, revoked):
    `WWW-Authenticate: Bearer client_id="…", …, error="invalid_token"` (RFC 6750 §3.1)."""
    challenge = response.headers.get("WWW-Authenticate", "")
    return (
        response.status_code == 401
        and "bearer" in challenge.lower()
        and bool(_INVALID_TOKEN.search(challenge))
    )


class FailFastKeepingRetryAfter(FailFast):
    """FailFast that keeps the HTTP status and the server's Retry-After of a failed response.

    Plain FailFast turns 429, 403, 404 and non-XML 5xx answers into MalformedResponseError (and 503 into a
    back-off of its own choosing), losing both what happened and how long the server asked us to wait.

    An access token refused mid-scan (401 `invalid_token`) is not a wrong secret (tracking-rules §9): it is
    raised as oauthlib's TokenExpiredError, for which exchangelib drops the session (and with it the
    token), fetches a fresh token and repeats the request. Only a second refusal in a row, the fresh
    token's, is a credentials error. exchangelib calls this per response, in the requesting thread.
    """

    def __init__(self) -> None:
        self._renewed = threading.local()

    def raise_response_errors(self, response: requests.Response) -> None:
        if refused_token(response):
            if not getattr(self._renewed, "once", False):
                self._renewed.once = True
                log.info(
                    "%s refused the access token (invalid_token); one fresh token, one repeat", response.url
                )
                raise TokenExpiredError(description="the server refused the access token (invalid_token)")
            self._renewed.once = False
            raise UnauthorizedError(
                "the server refused the access token twice in a row, a freshly issued one included "
                f"({response.url})"
            )
        self._renewed.once = False
        status = response.status_code
        if status == 200 and response._content is False:
            # GetStreamingEvents: a chunked answer that stays open for minutes, read envelope by envelope as
            # it comes (exchangelib's DocumentYielder); reading it whole here would wait for its end.
            return
        content = response.content or b""
        exchangelib_knows = (
            status in (200, 401)
            or 300 <= status < 400
            or (status == 500 and content and is_xml(content))
            or b"server version is invalid" in content
            or b"ErrorInvalidSchemaVersionForMailboxVersion" in content
            or b"account is currently locked out" in content
            or response.headers.get("X-CasErrorCode")
        )
        if exchangelib_knows:
            super().raise_response_errors(response)
            if content and (status == 200 or status == 500):
                _check_well_formed(content)
            return
        if content and is_xml(content) and any(code in content for code in SYNC_STATE_CODES):
            raise ErrorInvalidSyncStateData(f"HTTP {status} from {response.url} refused the sync state")
        raise EwsHttpError(status, response.url, retry_after_seconds(response.headers.get("Retry-After")))


class DtdRefused(MalformedResponseError):
    """The response declares a document type: EWS never does, and a DTD is how entity expansion and
    external entities get in."""


def _refuse_dtd(*args: object) -> None:
    raise DtdRefused("the response declares a DTD (<!DOCTYPE ...>), which EWS never sends; it was refused")


def _check_well_formed(content: bytes) -> None:
    """exchangelib parses with lxml's recover=True, so a response cut short can read as a shorter one:
    a SyncFolderItems page would lose changes and still hand out the state past them. Refuse it instead,
    and refuse any DTD before a single entity is declared. Expat checks without building a tree."""
    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_dtd
    try:
        parser.Parse(content, True)
    except xml.parsers.expat.ExpatError as exc:
        raise MalformedResponseError(f"the response is not well-formed XML ({exc})") from None


class AuthorityOAuth2Credentials(OAuth2Credentials):
    """Client credentials whose token comes from the profile's authority, not login.microsoftonline.com."""

    def __init__(self, *, authority_host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.authority_host = authority_host.rstrip("/")

    @property
    def token_url(self) -> str:
        return f"{self.authority_host}/{self.tenant_id or 'organizations'}/oauth2/v2.0/token"


def service_endpoint(raw: str) -> str:
    """The EWS URL from what an admin typed: a host name, a server URL or the full .asmx URL."""
    value = raw.strip()
    if not value:
        raise SourceError(
            "the server profile has no EWS endpoint; enter the server's URL, "
            "e.g. https://mail.example.com/EWS/Exchange.asmx",
            kind=ErrorKind.NOT_FOUND,
            permanent=True,
        )
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(
            f"the EWS endpoint {raw!r} is not an http(s) URL", kind=ErrorKind.UNREACHABLE, permanent=True
        )
    path = parts.path.rstrip("/")
    if not path.lower().endswith(".asmx"):
        path = path + "/Exchange.asmx" if path.lower().endswith("/ews") else path + EWS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# -- turning items into messages -----------------------------------------------------------------------------


def synthetic_id(kind: str, item_id: str) -> str:
    return f"<{hashlib.sha256(item_id.encode()).hexdigest()[:40]}@{kind}.{SYNTHETIC_DOMAIN}>"


def fetch_failure(item_id: str, error: str) -> ParseFailure:
    return ParseFailure(item_id, synthetic_id("fetch-error", item_id), error, fetch_failed=True)


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    # EWSDateTime is a datetime subclass with exchangelib's own tzinfo; the engine gets plain UTC datetimes
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def _pair(mailbox: Any) -> tuple[str, str]:
    address = (getattr(mailbox, "email_address", None) or "").strip()
    name = (getattr(mailbox, "name", None) or "").strip()
    if name.lower() == address.lower():
        name = ""  # Exchange repeats the address as the name when there is none; MIME parsing has none
    return name, address


def _body(value: object) -> ServerBody | None:
    """exchangelib's body: HTMLBody or Body (both str); None when the server sent none."""
    if not isinstance(value, str):
        return None
    return ServerBody("html" if isinstance(value, HTMLBody) else "text", str(value))


def _attachments(value: object) -> list[ServerAttachment]:
    """exchangelib's FileAttachment/ItemAttachment objects (metadata only, as GetItem lists them)."""
    out: list[ServerAttachment] = []
    for att in value if isinstance(value, list) else []:
        ref = getattr(getattr(att, "attachment_id", None), "id", None)
        if not isinstance(att, (FileAttachment, ItemAttachment)) or not ref:
            continue
        out.append(
            ServerAttachment(
                ref=str(ref),
                name=str(att.name or ""),
                content_type=str(att.content_type or ""),
                size=int(att.size or 0),
                is_inline=bool(att.is_inline),
                content_id=str(att.content_id or ""),
                is_item=isinstance(att, ItemAttachment),
            )
        )
    return out


def message_from_item(item: Any) -> ParsedMessage | ParseFailure:
    """An exchangelib item (GetItem with FETCH_FIELDS) as the engine's ParsedMessage."""
    item_id = str(item.id)
    headers: dict[str, str] = {}
    for header in getattr(item, "headers", None) or []:
        headers.setdefault((header.name or "").lower(), header.value or "")
    author = getattr(item, "author", None) or getattr(item, "sender", None)
    sender = _pair(author) if author is not None else None
    to = [_pair(m) for m in getattr(item, "to_recipients", None) or []]
    cc = [_pair(m) for m in getattr(item, "cc_recipients", None) or []]
    bcc = [_pair(m) for m in getattr(item, "bcc_recipients", None) or []]
    subject = getattr(item, "subject", None)
    sent_at = _utc(getattr(item, "datetime_sent", None))
    received_at = _utc(getattr(item, "datetime_received", None))
    message_id = getattr(item, "message_id", None) or headers.get("message-id")
    index = getattr(item, "conversation_index", None)
    if not index and headers.get("thread-index"):
        try:
            index = base64.b64decode("".join(headers["thread-index"].split()), validate=True)
        except (binascii.Error, ValueError):
            index = None
    if not (message_id or author or to or cc or bcc or subject or sent_at):
        return ParseFailure(
            item_id,
            synthetic_id("unparseable", item_id),
            "the server returned no Message-ID, sender, recipients, subject or date for this item",
            received_at=received_at,
        )
    try:
        return parsed_from_fields(
            provider_item_id=item_id,
            message_id=message_id,
            subject=subject,
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            sent_at=sent_at,
            received_at=received_at,
            in_reply_to=getattr(item, "in_reply_to", None) or headers.get("in-reply-to"),
            references=getattr(item, "references", None) or headers.get("references"),
            conversation_index=index if isinstance(index, bytes) else None,
            last_modified=_utc(getattr(item, "last_modified_time", None)),
            body=_body(getattr(item, "body", None)),
            attachments=_attachments(getattr(item, "attachments", None)),
        )
    except TooManyAddresses as exc:
        return ParseFailure(item_id, synthetic_id("unparseable", item_id), str(exc), received_at=received_at)


def items_from_fetch(item_ids: Sequence[str], results: Sequence[Any]) -> list[Item]:
    """GetItem results (items, or the per-item errors exchangelib returns in their place) as engine items."""
    items: list[Item] = []
    for item_id, result in zip(item_ids, results, strict=True):
        if isinstance(result, ErrorItemNotFound):
            continue  # deleted since the sync listed it; the next sync reports the deletion
        if isinstance(result, Exception):
            items.append(fetch_failure(item_id, f"{type(result).__name__}: {result}"))
            continue
        items.append(message_from_item(result))
    return items


def _attachment_bytes(result: object) -> bytes | str:
    """The content GetAttachment answered for one id, or why there is none, in words."""
    if isinstance(result, Exception):
        return f"{type(result).__name__}: {result}"[:300]
    if isinstance(result, FileAttachment):
        content = result._content  # the property would call GetAttachment again when it is None
        return content if isinstance(content, bytes) else "the server sent no content"
    if isinstance(result, ItemAttachment):
        mime = getattr(result._item, "mime_content", None)  # _item: the property would fetch again too
        return mime if isinstance(mime, bytes) and mime else "the server sent no MIME content"
    return "an attachment of a kind that cannot be read"


# -- errors --------------------------------------------------------------------------------------------------


def _connection_problem(exc: BaseException, timeout: float) -> str | None:
    """Why a connection failed, in words, or None when `exc` is no connection failure."""
    chain = list(exception_chain(exc))
    if not any(
        isinstance(e, (requests.ConnectionError, requests.Timeout, OSError, ErrorTimeoutExpired))
        for e in chain
    ):
        return None
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "the host name cannot be resolved"
    if any(isinstance(e, (requests.Timeout, TimeoutError, socket.timeout)) for e in chain):
        return f"no answer within {timeout:g} s"
    if any(
        isinstance(e, (RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError))
        for e in chain
    ) or any(isinstance(e, requests.exceptions.ChunkedEncodingError) for e in chain):
        return "the connection was closed before the server answered"
    if any(isinstance(e, (requests.ConnectionError, ErrorTimeoutExpired, ConnectionError)) for e in chain):
        return f"connection failed ({exc})"
    return None


def _tls_problem(exc: BaseException) -> str | None:
    for e in exception_chain(exc):
        if isinstance(e, requests.exceptions.SSLError):
            return str(e.args[0] if e.args else e)
    return None


TRANSIENT_EWS_ERRORS = (
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorConnectionFailed,
    ErrorInternalServerError,
    ErrorInternalServerTransientError,
    ErrorTooManyObjectsOpened,
    ErrorExceededConnectionCount,
)


# -- the source ----------------------------------------------------------------------------------------------


class EwsSource:
    """One mailbox on an Exchange server, read over EWS."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.endpoint = service_endpoint(settings.endpoint)
        self.origin = origin_of(self.endpoint).removesuffix(":443")
        self.page_size = min(max(int(settings.page_size or 100), 1), MAX_CHANGES)
        self.fetch_chunk = min(self.page_size, MAX_FETCH_CHUNK)
        self._account: Account | None = None

    # -- MailSource ---------------------------------------------------------------------------------------

    def test_connection(self, folders: Sequence[str]) -> None:
        """One GetFolder per folder: it proves the credentials, the mailbox and the folder in one call."""
        account = self.account()
        for name in folders:
            target, label = self._folder(account, name)
            with self._errors(f"opening {label}"):
                results = list(
                    GetFolder(account=account).call(folders=[target], additional_fields=[], shape=ID_ONLY)
                )
            for result in results:
                if isinstance(result, Exception):
                    raise self.source_error(result, f"opening {label}")

    def sync(self, folder: str, state: str) -> Iterator[SyncPage]:
        account = self.account()
        target, label = self._folder(account, folder)
        current = state or ""
        while True:
            service = SyncFolderItems(account=account)
            with self._errors(f"syncing {label}"):
                changes = list(
                    service.call(
                        folder=target,
                        shape=ID_ONLY,
                        additional_fields=None,
                        sync_state=current or None,
                        ignore=None,
                        max_changes_returned=self.page_size,
                        sync_scope="NormalItems",
                    )
                )
            wanted: dict[str, str] = {}
            for change in changes:
                if isinstance(change, Exception):
                    raise self.source_error(change, f"syncing {label}")
                kind, item = change
                if kind in ("create", "update") and getattr(item, "id", None):
                    wanted[item.id] = item.changekey
            items = self._fetch(account, target, label, list(wanted.items())) if wanted else []
            new_state = service.sync_state or current
            # the second test is exchangelib's own guard against a server that never says it is done
            done = bool(service.includes_last_item_in_range) or new_state == current
            yield SyncPage(items=items, state=new_state, more=not done)
            if done:
                return
            current = new_state

    def list_folders(self) -> list[FolderInfo]:
        """The folder tree under the Inbox: one FindFolder (Traversal Deep), paged, with display names and
        parent ids, from which each folder's path is built."""
        account = self.account()
        inbox, label = self._folder(account, "inbox")
        fields = [FieldPath(field=Folder.get_field_by_fieldname(n)) for n in ("name", "parent_folder_id")]
        fields.append(FieldPath(field=Folder.get_field_by_fieldname("total_count")))
        with self._errors(f"listing the folders under {label}"):
            found = list(
                FindFolder(account=account, page_size=FOLDER_PAGE).call(
                    folders=[inbox],
                    additional_fields=fields,
                    restriction=None,
                    shape=ID_ONLY,
                    depth="Deep",
                    max_items=None,
                    offset=0,
                )
            )
        parents: dict[str, tuple[str, str]] = {}
        order: list[tuple[str, int | None]] = []
        for folder in found:
            if isinstance(folder, Exception):
                raise self.source_error(folder, f"listing the folders under {label}")
            parent = folder.parent_folder_id.id if folder.parent_folder_id is not None else ""
            parents[folder.id] = (parent, folder.name or "")
            order.append((folder.id, folder.total_count))

        def path(folder_id: str, depth: int = 0) -> str | None:
            parent, name = parents[folder_id]
            if parent in parents and depth < 100:
                above = path(parent, depth + 1)
                return f"{above}/{name}" if above else None
            return f"Inbox/{name}"  # a direct child: its parent is the Inbox itself

        out = []
        for folder_id, total in order:
            full = path(folder_id)
            if full is not None:
                out.append(FolderInfo(id=folder_id, path=full, total=total))
        return sorted(out, key=lambda f: (f.path.count("/"), f.path.lower()))

    def fetch_attachments(
        self, messages: Sequence[ParsedMessage], limit_bytes: int
    ) -> dict[str, FetchedAttachments]:
        """The attachments GetItem listed with these messages; the content of those at most `limit_bytes`
        from GetAttachment, many ids per call (see AttachmentFetcher)."""
        wanted: list[ServerAttachment] = []
        for msg in messages:
            wanted.extend(a for a in msg.attachments[:ATTACHMENTS_MAX] if 0 < a.size <= limit_bytes)
        contents, problems = self._attachment_contents(wanted) if wanted else ({}, {})
        out: dict[str, FetchedAttachments] = {}
        for msg in messages:
            notes = [
                f"attachment {a.name!r}: {problems[a.ref]}" for a in msg.attachments if a.ref in problems
            ]
            extra = len(msg.attachments) - ATTACHMENTS_MAX
            if extra > 0:
                notes.append(f"{extra} more attachments not kept (at most {ATTACHMENTS_MAX})")
            out[msg.provider_item_id] = FetchedAttachments(
                attachments=tuple(
                    attachment_from_server(a, contents.get(a.ref), attachment_limit_bytes=limit_bytes)
                    for a in msg.attachments[:ATTACHMENTS_MAX]
                ),
                notes=tuple(notes),
            )
        return out

    def _attachment_contents(
        self, wanted: Sequence[ServerAttachment]
    ) -> tuple[dict[str, bytes], dict[str, str]]:
        """Content by attachment id, and why an attachment has none: GetAttachment in chunks, each answer
        kept under the response limit. An attached message comes as its MIME (IncludeMimeContent)."""
        budget = self.settings.max_response_bytes * ATTACHMENT_RESPONSE_SHARE
        chunks: list[list[ServerAttachment]] = [[]]
        used = 0.0
        for att in wanted:
            cost = att.size * 4 / 3  # base64
            if chunks[-1] and (len(chunks[-1]) >= MAX_ATTACHMENT_IDS or used + cost > budget):
                chunks.append([])
                used = 0.0
            chunks[-1].append(att)
            used += cost
        contents: dict[str, bytes] = {}
        problems: dict[str, str] = {}
        for chunk in chunks:
            try:
                account = self.account()
                with self._errors("fetching attachments"):
                    results = list(
                        GetAttachment(account=account).call(
                            items=[AttachmentId(id=a.ref) for a in chunk],
                            include_mime_content=True,
                            body_type=None,
                            filter_html_content=None,
                            additional_fields=None,
                        )
                    )
            except SourceError as exc:
                log.info("%s: attachment content not fetched: %s", self.origin, exc)
                problems.update((a.ref, f"content not fetched ({exc})") for a in chunk)
                continue
            for att, result in zip(chunk, results, strict=False):
                data = _attachment_bytes(result)
                if isinstance(data, bytes):
                    contents[att.ref] = data
                else:
                    problems[att.ref] = f"content not fetched ({data})"
            for att in chunk[len(results) :]:
                problems[att.ref] = "content not fetched (the server answered fewer attachments than asked)"
        return contents, problems

    def after_fork_in_child(self) -> None:
        """In a fetch-ahead child (tracking.sources.fetchahead): the account, its protocol and the session
        page 1 came on are kept; the locks another thread may have held at the fork are new."""
        CachingProtocol._protocol_cache_lock = threading.Lock()
        if self._account is not None:
            self._account.protocol._session_pool_lock = threading.Lock()

    def after_fork_in_parent(self) -> None:
        """In the scanning process, once a fetch-ahead child has the connections: the cached protocol (shared
        by every source of this endpoint and credentials) is dropped and its idle sessions closed, which
        closes this process's descriptors only; the next request makes a new protocol and connects anew."""
        account, self._account = self._account, None
        if account is None:
            return
        protocol = account.protocol
        with suppress(KeyError):
            del CachingProtocol._protocol_cache[CachingProtocol._cache_key(protocol.config)]
        with protocol._session_pool_lock:
            protocol.close()

    # -- internals ----------------------------------------------------------------------------------------

    def account(self) -> Account:
        if self._account is None:
            self._account = self._connect()
        return self._account

    def _connect(self) -> Account:
        s = self.settings
        if s.ca_bundle:
            if not os.access(s.ca_bundle, os.R_OK):
                raise SourceError(
                    f"the CA bundle {s.ca_bundle} of the server profile cannot be read; "
                    "check the path and its permissions",
                    kind=ErrorKind.TLS,
                    permanent=True,
                )
            CaBundleAdapter.trust(self.endpoint, s.ca_bundle)
            if s.authority:
                CaBundleAdapter.trust(s.authority_host, s.ca_bundle)
        method = (s.auth_method or "none").lower()
        credentials: Credentials | OAuth2Credentials
        if method == "oauth2":
            if not (s.client_id and s.secret and s.tenant_id):
                raise SourceError(
                    "OAuth 2.0 needs the application (client) id, its secret and the tenant id in the "
                    "server profile",
                    kind=ErrorKind.CREDENTIALS,
                    permanent=True,
                )
            credentials = AuthorityOAuth2Credentials(
                authority_host=s.authority_host,
                client_id=s.client_id,
                client_secret=s.secret,
                tenant_id=s.tenant_id,
                identity=Identity(primary_smtp_address=s.mailbox),
            )
            auth_type = OAUTH2
        elif method in ("basic", "password", "ntlm"):
            if not s.username:
                raise SourceError(
                    "the server profile has no user name", kind=ErrorKind.CREDENTIALS, permanent=True
                )
            credentials = Credentials(username=s.username, password=s.secret)
            auth_type = NTLM if method == "ntlm" else BASIC
        else:
            raise SourceError(
                f"authentication {method!r} cannot be used with EWS; choose OAuth 2.0, NTLM or Basic",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            )
        impersonate = s.use_impersonation or auth_type == OAUTH2  # app-only tokens need ExchangeImpersonation
        config = Configuration(
            service_endpoint=self.endpoint,
            credentials=credentials,
            auth_type=auth_type,
            version=PINNED_VERSION,
            retry_policy=FailFastKeepingRetryAfter(),
            max_connections=max(int(s.max_connections or 1), 1),
        )
        try:
            account = Account(
                primary_smtp_address=s.mailbox,
                config=config,
                autodiscover=False,
                access_type=IMPERSONATION if impersonate else DELEGATE,
                default_timezone=EWS_UTC,
            )
        except ValueError as exc:
            raise SourceError(
                f"the mailbox address {s.mailbox!r} is not valid: {exc}",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            ) from None
        # exchangelib's timeout is a class attribute; set it on this (shared, per endpoint) protocol
        account.protocol.TIMEOUT = s.timeout
        return account

    def _folder(self, account: Account, name: str) -> tuple[Any, str]:
        server_id = folder_id_of(name)
        mailbox = Mailbox(email_address=account.primary_smtp_address)
        if server_id is not None:
            # A mapped folder, by the FolderId the hierarchy listing gave (it survives renames and moves).
            root = Root(account=account, _distinguished_id=DistinguishedFolderId(id="root", mailbox=mailbox))
            return Folder(root=root, id=server_id), f"a folder of {self.settings.mailbox}"
        known = FOLDERS.get(name.lower())
        if known is None:
            raise SourceError(
                f"folder {name!r} cannot be read over EWS; only Inbox and Sent Items are supported",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        cls, label = known
        root = Root(account=account, _distinguished_id=DistinguishedFolderId(id="root", mailbox=mailbox))
        folder = cls(root=root, _distinguished_id=DistinguishedFolderId(id=name.lower(), mailbox=mailbox))
        return folder, f"{label} of {self.settings.mailbox}"

    def _fetch(self, account: Account, target: Any, label: str, ids: list[tuple[str, str]]) -> list[Item]:
        with self._errors(f"fetching messages of {label}"):
            results = list(
                account.fetch(
                    ids=ids, folder=target, only_fields=list(FETCH_FIELDS), chunk_size=self.fetch_chunk
                )
            )
        if len(results) != len(ids):
            raise SourceError(
                f"{self.origin} answered {len(results)} items when {len(ids)} were asked for "
                f"(fetching messages of {label}); the scan will be retried",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        return items_from_fetch([item_id for item_id, _ in ids], results)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SourceError:
            raise
        except (EWSError, requests.RequestException, OAuth2Error, OSError) as exc:
            raise self.source_error(exc, doing) from exc
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # only exchangelib runs inside these blocks: its parser met an answer it did not expect
            log.debug("%s: an answer exchangelib could not read (%s)", self.origin, doing, exc_info=True)
            raise SourceError(
                f"{self.origin} sent an answer that could not be read ({doing}): {type(exc).__name__}",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            ) from exc

    def source_error(self, exc: BaseException, doing: str) -> SourceError:
        """The SourceError for anything exchangelib, requests or oauthlib raised, worded for an admin."""
        s = self.settings
        where = f" ({doing})"
        who = s.client_id if (s.auth_method or "").lower() == "oauth2" else s.username
        too_large = too_large_error(self.origin, exc, where)
        if too_large is not None:
            return too_large
        if isinstance(exc, ErrorInvalidSyncStateData):
            return SyncStateInvalid()
        if isinstance(exc, ErrorServerBusy):
            back_off = exc.back_off
            wait = f"; it asked to wait {back_off:g} s" if back_off else ""
            return SourceError(
                f"{self.origin} is busy (ErrorServerBusy){wait}{where}",
                kind=ErrorKind.THROTTLED,
                permanent=False,
                retry_after=back_off,
            )
        if isinstance(exc, RateLimitError):
            return SourceError(
                f"{self.origin} is throttling requests{where}",
                kind=ErrorKind.THROTTLED,
                permanent=False,
                retry_after=exc.wait,
            )
        if isinstance(exc, UnauthorizedError) and (s.auth_method or "").lower() == "oauth2":
            return SourceError(
                f"the server refused the credentials: {self.origin} refused the access tokens of app {who!r} "
                f"({exc}); check that the app has the full_access_as_app permission with admin consent",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            )
        if isinstance(exc, UnauthorizedError):
            return SourceError(
                f"the server refused the credentials of {who!r} ({exc}); check the user name and the "
                "password or secret in the server profile",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            )
        if isinstance(exc, OAuth2Error):
            reason = f"{exc.error}: {exc.description}" if exc.description else exc.error
            if exc.error in PERMANENT_OAUTH_ERRORS:
                return SourceError(
                    f"the token endpoint {s.authority_host} refused the client credentials of {who!r} "
                    f"({reason}); check the client id, its secret and the tenant id",
                    kind=ErrorKind.CREDENTIALS,
                    permanent=True,
                )
            return SourceError(
                f"no token from {s.authority_host} ({reason}){where}",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        if isinstance(exc, ErrorNonExistentMailbox):
            return SourceError(
                f"mailbox not found: {s.mailbox} has no mailbox on {self.origin}; check the address",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        if isinstance(exc, (ErrorAccessDenied, ErrorImpersonateUserDenied, ErrorImpersonationDenied)):
            grant = (
                "give the service account the ApplicationImpersonation role"
                if s.use_impersonation
                else "give the account full access to the mailbox"
            )
            return SourceError(
                f"access to {s.mailbox} was denied ({type(exc).__name__}: {exc}); {grant}",
                kind=ErrorKind.PERMISSION,
                permanent=True,
            )
        if isinstance(exc, (ErrorFolderNotFound, ErrorSyncFolderNotFound)):
            return SourceError(
                f"the folder was not found{where}: {exc}", kind=ErrorKind.NOT_FOUND, permanent=True
            )
        if isinstance(exc, EwsHttpError):
            if exc.status in (408, 429) or exc.status >= 500:
                return SourceError(
                    f"{self.origin} answered HTTP {exc.status}{where}",
                    kind=ErrorKind.THROTTLED if exc.status == 429 else ErrorKind.SERVER_ERROR,
                    permanent=False,
                    retry_after=exc.retry_after,
                )
            if exc.status == 403:
                return SourceError(
                    f"the server denied access (HTTP 403 from {exc.url}); check that EWS is enabled for "
                    "the account and that it may open this mailbox",
                    kind=ErrorKind.PERMISSION,
                    permanent=True,
                )
            if exc.status == 404:
                return SourceError(
                    f"no EWS service at {exc.url} (HTTP 404); check the endpoint in the server profile",
                    kind=ErrorKind.NOT_FOUND,
                    permanent=True,
                )
            return SourceError(
                f"{self.origin} refused the request with HTTP {exc.status}{where}",
                kind=ErrorKind.SERVER_ERROR,
                permanent=True,
            )
        if isinstance(exc, RedirectError):
            return SourceError(
                f"{self.endpoint} redirects to {exc.url}; set the endpoint of the server profile to "
                "the EWS URL",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        tls = _tls_problem(exc)
        if tls is not None:
            # Retrying cannot make an untrusted certificate trusted; a person must fix the CA bundle or the
            # server's certificate, so this stops the mailbox instead of failing quietly every few minutes.
            return SourceError(
                f"cannot reach {self.origin}: its TLS certificate is not trusted ({tls}); set the CA bundle "
                "of the server profile to the CA that issued the server's certificate",
                kind=ErrorKind.TLS,
                permanent=True,
            )
        problem = _connection_problem(exc, s.timeout)
        if problem is not None:
            return SourceError(
                f"cannot reach {self.origin}: {problem}{where}", kind=ErrorKind.UNREACHABLE, permanent=False
            )
        if isinstance(exc, OSError):
            return SourceError(
                f"{type(exc).__name__}: {exc}{where}", kind=ErrorKind.UNREACHABLE, permanent=False
            )
        if isinstance(exc, (SOAPError, MalformedResponseError)):
            # Our own refusals (a DTD, XML cut short) say what was wrong; exchangelib's messages quote the
            # answer itself, whatever service sent it, so those stay in the log.
            ours = isinstance(exc, DtdRefused) or str(exc).startswith("the response is not well-formed XML")
            if not ours:
                log.debug("%s: not a valid EWS answer%s: %s", self.origin, where, exc)
            return SourceError(
                f"{self.origin} sent a response that is not valid EWS{where}" + (f": {exc}" if ours else ""),
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        if isinstance(exc, CASError):
            return SourceError(
                f"{self.origin} reported a CAS error {exc.cas_error}{where}",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        if isinstance(exc, TRANSIENT_EWS_ERRORS):
            return SourceError(
                f"{self.origin} reported {type(exc).__name__}: {exc}{where}",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        return SourceError(
            f"{type(exc).__name__}: {str(exc)[:300]}{where}", kind=ErrorKind.SERVER_ERROR, permanent=False
        )
