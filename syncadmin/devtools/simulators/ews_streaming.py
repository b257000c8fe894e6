"""EWS streaming notifications for the simulator: Subscribe (StreamingSubscriptionRequest), GetStreamingEvents
and Unsubscribe, in the shapes of Microsoft's published samples.

A subscription watches folders of one mailbox and queues the events of the store's changes in them
(CreatedEvent, NewMailEvent for mail arriving in the Inbox, ModifiedEvent of the folder, MovedEvent,
DeletedEvent), whether a client is connected or not, as Exchange does. GetStreamingEvents answers with a
chunked HTTP response that stays open: one SOAP envelope per chunk, each a complete document (at most 50
events a notification), a StatusEvent notification every `heartbeat` seconds while nothing happens,
and, after the connection timeout, a last envelope with ConnectionStatus Closed. The timeout asked for
(ConnectionTimeout, in minutes) is replaced by `connection_timeout` seconds when that is set, so tests
need not wait minutes.

An unknown subscription id answers ErrorSubscriptionNotFound with ErrorSubscriptionIds and ConnectionStatus
Closed, as Exchange answers for a subscription it no longer has (expired, or lost with a server restart).
A subscription expires `lifetime` seconds after its last connection ended; `expire()` ends one at once (an
open stream gets the same error), and so does the `subscription_expired` fault on a GetStreamingEvents
request. The `notification_dropped` fault loses the events of one store change for the mailbox it names,
as a notification lost on the way; only a sync from the saved state then finds the message.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncadmin.devtools.simulators.store import StoreEvent

if TYPE_CHECKING:
    from syncadmin.devtools.simulators.ews import Parsed
    from syncadmin.devtools.simulators.server import Simulator

MAX_EVENTS_PER_NOTIFICATION = (
    50  # "the first 50 events from the queue are pulled" (GetStreamingEvents remarks)
)
EVENT_TYPES = frozenset(
    {"CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "NewMailEvent"}
)
NOT_FOUND_TEXT = "The specified subscription was not found."


@dataclass
class Subscription:
    id: str
    mailbox: str
    folders: frozenset[str]  # store folder keys
    event_types: frozenset[str]
    events: list[str] = field(default_factory=list)  # t:*Event XML, oldest first
    watermark: int = 0
    streams: int = 0  # open GetStreamingEvents connections
    idle_since: float = field(default_factory=time.monotonic)
    ended: str = ""  # why it ended: "" while alive, else an EWS response code

    def next_watermark(self) -> str:
        self.watermark += 1
        return f"AQAAAEw{self.watermark:012d}"


class StreamingHub:
    """The simulator's streaming subscriptions; every method is thread-safe."""

    def __init__(self) -> None:
        self.connection_timeout: float | None = None  # seconds; None = the ConnectionTimeout asked for
        self.heartbeat = 30.0  # seconds between StatusEvent notifications on a quiet connection
        self.lifetime = 30 * 60.0  # an idle subscription (no open stream) expires after this many seconds
        self._cond = threading.Condition()
        self._subscriptions: dict[str, Subscription] = {}
        self._closing = False

    # -- for tests and the control API ----------------------------------------------------------------

    def subscriptions(self, mailbox: str | None = None) -> list[Subscription]:
        with self._cond:
            return [
                s for s in self._subscriptions.values() if mailbox is None or s.mailbox == mailbox.lower()
            ]

    def open_streams(self, mailbox: str | None = None) -> int:
        return sum(s.streams for s in self.subscriptions(mailbox))

    def expire(self, mailbox: str | None = None) -> int:
        """End a mailbox's subscriptions (all when None) as Exchange ends expired ones; how many ended."""
        with self._cond:
            gone = [
                s for s in self._subscriptions.values() if mailbox is None or s.mailbox == mailbox.lower()
            ]
            for sub in gone:
                self._end(sub, "ErrorSubscriptionNotFound")
            self._cond.notify_all()
            return len(gone)

    def close(self) -> None:
        """The server stops: every open stream ends (ConnectionStatus Closed)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    # -- the store's changes -------------------------------------------------------------------------

    def on_store_event(self, sim: Simulator, event: StoreEvent) -> None:
        from syncadmin.devtools.simulators.ews import folder_change_key, folder_id

        with self._cond:
            watching = [
                s
                for s in self._subscriptions.values()
                if s.mailbox == event.address and ({event.folder, event.old_folder} & s.folders)
            ]
            if not watching:
                return
            if sim.faults.take(
                "ews", "GetStreamingEvents", event.address, frozenset({"notification_dropped"})
            ):
                return
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

            def folder_ref(tag: str, name: str) -> str:
                return (
                    f'<t:{tag} Id="{folder_id(event.address, name)}" '
                    f'ChangeKey="{folder_change_key(event.address, name)}"/>'
                )

            item = f'<t:ItemId Id="{event.item_id}" ChangeKey="CQAAAA=="/>'
            parent = folder_ref("ParentFolderId", event.folder)
            for sub in watching:
                made: list[tuple[str, str]] = []
                if event.kind == "create":
                    made.append(("CreatedEvent", f"<t:TimeStamp>{stamp}</t:TimeStamp>{item}{parent}"))
                    if event.folder == "inbox":
                        made.append(("NewMailEvent", f"<t:TimeStamp>{stamp}</t:TimeStamp>{item}{parent}"))
                elif event.kind == "delete":
                    made.append(("DeletedEvent", f"<t:TimeStamp>{stamp}</t:TimeStamp>{item}{parent}"))
                else:
                    old = f'<t:OldItemId Id="{event.old_item_id}" ChangeKey="CQAAAA=="/>' + folder_ref(
                        "OldParentFolderId", event.old_folder
                    )
                    made.append(("MovedEvent", f"<t:TimeStamp>{stamp}</t:TimeStamp>{item}{parent}{old}"))
                for name in sorted({event.folder, event.old_folder} & sub.folders):
                    unread = len(sim.store.folder(event.address, name).messages)
                    made.append(
                        (
                            "ModifiedEvent",
                            f"<t:TimeStamp>{stamp}</t:TimeStamp>{folder_ref('FolderId', name)}"
                            f"{folder_ref('ParentFolderId', _parent(sim, event.address, name))}"
                            f"<t:UnreadCount>{unread}</t:UnreadCount>",
                        )
                    )
                sub.events += [f"<t:{tag}>{body}</t:{tag}>" for tag, body in made if tag in sub.event_types]
            self._cond.notify_all()

    # -- operations ----------------------------------------------------------------------------------

    def subscribe(self, sim: Simulator, parsed: Parsed) -> bytes:
        from syncadmin.devtools.simulators.ews import (
            ROOT_FOLDERS,
            M,
            T,
            _resolve_folder,
            error,
            operation_response,
            success,
        )

        op = "Subscribe"
        request = parsed.payload.find(f"{M}StreamingSubscriptionRequest")
        if request is None:
            # pull and push subscriptions are not modelled
            return operation_response(
                op,
                [error(op, "ErrorInvalidSubscriptionRequest", "Only streaming subscriptions are supported.")],
            )
        folders: set[str] = set()
        ids = request.find(f"{T}FolderIds")
        if request.get("SubscribeToAllFolders") in ("true", "1"):
            folders = set(sim.store.mailboxes.get(parsed.mailbox, {})) | {"inbox", "sentitems"}
        for elem in list(ids) if ids is not None else []:
            ref = _resolve_folder(sim, parsed.mailbox, elem)
            if ref is None or ref.name in ROOT_FOLDERS:
                return operation_response(op, [error(op, "ErrorFolderNotFound")])
            folders.add(ref.name)
        types = {(e.text or "").strip() for e in request.iterfind(f"{T}EventTypes/{T}EventType")}
        if not folders or not types or not types <= EVENT_TYPES | {"FreeBusyChangedEvent"}:
            return operation_response(op, [error(op, "ErrorInvalidSubscriptionRequest")])
        sub = Subscription(str(uuid.uuid4()), parsed.mailbox, frozenset(folders), frozenset(types))
        with self._cond:
            self._subscriptions[sub.id] = sub
        return operation_response(op, [success(op, f"<m:SubscriptionId>{sub.id}</m:SubscriptionId>")])

    def unsubscribe(self, parsed: Parsed) -> bytes:
        from syncadmin.devtools.simulators.ews import M, error, operation_response, success

        op = "Unsubscribe"
        wanted = (parsed.payload.findtext(f"{M}SubscriptionId") or "").strip()
        with self._cond:
            sub = self._subscriptions.get(wanted)
            if sub is None:
                return operation_response(op, [error(op, "ErrorSubscriptionNotFound", NOT_FOUND_TEXT)])
            self._end(sub, "Unsubscribed")
            self._cond.notify_all()
        return operation_response(op, [success(op, "")])

    def get_streaming_events(self, sim: Simulator, parsed: Parsed) -> Iterator[bytes]:
        """The chunks of a GetStreamingEvents answer: each a whole SOAP envelope."""
        from syncadmin.devtools.simulators.ews import M, T

        wanted = [
            (e.text or "").strip() for e in parsed.payload.iterfind(f"{M}SubscriptionIds/{T}SubscriptionId")
        ]
        try:
            minutes = int((parsed.payload.findtext(f"{M}ConnectionTimeout") or "").strip())
        except ValueError:
            minutes = 0
        if not wanted or not 1 <= minutes <= 30:
            return iter([_error_envelope("ErrorInvalidRequest", "The request is invalid.", [])])
        with self._cond:
            self._expire_idle()
            missing = [i for i in wanted if i not in self._subscriptions]
            if not missing:
                owners = {self._subscriptions[i].mailbox for i in wanted}
                for owner in owners:
                    if sim.faults.take(
                        "ews", "GetStreamingEvents", owner, frozenset({"subscription_expired"})
                    ):
                        for sub in [s for s in self._subscriptions.values() if s.mailbox == owner]:
                            self._end(sub, "ErrorSubscriptionNotFound")
                missing = [i for i in wanted if i not in self._subscriptions]
            if missing:
                return iter([_error_envelope("ErrorSubscriptionNotFound", NOT_FOUND_TEXT, missing)])
            subs = [self._subscriptions[i] for i in wanted]
            for sub in subs:
                sub.streams += 1
        timeout = self.connection_timeout if self.connection_timeout is not None else minutes * 60.0
        return self._stream(subs, time.monotonic() + timeout)

    def _stream(self, subs: list[Subscription], deadline: float) -> Iterator[bytes]:
        try:
            # the first envelope at once: the client knows its connection is established
            yield _notifications_envelope([(s.id, [_status_event(s)]) for s in subs])
            next_beat = time.monotonic() + self.heartbeat
            while True:
                with self._cond:
                    while True:
                        now = time.monotonic()
                        ended = [s for s in subs if s.ended]
                        pending = [s for s in subs if s.events]
                        if pending or ended or self._closing or now >= deadline or now >= next_beat:
                            break
                        self._cond.wait(min(deadline, next_beat) - now)
                    batches = []
                    for sub in pending:
                        taken, sub.events = (
                            sub.events[:MAX_EVENTS_PER_NOTIFICATION],
                            sub.events[MAX_EVENTS_PER_NOTIFICATION:],
                        )
                        batches.append((sub.id, taken))
                    beat = not batches and now >= next_beat and not ended
                    if beat:
                        batches = [(s.id, [_status_event(s)]) for s in subs]
                if batches:
                    yield _notifications_envelope(batches)
                    next_beat = time.monotonic() + self.heartbeat
                lost = [s.id for s in ended if s.ended != "Unsubscribed"]
                if lost:
                    yield _error_envelope("ErrorSubscriptionNotFound", NOT_FOUND_TEXT, lost)
                    return
                if ended or self._closing or time.monotonic() >= deadline:
                    yield _closed_envelope()
                    return
        finally:
            with self._cond:
                for sub in subs:
                    sub.streams -= 1
                    sub.idle_since = time.monotonic()

    def _end(self, sub: Subscription, why: str) -> None:
        sub.ended = why
        self._subscriptions.pop(sub.id, None)

    def _expire_idle(self) -> None:
        now = time.monotonic()
        for sub in list(self._subscriptions.values()):
            if sub.streams == 0 and now - sub.idle_since > self.lifetime:
                self._end(sub, "ErrorSubscriptionNotFound")


def _parent(sim: Simulator, mailbox: str, name: str) -> str:
    from syncadmin.devtools.simulators.ews import _parent_of

    return _parent_of(sim, mailbox, name)


def _status_event(sub: Subscription) -> str:
    return f"<t:StatusEvent><t:Watermark>{sub.next_watermark()}</t:Watermark></t:StatusEvent>"


def _response(inner: str) -> bytes:
    from syncadmin.devtools.simulators.ews import NS_M, NS_T, envelope

    return envelope(
        f'<m:GetStreamingEventsResponse xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        f"{inner}</m:ResponseMessages></m:GetStreamingEventsResponse>"
    )


def _notifications_envelope(batches: list[tuple[str, list[str]]]) -> bytes:
    notifications = "".join(
        f"<m:Notification><t:SubscriptionId>{sid}</t:SubscriptionId>{''.join(events)}</m:Notification>"
        for sid, events in batches
    )
    return _response(
        '<m:GetStreamingEventsResponseMessage ResponseClass="Success">'
        "<m:ResponseCode>NoError</m:ResponseCode>"
        f"<m:Notifications>{notifications}</m:Notifications></m:GetStreamingEventsResponseMessage>"
    )


def _closed_envelope() -> bytes:
    return _response(
        '<m:GetStreamingEventsResponseMessage ResponseClass="Success">'
        "<m:ResponseCode>NoError</m:ResponseCode>"
        "<m:ConnectionStatus>Closed</m:ConnectionStatus></m:GetStreamingEventsResponseMessage>"
    )


def _error_envelope(code: str, text: str, ids: list[str]) -> bytes:
    from syncadmin.devtools.simulators.ews import x

    error_ids = (
        "<m:ErrorSubscriptionIds>"
        + "".join(f"<m:SubscriptionId>{x(i)}</m:SubscriptionId>" for i in ids)
        + "</m:ErrorSubscriptionIds>"
        if ids
        else ""
    )
    return _response(
        f'<m:GetStreamingEventsResponseMessage ResponseClass="Error"><m:MessageText>{x(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{error_ids}<m:ConnectionStatus>Closed</m:ConnectionStatus></m:GetStreamingEventsResponseMessage>"
    )
