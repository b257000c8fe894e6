"""The attachments of a simulated message, read from its MIME as Exchange lists them for EWS and Graph.

Every leaf that is not one of the two bodies (the first text/plain and text/html parts without a file name
or an attachment disposition) is an attachment; an attached message (message/rfc822) is an item
attachment, served as its MIME. Ids are derived from the message's item id and the position, so they are
stable and name the message they belong to, as Exchange's attachment ids do.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
from dataclasses import dataclass
from email.message import Message

from syncadmin.devtools.simulators.store import MailStore, SimMessage

MAX_LEAVES = 500


@dataclass(frozen=True)
class SimAttachment:
    attachment_id: str
    name: str
    content_type: str
    content: bytes
    is_inline: bool
    content_id: str
    is_item: bool  # message/rfc822: an ItemAttachment (EWS), an itemAttachment (Graph)

    @property
    def size(self) -> int:
        return len(self.content)


def attachment_id(item_id: str, position: int) -> str:
    digest = hashlib.sha256(f"{item_id}/attachment/{position}".encode()).digest()[:12]
    return base64.b64encode(b"AAMkAD" + digest + item_id.encode()).decode()


def item_id_of(attachment: str) -> str | None:
    """The item id an attachment id was made from (None when it is none of ours)."""
    try:
        raw = base64.b64decode(attachment, validate=True)
    except ValueError:
        return None
    return raw[18:].decode("ascii", "replace") if raw.startswith(b"AAMkAD") and len(raw) > 18 else None


def _leaves(part: Message, out: list[Message]) -> None:
    if len(out) >= MAX_LEAVES:
        return
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for sub in part.get_payload() or []:
            if isinstance(sub, Message):
                _leaves(sub, out)
        return
    out.append(part)


def attachments_of(msg: SimMessage) -> list[SimAttachment]:
    try:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(msg.raw)
        whole_is_body = not head.get_filename() and head.get_content_disposition() != "attachment"
        if head.get_content_maintype() == "text" and whole_is_body:
            # most mail is one text part: no need to parse the body (GetItem lists attachments of every item)
            return []
        mime = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(msg.raw)
        leaves: list[Message] = []
        _leaves(mime, leaves)
    except Exception:  # a message the parser cannot read has no attachments the server could list
        return []
    bodies: set[str] = set()
    out: list[SimAttachment] = []
    for part in leaves:
        ctype = part.get_content_type()
        name = part.get_filename() or part.get_param("name") or ""
        name = name if isinstance(name, str) else ""
        disposition = (part.get_content_disposition() or "").lower()
        is_body = ctype in ("text/plain", "text/html") and not name and disposition != "attachment"
        if is_body and ctype not in bodies:
            bodies.add(ctype)
            continue
        if ctype == "message/rfc822":
            inner = part.get_payload()
            sub = inner[0] if isinstance(inner, list) and inner else None
            content = sub.as_bytes() if isinstance(sub, Message) else b""
            name = name or str((sub.get("Subject") if isinstance(sub, Message) else "") or "message")
        else:
            payload = part.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
        out.append(
            SimAttachment(
                attachment_id=attachment_id(msg.item_id, len(out)),
                name=name or "attachment",
                content_type=ctype,
                content=content,
                is_inline=disposition == "inline",
                content_id=str(part.get("Content-ID") or "").strip().strip("<>"),
                is_item=ctype == "message/rfc822",
            )
        )
    return out


def find_attachment(store: MailStore, mailbox: str, attachment: str) -> SimAttachment | None:
    item = item_id_of(attachment)
    msg = store.find(mailbox, item) if item else None
    if msg is None:
        return None
    return next((a for a in attachments_of(msg) if a.attachment_id == attachment), None)
