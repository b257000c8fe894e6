"""EWS SOAP for the simulator: GetFolder, FindFolder, SyncFolderItems, GetItem, FindItem, GetAttachment and
ConvertId. GetItem lists a message's attachments (`item:Attachments`, without content) and GetAttachment
answers their content (attachments.py reads them from the message's MIME). Subscribe (streaming),
GetStreamingEvents and Unsubscribe are in ews_streaming.py.

The XML follows Microsoft's published samples for these operations (the s/m/t namespaces, ResponseClass,
ResponseCode, MessageText, DescriptiveLinkKey, element order of ItemType then MessageType), so
exchangelib talks to it unchanged. Requests are parsed with the standard library, which does not
resolve external entities; anything with a DTD is refused outright and bodies are size-limited, since
defusedxml is not available.

Sync states are opaque base64 of {folder, seq, generation}: an offset into the folder's change log and
the generation it was handed out in (MailStore.invalidate_sync_states bumps it, making older states
invalid exactly like Exchange's ErrorInvalidSyncStateData).

Protocol faults (see faults.py) taken here: server_busy (HTTP 500 SOAP fault ErrorServerBusy with
BackOffMilliseconds), unauthorized (401), token_expired (the request's bearer token is revoked and refused
with 401 `WWW-Authenticate: Bearer …, error="invalid_token"`, as Exchange Online refuses an expired token),
invalid_sync_state (SyncFolderItems with a SyncState answers
ErrorInvalidSyncStateData), item_not_found (GetItem: the first item asked for is deleted from the store
just before the answer, as if its owner deleted it between sync and fetch, so it answers
ErrorItemNotFound and the next sync reports the Delete).

Folders are the store's tree: FindFolder (Shallow or Deep, IndexedPageFolderView paging) lists them with
the ParentFolderId and DisplayName Microsoft's FindFolder sample shows; folders other than the well-known
ones are reachable by FolderId only. A request that names its mailbox nowhere (no impersonation header,
no DistinguishedFolderId mailbox, no X-AnchorMailbox) is answered for the mailbox owning the FolderId
or ItemId it names, as Exchange's ids carry their mailbox.

Not modelled: FindItem and FindFolder restrictions and sort orders (FindItem pages the whole folder,
newest first), Update changes (the store only adds and deletes; a move is a delete and a create), and
NTLM (only Basic and Bearer are offered).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.parser
import email.policy
import email.utils
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from syncadmin.devtools.simulators.attachments import SimAttachment, attachments_of, item_id_of
from syncadmin.devtools.simulators.http import Described, SimRequest, SimResponse
from syncadmin.devtools.simulators.store import SimFolder, SimMessage
from tracking.messages import Address

if TYPE_CHECKING:
    from syncadmin.devtools.simulators.faults import Fault
    from syncadmin.devtools.simulators.server import Simulator

NS_S = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS_E = "http://schemas.microsoft.com/exchange/services/2006/errors"
S, M, T = f"{{{NS_S}}}", f"{{{NS_M}}}", f"{{{NS_T}}}"

# Exchange Server 2016 CU23: what exchangelib reads as Build(15, 1, 2507, 6), API version Exchange2016
SERVER_VERSION = (15, 1, 2507, 6)
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_CHANGES = 512  # the most changes Exchange returns in one SyncFolderItems response
REALM = "SyncAdmin Exchange simulator"
EWS_AUDIENCE = "https://outlook.office365.com"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online's application id

ROOT_FOLDERS = ("root", "msgfolderroot")
ALWAYS_THERE = ("inbox", "sentitems")  # every Exchange mailbox has them, even when the data dir has no file
DISPLAY_NAMES = {
    "root": "",
    "msgfolderroot": "Top of Information Store",
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
}

# SyncFolderItems error messages carry these too (the MS sample for ErrorInvalidSyncStateData)
SYNC_ERROR_TAIL = "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"
_DTD_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

TEXT = {
    "ErrorItemNotFound": "The specified object was not found in the store.",
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorSyncFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorInvalidSyncStateData": "Synchronization state data is corrupt or otherwise invalid.",
    "ErrorNonExistentMailbox": "The SMTP address has no mailbox associated with it.",
    "ErrorInvalidIdMalformed": "Id is malformed.",
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
}

# ItemType then MessageType schema order; what FindItem and SyncFolderItems may return ("cheap" fields)
ITEM_FIELDS = (
    "item:ParentFolderId",
    "item:ItemClass",
    "item:Subject",
    "item:Body",
    "item:Attachments",
    "item:DateTimeReceived",
    "item:Size",
    "item:InReplyTo",
    "item:InternetMessageHeaders",
    "item:DateTimeSent",
    "item:DateTimeCreated",
    "item:HasAttachments",
    "item:LastModifiedTime",
    "item:ConversationId",
    "message:Sender",
    "message:ToRecipients",
    "message:CcRecipients",
    "message:BccRecipients",
    "message:ConversationIndex",
    "message:ConversationTopic",
    "message:From",
    "message:InternetMessageId",
    "message:IsRead",
    "message:References",
)
GETITEM_ONLY = frozenset(
    {
        "message:ToRecipients",
        "message:CcRecipients",
        "message:BccRecipients",
        "item:InternetMessageHeaders",
        "item:Body",  # FindItem refuses it (ErrorInvalidPropertyRequest); GetItem only
        "item:Attachments",  # likewise
    }
)
DEFAULT_ITEM_FIELDS = frozenset(
    {
        "item:ParentFolderId",
        "item:ItemClass",
        "item:Subject",
        "item:DateTimeReceived",
        "item:Size",
        "item:DateTimeSent",
        "item:HasAttachments",
        "message:ToRecipients",
        "message:From",
        "message:IsRead",
    }
)
FOLDER_FIELDS = (
    "folder:ParentFolderId",
    "folder:FolderClass",
    "folder:DisplayName",
    "folder:TotalCount",
    "folder:ChildFolderCount",
    "folder:UnreadCount",
)


# -- parsing -------------------------------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the simulator refuses before looking at what it asks (too big, a DTD, not XML)."""


@dataclass(frozen=True)
class Parsed:
    root: ET.Element
    operation: str
    payload: ET.Element  # the s:Body child, e.g. m:SyncFolderItems
    mailbox: str  # lower-case, "" when the request names none
    mailbox_source: str  # impersonation, folder, anchor or ""


def parse_request(body: bytes) -> ET.Element:
    """The request's XML tree, refusing what a hostile client could use against the parser."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    if _DTD_RE.search(body):
        raise BadRequest("For security reasons DTD is prohibited in this XML document.")
    try:
        # Decoding first means the DTD check above saw every character the parser will see (no UTF-16 bypass).
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request is not UTF-8") from None
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise BadRequest(f"the request is not well-formed XML: {exc}") from None


def inspect(request: SimRequest) -> Parsed:
    root = parse_request(request.body)
    body = root.find(f"{S}Body")
    if root.tag != f"{S}Envelope" or body is None or len(body) == 0:
        raise BadRequest("the request is not a SOAP envelope with a body")
    payload = body[0]
    operation = payload.tag.rpartition("}")[2]
    mailbox, source = "", ""
    header = root.find(f"{S}Header")
    sid = header.find(f"{T}ExchangeImpersonation/{T}ConnectingSID") if header is not None else None
    if sid is not None:
        for name in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
            value = (sid.findtext(f"{T}{name}") or "").strip()
            if value:
                mailbox, source = value, "impersonation"
                break
    if not mailbox:
        for address in payload.iter(f"{T}DistinguishedFolderId"):
            value = (address.findtext(f"{T}Mailbox/{T}EmailAddress") or "").strip()
            if value:
                mailbox, source = value, "folder"
                break
    if not mailbox and request.headers.get("x-anchormailbox"):
        mailbox, source = request.headers["x-anchormailbox"].strip(), "anchor"
    return Parsed(root, operation, payload, mailbox.lower(), source)


def describe(request: SimRequest) -> Described:
    anchor = request.headers.get("x-anchormailbox", "").strip().lower()
    if request.method != "POST":
        return Described("ews", request.method, anchor)
    try:
        parsed = inspect(request)
    except BadRequest:
        return Described("ews", "", anchor)
    return Described("ews", parsed.operation, parsed.mailbox)


# -- XML writing ---------------------------------------------------------------------------------------------


def x(value: object) -> str:
    """Text content, escaped; characters XML 1.0 cannot carry are dropped (mail headers have them)."""
    return escape(_INVALID_XML_CHARS.sub("", str(value)))


def a(value: object) -> str:
    return quoteattr(_INVALID_XML_CHARS.sub("", str(value)))


def envelope(body: str, *, with_version: bool = True) -> bytes:
    major, minor, build, revision = SERVER_VERSION
    header = (
        f'<s:Header><t:ServerVersionInfo xmlns:t="{NS_T}" MajorVersion="{major}" MinorVersion="{minor}" '
        f'MajorBuildNumber="{build}" MinorBuildNumber="{revision}"/></s:Header>'
        if with_version
        else ""
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{NS_S}">{header}<s:Body>{body}</s:Body>'
        "</s:Envelope>"
    ).encode()


def operation_response(operation: str, messages: Iterable[str]) -> bytes:
    return envelope(
        f'<m:{operation}Response xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        + "".join(messages)
        + f"</m:ResponseMessages></m:{operation}Response>"
    )


def success(operation: str, inner: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{inner}</m:{operation}ResponseMessage>"
    )


def error(operation: str, code: str, text: str = "", tail: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error">'
        f"<m:MessageText>{x(text or TEXT.get(code, code))}</m:MessageText>"
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{tail}</m:{operation}ResponseMessage>"
    )


def soap_fault(code: str, text: str = "", values: Sequence[tuple[str, str]] = ()) -> bytes:
    """A SOAP fault as Exchange sends it (HTTP 500); MessageXml carries values like BackOffMilliseconds."""
    message = x(text or TEXT.get(code, code))
    message_xml = ""
    if values:
        message_xml = (
            f'<t:MessageXml xmlns:t="{NS_T}">'
            + "".join(f"<t:Value Name={a(name)}>{x(value)}</t:Value>" for name, value in values)
            + "</t:MessageXml>"
        )
    return envelope(
        f"<s:Fault>"
        f'<faultcode xmlns:a="{NS_T}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{message}</faultstring>'
        f"<detail>"
        f'<e:ResponseCode xmlns:e="{NS_E}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{NS_E}">{message}</e:Message>'
        f"{message_xml}"
        f"</detail></s:Fault>",
        with_version=False,
    )


def server_busy_fault(back_off_ms: int) -> bytes:
    return soap_fault("ErrorServerBusy", values=[("BackOffMilliseconds", str(back_off_ms))])


def _xml_response(body: bytes, status: int = 200) -> SimResponse:
    return SimResponse(status=status, body=body, content_type="text/xml; charset=utf-8")


def _stamp(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest_id(prefix: bytes, material: str) -> str:
    return base64.b64encode(prefix + hashlib.sha256(material.encode()).digest()).decode()


def folder_id(address: str, folder: str) -> str:
    return _digest_id(b"AQMkAD", f"{address}/{folder}")


def folder_change_key(address: str, folder: str) -> str:
    return _digest_id(b"AQAAAB", f"{address}/{folder}/ck")[:24]


# -- sync states ---------------------------------------------------------------------------------------------


def encode_state(folder: str, seq: int, generation: int) -> str:
    raw = json.dumps({"folder": folder, "seq": seq, "generation": generation}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def decode_state(state: str) -> tuple[str, int, int] | None:
    try:
        data = json.loads(base64.b64decode(state.strip(), validate=True))
        return str(data["folder"]), int(data["seq"]), int(data["generation"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


# -- the handler ---------------------------------------------------------------------------------------------


def handle(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    if request.method != "POST":
        return SimResponse(status=405, body=b"EWS takes SOAP requests by POST", content_type="text/plain")
    if len(request.body) > MAX_REQUEST_BYTES:
        return SimResponse(status=413, body=b"request too large", content_type="text/plain")
    if not _authenticated(sim, request):
        return _unauthorized(request, invalid_token=_bearer(request) is not None)
    try:
        parsed = inspect(request)
    except BadRequest as exc:
        return _xml_response(soap_fault("ErrorSchemaValidation", str(exc)), 500)

    operation = parsed.operation
    fault = None if request.faults_spent else _take_fault(sim, parsed)
    if fault is not None and fault.kind == "unauthorized":
        return _unauthorized(request)
    if fault is not None and fault.kind == "token_expired":
        token = _bearer(request)
        if token is not None:
            from syncadmin.devtools.simulators.graph import revoke_token

            revoke_token(sim, token)
        return _unauthorized(request, invalid_token=token is not None)
    if fault is not None and fault.kind == "server_busy":
        response = _xml_response(server_busy_fault(fault.back_off_ms), 500)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    if operation == "ConvertId":
        return _xml_response(_convert_id(parsed))
    # streaming notifications name their subscription, which knows its mailbox (ews_streaming.py)
    if operation == "Unsubscribe":
        return _xml_response(sim.ews_streaming.unsubscribe(parsed))
    if operation == "GetStreamingEvents":
        return SimResponse(
            status=200,
            content_type="text/xml; charset=utf-8",
            stream=sim.ews_streaming.get_streaming_events(sim, parsed),
        )
    operations = {
        "GetFolder": _get_folder,
        "FindFolder": _find_folder,
        "SyncFolderItems": _sync_folder_items,
        "GetItem": _get_item,
        "FindItem": _find_item,
        "GetAttachment": get_attachment,
        "Subscribe": _subscribe,
    }
    handler = operations.get(operation)
    if not parsed.mailbox:
        owner = _owner_of_ids(sim, parsed.payload)
        if owner:
            parsed = dataclasses.replace(parsed, mailbox=owner, mailbox_source="id")
    if handler is None:
        return _xml_response(
            soap_fault("ErrorInvalidOperation", f"The simulator does not implement {operation}."), 500
        )
    if not parsed.mailbox or not sim.store.has_mailbox(parsed.mailbox):
        if parsed.mailbox_source == "folder":
            tail = SYNC_ERROR_TAIL if operation == "SyncFolderItems" else ""
            return _xml_response(
                operation_response(operation, [error(operation, "ErrorNonExistentMailbox", tail=tail)])
            )
        return _xml_response(
            soap_fault("ErrorNonExistentMailbox", values=[("SmtpAddress", parsed.mailbox)]), 500
        )
    with sim.store.lock:
        return _xml_response(handler(sim, parsed, fault))


def _owner_of_ids(sim: Simulator, payload: ET.Element) -> str:
    """The mailbox owning the first FolderId or ItemId of a request ("" when none is known)."""
    with sim.store.lock:
        mailboxes = {m: list(f) for m, f in sim.store.mailboxes.items()}
    for elem in payload.iter(f"{T}FolderId"):
        wanted = elem.get("Id") or ""
        for mailbox, names in mailboxes.items():
            if any(folder_id(mailbox, n) == wanted for n in (*ROOT_FOLDERS, *ALWAYS_THERE, *names)):
                return mailbox
    for elem in payload.iter(f"{T}ItemId"):
        wanted = elem.get("Id") or ""
        for mailbox in mailboxes:
            if sim.store.find(mailbox, wanted) is not None:
                return mailbox
    for elem in payload.iter(f"{T}AttachmentId"):
        item = item_id_of(elem.get("Id") or "")
        for mailbox in mailboxes if item else []:
            if sim.store.find(mailbox, item or "") is not None:
                return mailbox
    return ""


def _authenticated(sim: Simulator, request: SimRequest) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and sim.check_secret(user, password)
    if scheme.lower() == "bearer" and value.strip():
        return _verify_bearer(sim, value.strip())
    return False


def _verify_bearer(sim: Simulator, token: str) -> bool:
    try:
        from syncadmin.devtools.simulators.graph import verify_token  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        # the token endpoint lives in graph.py; until it can verify its tokens, any bearer token is let in
        return True
    try:
        # a token for Graph (audience graph.microsoft.com) must not open EWS, as in Exchange Online
        return verify_token(sim, token, audience=EWS_AUDIENCE) is not None
    except TypeError:  # a verify_token without audience checks
        return verify_token(sim, token) is not None


def _bearer(request: SimRequest) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _unauthorized(request: SimRequest, *, invalid_token: bool = False) -> SimResponse:
    if invalid_token:
        # Exchange Online refusing an expired or revoked access token: the Bearer challenge names the
        # error (RFC 6750 §3.1), and x-ms-diagnostics says why.
        return SimResponse(
            status=401,
            body=b"",
            content_type="text/plain",
            headers={
                "WWW-Authenticate": (
                    f'Bearer client_id="{EXCHANGE_APP_ID}", '
                    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
                    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
                    'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
                    'error="invalid_token"'
                ),
                "x-ms-diagnostics": '2000003;reason="The token has expired.";error_category="invalid_token"',
            },
        )
    # the realm echoes the Host header as IIS does; only host-name characters, so no header injection
    host = re.sub(r"[^A-Za-z0-9.\-]", "", request.headers.get("host", "127.0.0.1").split(":")[0])
    return SimResponse(
        status=401,
        body=b"",
        content_type="text/plain",
        headers={"WWW-Authenticate": f'Basic realm="{host}", Bearer realm="{REALM}"'},
    )


def _take_fault(sim: Simulator, parsed: Parsed) -> Fault | None:
    kinds = {"server_busy", "unauthorized", "token_expired"}
    if parsed.operation == "SyncFolderItems" and (parsed.payload.findtext(f"{M}SyncState") or "").strip():
        kinds.add("invalid_sync_state")
    if parsed.operation == "GetItem":
        kinds.add("item_not_found")
    return sim.faults.take("ews", parsed.operation, parsed.mailbox, frozenset(kinds))


# -- folders -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderRef:
    name: str  # a store folder name, or root / msgfolderroot
    folder: SimFolder | None  # None for the roots and for an empty well-known folder


def _folders_of(sim: Simulator, mailbox: str) -> dict[str, SimFolder]:
    return sim.store.mailboxes.get(mailbox, {})


def _resolve_folder(sim: Simulator, mailbox: str, elem: ET.Element) -> FolderRef | None:
    folders = _folders_of(sim, mailbox)
    if elem.tag == f"{T}DistinguishedFolderId":
        name = (elem.get("Id") or "").lower()
        if name in ROOT_FOLDERS or name in ALWAYS_THERE:
            return FolderRef(name, folders.get(name))
        if name in folders:
            return FolderRef(name, folders[name])
        return None
    if elem.tag == f"{T}FolderId":
        wanted = elem.get("Id") or ""
        for name in (*ROOT_FOLDERS, *ALWAYS_THERE, *folders):
            if folder_id(mailbox, name) == wanted:
                return FolderRef(name, folders.get(name))
    return None


def _parent_of(sim: Simulator, mailbox: str, name: str) -> str:
    if name == "root":
        return ""
    if name == "msgfolderroot":
        return "root"
    found = _folders_of(sim, mailbox).get(name)
    if found is not None:
        return found.parent or "msgfolderroot"
    return "msgfolderroot" if name in DISPLAY_NAMES else "inbox"


def _children_of(sim: Simulator, mailbox: str, name: str) -> list[str]:
    if name == "root":
        return ["msgfolderroot"]
    keys = {f.name for f in _folders_of(sim, mailbox).values() if (f.parent or "msgfolderroot") == name}
    if name == "msgfolderroot":
        keys |= set(ALWAYS_THERE)
    return sorted(keys)


def _folder_xml(sim: Simulator, mailbox: str, ref: FolderRef, fields: set[str] | None) -> str:
    messages = list(ref.folder.messages.values()) if ref.folder else []
    parent = _parent_of(sim, mailbox, ref.name)
    display = ref.folder.display_name if ref.folder and ref.folder.display_name else None
    name = display or DISPLAY_NAMES.get(ref.name, ref.name)
    children = len(_children_of(sim, mailbox, ref.name))
    values = {
        "folder:ParentFolderId": (
            f"<t:ParentFolderId Id={a(folder_id(mailbox, parent))} "
            f"ChangeKey={a(folder_change_key(mailbox, parent))}/>"
            if parent
            else ""
        ),
        "folder:FolderClass": "<t:FolderClass>IPF.Note</t:FolderClass>"
        if ref.name not in ROOT_FOLDERS
        else "",
        "folder:DisplayName": f"<t:DisplayName>{x(name)}</t:DisplayName>",
        "folder:TotalCount": f"<t:TotalCount>{len(messages)}</t:TotalCount>",
        "folder:ChildFolderCount": f"<t:ChildFolderCount>{children}</t:ChildFolderCount>",
        "folder:UnreadCount": "<t:UnreadCount>0</t:UnreadCount>",
    }
    parts = [
        f"<t:FolderId Id={a(folder_id(mailbox, ref.name))} "
        f"ChangeKey={a(folder_change_key(mailbox, ref.name))}/>"
    ]
    parts += [values[f] for f in FOLDER_FIELDS if fields is None or f in fields]
    return "<t:Folder>" + "".join(parts) + "</t:Folder>"


def _find_folder(sim: Simulator, parsed: Parsed, fault: Fault | None) -> bytes:
    """Sub-folders of each parent (Traversal Shallow or Deep, depth first), paged by IndexedPageFolderView."""
    op = "FindFolder"
    payload = parsed.payload
    base, extra = _shape(payload, "FolderShape")
    fields: set[str] | None = None if base == "AllProperties" else set(extra)
    if base == "Default" and fields is not None:
        fields |= {"folder:DisplayName", "folder:TotalCount", "folder:ChildFolderCount", "folder:UnreadCount"}
    deep = (payload.get("Traversal") or "Shallow") == "Deep"
    view = payload.find(f"{M}IndexedPageFolderView")
    try:
        size = int(view.get("MaxEntriesReturned") or 1000) if view is not None else 1000
        offset = int(view.get("Offset") or 0) if view is not None else 0
    except ValueError:
        size, offset = 1000, 0
    folders = _folders_of(sim, parsed.mailbox)
    parents = payload.find(f"{M}ParentFolderIds")
    messages = []
    for elem in list(parents) if parents is not None else []:
        ref = _resolve_folder(sim, parsed.mailbox, elem)
        if ref is None:
            messages.append(error(op, "ErrorFolderNotFound"))
            continue
        found: list[str] = []

        def walk(name: str, found: list[str] = found) -> None:
            for child in _children_of(sim, parsed.mailbox, name):
                found.append(child)
                if deep:
                    walk(child)

        walk(ref.name)
        window = found[offset : offset + size]
        last = offset + len(window) >= len(found)
        body = "".join(_folder_xml(sim, parsed.mailbox, FolderRef(n, folders.get(n)), fields) for n in window)
        messages.append(
            success(
                op,
                f'<m:RootFolder IndexedPagingOffset="{offset + len(window)}" TotalItemsInView="{len(found)}" '
                f'IncludesLastItemInRange="{"true" if last else "false"}">'
                f"<t:Folders>{body}</t:Folders></m:RootFolder>",
            )
        )
    return operation_response(op, messages)


def _shape(payload: ET.Element, tag: str) -> tuple[str, set[str]]:
    shape = payload.find(f"{M}{tag}")
    if shape is None:
        return "IdOnly", set()
    base = (shape.findtext(f"{T}BaseShape") or "IdOnly").strip()
    fields = {
        uri.get("FieldURI", "")
        for uri in shape.iterfind(f"{T}AdditionalProperties/{T}FieldURI")
        if uri.get("FieldURI")
    }
    return base, fields


def _get_folder(sim: Simulator, parsed: Parsed, fault: Fault | None) -> bytes:
    base, extra = _shape(parsed.payload, "FolderShape")
    fields: set[str] | None = None if base in ("Default", "AllProperties") else extra
    ids = parsed.payload.find(f"{M}FolderIds")
    messages = []
    for elem in list(ids) if ids is not None else []:
        ref = _resolve_folder(sim, parsed.mailbox, elem)
        if ref is None:
            messages.append(error("GetFolder", "ErrorFolderNotFound", tail="<m:Folders/>"))
        else:
            folder_xml = _folder_xml(sim, parsed.mailbox, ref, fields)
            messages.append(success("GetFolder", f"<m:Folders>{folder_xml}</m:Folders>"))
    return operation_response("GetFolder", messages)


# -- items ---------------------------------------------------------------------------------------------------


def _mailbox_xml(address: Address) -> str:
    return (
        f"<t:Mailbox><t:Name>{x(address.name or address.address)}</t:Name>"
        f"<t:EmailAddress>{x(address.address)}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox>"
    )


def _header_text(value: object) -> str:
    """A header as the message carries it (folded lines joined), 8-bit bytes read as UTF-8."""
    text = str(value)
    if _INVALID_XML_CHARS.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return re.sub(r"\r?\n[ \t]+", " ", text).strip()


def _raw_headers(msg: SimMessage) -> Message:
    return email.parser.BytesHeaderParser().parsebytes(msg.raw)


def item_xml(mailbox: str, msg: SimMessage, fields: set[str] | None, *, getitem: bool) -> str:
    """One t:Message with the fields asked for (None = all), in schema order."""
    wanted = [
        f for f in ITEM_FIELDS if (fields is None or f in fields) and (getitem or f not in GETITEM_ONLY)
    ]
    parsed = msg.parsed
    headers = (
        _raw_headers(msg)
        if any(f in wanted for f in ("item:InternetMessageHeaders", "message:Sender"))
        else None
    )
    parts = [f"<t:ItemId Id={a(msg.item_id)} ChangeKey={a(msg.change_key)}/>"]
    for field in wanted:
        piece = ""
        if field == "item:ParentFolderId":
            piece = (
                f"<t:ParentFolderId Id={a(folder_id(mailbox, msg.folder))} "
                f"ChangeKey={a(folder_change_key(mailbox, msg.folder))}/>"
            )
        elif field == "item:ItemClass":
            piece = "<t:ItemClass>IPM.Note</t:ItemClass>"
        elif field == "item:Subject" and parsed:
            piece = f"<t:Subject>{x(parsed.subject)}</t:Subject>"
        elif field == "item:Body":
            kind, content = _best_body(msg.raw)
            piece = f"<t:Body BodyType={a(kind)}>{x(content)}</t:Body>"
        elif field == "item:Attachments":
            piece = attachments_xml(msg)
        elif field == "item:DateTimeReceived":
            piece = f"<t:DateTimeReceived>{_stamp(msg.received_at)}</t:DateTimeReceived>"
        elif field == "item:Size":
            piece = f"<t:Size>{len(msg.raw)}</t:Size>"
        elif field == "item:InReplyTo" and parsed and parsed.in_reply_to:
            piece = f"<t:InReplyTo>{x(' '.join(parsed.in_reply_to))}</t:InReplyTo>"
        elif field == "item:InternetMessageHeaders" and headers is not None and len(headers):
            piece = (
                "<t:InternetMessageHeaders>"
                + "".join(
                    f"<t:InternetMessageHeader HeaderName={a(name)}>{x(_header_text(value))}"
                    "</t:InternetMessageHeader>"
                    for name, value in headers.items()
                )
                + "</t:InternetMessageHeaders>"
            )
        elif field == "item:DateTimeSent" and parsed and parsed.sent_at:
            piece = f"<t:DateTimeSent>{_stamp(parsed.sent_at)}</t:DateTimeSent>"
        elif field == "item:DateTimeCreated":
            piece = f"<t:DateTimeCreated>{_stamp(msg.received_at)}</t:DateTimeCreated>"
        elif field == "item:HasAttachments":
            # Exchange counts the attachments a reader sees: inline images do not make it true.
            shown = any(not att.is_inline for att in attachments_of(msg))
            piece = f"<t:HasAttachments>{'true' if shown else 'false'}</t:HasAttachments>"
        elif field == "item:LastModifiedTime":
            piece = f"<t:LastModifiedTime>{_stamp(msg.modified_at)}</t:LastModifiedTime>"
        elif field == "item:ConversationId" and parsed:
            topic = re.sub(r"^((re|fw|fwd|aw|wg)\s*:\s*)+", "", parsed.subject, flags=re.IGNORECASE).lower()
            piece = f"<t:ConversationId Id={a(_digest_id(b'AAQkAD', mailbox + '/' + topic))}/>"
        elif field == "message:Sender" and parsed:
            sender = _sender_of(headers, parsed.sender)
            if sender is not None:
                piece = f"<t:Sender>{_mailbox_xml(sender)}</t:Sender>"
        elif field in ("message:ToRecipients", "message:CcRecipients", "message:BccRecipients") and parsed:
            recipients = {"To": parsed.to, "Cc": parsed.cc, "Bcc": parsed.bcc}[field[8:-10]]
            if recipients:
                tag = field.partition(":")[2]
                piece = f"<t:{tag}>" + "".join(_mailbox_xml(r) for r in recipients) + f"</t:{tag}>"
        elif field == "message:ConversationIndex" and parsed and parsed.conversation_index:
            index = base64.b64encode(bytes.fromhex(parsed.conversation_index)).decode()
            piece = f"<t:ConversationIndex>{index}</t:ConversationIndex>"
        elif field == "message:ConversationTopic" and parsed:
            topic = re.sub(r"^((re|fw|fwd|aw|wg)\s*:\s*)+", "", parsed.subject, flags=re.IGNORECASE)
            piece = f"<t:ConversationTopic>{x(topic)}</t:ConversationTopic>"
        elif field == "message:From" and parsed and parsed.sender:
            piece = f"<t:From>{_mailbox_xml(parsed.sender)}</t:From>"
        elif field == "message:InternetMessageId" and parsed and not parsed.message_id_synthetic:
            piece = f"<t:InternetMessageId>{x(parsed.message_id)}</t:InternetMessageId>"
        elif field == "message:IsRead":
            piece = "<t:IsRead>false</t:IsRead>"
        elif field == "message:References" and parsed and parsed.references:
            piece = f"<t:References>{x(' '.join(parsed.references))}</t:References>"
        parts.append(piece)
    return "<t:Message>" + "".join(parts) + "</t:Message>"


def _best_body(raw: bytes) -> tuple[str, str]:
    """The body as Exchange's BodyType "Best" gives it: the HTML part if there is one, else the text."""
    try:
        mime = email.message_from_bytes(raw, policy=email.policy.default)
        part = mime.get_body(preferencelist=("html", "plain")) if isinstance(mime, EmailMessage) else None
        if part is None:
            return "Text", ""
        return ("HTML" if part.get_content_subtype() == "html" else "Text"), str(part.get_content())
    except Exception:  # odd charsets and broken MIME: Exchange would still show something; we show nothing
        return "Text", ""


def _sender_of(headers: Message | None, author: Address | None) -> Address | None:
    """The Sender header when the message has one (sent on behalf), else the author, as Exchange does."""
    if headers is not None and headers.get("Sender"):
        name, address = email.utils.parseaddr(_header_text(headers["Sender"]))
        if "@" in address:
            return Address(address.lower(), name)
    return author


def _item_fields(base: str, extra: set[str]) -> set[str] | None:
    if base == "AllProperties":
        return None
    if base == "Default":
        return set(DEFAULT_ITEM_FIELDS) | extra
    return extra


def _item_ids(payload: ET.Element) -> list[tuple[str, str]]:
    ids = payload.find(f"{M}ItemIds")
    if ids is None:
        return []
    return [(e.get("Id") or "", e.get("ChangeKey") or "") for e in ids if e.tag == f"{T}ItemId"]


def _get_item(sim: Simulator, parsed: Parsed, fault: Fault | None) -> bytes:
    base, extra = _shape(parsed.payload, "ItemShape")
    fields = _item_fields(base, extra)
    ids = _item_ids(parsed.payload)
    if fault is not None and fault.kind == "item_not_found" and ids:
        found = sim.store.find(parsed.mailbox, ids[0][0])
        if found is not None:
            sim.store.delete_message(parsed.mailbox, found.folder, found.item_id)
    messages = []
    for item_id, _change_key in ids:
        msg = sim.store.find(parsed.mailbox, item_id)
        if msg is None:
            messages.append(error("GetItem", "ErrorItemNotFound", tail="<m:Items/>"))
        else:
            body = item_xml(parsed.mailbox, msg, fields, getitem=True)
            messages.append(success("GetItem", f"<m:Items>{body}</m:Items>"))
    return operation_response("GetItem", messages)


def _sync_folder_items(sim: Simulator, parsed: Parsed, fault: Fault | None) -> bytes:
    op = "SyncFolderItems"
    payload = parsed.payload
    base, extra = _shape(payload, "ItemShape")
    fields = _item_fields(base, extra)
    state = (payload.findtext(f"{M}SyncState") or "").strip()
    invalid = error(op, "ErrorInvalidSyncStateData", tail=SYNC_ERROR_TAIL)
    target = payload.find(f"{M}SyncFolderId")
    ref = _resolve_folder(sim, parsed.mailbox, target[0]) if target is not None and len(target) else None
    if ref is None or ref.name in ROOT_FOLDERS:
        return operation_response(
            op,
            [error(op, "ErrorSyncFolderNotFound", tail=SYNC_ERROR_TAIL)],
        )
    if fault is not None and fault.kind == "invalid_sync_state":
        return operation_response(op, [invalid])
    folder = ref.folder or SimFolder(ref.name)
    seq = 0
    if state:
        decoded = decode_state(state)
        if decoded is None or decoded[0] != ref.name or decoded[2] != folder.generation:
            return operation_response(op, [invalid])
        seq = decoded[1]
    try:
        limit = int((payload.findtext(f"{M}MaxChangesReturned") or "100").strip())
    except ValueError:
        limit = 100
    limit = min(max(limit, 1), MAX_CHANGES)
    page, next_seq, more = folder.changes_since(seq, limit)
    unseen = {c.item_id for c in folder.log if c.seq > seq and c.kind == "create"}
    changes = []
    for change in page:
        if change.kind in ("create", "update"):
            msg = folder.messages.get(change.item_id)
            if msg is None:
                continue  # created and deleted again since the state: the client never needs to hear of it
            tag = "Create" if change.kind == "create" else "Update"
            changes.append(f"<t:{tag}>{item_xml(parsed.mailbox, msg, fields, getitem=False)}</t:{tag}>")
        elif change.item_id not in unseen:
            changes.append(f"<t:Delete><t:ItemId Id={a(change.item_id)}/></t:Delete>")
    inner = (
        f"<m:SyncState>{encode_state(ref.name, next_seq, folder.generation)}</m:SyncState>"
        f"<m:IncludesLastItemInRange>{'false' if more else 'true'}</m:IncludesLastItemInRange>"
        f"<m:Changes>{''.join(changes)}</m:Changes>"
    )
    return operation_response(op, [success(op, inner)])


def _find_item(sim: Simulator, parsed: Parsed, fault: Fault | None) -> bytes:
    op = "FindItem"
    payload = parsed.payload
    base, extra = _shape(payload, "ItemShape")
    fields = _item_fields(base, extra)
    view = payload.find(f"{M}IndexedPageItemView")
    try:
        size = int(view.get("MaxEntriesReturned") or 1000) if view is not None else 1000
        offset = int(view.get("Offset") or 0) if view is not None else 0
    except ValueError:
        size, offset = 1000, 0
    from_end = view is not None and (view.get("BasePoint") or "Beginning") == "End"
    parents = payload.find(f"{M}ParentFolderIds")
    messages = []
    for elem in list(parents) if parents is not None else []:
        ref = _resolve_folder(sim, parsed.mailbox, elem)
        if ref is None:
            messages.append(error(op, "ErrorFolderNotFound"))
            continue
        items = sorted(
            ref.folder.messages.values() if ref.folder else [],
            key=lambda m: (m.received_at, m.item_id),
            reverse=True,
        )
        total = len(items)
        start = max(total - offset - size, 0) if from_end else offset
        end = total - offset if from_end else offset + size
        window = items[start:end]
        last = end >= total if not from_end else start == 0
        next_offset = offset + len(window)
        body = "".join(item_xml(parsed.mailbox, m, fields, getitem=False) for m in window)
        messages.append(
            success(
                op,
                f'<m:RootFolder IndexedPagingOffset="{next_offset}" TotalItemsInView="{total}" '
                f'IncludesLastItemInRange="{"true" if last else "false"}">'
                f"<t:Items>{body}</t:Items></m:RootFolder>",
            )
        )
    return operation_response(op, messages)


def _subscribe(sim: Simulator, parsed: Parsed, fault: Fault | None) -> bytes:
    return sim.ews_streaming.subscribe(sim, parsed)


def _convert_id(parsed: Parsed) -> bytes:
    """exchangelib sends a dummy ConvertId only to read ServerVersionInfo; every id is answered malformed."""
    ids = parsed.payload.find(f"{M}SourceIds")
    count = len(list(ids)) if ids is not None else 0
    return operation_response(
        "ConvertId", [error("ConvertId", "ErrorInvalidIdMalformed") for _ in range(count)]
    )


# -- attachments ---------------------------------------------------------------------------------------------


def _attachment_xml(msg: SimMessage, att: SimAttachment, *, content: bool, mime: bool) -> str:
    """One t:FileAttachment or t:ItemAttachment, AttachmentType's elements in schema order; with its
    Content (GetAttachment), and for an attached message its MimeContent when IncludeMimeContent is set."""
    tag = "ItemAttachment" if att.is_item else "FileAttachment"
    parts = [
        f"<t:AttachmentId Id={a(att.attachment_id)}/>",
        f"<t:Name>{x(att.name)}</t:Name>",
        "" if att.is_item else f"<t:ContentType>{x(att.content_type)}</t:ContentType>",
        f"<t:ContentId>{x(att.content_id)}</t:ContentId>" if att.content_id else "",
        f"<t:Size>{att.size}</t:Size>",
        f"<t:LastModifiedTime>{_stamp(msg.modified_at)}</t:LastModifiedTime>",
        f"<t:IsInline>{'true' if att.is_inline else 'false'}</t:IsInline>",
    ]
    if not att.is_item:
        parts.append("<t:IsContactPhoto>false</t:IsContactPhoto>")
        if content:
            parts.append(f"<t:Content>{base64.b64encode(att.content).decode()}</t:Content>")
    elif content:
        inner = email.parser.BytesHeaderParser().parsebytes(att.content)
        mime_xml = (
            f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(att.content).decode()}</t:MimeContent>'
            if mime
            else ""
        )
        parts.append(
            f"<t:Message>{mime_xml}<t:Subject>{x(_header_text(inner.get('Subject') or ''))}</t:Subject>"
            "</t:Message>"
        )
    return f"<t:{tag}>" + "".join(parts) + f"</t:{tag}>"


def attachments_xml(msg: SimMessage) -> str:
    """GetItem's t:Attachments: each attachment's id, name, type and size, never its content; nothing
    for a message without attachments, as Exchange leaves the element out."""
    listed = attachments_of(msg)
    if not listed:
        return ""
    return (
        "<t:Attachments>"
        + "".join(_attachment_xml(msg, att, content=False, mime=False) for att in listed)
        + "</t:Attachments>"
    )


def get_attachment(sim: Simulator, parsed: Parsed, fault: Fault | None) -> bytes:
    """GetAttachment: one response message per AttachmentId, with the attachment's Content (an item
    attachment's MimeContent when AttachmentShape/IncludeMimeContent is true), or ErrorItemNotFound
    when its message is gone and ErrorInvalidIdMalformed for an id that is none of ours."""
    op = "GetAttachment"
    shape = parsed.payload.find(f"{M}AttachmentShape")
    mime = shape is not None and (shape.findtext(f"{T}IncludeMimeContent") or "").strip().lower() == "true"
    ids = parsed.payload.find(f"{M}AttachmentIds")
    messages = []
    for elem in list(ids) if ids is not None else []:
        wanted = elem.get("Id") or ""
        item = item_id_of(wanted)
        msg = sim.store.find(parsed.mailbox, item) if item else None
        found = (
            next((att for att in attachments_of(msg) if att.attachment_id == wanted), None) if msg else None
        )
        if item is None:
            messages.append(error(op, "ErrorInvalidIdMalformed", tail="<m:Attachments/>"))
        elif msg is None or found is None:
            messages.append(error(op, "ErrorItemNotFound", tail="<m:Attachments/>"))
        else:
            body = _attachment_xml(msg, found, content=True, mime=mime)
            messages.append(success(op, f"<m:Attachments>{body}</m:Attachments>"))
    return operation_response(op, messages)
