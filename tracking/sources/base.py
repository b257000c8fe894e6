"""The one small interface every mail source implements, and its one error type.

A source knows nothing of models: it turns a folder and an opaque sync state into pages of
messages, each page carrying the state to save with it, and raises SourceError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable

import requests
from django.conf import settings as django_settings

from tracking.choices import ErrorKind
from tracking.content import AttachmentContent
from tracking.messages import Item, ParsedMessage


class SourceError(Exception):
    """A failure talking to a mail server.

    `permanent` errors (bad credentials, mailbox not found, access denied) need a person and disable
    the mailbox at once; others are retried, no sooner than `retry_after` seconds when the server
    said so. `kind` (an ErrorKind) says what failed, decided where the error is raised: the pages show
    words for the kind, never a guess from the message. The message is written for an admin: what
    failed and what to check, never the raw bytes of an answer (those go to the log at debug level).
    """

    def __init__(
        self, message: str, *, kind: ErrorKind, permanent: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.permanent = permanent
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled to cross from a fetch-ahead child (tracking.sources.fetchahead): the default would call
        # __init__ with the message alone, and the keyword-only fields would be lost or refused.
        return (_rebuild_source_error, (type(self), self.args, self.__dict__))


def _rebuild_source_error(
    cls: type[SourceError], args: tuple[object, ...], fields: dict[str, object]
) -> SourceError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(fields)
    return error


class SyncStateInvalid(SourceError):
    """The server no longer accepts the saved sync state; the folder must be synced again from scratch."""

    def __init__(
        self, message: str = "the server refused the saved sync state; a full resync is needed"
    ) -> None:
        super().__init__(message, kind=ErrorKind.SYNC_STATE, permanent=False)


@dataclass(frozen=True)
class SyncPage:
    """One page of a folder sync; `state` resumes the sync right after this page."""

    items: Sequence[Item]
    state: str
    more: bool
    estimated_total: int | None = None


class MailSource(Protocol):
    def test_connection(self, folders: Sequence[str]) -> None:
        """Check that each folder can be read; raise SourceError saying why not."""

    def sync(self, folder: str, state: str) -> Iterator[SyncPage]:
        """Pages of new or changed messages since `state` ("" = everything)."""


@dataclass(frozen=True)
class FetchedAttachments:
    """One message's attachments as a source fetched them, and what could not be fetched, in words."""

    attachments: tuple[AttachmentContent, ...] = ()
    notes: tuple[str, ...] = ()


@runtime_checkable
class AttachmentFetcher(Protocol):
    """Sources that read messages from fields (EWS, Graph) and fetch attachments only for the messages a
    page tracks, after the decision: a few batched requests for the lot, never one per message."""

    def fetch_attachments(
        self, messages: Sequence[ParsedMessage], limit_bytes: int
    ) -> dict[str, FetchedAttachments]:
        """By provider item id, the attachments of these messages, each with its content when it is at
        most `limit_bytes` (0: none). Never raises SourceError: what failed is a note and its attachment
        keeps its name, type and size, so a server refusing attachments never fails a page."""


def attachment_fetcher(source: object) -> AttachmentFetcher | None:
    return source if isinstance(source, AttachmentFetcher) else None


# A folder named by the server's id rather than a well-known name ("inbox", "sentitems") is passed to
# `sync` and `test_connection` as FOLDER_ID_PREFIX + id (folder-level tracking, tracking-rules §3.4).
FOLDER_ID_PREFIX = "id:"


@dataclass(frozen=True)
class FolderInfo:
    """A folder under the Inbox as the server lists it: its id and its display path (Inbox/A/B)."""

    id: str
    path: str
    total: int | None = None


class FolderLister(Protocol):
    """Sources that can list the folder tree under the Inbox (EWS and Graph; IMAP and local cannot)."""

    def list_folders(self) -> list[FolderInfo]:
        """Every folder under the Inbox, at any depth, parents before children."""


def folder_id_of(folder: str) -> str | None:
    """The server id in a folder argument given as FOLDER_ID_PREFIX + id, else None."""
    return folder[len(FOLDER_ID_PREFIX) :] if folder.startswith(FOLDER_ID_PREFIX) else None


DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
READ_CHUNK = 64 * 1024


def configured_max_response_bytes() -> int:
    """SOURCE_MAX_RESPONSE_MB of the settings, in bytes."""
    return int(django_settings.SOURCE_MAX_RESPONSE_BYTES)


class ResponseTooLarge(requests.ConnectionError):
    """A server answered with more bytes than a source accepts; the rest was never read.

    A ConnectionError so that exchangelib, which sees it raised from its HTTP adapter, drops the
    connection quietly instead of logging the request; the sources turn it into a SourceError.
    """

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"the response from {url} is larger than {limit // (1024 * 1024)} MB")
        self.limit = limit


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and exceptions wrapped in args or `.reason` (urllib3)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo.extend(e for e in linked if isinstance(e, BaseException))


def too_large_error(origin: str, exc: BaseException, where: str = "") -> SourceError | None:
    """The SourceError for a ResponseTooLarge anywhere in `exc`'s chain; None when there is none."""
    too_large = next((e for e in exception_chain(exc) if isinstance(e, ResponseTooLarge)), None)
    if too_large is None:
        return None
    return SourceError(
        f"{origin} sent a response larger than {too_large.limit // (1024 * 1024)} MB{where}; "
        "it was refused unread (raise SOURCE_MAX_RESPONSE_MB if the server is right)",
        kind=ErrorKind.TOO_LARGE,
        permanent=False,
    )


def read_limited(response: requests.Response, limit: int) -> None:
    """Read a response opened with stream=True into `response.content`, refusing more than `limit` bytes.

    Counted after any Content-Encoding is undone, so a small gzip bomb is refused as well; a body over the
    limit is never held in memory whole.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise ResponseTooLarge(response.url, limit)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            response.close()
            raise ResponseTooLarge(response.url, limit)
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what Response.content would have read; iter_content reuses it


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class ConnectionSettings:
    """What a source needs to reach a server: a server profile's fields plus the mailbox address."""

    kind: str  # a ProfileKind value
    mailbox: str  # the mailbox's SMTP address
    endpoint: str = ""
    auth_method: str = "none"
    username: str = ""
    secret: str = ""
    tenant_id: str = ""
    client_id: str = ""
    authority: str = ""
    ca_bundle: str = ""  # a CA file to trust instead of the system's (internal CA, the simulator)
    use_impersonation: bool = False
    max_connections: int = 4
    page_size: int = 100
    timeout: float = 60.0
    max_response_bytes: int = field(default_factory=configured_max_response_bytes)

    @property
    def authority_host(self) -> str:
        return (self.authority or DEFAULT_AUTHORITY).rstrip("/")

    @property
    def verify(self) -> str | bool:
        """For requests' `verify=`, passed per request so REQUESTS_CA_BUNDLE cannot override it."""
        return self.ca_bundle or True
