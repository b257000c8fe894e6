"""Microsoft Graph (Exchange Online): app-only OAuth through MSAL, then message delta per folder.

A folder's sync state is the last @odata.nextLink or @odata.deltaLink URL, saved after every page:
a nextLink resumes a round that was cut short, a deltaLink starts the next round. Graph encodes the
query options into those links, so $select and $expand go on a round's first request only.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import http.client
import logging
import re
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import requests

from tracking.choices import ErrorKind
from tracking.content import ATTACHMENTS_MAX, AttachmentContent, attachment_from_server
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
    ConnectionSettings,
    FetchedAttachments,
    FolderInfo,
    SourceError,
    SyncPage,
    SyncStateInvalid,
    exception_chain,
    folder_id_of,
    read_limited,
    retry_after_seconds,
    too_large_error,
)

GRAPH = "https://graph.microsoft.com"
# Outlook's throttling allows 4 concurrent requests per app and mailbox; more only earn 429s.
MAX_CONCURRENT = 4
MAX_PAGE_SIZE = 1000
IN_REPLY_TO_PROP = "String 0x1042"  # PidTagInReplyToId
REFERENCES_PROP = "String 0x1039"  # PidTagInternetReferences
# Just what the engine reads. internetMessageHeaders is empty for Sent Items, so In-Reply-To and
# References come from the MAPI properties first and from the headers only when those are missing.
SELECT = ",".join(
    (
        "id",
        "internetMessageId",
        "subject",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "sentDateTime",
        "receivedDateTime",
        "lastModifiedDateTime",
        "conversationIndex",
        "internetMessageHeaders",
        # What a CRM user reads of a tracked email (tracking-rules §2). The delta query cannot expand
        # attachments: hasAttachments says which tracked messages to ask for them (fetch_attachments).
        "body",
        "hasAttachments",
    )
)
# JSON batching: Graph takes at most 20 requests in one $batch.
BATCH_MAX = 20
# An attachment listing reads no content: contentBytes is asked for only for those under the limit.
ATTACHMENT_SELECT = "id,name,contentType,size,isInline"
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
ITEM_ATTACHMENT = "#microsoft.graph.itemAttachment"
# base64 content of at most this share of SOURCE_MAX_RESPONSE_MB in one $batch answer
ATTACHMENT_RESPONSE_SHARE = 0.8
FOLDER_SELECT = "id,displayName,parentFolderId,childFolderCount,totalItemCount"
FOLDER_PAGE = 100
EXPAND = f"singleValueExtendedProperties($filter=id eq '{IN_REPLY_TO_PROP}' or id eq '{REFERENCES_PROP}')"
WELL_KNOWN_FOLDERS = frozenset(
    {"inbox", "sentitems", "drafts", "deleteditems", "junkemail", "outbox", "archive", "msgfolderroot"}
)
SYNC_STATE_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})
_MAILBOX_NOT_FOUND = frozenset(
    {"errorinvaliduser", "mailboxnotenabledforrestapi", "mailboxnotsupportedforrestapi", "resourcenotfound"}
)
# What MSAL raises, besides ValueError, when it reads an answer shaped unlike the one it expects (JSON
# nested too deep, a list for an object, a missing key); only MSAL runs inside the blocks that catch them.
MSAL_MISREADS = (RecursionError, KeyError, AttributeError, TypeError)
log = logging.getLogger(__name__)
_FRACTION = re.compile(r"(\.\d{6})\d+")
_WS = re.compile(r"\s+")


# -- identity: one MSAL app (and so one token cache) per authority + client per process -------------


class _IdentityHttp:
    """MSAL's http_client: `verify` and `timeout` per request, because REQUESTS_CA_BUNDLE in the
    environment overrides a Session's verify; reads no more than the response limit; remembers the last
    status and Retry-After per thread so token errors can be reported with the server's back-off."""

    def __init__(self, verify: str | bool, timeout: float, max_bytes: int) -> None:
        self._session = requests.Session()
        self._verify = verify
        self._timeout = timeout
        self._max_bytes = max_bytes
        self.last = threading.local()

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.pop("verify", None)
        kwargs.pop("timeout", None)
        self.last.status = None
        self.last.retry_after = None
        response = self._session.request(
            method, url, verify=self._verify, timeout=self._timeout, stream=True, **kwargs
        )
        self.last.status = response.status_code
        self.last.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        read_limited(response, self._max_bytes)
        return response

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> requests.Response:
        return self._send("GET", url, params=params, headers=headers, **kwargs)

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any
    ) -> requests.Response:
        return self._send("POST", url, params=params, data=data, headers=headers, **kwargs)

    def close(self) -> None:
        self._session.close()

    def after_fork(self) -> None:
        self._session = requests.Session()
        self.last = threading.local()


@dataclass(frozen=True)
class _Identity:
    app: Any  # msal.ConfidentialClientApplication
    http: _IdentityHttp
    authority: str


@dataclass(frozen=True)
class _Token:
    value: str
    cached: bool


# RQ jobs in one worker process share these, so a token is fetched once per app and reused until expiry.
_identities: dict[tuple[str, str, str, str, float, int], _Identity] = {}
_identities_lock = threading.Lock()
_slots: dict[tuple[str, str, int], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _mailbox_slot(api: str, mailbox: str, limit: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _slots.setdefault((api.lower(), mailbox.lower(), limit), threading.BoundedSemaphore(limit))


# -- small readers -----------------------------------------------------------------------------------


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _same_api(url: str, api: str) -> bool:
    """Whether a link points into this Graph endpoint (we send it the bearer token)."""
    target, ours = urlsplit(url), urlsplit(api)
    return (
        target.scheme.lower() == ours.scheme.lower()
        and target.netloc.lower() == ours.netloc.lower()
        and target.path.lower().startswith(ours.path.lower() + "/")
    )


def unreachable(url: str, exc: requests.RequestException, timeout: float) -> SourceError:
    """A network failure in words an admin can act on; a certificate we may not trust is permanent."""
    origin = _origin(url)
    chain = list(exception_chain(exc))
    too_large = too_large_error(origin, exc)
    if too_large is not None:
        return too_large
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in str(
        exc
    ):
        return SourceError(
            f"cannot reach {origin}: its TLS certificate is not trusted; set the server profile's CA bundle "
            "to the CA that issued it",
            kind=ErrorKind.TLS,
            permanent=True,
        )
    if isinstance(exc, requests.Timeout):
        return SourceError(
            f"cannot reach {origin}: no answer within {timeout:g} s",
            kind=ErrorKind.UNREACHABLE,
            permanent=False,
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        reason = "connection refused"
    elif any(isinstance(e, socket.gaierror) for e in chain):
        reason = "host name not found"
    elif any(isinstance(e, http.client.RemoteDisconnected | ConnectionResetError) for e in chain):
        reason = "the connection was closed without an answer"
    else:
        reason = str(exc)[:200] or type(exc).__name__
    return SourceError(f"cannot reach {origin}: {reason}", kind=ErrorKind.UNREACHABLE, permanent=False)


def _graph_error(response: requests.Response) -> tuple[str, str, str]:
    """(code, message, inner code) of a Graph error body `{"error": {"code", "message", "innerError"}}`.

    The message of a body that is not Graph's JSON is not kept: it is whatever the service at that
    address sends (a banner, an HTML page), which is logged at debug level and never shown.
    """
    try:
        body = response.json()
    except (ValueError, RecursionError):
        log.debug("non-JSON error body from %s: %r", response.url, response.content[:500])
        return "", "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        inner = error.get("innerError") or error.get("innererror")
        inner_code = str(inner.get("code") or "") if isinstance(inner, dict) else ""
        return str(error.get("code") or ""), _WS.sub(" ", str(error.get("message") or ""))[:300], inner_code
    return "", "", ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _body(value: object) -> ServerBody | None:
    """Graph's itemBody {contentType: text|html, content}; anything else is no body."""
    if not isinstance(value, Mapping) or not isinstance(value.get("content"), str):
        return None
    kind = "html" if str(value.get("contentType", "")).lower() == "html" else "text"
    return ServerBody(kind, value["content"])


def _address(value: object) -> tuple[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    inner = value.get("emailAddress")
    if not isinstance(inner, Mapping):
        return None
    return (_text(inner.get("name")) or "", _text(inner.get("address")) or "")


def _addresses(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return []
    return [pair for pair in (_address(v) for v in value) if pair is not None]


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _conversation_index(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _threading(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """In-Reply-To and References: from the MAPI properties, else from the Internet headers."""
    props: dict[str, str] = {}
    for prop in entry.get("singleValueExtendedProperties") or []:
        if isinstance(prop, Mapping) and isinstance(prop.get("value"), str):
            props[_WS.sub(" ", str(prop.get("id", ""))).strip().lower()] = prop["value"]
    headers: dict[str, list[str]] = {}
    for header in entry.get("internetMessageHeaders") or []:
        if isinstance(header, Mapping) and isinstance(header.get("value"), str):
            headers.setdefault(str(header.get("name", "")).lower(), []).append(header["value"])
    in_reply_to = props.get(IN_REPLY_TO_PROP.lower()) or " ".join(headers.get("in-reply-to", [])) or None
    references = props.get(REFERENCES_PROP.lower()) or " ".join(headers.get("references", [])) or None
    return in_reply_to, references


def is_message(entry: object) -> bool:
    """A created (or fully returned) message, not an @removed entry nor an update that carries only
    id/isRead/parentFolderId (Graph sends those for flag changes whatever $select asked)."""
    if not isinstance(entry, Mapping) or "@removed" in entry or not isinstance(entry.get("id"), str):
        return False
    return any(key in entry for key in ("internetMessageId", "receivedDateTime", "subject", "from"))


def message_from_graph(entry: Mapping[str, Any]) -> ParsedMessage | ParseFailure:
    item_id = str(entry.get("id") or "")
    try:
        in_reply_to, references = _threading(entry)
        body = _body(entry.get("body"))
        return parsed_from_fields(
            provider_item_id=item_id,
            message_id=_text(entry.get("internetMessageId")),
            subject=_text(entry.get("subject")),
            sender=_address(entry.get("from")) or _address(entry.get("sender")),
            to=_addresses(entry.get("toRecipients")),
            cc=_addresses(entry.get("ccRecipients")),
            bcc=_addresses(entry.get("bccRecipients")),
            sent_at=_when(entry.get("sentDateTime")),
            received_at=_when(entry.get("receivedDateTime")),
            in_reply_to=in_reply_to,
            references=references,
            conversation_index=_conversation_index(entry.get("conversationIndex")),
            last_modified=_when(entry.get("lastModifiedDateTime")),
            body=body,
            # Graph's hasAttachments leaves inline images out: an HTML body showing one (`cid:`) has them too
            has_attachments=entry.get("hasAttachments") is True
            or (body is not None and body.kind == "html" and "cid:" in body.content.lower()),
        )
    except Exception as exc:  # one odd item becomes a failed decision; it must not stop the scan
        digest = hashlib.sha256(item_id.encode()).hexdigest()[:40]
        error = str(exc) if isinstance(exc, TooManyAddresses) else f"{type(exc).__name__}: {exc}"
        return ParseFailure(item_id, f"<{digest}@unparseable.{SYNTHETIC_DOMAIN}>", error)


# -- change notifications ----------------------------------------------------------------------------


class SubscriptionGone(SourceError):
    """Graph no longer has the subscription (it expired or was removed): create a new one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind=ErrorKind.NOT_FOUND, permanent=False)


@dataclass(frozen=True)
class SubscriptionInfo:
    id: str
    expires_at: datetime


def graph_time(when: datetime) -> str:
    """A dateTimeOffset as Graph's samples write it: UTC with seven fraction digits."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


# -- the source --------------------------------------------------------------------------------------


def _malformed_token_answer(authority: str) -> SourceError:
    return SourceError(
        f"the identity platform at {_origin(authority)} sent a malformed token answer",
        kind=ErrorKind.SERVER_ERROR,
        permanent=False,
    )


class GraphSource:
    """Reads one mailbox through Microsoft Graph with an app-only token (client credentials)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        base = (settings.endpoint or GRAPH).strip().rstrip("/")
        if base.lower().endswith("/v1.0"):
            base = base[: -len("/v1.0")]
        self.base = base
        self.api = f"{base}/v1.0"
        self.scope = f"{base}/.default"
        self.mailbox = settings.mailbox.strip()
        self._user = f"{self.api}/users/{quote(self.mailbox, safe='@')}"
        self._page_size = max(1, min(MAX_PAGE_SIZE, settings.page_size))
        self._session = requests.Session()
        self._slot = _mailbox_slot(
            self.api, self.mailbox, max(1, min(MAX_CONCURRENT, settings.max_connections))
        )

    def after_fork_in_child(self) -> None:
        """In a fetch-ahead child (tracking.sources.fetchahead): this source's session, the one page 1 came
        on, is kept; so are the MSAL apps and their cached tokens (no new token while one is valid), but their
        sessions are new, the parent's to keep. Locks another thread may have held at the fork are new."""
        global _identities_lock, _slots_lock
        _identities_lock, _slots_lock = threading.Lock(), threading.Lock()
        for identity in _identities.values():
            identity.http.after_fork()
        self._slot = threading.BoundedSemaphore(max(1, min(MAX_CONCURRENT, self.settings.max_connections)))

    def after_fork_in_parent(self) -> None:
        """In the scanning process, once a fetch-ahead child has this source's connections: its session is
        closed (this process's descriptors only) and a new one connects at the next request."""
        self._session.close()
        self._session = requests.Session()

    # -- MailSource ----------------------------------------------------------------------------

    def test_connection(self, folders: Sequence[str]) -> None:
        self._token()
        for folder in folders:
            self._folder(folder)

    def sync(self, folder: str, state: str) -> Iterator[SyncPage]:
        total: int | None = None
        params: dict[str, str] | None = None
        if state:
            if not _same_api(state, self.api):
                raise SyncStateInvalid(
                    f"the saved sync state of folder {folder!r} belongs to another server than {self.base}; "
                    "a full resync is needed"
                )
            url = state
        else:
            folder_ref, total = self._folder(folder)
            url = f"{self._user}/mailFolders/{quote(folder_ref, safe='')}/messages/delta"
            params = {"$select": SELECT, "$expand": EXPAND}
        while True:
            data = self._get(url, params=params, what=f"folder {folder!r}", paged=True)
            value = data.get("value")
            next_link = data.get("@odata.nextLink")
            delta_link = data.get("@odata.deltaLink")
            link = next_link if next_link is not None else delta_link
            if not isinstance(value, list) or not isinstance(link, str) or not link:
                raise SourceError(
                    f"Microsoft Graph at {self.base} sent a delta page without value and nextLink/deltaLink",
                    kind=ErrorKind.SERVER_ERROR,
                    permanent=False,
                )
            if not all(isinstance(entry, Mapping) and isinstance(entry.get("id"), str) for entry in value):
                # Passing over such an entry would lose a message for good once the state moves past it.
                raise SourceError(
                    f"Microsoft Graph at {self.base} sent a delta page with an entry that is not an object "
                    "with a string id",
                    kind=ErrorKind.SERVER_ERROR,
                    permanent=False,
                )
            if not _same_api(link, self.api):
                raise SourceError(
                    f"Microsoft Graph at {self.base} sent a link to {_origin(link)}; set the profile's "
                    "endpoint to the server that serves this mailbox",
                    kind=ErrorKind.SERVER_ERROR,
                    permanent=True,
                )
            items: list[Item] = [message_from_graph(entry) for entry in value if is_message(entry)]
            more = isinstance(next_link, str)
            yield SyncPage(items=items, state=link, more=more, estimated_total=total)
            if not more:
                return
            url, params = link, None

    def list_folders(self) -> list[FolderInfo]:
        """The folder tree under the Inbox: mailFolders/inbox/childFolders, then the childFolders of each
        folder that has any, every listing followed through its @odata.nextLink pages."""
        out: list[FolderInfo] = []
        todo = [("inbox", "Inbox")]
        while todo:
            parent, parent_path = todo.pop(0)
            url: str | None = f"{self._user}/mailFolders/{quote(parent, safe='')}/childFolders"
            params: dict[str, str] | None = {"$select": FOLDER_SELECT, "$top": str(FOLDER_PAGE)}
            while url is not None:
                data = self._get(url, params=params, what=f"the folders under {parent_path}")
                for entry in data.get("value") or []:
                    if not (isinstance(entry, Mapping) and isinstance(entry.get("id"), str)):
                        continue
                    path = f"{parent_path}/{_text(entry.get('displayName')) or entry['id']}"
                    out.append(FolderInfo(id=entry["id"], path=path, total=_count(entry)))
                    if isinstance(entry.get("childFolderCount"), int) and entry["childFolderCount"] > 0:
                        todo.append((entry["id"], path))
                link = data.get("@odata.nextLink")
                if isinstance(link, str) and not _same_api(link, self.api):
                    raise SourceError(
                        f"Microsoft Graph at {self.base} sent a link to {_origin(link)}",
                        kind=ErrorKind.SERVER_ERROR,
                        permanent=True,
                    )
                url, params = (link, None) if isinstance(link, str) and link else (None, None)
        return sorted(out, key=lambda f: (f.path.count("/"), f.path.lower()))

    # -- attachments ---------------------------------------------------------------------------

    def fetch_attachments(
        self, messages: Sequence[ParsedMessage], limit_bytes: int
    ) -> dict[str, FetchedAttachments]:
        """The attachments of these messages: their listings ($select without content) in $batch calls of
        20 messages, then the content of those at most `limit_bytes`, again batched (see
        AttachmentFetcher): a file's contentBytes, an attached message's MIME (`$value`). A link to a
        cloud file (referenceAttachment) keeps its name, type and size only."""
        listed: dict[str, list[ServerAttachment]] = {}
        readable: set[tuple[str, str]] = set()
        notes: dict[str, list[str]] = {m.provider_item_id: [] for m in messages}
        user = f"/users/{quote(self.mailbox, safe='@')}/messages"
        listings = {
            m.provider_item_id: f"{user}/{quote(m.provider_item_id, safe='')}/attachments"
            f"?$select={ATTACHMENT_SELECT}"
            for m in messages
        }
        for item_id, answer in self._batched(listings, "attachment listings").items():
            if not isinstance(answer, Mapping):
                notes[item_id].append(f"attachments not listed ({_why(answer)})")
                continue
            entries = [e for e in answer.get("value") or [] if isinstance(e, Mapping)]
            listed[item_id] = []
            for entry in entries[:ATTACHMENTS_MAX]:
                att, has_content = _listed_attachment(entry)
                listed[item_id].append(att)
                if has_content and att.ref:
                    readable.add((item_id, att.ref))
            if len(entries) > ATTACHMENTS_MAX:
                notes[item_id].append(
                    f"{len(entries) - ATTACHMENTS_MAX} more attachments not kept (at most {ATTACHMENTS_MAX})"
                )
        wanted = {
            (item_id, a.ref): a
            for item_id, atts in listed.items()
            for a in atts
            if (item_id, a.ref) in readable and 0 < a.size <= limit_bytes
        }
        contents: dict[tuple[str, str], bytes] = {}
        for group in self._by_response_size(list(wanted.items())):
            urls = {
                f"{n}": f"{user}/{quote(item_id, safe='')}/attachments/{quote(ref, safe='')}"
                + ("/$value" if att.is_item else "")
                for n, ((item_id, ref), att) in enumerate(group)
            }
            answers = self._batched(urls, "attachment content")
            for n, ((item_id, ref), att) in enumerate(group):
                answer = answers[f"{n}"]
                data = _content_bytes(answer) if isinstance(answer, Mapping) else answer
                if not isinstance(data, bytes):
                    notes[item_id].append(f"attachment {att.name!r}: content not fetched ({_why(data)})")
                    continue
                contents[(item_id, ref)] = data
                # the listing could not $select it (a fileAttachment property): an inline image's cid
                content_id = _text(answer.get("contentId")) if isinstance(answer, Mapping) else None
                if content_id:
                    listed[item_id] = [
                        dataclasses.replace(a, content_id=content_id) if a.ref == ref else a
                        for a in listed[item_id]
                    ]
        out: dict[str, FetchedAttachments] = {}
        for msg in messages:
            item_id = msg.provider_item_id
            attachments: list[AttachmentContent] = [
                attachment_from_server(a, contents.get((item_id, a.ref)), attachment_limit_bytes=limit_bytes)
                for a in listed.get(item_id, [])
            ]
            out[item_id] = FetchedAttachments(tuple(attachments), tuple(notes[item_id]))
        return out

    def _by_response_size(
        self, wanted: list[tuple[tuple[str, str], ServerAttachment]]
    ) -> list[list[tuple[tuple[str, str], ServerAttachment]]]:
        """Groups of at most BATCH_MAX content requests whose answers stay under the response limit."""
        budget = self.settings.max_response_bytes * ATTACHMENT_RESPONSE_SHARE
        groups: list[list[tuple[tuple[str, str], ServerAttachment]]] = []
        used = 0.0
        for entry in wanted:
            cost = entry[1].size * 4 / 3  # base64
            if not groups or len(groups[-1]) >= BATCH_MAX or (groups[-1] and used + cost > budget):
                groups.append([])
                used = 0.0
            groups[-1].append(entry)
            used += cost
        return groups

    def _batched(self, urls: Mapping[str, str], what: str) -> dict[str, Mapping[str, Any] | bytes | Refused]:
        """GET each URL (relative to /v1.0) through $batch, BATCH_MAX a call: by key, the JSON body of a
        200 answer, the bytes of one that is not JSON (Graph hands those over base64-encoded), or why
        there is none (a failed call fails only its own requests)."""
        out: dict[str, Mapping[str, Any] | bytes | Refused] = {}
        keys = list(urls)
        for start in range(0, len(keys), BATCH_MAX):
            chunk = keys[start : start + BATCH_MAX]
            body = {
                "requests": [{"id": str(n), "method": "GET", "url": urls[k]} for n, k in enumerate(chunk)]
            }
            try:
                data = self._post(f"{self.api}/$batch", body, what=what)
            except SourceError as exc:
                log.info("%s: %s not fetched: %s", self.base, what, exc)
                out.update((k, Refused(str(exc))) for k in chunk)
                continue
            answers = {str(r.get("id")): r for r in data.get("responses") or [] if isinstance(r, Mapping)}
            for n, key in enumerate(chunk):
                out[key] = _batch_answer(answers.get(str(n)))
        return out

    def _post(self, url: str, body: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        """POST JSON and read a JSON object back (one fresh token after a 401 of a cached one, the
        response limit: see _send)."""
        return self._json_object(self._send("POST", url, body=body, what=what), what)

    # -- change notifications (push) -----------------------------------------------------------

    def subscription_resource(self, folder: str) -> str:
        """The resource of a folder's message subscription, as Microsoft documents it for app-only access."""
        return f"users/{self.mailbox}/mailFolders('{folder}')/messages"

    def create_subscription(
        self,
        folder: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        expires: datetime,
        client_state: str,
    ) -> SubscriptionInfo:
        """POST /subscriptions: Graph validates both URLs (the validationToken handshake) before answering."""
        body = {
            "changeType": "created,updated",
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": self.subscription_resource(folder),
            "expirationDateTime": graph_time(expires),
            "clientState": client_state,
        }
        what = f"a change-notification subscription to folder {folder!r}"
        response = self._send("POST", f"{self.api}/subscriptions", body=body, what=what)
        if response.status_code != 201:
            raise self._http_error(response, what)
        return self._subscription_info(response, what)

    def renew_subscription(self, subscription_id: str, expires: datetime) -> SubscriptionInfo:
        """PATCH /subscriptions/{id}: renews it, and reauthorizes it too (reauthorizationRequired)."""
        what = f"change-notification subscription {subscription_id}"
        url = f"{self.api}/subscriptions/{quote(subscription_id, safe='')}"
        response = self._send("PATCH", url, body={"expirationDateTime": graph_time(expires)}, what=what)
        if response.status_code == 404:
            raise SubscriptionGone(f"Microsoft Graph at {self.base} no longer has {what}")
        if response.status_code != 200:
            raise self._http_error(response, what)
        return self._subscription_info(response, what)

    def delete_subscription(self, subscription_id: str) -> None:
        """DELETE /subscriptions/{id}; one Graph no longer has is as good as deleted."""
        what = f"change-notification subscription {subscription_id}"
        url = f"{self.api}/subscriptions/{quote(subscription_id, safe='')}"
        response = self._send("DELETE", url, body=None, what=what)
        if response.status_code not in (204, 200, 404):
            raise self._http_error(response, what)

    def _subscription_info(self, response: requests.Response, what: str) -> SubscriptionInfo:
        try:
            data = response.json()
        except (ValueError, RecursionError):
            data = None
        ident = data.get("id") if isinstance(data, dict) else None
        expires = _when(data.get("expirationDateTime")) if isinstance(data, dict) else None
        if not isinstance(ident, str) or not ident or expires is None:
            raise SourceError(
                f"Microsoft Graph at {self.base} sent a malformed answer for {what}: "
                "no id or expirationDateTime",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        return SubscriptionInfo(ident, expires)

    # -- folders -------------------------------------------------------------------------------

    def _folder(self, folder: str) -> tuple[str, int | None]:
        """The folder's id for URLs (a well-known name as is) and its item count."""
        what = f"folder {folder!r}"
        server_id = folder_id_of(folder)
        if server_id is not None:
            data = self._get(
                f"{self._user}/mailFolders/{quote(server_id, safe='')}",
                params={"$select": "id,displayName,totalItemCount"},
                what=f"a folder of {self.mailbox}",
            )
            return server_id, _count(data)
        name = folder.strip()
        if name.lower() in WELL_KNOWN_FOLDERS:
            data = self._get(
                f"{self._user}/mailFolders/{name.lower()}",
                params={"$select": "id,displayName,totalItemCount"},
                what=what,
            )
            return name.lower(), _count(data)
        parts = [p for p in name.split("/") if p.strip()]
        if not parts:
            raise SourceError(
                f"folder {folder!r}: no folder name given", kind=ErrorKind.NOT_FOUND, permanent=True
            )
        # Folder-level tracking maps Inbox sub-folders; "A/B" walks down from a top-level folder.
        if len(parts) == 1:
            found = self._child(f"{self._user}/mailFolders/inbox/childFolders", parts[0], what)
            found = found or self._child(f"{self._user}/mailFolders", parts[0], what)
        else:
            first = parts[0].strip()
            if first.lower() in WELL_KNOWN_FOLDERS:
                found = (first.lower(), None)
            else:
                found = self._child(f"{self._user}/mailFolders", first, what)
            for part in parts[1:]:
                if found is None:
                    break
                parent = quote(found[0], safe="")
                found = self._child(f"{self._user}/mailFolders/{parent}/childFolders", part, what)
        if found is None:
            raise SourceError(
                f"folder {folder!r} not found in mailbox {self.mailbox}",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        return found

    def _child(self, url: str, name: str, what: str) -> tuple[str, int | None] | None:
        escaped = name.strip().replace("'", "''")
        data = self._get(
            url,
            params={"$filter": f"displayName eq '{escaped}'", "$select": "id,displayName,totalItemCount"},
            what=what,
        )
        for entry in data.get("value") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
                return entry["id"], _count(entry)
        return None

    # -- HTTP ----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One request with the app's token, its body read within the response limit; the caller reads the
        status. A cached token can be revoked before it expires: after its 401, one fresh token settles it."""
        token = self._token()
        for attempt in (1, 2):
            sent = {"Authorization": f"Bearer {token.value}", "Accept": "application/json", **(headers or {})}
            try:
                with self._slot:
                    response = self._session.request(
                        method,
                        url,
                        params=params,
                        json=body,
                        headers=sent,
                        verify=self.settings.verify,
                        timeout=self.settings.timeout,
                        allow_redirects=False,
                        stream=True,
                    )
                    read_limited(response, self.settings.max_response_bytes)
            except requests.RequestException as exc:
                raise unreachable(url, exc, self.settings.timeout) from exc
            if response.status_code == 401 and attempt == 1 and token.cached:
                self._identity().app.remove_tokens_for_client()
                token = self._token()
                continue
            break
        log.debug("%s %s for %s: HTTP %s", method, url, what, response.status_code)
        return response

    def _get(
        self, url: str, *, params: Mapping[str, str] | None = None, what: str, paged: bool = False
    ) -> dict[str, Any]:
        headers = {"Prefer": f'odata.maxpagesize={self._page_size}, IdType="ImmutableId"'} if paged else {}
        return self._json_object(self._send("GET", url, params=params, headers=headers, what=what), what)

    def _json_object(self, response: requests.Response, what: str) -> dict[str, Any]:
        """The JSON object of a 200 answer; any other status or body is a SourceError."""
        if response.status_code != 200:
            raise self._http_error(response, what)
        try:
            data = response.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python recurses
            data = None
        if not isinstance(data, dict):
            raise SourceError(
                f"Microsoft Graph at {self.base} sent a malformed answer for {what}: not a JSON object",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            )
        return data

    def _http_error(self, response: requests.Response, what: str) -> SourceError:
        status = response.status_code
        code, message, inner_code = _graph_error(response)
        detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        retry = retry_after_seconds(response.headers.get("Retry-After"))
        # Microsoft's delta documentation: an expired delta token can come back as 410 Gone or as a 40X
        # error with a code such as syncStateNotFound or resyncRequired; the code decides, not the status.
        if status == 410 or {code.lower(), inner_code.lower()} & SYNC_STATE_CODES:
            return SyncStateInvalid(
                f"the server no longer accepts the saved sync state of {what} ({detail}); "
                "a full resync is needed"
            )
        if status == 401:
            return SourceError(
                f"the server refused the credentials: Microsoft Graph at {self.base} rejected the app's "
                f"access token ({detail})",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            )
        if status == 403:
            return SourceError(
                f"access denied to mailbox {self.mailbox}: the app needs the Mail.Read application "
                f"permission with admin consent, and the mailbox must be in the app's RBAC scope ({detail})",
                kind=ErrorKind.PERMISSION,
                permanent=True,
            )
        if status == 404:
            if code.lower() in _MAILBOX_NOT_FOUND:
                return SourceError(
                    f"mailbox not found: {self.mailbox} ({detail})", kind=ErrorKind.NOT_FOUND, permanent=True
                )
            return SourceError(
                f"{what} not found in mailbox {self.mailbox} ({detail})",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        if status == 429 or status >= 500:
            when = f"; retry after {retry:g} s" if retry is not None else ""
            return SourceError(
                f"Microsoft Graph at {self.base} is busy or failing ({detail}){when}",
                kind=ErrorKind.THROTTLED if status == 429 else ErrorKind.SERVER_ERROR,
                permanent=False,
                retry_after=retry,
            )
        return SourceError(
            f"Microsoft Graph at {self.base} refused the request for {what} ({detail})",
            kind=ErrorKind.SERVER_ERROR,
            permanent=True,
        )

    # -- tokens --------------------------------------------------------------------------------

    def _identity(self) -> _Identity:
        s = self.settings
        missing = [
            label
            for label, value in (
                ("tenant id", s.tenant_id),
                ("client id", s.client_id),
                ("client secret", s.secret),
            )
            if not value.strip()
        ]
        if missing:
            raise SourceError(
                f"the server profile has no {', '.join(missing)}; Microsoft Graph needs an app registration "
                "(client credentials)",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            )
        authority = f"{s.authority_host}/{s.tenant_id.strip()}"
        key = (
            authority,
            s.client_id,
            hashlib.sha256(s.secret.encode()).hexdigest(),
            str(s.verify),
            s.timeout,
            s.max_response_bytes,
        )
        with _identities_lock:
            found = _identities.get(key)
        if found is not None:
            return found
        identity_http = _IdentityHttp(s.verify, s.timeout, s.max_response_bytes)
        try:
            # Building the app fetches the tenant's OpenID configuration; the network is touched here.
            app = msal.ConfidentialClientApplication(
                s.client_id,
                client_credential=s.secret,
                authority=authority,
                http_client=identity_http,
                instance_discovery=False,
            )
        except requests.RequestException as exc:
            raise unreachable(authority, exc, s.timeout) from exc
        except msal.exceptions.MsalServiceError as exc:
            raise self._identity_busy(identity_http, authority, str(exc)) from exc
        except ValueError as exc:
            status = getattr(identity_http.last, "status", None)
            if not authority.lower().startswith("https://"):
                raise SourceError(
                    f"the authority {s.authority_host} is not an https URL; the identity platform needs one",
                    kind=ErrorKind.UNREACHABLE,
                    permanent=True,
                ) from exc
            if status is not None and 400 <= status < 500:
                raise SourceError(
                    f"the identity platform at {s.authority_host} does not know tenant {s.tenant_id!r} "
                    f"(HTTP {status}); check the tenant id",
                    kind=ErrorKind.CREDENTIALS,
                    permanent=True,
                ) from exc
            raise SourceError(
                f"the identity platform at {s.authority_host} sent a malformed OpenID configuration",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            ) from exc
        except MSAL_MISREADS as exc:
            raise SourceError(
                f"the identity platform at {s.authority_host} sent a malformed OpenID configuration "
                f"({type(exc).__name__})",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
            ) from exc
        with _identities_lock:
            return _identities.setdefault(key, _Identity(app, identity_http, authority))

    def _identity_busy(self, identity_http: _IdentityHttp, authority: str, detail: str) -> SourceError:
        retry = getattr(identity_http.last, "retry_after", None)
        status = getattr(identity_http.last, "status", None)
        said = f"HTTP {status}" if status else detail
        return SourceError(
            f"the identity platform at {_origin(authority)} is busy or failing ({said})",
            kind=ErrorKind.THROTTLED if status == 429 else ErrorKind.SERVER_ERROR,
            permanent=False,
            retry_after=retry,
        )

    def _token(self) -> _Token:
        identity = self._identity()
        try:
            result = identity.app.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise unreachable(identity.authority, exc, self.settings.timeout) from exc
        except msal.exceptions.MsalServiceError as exc:
            raise self._identity_busy(identity.http, identity.authority, str(exc)) from exc
        except (ValueError, *MSAL_MISREADS) as exc:
            # With the traceback: should the mistake be ours rather than the answer's, it shows here.
            log.warning("malformed token answer from %s", _origin(identity.authority), exc_info=True)
            raise _malformed_token_answer(identity.authority) from exc
        if isinstance(result, dict) and isinstance(result.get("access_token"), str):
            return _Token(result["access_token"], result.get("token_source") == "cache")
        if not isinstance(result, dict) or not isinstance(result.get("error"), str) or not result["error"]:
            # Neither a token nor an error: a broken answer, not a refusal that needs a person. MSAL may
            # have cached it as a token, which would fail every scan until it expires.
            identity.app.remove_tokens_for_client()
            raise _malformed_token_answer(identity.authority)
        error = result["error"]
        description = str(result.get("error_description") or "").splitlines()[0:1]
        said = f"{error}: {description[0]}" if description else error
        where = _origin(identity.authority)
        if error in ("temporarily_unavailable", "server_error"):
            retry = getattr(identity.http.last, "retry_after", None)
            raise SourceError(
                f"the identity platform at {where} is busy ({said})",
                kind=ErrorKind.SERVER_ERROR,
                permanent=False,
                retry_after=retry,
            )
        if error in ("invalid_client", "unauthorized_client"):
            raise SourceError(
                f"the server refused the credentials: the identity platform at {where} rejected client id "
                f"{self.settings.client_id!r} ({said}); check the client id and secret",
                kind=ErrorKind.CREDENTIALS,
                permanent=True,
            )
        raise SourceError(
            f"the identity platform at {where} refused the token request ({said})",
            kind=ErrorKind.CREDENTIALS,
            permanent=True,
        )


def _listed_attachment(entry: Mapping[str, Any]) -> tuple[ServerAttachment, bool]:
    """An attachment of a listing, and whether its content can be fetched: a fileAttachment's
    (contentBytes) or an itemAttachment's (an attached message, its MIME), not a referenceAttachment's
    (a link to a cloud file)."""
    kind = str(entry.get("@odata.type") or "")
    size = entry.get("size")
    listed = ServerAttachment(
        ref=str(entry.get("id") or ""),
        name=_text(entry.get("name")) or "",
        content_type=_text(entry.get("contentType")) or "",
        size=size if isinstance(size, int) and size >= 0 else 0,
        is_inline=entry.get("isInline") is True,
        content_id=_text(entry.get("contentId")) or "",
        is_item=kind == ITEM_ATTACHMENT,
    )
    # Graph names the type of each entry of a listing; one without a type is read as a file, as most are.
    return listed, kind in (FILE_ATTACHMENT, ITEM_ATTACHMENT, "")


@dataclass(frozen=True)
class Refused:
    """Why a request of a $batch (or the whole batch) brought nothing, in words."""

    reason: str


def _why(answer: object) -> str:
    return answer.reason if isinstance(answer, Refused) else "an answer of another kind than expected"


def _batch_answer(answer: Mapping[str, Any] | None) -> Mapping[str, Any] | bytes | Refused:
    """One response of a $batch: {id, status, headers, body}."""
    if answer is None:
        return Refused("the batch answer has no response for it")
    body = answer.get("body")
    if answer.get("status") == 200 and isinstance(body, Mapping):
        return body
    if answer.get("status") == 200 and isinstance(body, str):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return Refused("a body that is neither JSON nor base64")
    error = body.get("error") if isinstance(body, Mapping) else None
    code = f" {error.get('code')}" if isinstance(error, Mapping) and error.get("code") else ""
    return Refused(f"HTTP {answer.get('status')}{code}")


def _content_bytes(body: Mapping[str, Any]) -> bytes | Refused:
    """A fileAttachment's contentBytes, decoded, or why there is none."""
    value = body.get("contentBytes")
    if not isinstance(value, str):
        return Refused("the server sent no contentBytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return Refused("the server sent contentBytes that are not base64")


def _count(data: Mapping[str, Any]) -> int | None:
    value = data.get("totalItemCount")
    return value if isinstance(value, int) and value >= 0 else None
