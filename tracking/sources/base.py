"""The one small interface every mail source implements, and its one error type.

A source knows nothing of models: it turns a folder and an opaque sync state into pages of
messages, each page carrying the state to save with it, and raises SourceError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import requests
from django.conf import settings as django_settings

from tracking.pipeline import Item


class SourceError(Exception):
    """A failure talking to a mail server.

    `permanent` errors (bad credentials, mailbox not found, access denied) need a person and disable
    the mailbox at once; others are retried, no sooner than `retry_after` seconds when the server
    said so. The message is written for an admin: what failed and what to check.
    """

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class SyncStateInvalid(SourceError):
    """The server no longer accepts the saved sync state; the folder must be synced again from scratch."""

    def __init__(
        self, message: str = "the server refused the saved sync state; a full resync is needed"
    ) -> None:
        super().__init__(message, permanent=False)


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
        self.url = url
        self.limit = limit


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
