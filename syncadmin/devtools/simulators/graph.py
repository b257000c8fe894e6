"""Microsoft Graph mail (folders, messages, message delta, attachments, JSON batching) and the Microsoft
identity platform.

Shapes follow Microsoft's published samples (message-delta, delta-query-messages, the v2.0 OpenID
configuration, the client-credentials token response) so msal and plain HTTP clients talk to it
unchanged. Access tokens and delta/skip tokens are opaque to clients but signed, so the simulator can
check them; a delta token encodes {mailbox, folder, change-log position, folder generation} and the
$select/$expand of the round, as Graph encodes query options into its state tokens.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.parser
import email.policy
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, unquote_plus

from syncadmin.devtools.simulators.attachments import SimAttachment, attachments_of
from syncadmin.devtools.simulators.http import Described, SimRequest, SimResponse

if TYPE_CHECKING:
    from syncadmin.devtools.simulators.server import Simulator
    from syncadmin.devtools.simulators.store import SimMessage

# Signing keys are fixed so that tokens survive a simulator restart (a demo's cached access token and
# saved deltaLinks keep working against the same data), like a real tenant's would.
_TOKEN_KEY = b"syncadmin-simulator/access-token/v1"
_STATE_KEY = b"syncadmin-simulator/delta-state/v1"

TOKEN_LIFETIME = 3600
DEFAULT_PAGE_SIZE = 10  # Graph's default for messages
MAX_PAGE_SIZE = 1000
EXT_IN_REPLY_TO = "String 0x1042"  # PidTagInReplyToId
EXT_REFERENCES = "String 0x1039"  # PidTagInternetReferences
EXT_MESSAGE_ID = "String 0x1035"  # PidTagInternetMessageId
_EXTENDED = (EXT_IN_REPLY_TO, EXT_REFERENCES, EXT_MESSAGE_ID)

# Well-known folder names Graph accepts in place of an id, with their display names.
WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
    "archive": "Archive",
}
_ALWAYS_PRESENT = ("inbox", "sentitems")
_ROOT = "msgfolderroot"

_MESSAGE_TYPE = "#microsoft.graph.message"
_JSON = (
    "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
)
_SEGMENT_WITH_KEY = re.compile(r"^(\w+)\('((?:[^']|'')*)'\)$")
_FILTER_DISPLAY_NAME = re.compile(r"displayName\s+eq\s+'((?:[^']|'')*)'", re.IGNORECASE)
_EXPAND_IDS = re.compile(r"id\s+eq\s+'([^']*)'", re.IGNORECASE)
_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_IMMUTABLE = re.compile(r'IdType\s*=\s*"?ImmutableId"?', re.IGNORECASE)
_FOLD = re.compile(r"\r?\n[ \t]+")


# -- signed tokens ---------------------------------------------------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: dict[str, Any], header: dict[str, str] | None = None) -> str:
    """A JWT-shaped string (header.payload.HMAC); clients treat it as opaque."""
    head = _b64u(json.dumps(header or {"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    body = _b64u(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64u(mac)}"


def _unsign(key: bytes, token: str) -> dict[str, Any] | None:
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    head, body, mac = parts
    expected = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64u(mac)):
            return None
        payload = json.loads(_unb64u(body))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def issue_token(client_id: str, tenant: str, audience: str, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    return _sign(
        _TOKEN_KEY,
        {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": issued,
            "nbf": issued,
            "exp": issued + TOKEN_LIFETIME,
            "appid": client_id,
            "tid": tenant,
            "roles": ["Mail.Read"],
            "ver": "1.0",
            "uti": uuid.uuid4().hex,
        },
    )


def verify_token(sim: Simulator, token: str, *, audience: str | None = None) -> str | None:
    """The client id a token issued by this simulator was given to, or None if it is not valid (now).

    `audience` (e.g. "https://outlook.office365.com") is checked when given; a client id no longer
    in the simulator's credentials is refused, like a deleted app registration.
    """
    payload = _unsign(_TOKEN_KEY, token)
    if payload is None:
        return None
    client_id = payload.get("appid")
    exp = payload.get("exp")
    if not isinstance(client_id, str) or not isinstance(exp, int) or exp <= time.time():
        return None
    if audience is not None and str(payload.get("aud", "")).rstrip("/") != audience.rstrip("/"):
        return None
    if sim.credentials is not None and client_id not in sim.credentials:
        return None
    if payload.get("uti") in sim.revoked_tokens:
        return None
    return client_id


def revoke_token(sim: Simulator, token: str) -> None:
    """Refuse this access token from now on, as Microsoft's services do once it expired or was revoked
    (the token_expired fault); a fresh one from the token endpoint works."""
    payload = _unsign(_TOKEN_KEY, token)
    if payload is not None and isinstance(payload.get("uti"), str):
        sim.revoked_tokens.add(payload["uti"])


def _encode_state(state: dict[str, Any]) -> str:
    return _sign(_STATE_KEY, state, {"typ": "delta"})


def _decode_state(token: str) -> dict[str, Any] | None:
    return _unsign(_STATE_KEY, token)


# -- ids -------------------------------------------------------------------------------------------


def rest_id(ews_id: str) -> str:
    """The REST (Graph) form of an EWS item id, as Exchange's ConvertId gives it: URL-safe."""
    return ews_id.replace("/", "-").replace("+", "_")


def _ews_id(graph_id: str) -> str:
    return graph_id.replace("-", "/").replace("_", "+")


def folder_id(mailbox: str, folder: str) -> str:
    digest = hashlib.sha256(f"folder:{mailbox.lower()}/{folder}".encode()).digest()
    return "AQMkAD" + rest_id(base64.b64encode(digest[:30]).decode())


def _conversation_chain(msg: SimMessage) -> list[str]:
    parsed = msg.parsed
    if parsed is None:
        return [msg.item_id]
    ancestors = list(parsed.references) or list(parsed.in_reply_to)
    return [*ancestors, parsed.message_id]


def conversation_index(msg: SimMessage) -> bytes:
    """The message's ConversationIndex: its Thread-Index header, else one built like Exchange's.

    Exchange gives every message one: a 22-byte header for a conversation's first message and 5 more
    bytes per reply level. Without a Thread-Index we derive the header from the thread's root
    Message-ID and a block per later message of the References chain, so a reply's index has its
    parent's as a prefix, as Exchange's do.
    """
    if msg.parsed is not None and msg.parsed.conversation_index:
        return bytes.fromhex(msg.parsed.conversation_index)
    chain = _conversation_chain(msg)
    index = b"\x01" + hashlib.sha256(chain[0].encode()).digest()[:21]
    for later in chain[1:]:
        index += hashlib.sha256(later.encode()).digest()[:5]
    return index


def conversation_id(msg: SimMessage) -> str:
    root = _conversation_chain(msg)[0]
    return "AAQkAD" + rest_id(base64.b64encode(hashlib.sha256(root.encode()).digest()[:24]).decode())


# -- request parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    operation: str  # delta, message, folder, folders, user, me, unknown
    mailbox: str = ""
    folder: str = ""  # a well-known name or a folder id, as given
    item: str = ""
    segment: str = ""  # the first segment not understood, for the error message
    attachment: str = ""
    raw_value: bool = False  # .../attachments/{id}/$value: the attachment's raw bytes (a message's MIME)


def _segments(path: str) -> list[str]:
    out: list[str] = []
    for raw in path.split("/"):
        if not raw:
            continue
        part = unquote(raw)
        keyed = _SEGMENT_WITH_KEY.match(part)
        if keyed:
            out.extend([keyed.group(1), keyed.group(2).replace("''", "'")])
        else:
            out.append(part)
    return out


def _route(path: str) -> _Route:
    parts = _segments(path)
    if parts[:1] != ["v1.0"]:
        return _Route("unknown", segment=parts[0] if parts else "")
    rest = parts[1:]
    if rest == ["$batch"]:
        return _Route("batch")
    if rest[:1] and rest[0].lower() == "me":
        return _Route("me")
    if rest[:1] and rest[0].lower() == "subscriptions":
        return _Route("subscriptions", item="/".join(rest[1:]))
    if len(rest) < 2 or rest[0].lower() != "users":
        return _Route("unknown", segment=rest[0] if rest else "v1.0")
    mailbox = rest[1].lower()
    raw = rest[2:]
    names = [p.lower() for p in raw]
    if not names:
        return _Route("user", mailbox)
    if names[0] == "messages" and len(names) == 2:
        return _Route("message", mailbox, item=raw[1])
    if names[0] == "messages" and names[2:3] == ["attachments"] and len(names) in (3, 4, 5):
        if len(names) == 5 and names[4] != "$value":
            return _Route("unknown", mailbox, segment=raw[4])
        return _Route(
            "attachments",
            mailbox,
            item=raw[1],
            attachment=raw[3] if len(raw) > 3 else "",
            raw_value=len(raw) == 5,
        )
    if names[0] != "mailfolders":
        return _Route("unknown", mailbox, segment=raw[0])
    if len(names) == 1:
        return _Route("folders", mailbox)
    folder = raw[1]
    if len(names) == 2:
        return _Route("folder", mailbox, folder)
    if names[2:] == ["childfolders"]:
        return _Route("folders", mailbox, folder)
    if names[2:] == ["messages", "delta"]:
        return _Route("delta", mailbox, folder)
    if names[2] == "messages" and len(names) == 4:
        return _Route("message", mailbox, folder, item=raw[3])
    return _Route("unknown", mailbox, folder, segment=raw[2])


def _first(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _base_url(sim: Simulator, request: SimRequest) -> str:
    host = request.headers.get("host") or f"{sim.host}:{sim.port}"
    return f"https://{host}"


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def _json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> SimResponse:
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return SimResponse(status=status, body=payload, content_type=_JSON, headers=dict(headers or {}))


def _request_ids(request: SimRequest) -> tuple[str, str]:
    request_id = str(uuid.uuid4())
    return request_id, request.headers.get("client-request-id") or request_id


def graph_error(
    request: SimRequest,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> SimResponse:
    """A Graph error body: {"error": {"code", "message", "innerError": {date, request-id, ...}}}."""
    request_id, client_request_id = _request_ids(request)
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    out = {"request-id": request_id, "client-request-id": client_request_id, **(headers or {})}
    return _json_response(body, status, out)


# -- Graph -----------------------------------------------------------------------------------------


def describe(request: SimRequest) -> Described:
    route = _route(request.path)
    return Described("graph", route.operation, route.mailbox)


def handle(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    route = _route(request.path)
    if route.operation == "batch":
        return handle_batch(sim, request)
    if request.method not in ("GET", "HEAD") and route.operation != "subscriptions":
        return graph_error(
            request, 405, "ErrorInvalidRequest", f"The OData request method {request.method} is not supported"
        )
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if not token or scheme.lower() != "bearer":
        return _unauthorized(request, "Access token is empty.")
    client_id = verify_token(sim, token)
    if client_id is None:
        return _unauthorized(request, "Access token validation failure. Invalid audience or expired token.")
    if route.operation == "subscriptions":
        claims = _unsign(_TOKEN_KEY, token) or {}
        tenant = str(claims.get("tid") or "")
        return sim.push.handle(request, route.item, client_id, tenant, _base_url(sim, request))
    if route.operation == "me":
        return graph_error(
            request, 400, "BadRequest", "/me request is only valid with delegated authentication flow."
        )
    if route.operation == "unknown":
        return graph_error(
            request, 400, "BadRequest", f"Resource not found for the segment '{route.segment}'."
        )

    query = request.query
    kinds = {"server_busy", "unauthorized", "token_expired"}
    if route.operation == "delta" and (_first(query, "$skiptoken") or _first(query, "$deltatoken")):
        kinds.update({"invalid_sync_state", "sync_state_not_found", "resync_required"})
    if route.operation in ("message", "attachments"):
        kinds.add("item_not_found")
    fault = None
    if not request.faults_spent:
        fault = sim.faults.take("graph", route.operation, route.mailbox, frozenset(kinds))
    if fault is not None:
        if fault.kind == "unauthorized":
            return _unauthorized(request, "Access token validation failure.")
        if fault.kind == "token_expired":
            revoke_token(sim, token)
            return _unauthorized(request, "Lifetime validation failed, the token is expired.")
        if fault.kind == "sync_state_not_found":
            return graph_error(
                request,
                400,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and data must be "
                "synchronized again.",
            )
        if fault.kind == "resync_required":
            return graph_error(
                request,
                400,
                "resyncRequired",
                "The delta token is no longer valid; the application must reset the sync state.",
            )
        if fault.kind == "server_busy":
            seconds = fault.retry_after if fault.retry_after is not None else fault.back_off_ms / 1000
            return graph_error(
                request,
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                {"Retry-After": str(max(1, math.ceil(seconds)))},
            )
        if fault.kind == "invalid_sync_state":
            return _sync_state_gone(request, 0, 0)
        return _item_not_found(request)

    if not sim.store.has_mailbox(route.mailbox):
        return graph_error(
            request, 404, "ErrorInvalidUser", f"The requested user '{route.mailbox}' is invalid."
        )
    base = _base_url(sim, request)
    if route.operation == "user":
        return _user(request, route, base)
    if route.operation == "folders":
        return _folders(sim, request, route, base)
    if route.operation == "attachments":
        return attachments_response(sim, request, route, base)
    name = _resolve_folder(sim, route.mailbox, route.folder) if route.folder else None
    if route.operation == "message":
        if route.folder and name is None:
            return _item_not_found(request)
        return _message(sim, request, route, name, base)
    if name is None:  # the folder and delta routes always name a folder
        return _item_not_found(request)
    if route.operation == "folder":
        return _json_response(
            {
                "@odata.context": f"{base}/v1.0/$metadata#users('{route.mailbox}')/mailFolders/$entity",
                **_folder_json(sim, route.mailbox, name),
            }
        )
    return _delta(sim, request, route.mailbox, name, base)


def _unauthorized(request: SimRequest, message: str) -> SimResponse:
    challenge = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
        'client_id="00000003-0000-0000-c000-000000000000"'
    )
    return graph_error(request, 401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": challenge})


def _item_not_found(request: SimRequest) -> SimResponse:
    return graph_error(request, 404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _sync_state_gone(request: SimRequest, generation: int, highest: int) -> SimResponse:
    return graph_error(
        request,
        410,
        "SyncStateNotFound",
        f"The sync state generation is not found; generation={generation};[highest={highest}].",
    )


def _user(request: SimRequest, route: _Route, base: str) -> SimResponse:
    return _json_response(
        {
            "@odata.context": f"{base}/v1.0/$metadata#users/$entity",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailbox:{route.mailbox}")),
            "displayName": route.mailbox.split("@")[0],
            "mail": route.mailbox,
            "userPrincipalName": route.mailbox,
        }
    )


def _folder_names(sim: Simulator, mailbox: str) -> list[str]:
    with sim.store.lock:
        names = list(sim.store.mailboxes.get(mailbox, {}))
    return sorted(set(names) | set(_ALWAYS_PRESENT))


def _resolve_folder(sim: Simulator, mailbox: str, ref: str) -> str | None:
    """The store's folder name for a well-known name or a folder id (None when there is none)."""
    names = _folder_names(sim, mailbox)
    if ref.lower() in WELL_KNOWN_FOLDERS and (ref.lower() in names):
        return ref.lower()
    for name in names:
        if folder_id(mailbox, name) == ref:
            return name
    return None


def _parent(sim: Simulator, mailbox: str, name: str) -> str:
    with sim.store.lock:
        found = sim.store.mailboxes.get(mailbox, {}).get(name)
        parent = found.parent if found is not None else ("" if name in WELL_KNOWN_FOLDERS else "inbox")
    return folder_id(mailbox, parent or _ROOT)


def _children(sim: Simulator, mailbox: str, name: str) -> list[str]:
    """The keys of a folder's child folders; the top of the store always has Inbox and Sent Items."""
    listed = {f.name for f in sim.store.children(mailbox, name)}
    if name == "":
        listed |= set(_ALWAYS_PRESENT)
    return sorted(listed)


def _folder_json(sim: Simulator, mailbox: str, name: str) -> dict[str, Any]:
    folder = sim.store.folder(mailbox, name)
    with sim.store.lock:
        messages = list(folder.messages.values())
    return {
        "id": folder_id(mailbox, name),
        "displayName": folder.display_name or WELL_KNOWN_FOLDERS.get(name, name),
        "parentFolderId": _parent(sim, mailbox, name),
        "childFolderCount": len(_children(sim, mailbox, name)),
        "unreadItemCount": len(messages),
        "totalItemCount": len(messages),
        "sizeInBytes": sum(len(m.raw) for m in messages),
        "isHidden": False,
    }


def _folders(sim: Simulator, request: SimRequest, route: _Route, base: str) -> SimResponse:
    """mailFolders and mailFolders/{id}/childFolders: $filter on displayName, $top/$skip paging (default
    10, as Graph pages folders), an @odata.nextLink while more remain."""
    if route.folder:
        parent = _resolve_folder(sim, route.mailbox, route.folder)
        if parent is None:
            return _item_not_found(request)
        listed = _children(sim, route.mailbox, parent)
        context = f"users('{route.mailbox}')/mailFolders('{folder_id(route.mailbox, parent)}')/childFolders"
    else:
        listed = _children(sim, route.mailbox, "")
        context = f"users('{route.mailbox}')/mailFolders"
    wanted = _FILTER_DISPLAY_NAME.search(_first(request.query, "$filter"))
    value = [_folder_json(sim, route.mailbox, n) for n in listed]
    if wanted:
        target = wanted.group(1).replace("''", "'").casefold()
        value = [f for f in value if str(f["displayName"]).casefold() == target]
    try:
        top = max(1, min(MAX_PAGE_SIZE, int(_first(request.query, "$top") or DEFAULT_PAGE_SIZE)))
        skip = max(0, int(_first(request.query, "$skip") or 0))
    except ValueError:
        return graph_error(request, 400, "BadRequest", "Invalid $top or $skip.")
    page = value[skip : skip + top]
    body: dict[str, Any] = {"@odata.context": f"{base}/v1.0/$metadata#{context}", "value": page}
    if skip + top < len(value):
        query = {k: v[0] for k, v in request.query.items() if k not in ("$top", "$skip") and v}
        query.update({"$top": str(top), "$skip": str(skip + top)})
        body["@odata.nextLink"] = f"{base}{request.path}?" + "&".join(
            f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in query.items()
        )
    return _json_response(body)


def _page_size(request: SimRequest) -> tuple[int, dict[str, str]]:
    prefer = request.headers.get("prefer", "")
    applied: list[str] = []
    size = DEFAULT_PAGE_SIZE
    asked = _MAXPAGESIZE.search(prefer)
    if asked:
        size = max(1, min(MAX_PAGE_SIZE, int(asked.group(1))))
        applied.append(f"odata.maxpagesize={size}")
    if _IMMUTABLE.search(prefer):
        applied.append('IdType="ImmutableId"')
    return size, ({"Preference-Applied": ", ".join(applied)} if applied else {})


def _parse_select(text: str) -> list[str] | None:
    fields = [f.strip() for f in text.split(",") if f.strip()]
    return fields or None


def _parse_expand(text: str) -> list[str] | None:
    """The extended property ids asked for by $expand=singleValueExtendedProperties(...), or None."""
    if "singlevalueextendedproperties" not in text.lower():
        return None
    ids = _EXPAND_IDS.findall(text)
    return list(ids) if ids else list(_EXTENDED)


def _delta(sim: Simulator, request: SimRequest, mailbox: str, name: str, base: str) -> SimResponse:
    query = request.query
    token = _first(query, "$skiptoken") or _first(query, "$deltatoken")
    folder = sim.store.folder(mailbox, name)
    if token:
        state = _decode_state(token)
        if state is None or state.get("m") != mailbox or state.get("f") != name:
            return _sync_state_gone(request, 0, folder.generation)
        if state.get("g") != folder.generation:
            return _sync_state_gone(request, int(state.get("g") or 0), folder.generation)
        seq = int(state.get("s") or 0)
        select = state.get("sel")
        expand = state.get("exp")
    else:
        seq = 0
        select = _parse_select(_first(query, "$select"))
        expand = _parse_expand(_first(query, "$expand"))
    size, applied = _page_size(request)
    with sim.store.lock:
        changes, next_seq, more = folder.changes_since(seq, size)
        generation = folder.generation
        found = {c.item_id: folder.messages.get(c.item_id) for c in changes}
    value: list[dict[str, Any]] = []
    for change in changes:
        if change.kind == "delete":
            value.append(
                {
                    "@odata.type": _MESSAGE_TYPE,
                    "id": rest_id(change.item_id),
                    "@removed": {"reason": "deleted"},
                }
            )
            continue
        msg = found.get(change.item_id)
        if msg is not None:  # created, then deleted later in the log: the delete reports it
            value.append(message_json(base, mailbox, msg, select, expand))
    new_state = {"m": mailbox, "f": name, "s": next_seq, "g": generation, "sel": select, "exp": expand}
    kind = "skiptoken" if more else "deltatoken"
    link = (
        f"{base}/v1.0/users/{quote(mailbox, safe='@')}/mailFolders('{folder_id(mailbox, name)}')"
        f"/messages/delta?${kind}={_encode_state(new_state)}"
    )
    body = {
        "@odata.context": f"{base}/v1.0/$metadata#Collection(message)",
        "@odata.nextLink" if more else "@odata.deltaLink": link,
        "value": value,
    }
    return _json_response(body, headers=applied)


def _message(
    sim: Simulator, request: SimRequest, route: _Route, folder: str | None, base: str
) -> SimResponse:
    msg = sim.store.find(route.mailbox, _ews_id(route.item))
    if msg is None or (folder is not None and msg.folder != folder):
        return _item_not_found(request)
    query = request.query
    select = _parse_select(_first(query, "$select"))
    body = message_json(
        base, route.mailbox, msg, select, _parse_expand(_first(query, "$expand")), entity=True
    )
    shown = f"({','.join(select)})" if select else ""
    context = f"{base}/v1.0/$metadata#users('{route.mailbox}')/messages{shown}/$entity"
    return _json_response({"@odata.context": context, **body})


# -- message JSON ----------------------------------------------------------------------------------


def _address(name: str, address: str) -> dict[str, Any]:
    return {"emailAddress": {"name": name or address, "address": address}}


def _headers(msg: SimMessage) -> list[dict[str, str]]:
    parsed = email.parser.BytesHeaderParser().parsebytes(msg.raw)
    out = []
    for key, value in parsed.items():
        text = _FOLD.sub(" ", str(value)).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        out.append({"name": key, "value": text.strip()})
    return out


def _mime(msg: SimMessage) -> email.message.EmailMessage | None:
    try:
        parsed = email.message_from_bytes(msg.raw, policy=email.policy.default)
    except Exception:
        return None
    return parsed if isinstance(parsed, email.message.EmailMessage) else None


def _body_text(msg: SimMessage) -> tuple[str, str]:
    mime = _mime(msg)
    if mime is None:
        return "text", ""
    try:
        part = mime.get_body(preferencelist=("plain", "html"))
        if part is None:
            return "text", ""
        content = part.get_content()
    except Exception:  # odd charsets and broken MIME: Exchange would still show something; we show nothing
        return "text", ""
    kind = "html" if part.get_content_subtype() == "html" else "text"
    return kind, str(content)


def _has_attachments(msg: SimMessage) -> bool:
    """As Graph counts them: inline attachments (images an HTML body shows) leave it false."""
    return any(not att.is_inline for att in attachments_of(msg))


def _extended(msg: SimMessage, wanted: list[str]) -> list[dict[str, str]]:
    parsed = msg.parsed
    if parsed is None:
        return []
    values = {
        EXT_IN_REPLY_TO.lower(): " ".join(parsed.in_reply_to),
        EXT_REFERENCES.lower(): " ".join(parsed.references),
        EXT_MESSAGE_ID.lower(): "" if parsed.message_id_synthetic else parsed.message_id,
    }
    out = []
    for ident in wanted:
        canonical = next((e for e in _EXTENDED if e.lower() == ident.strip().lower()), None)
        if canonical and values[canonical.lower()]:
            out.append({"id": canonical, "value": values[canonical.lower()]})
    return out


DEFAULT_FIELDS = (
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
)


def message_json(
    base: str,
    mailbox: str,
    msg: SimMessage,
    select: list[str] | None,
    expand: list[str] | None,
    *,
    entity: bool = False,
) -> dict[str, Any]:
    """One message as Graph returns it: in a collection (with @odata.type) or alone (`entity`).

    `select` None gives the default property set of Microsoft's GET message sample.
    """
    parsed = msg.parsed
    sender = _address(parsed.sender.name, parsed.sender.address) if parsed and parsed.sender else None

    def recipients(field: str) -> list[dict[str, Any]]:
        if parsed is None:
            return []
        return [_address(a.name, a.address) for a in getattr(parsed, field)]

    def body() -> dict[str, str]:
        kind, content = _body_text(msg)
        return {"contentType": kind, "content": content}

    received = _iso(msg.received_at)
    props: dict[str, Callable[[], Any]] = {
        "createdDateTime": lambda: received,
        "lastModifiedDateTime": lambda: _iso(msg.modified_at),
        "changeKey": lambda: msg.change_key,
        "categories": lambda: [],
        "receivedDateTime": lambda: received,
        "sentDateTime": lambda: _iso(parsed.sent_at if parsed and parsed.sent_at else msg.received_at),
        "hasAttachments": lambda: _has_attachments(msg),
        # Exchange has no Message-ID for mail that came without one; ours would be made up.
        "internetMessageId": lambda: (
            parsed.message_id if parsed and not parsed.message_id_synthetic else None
        ),
        "subject": lambda: parsed.subject if parsed else "",
        "bodyPreview": lambda: " ".join(_body_text(msg)[1].split())[:255],
        "importance": lambda: "normal",
        "parentFolderId": lambda: folder_id(mailbox, msg.folder),
        "conversationId": lambda: conversation_id(msg),
        "conversationIndex": lambda: base64.b64encode(conversation_index(msg)).decode(),
        "isDeliveryReceiptRequested": lambda: False,
        "isReadReceiptRequested": lambda: False,
        "isRead": lambda: False,
        "isDraft": lambda: False,
        "webLink": lambda: (
            f"https://outlook.office365.com/owa/?ItemID={quote(rest_id(msg.item_id), safe='')}"
            "&exvsurl=1&viewmodel=ReadMessageItem"
        ),
        "inferenceClassification": lambda: "focused",
        "body": body,
        "sender": lambda: sender,
        "from": lambda: sender,
        "toRecipients": lambda: recipients("to"),
        "ccRecipients": lambda: recipients("cc"),
        "bccRecipients": lambda: recipients("bcc"),
        "replyTo": lambda: [],
        "flag": lambda: {"flagStatus": "notFlagged"},
        "internetMessageHeaders": lambda: _headers(msg),
    }
    lookup = {k.lower(): k for k in props}
    if select is None:
        fields = list(DEFAULT_FIELDS)
    else:
        fields = [lookup[f.lower()] for f in select if f.lower() in lookup]
    out: dict[str, Any] = {} if entity else {"@odata.type": _MESSAGE_TYPE}
    out["@odata.etag"] = f'W/"{msg.change_key}"'
    for field in dict.fromkeys(fields):
        # Graph leaves internetMessageHeaders out for items that were never received (Sent Items).
        if field == "internetMessageHeaders" and msg.folder == "sentitems":
            continue
        out[field] = props[field]()
    out["id"] = rest_id(msg.item_id)
    if expand is not None:
        extended = _extended(msg, expand)
        if extended:
            out["singleValueExtendedProperties@odata.context"] = (
                f"{base}/v1.0/$metadata#users('{mailbox}')/messages('{quote(rest_id(msg.item_id), safe='')}')"
                "/singleValueExtendedProperties"
            )
            out["singleValueExtendedProperties"] = extended
    return out


# -- attachments and JSON batching ----------------------------------------------------------------

_FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
_ITEM_ATTACHMENT = "#microsoft.graph.itemAttachment"
BATCH_MAX = 20


def attachment_json(msg: SimMessage, att: SimAttachment, select: list[str] | None) -> dict[str, Any]:
    """A fileAttachment or itemAttachment as Graph lists it; contentBytes (files only) unless $select
    leaves it out, as Graph returns it by default."""
    props: dict[str, Any] = {
        "id": rest_id(att.attachment_id),
        "lastModifiedDateTime": _iso(msg.modified_at),
        "name": att.name,
        "contentType": att.content_type,
        "size": att.size,
        "isInline": att.is_inline,
    }
    if not att.is_item:
        props["contentId"] = att.content_id or None
        props["contentLocation"] = None
        props["contentBytes"] = base64.b64encode(att.content).decode()
    out: dict[str, Any] = {"@odata.type": _ITEM_ATTACHMENT if att.is_item else _FILE_ATTACHMENT}
    if not att.is_item:
        out["@odata.mediaContentType"] = att.content_type
    wanted = None if select is None else {f.lower() for f in select} | {"id"}
    out.update((k, v) for k, v in props.items() if wanted is None or k.lower() in wanted)
    return out


def attachments_response(sim: Simulator, request: SimRequest, route: _Route, base: str) -> SimResponse:
    """GET /users/{id}/messages/{id}/attachments (a collection), .../attachments/{id} (one) and
    .../attachments/{id}/$value (its raw content; for an attached message its MIME)."""
    msg = sim.store.find(route.mailbox, _ews_id(route.item))
    if msg is None:
        return _item_not_found(request)
    select = _parse_select(_first(request.query, "$select"))
    listed = attachments_of(msg)
    context = f"{base}/v1.0/$metadata#users('{route.mailbox}')/messages('{route.item}')/attachments"
    if not route.attachment:
        return _json_response(
            {"@odata.context": context, "value": [attachment_json(msg, a, select) for a in listed]}
        )
    found = next((a for a in listed if rest_id(a.attachment_id) == route.attachment), None)
    if found is None:
        return _item_not_found(request)
    if route.raw_value:
        return SimResponse(
            body=found.content, content_type="message/rfc822" if found.is_item else found.content_type
        )
    return _json_response({"@odata.context": f"{context}/$entity", **attachment_json(msg, found, select)})


def handle_batch(sim: Simulator, request: SimRequest) -> SimResponse:
    """POST /v1.0/$batch: {"requests": [{id, method, url, headers?, body?}]} answered as
    {"responses": [{id, status, headers, body}]}, each request run as if sent alone (with the batch's
    Authorization), so it is logged, faulted and throttled on its own; at most 20 requests."""
    if request.method != "POST":
        return graph_error(request, 405, "BadRequest", "Write request id : $batch does not support GET.")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer" or verify_token(sim, token) is None:
        return _unauthorized(request, "Access token validation failure.")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return graph_error(request, 400, "BadRequest", "Invalid batch payload format.")
    requests_ = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests_, list) or not requests_:
        return graph_error(request, 400, "BadRequest", "Invalid batch payload format.")
    if len(requests_) > BATCH_MAX:
        return graph_error(
            request, 400, "BadRequest", f"Number of batch request steps exceeds the maximum of {BATCH_MAX}."
        )
    responses = []
    for entry in requests_:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or "id" not in entry:
            return graph_error(request, 400, "BadRequest", "Invalid batch payload format.")
        url = entry["url"] if entry["url"].startswith("/") else "/" + entry["url"]
        inner = SimRequest(
            method=str(entry.get("method") or "GET").upper(),
            target=f"/v1.0{url}",
            headers={
                "authorization": request.headers.get("authorization", ""),
                "host": request.headers.get("host", ""),
            },
            body=b"",
            peer=request.peer,
        )
        answer = sim.answer(inner)
        if answer is None:  # a dropped connection: Graph reports a failed step as a gateway error
            responses.append({"id": entry["id"], "status": 502, "headers": {}, "body": {}})
            continue
        try:
            inner_body: Any = json.loads(answer.body) if answer.body else {}
        except ValueError:
            inner_body = base64.b64encode(answer.body).decode()  # a body that is not JSON comes as base64
        headers = {"Cache-Control": "private", "Content-Type": answer.content_type, **answer.headers}
        responses.append({"id": entry["id"], "status": answer.status, "headers": headers, "body": inner_body})
    return _json_response({"responses": responses})


# -- identity platform -----------------------------------------------------------------------------

_COMMON_TENANTS = frozenset({"common", "organizations", "consumers"})
_CLAIMS = [
    "sub",
    "iss",
    "cloud_instance_name",
    "cloud_instance_host_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "nonce",
    "preferred_username",
    "name",
    "tid",
    "ver",
    "at_hash",
    "c_hash",
    "email",
]


def describe_token(request: SimRequest) -> Described:
    path = request.path
    if path.startswith("/common/discovery/instance"):
        return Described("token", "instance-discovery")
    if path.endswith("/.well-known/openid-configuration"):
        return Described("token", "openid-configuration")
    if path.endswith("/oauth2/v2.0/token") or path.endswith("/oauth2/token"):
        return Described("token", "token")
    return Described("token", "unknown")


def _tenant_of(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return unquote(parts[0]) if parts else "common"


def _aad_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> SimResponse:
    now = datetime.now(UTC)
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    code = re.match(r"AADSTS(\d+)", description)
    body = {
        "error": error,
        "error_description": f"{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
        f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}",
        "error_codes": [int(code.group(1))] if code else [],
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace,
        "correlation_id": correlation,
    }
    return SimResponse(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json; charset=utf-8",
        headers=dict(headers or {}),
    )


def openid_configuration(base: str, tenant: str) -> dict[str, Any]:
    """The v2.0 OpenID configuration Entra ID publishes, with every endpoint on this simulator."""
    shown = "{tenantid}" if tenant.lower() in _COMMON_TENANTS else tenant
    host = base.split("://", 1)[-1]
    return {
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{shown}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": list(_CLAIMS),
        "kerberos_endpoint": f"{base}/{tenant}/kerberos",
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": host,
        "rbac_url": "https://pas.windows.net",
    }


def handle_token(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    base = _base_url(sim, request)
    if described.operation == "openid-configuration":
        tenant = _tenant_of(request.path)
        body = json.dumps(openid_configuration(base, tenant)).encode()
        return SimResponse(body=body, content_type="application/json; charset=utf-8")
    if described.operation == "instance-discovery":
        return _instance_discovery(request, base)
    if described.operation == "token" and request.method == "POST":
        return _token(sim, request)
    return _aad_error(
        400,
        "invalid_request",
        f"AADSTS900561: The endpoint only accepts POST, OPTIONS requests. ({request.path})",
    )


def _instance_discovery(request: SimRequest, base: str) -> SimResponse:
    endpoint = _first(request.query, "authorization_endpoint")
    if not endpoint:
        return _aad_error(
            400, "invalid_request", "AADSTS90014: The required field 'authorization_endpoint' is missing."
        )
    path = endpoint.split("://", 1)[-1].partition("/")[2]
    tenant = path.split("/", 1)[0] or "common"
    host = base.split("://", 1)[-1]
    body = {
        "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }
    return SimResponse(body=json.dumps(body).encode(), content_type="application/json; charset=utf-8")


def _client_credentials(request: SimRequest, form: dict[str, list[str]]) -> tuple[str, list[str]]:
    """The client id and the secrets it may have meant: from the form, or HTTP Basic, which MSAL
    form-encodes first (RFC 6749 2.3.1) and other clients (requests-oauthlib) send as is."""
    client_id = _first(form, "client_id")
    secrets = [_first(form, "client_secret")] if "client_secret" in form else []
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        client_id = client_id or unquote_plus(user)
        secrets += [password, unquote_plus(password)]
    return client_id, secrets


def _token(sim: Simulator, request: SimRequest) -> SimResponse:
    fault = (
        None
        if request.faults_spent
        else sim.faults.take("token", "token", "", frozenset({"server_busy", "unauthorized"}))
    )
    if fault is not None and fault.kind == "server_busy":
        seconds = fault.retry_after if fault.retry_after is not None else fault.back_off_ms / 1000
        return _aad_error(
            429,
            "temporarily_unavailable",
            "The service is temporarily unavailable; retry after the number of seconds in Retry-After.",
            {"Retry-After": str(max(1, math.ceil(seconds)))},
        )
    form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    tenant = _tenant_of(request.path)
    grant = _first(form, "grant_type")
    if grant != "client_credentials":
        return _aad_error(
            400,
            "unsupported_grant_type",
            f"AADSTS70003: The app requested an unsupported grant type '{grant}'.",
        )
    client_id, secrets = _client_credentials(request, form)
    if not client_id:
        return _aad_error(
            400,
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
        )
    if sim.credentials is not None and client_id not in sim.credentials:
        return _aad_error(
            400,
            "unauthorized_client",
            f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant}'. This can happen if the application has not been installed by the administrator "
            "of the tenant or consented to by any user in the tenant.",
        )
    refused = fault is not None and fault.kind == "unauthorized"
    if refused or not any(sim.check_secret(client_id, secret) for secret in secrets or [""]):
        return _aad_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is "
            f"the client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
        )
    scope = _first(form, "scope").split()
    resource = next((s[: -len("/.default")] for s in scope if s.endswith("/.default")), None)
    if resource is None:
        return _aad_error(
            400,
            "invalid_scope",
            f"AADSTS1002012: The provided value for scope {' '.join(scope)} is not valid. Client credential "
            "flows must have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    body = {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": issue_token(client_id, tenant, resource),
    }
    return SimResponse(
        body=json.dumps(body).encode(),
        content_type="application/json; charset=utf-8",
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )
