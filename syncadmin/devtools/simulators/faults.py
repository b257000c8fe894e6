"""Faults the simulator injects on demand, from tests (Python or HTTP) and from its command line."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

# generic faults are applied by the server to any protocol; the others by the protocol handlers
GENERIC_KINDS = frozenset({"http_status", "slow", "drop", "malformed", "truncated", "raw_body"})
PROTOCOL_KINDS = frozenset(
    {
        "server_busy",
        "invalid_sync_state",
        "sync_state_not_found",
        "resync_required",
        "unauthorized",
        "token_expired",
        "item_not_found",
        "notification_dropped",
        "subscription_expired",
    }
)
KINDS = GENERIC_KINDS | PROTOCOL_KINDS


@dataclass
class Fault:
    """One fault rule: which requests it hits (protocol, operation, mailbox) and what it does.

    kind: http_status (status, retry_after) · slow (delay seconds) · drop (close without answering) ·
    malformed (invalid XML/JSON) · truncated (cut the body in half) · server_busy (EWS ErrorServerBusy
    with back_off_ms; Graph 429 with retry_after) · invalid_sync_state (EWS ErrorInvalidSyncStateData;
    Graph 410 on a delta link) · sync_state_not_found, resync_required (Graph only: HTTP 400 with the
    error code syncStateNotFound or resyncRequired on a delta link, as Microsoft documents for an
    expired delta token) · unauthorized (401) · token_expired (the bearer token the request carries is
    revoked from then on and the request refused as an expired token is: EWS 401 with
    `WWW-Authenticate: Bearer …, error="invalid_token"`, Graph 401 InvalidAuthenticationToken; a fresh
    token works) · item_not_found (EWS GetItem ErrorItemNotFound;
    Graph 404) · raw_body (answer `status` with `body` repeated `repeat` times, streamed so that a huge
    answer is never held in memory, as `content_type`; without a Content-Length when `content_length`
    is false, the end of the body being the end of the connection) · notification_dropped (Graph change
    notifications, operation "notification": that notification is never sent; EWS streaming: the events of
    one change in the mailbox's subscribed folders are lost) · subscription_expired (Graph, operation
    "notification": the subscription expires instead, is deleted, and sends nothing more; EWS
    GetStreamingEvents: the mailbox's subscriptions have expired; answered ErrorSubscriptionNotFound).
    """

    kind: str
    protocol: str = "any"  # ews, graph, token or any
    operation: str = (
        ""  # EWS operation (SyncFolderItems, GetItem, ...) or Graph "delta", "notification"; "" = any
    )
    mailbox: str = ""  # "" = any
    status: int = 500
    retry_after: float | None = None
    back_off_ms: int = 1000
    delay: float = 0.0
    times: int = 1  # how many matching requests it hits; -1 = until cleared
    after: int = 0  # let this many matching requests through first
    body: str = ""
    repeat: int = 1
    content_type: str = "text/plain"
    content_length: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(sorted(KINDS))}")

    def matches(self, protocol: str, operation: str, mailbox: str) -> bool:
        return (
            self.protocol in ("any", protocol)
            and self.operation in ("", operation)
            and self.mailbox in ("", mailbox.lower())
        )

    @classmethod
    def parse(cls, text: str) -> Fault:
        """`kind[,key=value...]`, e.g. `server_busy,protocol=ews,operation=SyncFolderItems,times=2`."""
        kind, *pairs = [p.strip() for p in text.split(",") if p.strip()]
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in types or key == "kind":
                raise ValueError(f"fault option {pair!r}: use key=value with key one of {', '.join(types)}")
            kind_of = str(types[key])
            if "bool" in kind_of:
                values[key] = value.strip().lower() in ("1", "true", "yes")
            elif "int" in kind_of:
                values[key] = int(value)
            elif "float" in kind_of:
                values[key] = float(value)
            else:
                values[key] = value
        return cls(kind=kind, **values)  # type: ignore[arg-type]


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(
        self, protocol: str, operation: str, mailbox: str, kinds: frozenset[str] = KINDS
    ) -> Fault | None:
        """The first armed fault for this request, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or not fault.matches(protocol, operation, mailbox):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.times == 0:
                    continue
                if fault.times > 0:
                    fault.times -= 1
                return fault
        return None
