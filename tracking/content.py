"""The content a CRM user reads of a tracked email: bodies and attachments (tracking-rules §2).

`extract_content` reads them from RFC 5322 bytes; it is pure and never raises: a part that cannot be
read is noted and skipped, so an odd message never fails the page it is on. HTML is sanitized here, once,
when the email is tracked: no script, no event handlers, no styles, no remote loads (an image keeps its
source only when it is a `cid:` or `data:image/` one; a remote image's address moves to `data-remote-src`,
which loads nothing, for the page to show on request). The page shows it in a sandboxed frame on top,
with `cid:` images pointed at the stored attachments (`frame_html`).
"""

from __future__ import annotations

import email.errors
import email.utils
import html as html_lib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser

import nh3

from tracking.messages import ServerAttachment, ServerBody, clean_text, decode_header_value

BODY_MAX = 500_000  # characters of each body; longer ones are cut, with a note saying so
ATTACHMENTS_MAX = 100  # attachments kept per email; the rest are counted in a note
NAME_MAX = 255
TYPE_MAX = 255
# The stdlib parser takes seconds on MIME nested 1,000 deep (messages.parse_message); more multipart
# headers than this and the structure is not read at all.
MULTIPART_MAX = 200
_MULTIPART_RE = re.compile(rb"multipart/", re.IGNORECASE)
TEXT_CUT_NOTE = "\n\n[SyncAdmin: the rest of this body ({total:,} characters) was cut at {kept:,}.]"
HTML_CUT_NOTE = (
    "<p><em>[SyncAdmin: the rest of this body ({total:,} characters) was cut at {kept:,}.]</em></p>"
)

_TAGS = set(nh3.ALLOWED_TAGS) | {
    "font",
    "center",
    "u",
    "s",
    "strike",
    "caption",
    "colgroup",
    "col",
}
_ATTRIBUTES: dict[str, set[str]] = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("font", set()).update({"color", "face", "size"})
_ATTRIBUTES.setdefault("*", set()).update({"align", "dir"})
for _cell in ("td", "th", "table", "tr"):
    _ATTRIBUTES.setdefault(_cell, set()).update({"colspan", "rowspan", "width", "valign", "bgcolor"})
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_IMAGE_SCHEMES = ("cid:", "data:image/")
_REMOTE_SCHEMES = ("http:", "https:")
REMOTE_SRC = "data-remote-src"
CONTENT_ID_MAX = 255
# An <img> tag as the sanitizer writes it: every attribute value double-quoted with its quotes escaped,
# so a tag ends at the first ">" outside a value (a value may hold ">"); nothing else is ever parsed here.
_NAME = r"[^\s\"'>/=]+"
_IMG_RE = re.compile(rf'<img((?:\s+{_NAME}(?:="[^"]*")?)*)\s*(/?)>')
_ATTR_RE = re.compile(rf'\s+({_NAME})(?:="([^"]*)")?')


@dataclass(frozen=True)
class AttachmentContent:
    name: str
    content_type: str
    size: int  # bytes, decoded
    content: bytes | None  # None when over the org's limit (or the limit is 0)
    content_id: str = ""  # the part's Content-ID without <>, for the body's cid: images


@dataclass(frozen=True)
class MessageContent:
    text: str = ""
    html: str = ""  # sanitized
    attachments: tuple[AttachmentContent, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be read or was cut


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """No remote loads: images only from the message itself (cid:) or inline data (a remote image's source
    stays only to be moved aside by `_park_remote_images`); links only to the web or mail (never
    javascript: or data:)."""
    lowered = value.strip().lower()
    if attribute == "src":
        if tag == "img" and lowered.startswith(_REMOTE_SCHEMES):
            return value
        return value if lowered.startswith(_IMAGE_SCHEMES) else None
    if attribute in ("href", "cite", "longdesc"):
        return value if lowered.startswith(_LINK_SCHEMES) else None
    return value


def rewrite_images(html: str, change: Callable[[dict[str, str]], dict[str, str]]) -> str:
    """`html` (the sanitizer's output) with each <img>'s attributes replaced by `change(attributes)`; values
    stay HTML-escaped both ways."""

    def one(match: re.Match[str]) -> str:
        attributes = {m.group(1): m.group(2) or "" for m in _ATTR_RE.finditer(match.group(1))}
        written = "".join(f' {name}="{value}"' for name, value in change(attributes).items())
        return f"<img{written}>"

    return _IMG_RE.sub(one, html)


def _park_remote_images(attributes: dict[str, str]) -> dict[str, str]:
    src = attributes.get("src", "")
    if src.strip().lower().startswith(_REMOTE_SCHEMES):
        attributes[REMOTE_SRC] = attributes.pop("src")
    return attributes


def frame_html(html: str, cid_urls: Mapping[str, str], *, remote_images: bool) -> str:
    """The stored (sanitized) body as the email page's frame shows it: `cid:` images pointed at the stored
    attachments (`cid_urls`: URL by lower-case Content-ID; an unknown one loses its source) and, only when
    asked, remote images given back their source."""

    def change(attributes: dict[str, str]) -> dict[str, str]:
        src = html_lib.unescape(attributes.get("src", "")).strip()
        if src.lower().startswith("cid:"):
            url = cid_urls.get(src[4:].strip().strip("<>").lower())
            if url is None:
                attributes.pop("src")
            else:
                attributes["src"] = html_lib.escape(url)
        elif src and not src.lower().startswith("data:image/"):
            attributes.pop("src")  # never anything but the two kinds the sanitizer keeps
        remote = attributes.get(REMOTE_SRC, "")
        if remote_images and html_lib.unescape(remote).strip().lower().startswith(_REMOTE_SCHEMES):
            attributes["src"] = remote
        return attributes

    return rewrite_images(html, change)


def has_remote_images(html: str) -> bool:
    return f" {REMOTE_SRC}=" in html


def sanitize_html(html: str) -> str:
    """HTML safe to show: no script, no event handlers, no styles or external CSS, no remote loads."""
    return rewrite_images(_clean(html), _park_remote_images)


def _clean(html: str) -> str:
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "head", "noscript", "template", "object"},
        attributes=_ATTRIBUTES,
        attribute_filter=_keep_attribute,
        url_schemes={"http", "https", "mailto", "cid", "data"},
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


def _decode(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    for charset in (part.get_content_charset(), "utf-8"):
        if not charset:
            continue
        try:
            return clean_text(payload.decode(charset, errors="replace"))
        except (LookupError, ValueError):
            continue  # an unknown charset, or one that is no text encoding
    return clean_text(payload.decode("latin-1"))


def _cut(body: str, note: str) -> tuple[str, str | None]:
    if len(body) <= BODY_MAX:
        return body, None
    return body[:BODY_MAX] + note.format(total=len(body), kept=BODY_MAX), f"body cut at {BODY_MAX} characters"


def _leaves(part: Message, depth: int = 0) -> Iterator[Message]:
    """The parts that are not containers; an attached message is one leaf (it is an attachment)."""
    ctype = part.get_content_type()
    if part.is_multipart() and ctype.startswith("multipart/") and depth < 50:
        payload = part.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    yield from _leaves(sub, depth + 1)
        return
    yield part


def _filename(part: Message) -> str:
    name = part.get_filename() or part.get_param("name") or ""
    if isinstance(name, tuple):  # an RFC 2231 value the parser could not collapse
        name = email.utils.collapse_rfc2231_value(name)
    return decode_header_value(str(name)).strip()[:NAME_MAX]


def _is_attachment(part: Message, name: str) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment" or name:
        return True
    return not part.get_content_type().startswith("text/")


def _attachment(part: Message, name: str, limit_bytes: int) -> AttachmentContent:
    ctype = part.get_content_type()
    if ctype == "message/rfc822":
        inner = part.get_payload()
        sub = inner[0] if isinstance(inner, list) and inner else None
        data = sub.as_bytes() if isinstance(sub, Message) else b""
        if not name and isinstance(sub, Message):
            name = (decode_header_value(sub.get("Subject")) or "message")[: NAME_MAX - 4] + ".eml"
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    return AttachmentContent(
        name=name or "attachment",
        content_type=clean_text(ctype)[:TYPE_MAX],
        size=len(data),
        content=data if limit_bytes > 0 and len(data) <= limit_bytes else None,
        content_id=_content_id(part),
    )


def _content_id(part: Message) -> str:
    raw = part.get("Content-ID")
    if raw is None:
        return ""
    return clean_text(str(raw)).strip().strip("<>").strip()[:CONTENT_ID_MAX]


def extract_content(raw: bytes, *, attachment_limit_bytes: int) -> MessageContent:
    """The bodies and attachments of one message; never raises (see the module docstring).

    The first text/plain and the first text/html part that are not attachments are the bodies; every
    other leaf is an attachment, whose content is kept when it is at most `attachment_limit_bytes` (0 keeps
    none).
    """
    notes: list[str] = []
    if len(_MULTIPART_RE.findall(raw)) > MULTIPART_MAX:
        return MessageContent(notes=(f"more than {MULTIPART_MAX} multipart parts: the content was not read",))
    try:
        msg = BytesParser().parsebytes(raw)
    except Exception as exc:  # the stdlib parser is meant not to raise; a bug there must not stop a scan
        return MessageContent(notes=(f"the content could not be read: {type(exc).__name__}",))
    text = html = None
    attachments: list[AttachmentContent] = []
    skipped = 0
    try:
        leaves = list(_leaves(msg))
    except (RecursionError, email.errors.MessageError) as exc:
        return MessageContent(notes=(f"the content could not be read: {type(exc).__name__}",))
    for part in leaves:
        try:
            name = _filename(part)
            ctype = part.get_content_type()
            if not _is_attachment(part, name) and ctype in ("text/plain", "text/html"):
                # The first of each is the body; a second one (a footer part) is not shown.
                if ctype == "text/html" and html is None:
                    html = _decode(part)
                elif ctype == "text/plain" and text is None:
                    text = _decode(part)
                continue
            if len(attachments) >= ATTACHMENTS_MAX:
                skipped += 1
                continue
            attachments.append(_attachment(part, name, attachment_limit_bytes))
        except Exception as exc:  # one malformed part is skipped, never the page
            notes.append(f"a part could not be read: {type(exc).__name__}")
    if skipped:
        notes.append(f"{skipped} more attachments not kept (at most {ATTACHMENTS_MAX})")
    body_text, note = _cut(text or "", TEXT_CUT_NOTE)
    if note:
        notes.append(f"text {note}")
    body_html = ""
    if html:
        cut, note = _cut(html, "")
        if note:
            notes.append(f"HTML {note}")
        try:
            body_html = sanitize_html(cut)
        except (
            Exception
        ) as exc:  # nh3 is not meant to raise on any str; if it did, show no HTML rather than fail
            notes.append(f"the HTML body could not be sanitized: {type(exc).__name__}")
        else:
            if note:
                body_html += HTML_CUT_NOTE.format(total=len(html), kept=BODY_MAX)
    return MessageContent(text=body_text, html=body_html, attachments=tuple(attachments), notes=tuple(notes))


def attachment_from_server(
    listed: ServerAttachment, content: bytes | None, *, attachment_limit_bytes: int
) -> AttachmentContent:
    """An attachment a server listed (and, when under the limit, whose content a source fetched), cut and
    cleaned as one read from MIME is; content over the limit is not kept, whatever the source fetched."""
    keep = content is not None and attachment_limit_bytes > 0 and len(content) <= attachment_limit_bytes
    ctype = clean_text(listed.content_type or "").strip().lower()
    name = clean_text(listed.name).strip()
    if listed.is_item and not name.lower().endswith(".eml"):
        # Exchange names an attached message by its subject; stored, it is a .eml file as from MIME
        name = (name or "message")[: NAME_MAX - 4] + ".eml"
    return AttachmentContent(
        name=name[:NAME_MAX] or "attachment",
        content_type=ctype[:TYPE_MAX] or ("message/rfc822" if listed.is_item else "application/octet-stream"),
        size=len(content) if content is not None else max(listed.size, 0),
        content=content if keep else None,
        content_id=clean_text(listed.content_id).strip().strip("<>").strip()[:CONTENT_ID_MAX],
    )


def content_from_server(body: ServerBody) -> MessageContent:
    """What a CRM user reads of a body a server handed over as a field: the same cut and sanitizing as a
    MIME body; attachments are added by the pipeline from what the source fetched (tracking.pipeline)."""
    if body.kind.lower() == "html":
        cut, note = _cut(clean_text(body.content), "")
        html = sanitize_html(cut)
        if note:
            html += HTML_CUT_NOTE.format(total=len(body.content), kept=BODY_MAX)
        return MessageContent(html=html, notes=(f"HTML {note}",) if note else ())
    text, note = _cut(clean_text(body.content), TEXT_CUT_NOTE)
    return MessageContent(text=text, notes=(f"text {note}",) if note else ())
