"""Plain request/response values shared by the simulator's protocol handlers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class SimRequest:
    method: str
    target: str  # path with query string, as sent
    headers: dict[str, str]  # keys lower-case
    body: bytes
    # A request held back by a "slow" fault has had its fault: when it wakes up, its client has usually
    # given up and a later test may have armed new faults, which it must not use up.
    faults_spent: bool = False
    # The client's address and port: one TCP connection's requests share it (a server's access log has it).
    peer: str = ""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)


@dataclass
class SimResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    repeat: int = 1  # the body is sent this many times over (the raw_body fault's huge answers)
    content_length: bool = True  # False: no Content-Length; the body ends when the connection closes
    # a long-lived answer sent chunk by chunk as it is produced (chunked transfer encoding), instead of body
    stream: Iterator[bytes] | None = None


@dataclass(frozen=True)
class Described:
    """What the server needs to know of a request before answering it: for fault matching and the log."""

    protocol: str  # ews, graph, token, control, unknown
    operation: str = ""
    mailbox: str = ""
