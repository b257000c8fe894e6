"""The `ews_stream` process: EWS streaming notifications for every enabled Exchange Server mailbox.

One thread per mailbox holds its subscription (the folders a scan cycle reads) and a GetStreamingEvents
connection, reconnecting when the server closes it at its timeout (at once) or when it fails (exponential
back-off with jitter), and subscribing again when the server has lost the subscription. The threads only
talk to Exchange; the main thread does all database work (one connection for the whole process) and
queues the folder's sync job for each event (tracking.push_ews). After every (re)subscription each
folder is synced from its saved state, so what arrived while no subscription existed is caught up.

Every connection is outbound, to the EWS endpoint the mailbox is polled through: it works behind a
firewall, with no public URL. Polling stays the safety net (docs/push-ews.md).
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from exchangelib import Account
from exchangelib.errors import (
    ErrorExpiredSubscription,
    ErrorInvalidSubscription,
    ErrorSubscriptionNotFound,
    ErrorSubscriptionUnsubsribed,
)
from exchangelib.folders import FolderCollection
from exchangelib.items import ID_ONLY
from exchangelib.properties import CopiedEvent, CreatedEvent, MovedEvent, NewMailEvent
from exchangelib.services import GetFolder, GetStreamingEvents, Unsubscribe

from tracking.actions.push_ews import (
    do_forget_streams,
    do_record_stream_closed,
    do_record_stream_lost,
    do_record_stream_not_started,
    do_record_stream_seen,
    do_record_stream_subscribed,
)
from tracking.choices import IncomingMethod, ProfileKind
from tracking.context import load_rules
from tracking.models import Mailbox
from tracking.push_ews import PushFolder, enqueue_folder_sync, push_folders
from tracking.scanning import connection_settings
from tracking.sources.base import ConnectionSettings, SourceError
from tracking.sources.ews import EwsSource

log = logging.getLogger(__name__)

# The events that mean "a message may be new in this folder"; deletions and flag changes track nothing.
EVENT_TYPES = ["NewMailEvent", "CreatedEvent", "MovedEvent", "CopiedEvent"]
ITEM_EVENTS = (NewMailEvent, CreatedEvent, MovedEvent, CopiedEvent)
SUBSCRIPTION_LOST = (
    ErrorSubscriptionNotFound,
    ErrorExpiredSubscription,
    ErrorInvalidSubscription,
    ErrorSubscriptionUnsubsribed,
)
SEEN_WRITE_EVERY = 30.0  # seconds between two writes of a heartbeat to the database, per mailbox


@dataclass(frozen=True)
class StreamOptions:
    max_streams: int = 500  # mailboxes streamed at once; the others are polled only
    connection_timeout: int = 30  # minutes, GetStreamingEvents' ConnectionTimeout (1-30)
    read_timeout: float = 180.0  # seconds without a byte (heartbeats included) before reconnecting
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    reload_seconds: float = 60.0  # how often mailboxes enabled, disabled or changed are picked up


@dataclass(frozen=True)
class StreamPlan:
    """What one mailbox's stream needs; a changed plan (folders, profile, secret) restarts its stream."""

    mailbox_id: int
    settings: ConnectionSettings
    folders: tuple[PushFolder, ...]


@dataclass(frozen=True)
class Report:
    """From a stream thread to the main thread: subscribed, seen, closed or lost."""

    kind: str
    mailbox_id: int
    serial: int  # of the stream that sent it: a stopped stream's last words are not its successor's
    folders: tuple[str, ...] = ()
    subscription_id: str = ""
    error: str = ""
    subscription_lost: bool = False


class Backoff:
    """Exponential with "equal jitter": half the step fixed, half random, so streams cut off together
    (a server restart) do not come back together."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        step = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return step / 2 + random.uniform(0, step / 2)

    def reset(self) -> None:
        self.failures = 0


class _StreamingEvents(GetStreamingEvents):
    """GetStreamingEvents with a read timeout of our own: exchangelib waits ConnectionTimeout + 1 minute
    for each read, so a connection a firewall silently dropped would be noticed half an hour late."""

    read_timeout = 180.0

    def call(self, subscription_ids: list[str], connection_timeout: int) -> Any:
        answers = super().call(subscription_ids=subscription_ids, connection_timeout=connection_timeout)
        self.timeout = self.read_timeout  # the request is only sent when `answers` is first read
        return answers


_POOL_LOCK = threading.Lock()
_SERIALS = itertools.count(1)


class MailboxStream(threading.Thread):
    """One mailbox's subscription and connection, for as long as the process wants it."""

    def __init__(self, plan: StreamPlan, reports: queue.Queue[Report], options: StreamOptions) -> None:
        super().__init__(name=f"ews-stream-{plan.mailbox_id}", daemon=True)
        self.plan = plan
        self.serial = next(_SERIALS)
        self.options = options
        self._reports = reports
        self._stopping = threading.Event()
        self._account: Account | None = None
        self.subscription_id = ""

    def stop(self) -> None:
        """Ask the thread to end; the open connection ends when the subscription is removed (unsubscribe)."""
        self._stopping.set()

    def unsubscribe(self) -> None:
        """Remove the subscription on the server (which also ends the open connection); best effort."""
        account, subscription = self._account, self.subscription_id
        if account is None or not subscription:
            return
        try:
            Unsubscribe(account=account).get(subscription_id=subscription)
        except Exception as exc:  # the server may have lost it already, or be unreachable: it expires alone
            log.info("unsubscribing mailbox %s: %s", self.plan.mailbox_id, exc)

    def run(self) -> None:
        source = EwsSource(self.plan.settings)
        backoff = Backoff(self.options.backoff_base, self.options.backoff_max)
        folder_ids: dict[str, str] = {}
        grown = False
        while not self._stopping.is_set():
            wait = 0.0
            try:
                if self._account is None:
                    self._account = source.account()
                    if not grown:
                        # each stream holds a session of the (shared) protocol for as long as it is open
                        with _POOL_LOCK:
                            self._account.protocol.max_connections += 2
                        grown = True
                if not self.subscription_id:
                    folder_ids = self._folder_ids(source, self._account)
                    self.subscription_id = self._subscribe(source, self._account)
                    self._report("subscribed", subscription_id=self.subscription_id)
                self._listen(self._account, folder_ids)
                backoff.reset()
                if not self._stopping.is_set():
                    self._report("closed")
            except SUBSCRIPTION_LOST as exc:
                if self._stopping.is_set():
                    break
                self.subscription_id = ""
                self._report("lost", error=f"the server lost the subscription: {exc}", subscription_lost=True)
                log.info(
                    "mailbox %s: the server lost its subscription (%s); subscribing again",
                    self.plan.mailbox_id,
                    exc,
                )
                # subscribing again at once is the remedy; a server that keeps losing it is backed off
                if backoff.failures:
                    wait = backoff.next()
                else:
                    backoff.failures = 1
            except Exception as exc:
                if self._stopping.is_set():
                    break
                error = (
                    exc
                    if isinstance(exc, SourceError)
                    else source.source_error(exc, "streaming notifications")
                )
                self._report("lost", error=str(error))
                wait = backoff.next()
                log.warning(
                    "stream of mailbox %s failed (retry in %.1f s): %s", self.plan.mailbox_id, wait, error
                )
            if wait:
                self._stopping.wait(wait)

    def _folder_ids(self, source: EwsSource, account: Account) -> dict[str, str]:
        """The server's id of each subscribed folder: events name a folder by its id only."""
        targets = [source._folder(account, f.source_folder)[0] for f in self.plan.folders]
        with source._errors("reading the ids of the subscribed folders"):
            found = list(
                GetFolder(account=account).call(folders=targets, additional_fields=[], shape=ID_ONLY)
            )
        ids = {}
        for folder, result in zip(self.plan.folders, found, strict=True):
            if isinstance(result, Exception):
                raise source.source_error(result, f"opening {folder.folder}")
            ids[result.id] = folder.folder
        return ids

    def _subscribe(self, source: EwsSource, account: Account) -> str:
        targets = [source._folder(account, f.source_folder)[0] for f in self.plan.folders]
        with source._errors("subscribing to streaming notifications"):
            subscription = FolderCollection(account=account, folders=targets).subscribe_to_streaming(
                event_types=EVENT_TYPES
            )
        if isinstance(subscription, Exception):
            raise subscription
        return str(subscription)

    def _listen(self, account: Account, folder_ids: dict[str, str]) -> None:
        everything = tuple(f.folder for f in self.plan.folders)
        service = _StreamingEvents(account=account)
        service.read_timeout = self.options.read_timeout
        answers = service.call(
            subscription_ids=[self.subscription_id], connection_timeout=self.options.connection_timeout
        )
        try:
            for notification in answers:
                if isinstance(notification, Exception):
                    raise notification
                changed: set[str] = set()
                for event in notification.events or []:
                    if not isinstance(event, ITEM_EVENTS):
                        continue  # a StatusEvent: the heartbeat of a quiet connection
                    parent = event.parent_folder_id.id if event.parent_folder_id is not None else ""
                    # an event for a folder we cannot place: every folder is synced, nothing is lost
                    changed.update([folder_ids[parent]] if parent in folder_ids else everything)
                self._report("seen", folders=tuple(sorted(changed)))
                if self._stopping.is_set():
                    return
        finally:
            service.stop_streaming()

    def _report(self, kind: str, **values: Any) -> None:
        self._reports.put(Report(kind, self.plan.mailbox_id, self.serial, **values))


class EwsStreamRunner:
    """The main thread's side: which mailboxes are streamed, and what their reports change."""

    def __init__(
        self,
        options: StreamOptions | None = None,
        *,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.options = options or StreamOptions()
        self.clock = clock
        self.streams: dict[int, MailboxStream] = {}
        self.reports: queue.Queue[Report] = queue.Queue()
        self._seen_written: dict[int, float] = {}
        self._next_reload = 0.0

    # -- which mailboxes ----------------------------------------------------------------------------

    def plans(self) -> tuple[dict[int, StreamPlan], dict[int, str]]:
        """The streams wanted now, and the mailboxes that cannot be streamed with why."""
        rules = load_rules()
        mailboxes = (
            Mailbox.objects.approved_as_required(rules)
            .filter(
                enabled=True,
                incoming_method=IncomingMethod.SERVER_SIDE_SYNC,
                profile__kind=ProfileKind.EXCHANGE_EWS,
            )
            .select_related("profile", "user", "queue")
            .order_by("pk")
        )
        plans: dict[int, StreamPlan] = {}
        refused: dict[int, str] = {}
        for mailbox in mailboxes:
            if len(plans) >= self.options.max_streams:
                refused[mailbox.pk] = (
                    f"not streamed: this process streams at most {self.options.max_streams} mailboxes "
                    "(ews_stream --max-streams); polled"
                )
                continue
            try:
                settings = connection_settings(mailbox)
            except SourceError as exc:
                refused[mailbox.pk] = str(exc)
                continue
            plans[mailbox.pk] = StreamPlan(mailbox.pk, settings, tuple(push_folders(mailbox, rules)))
        return plans, refused

    def reload(self) -> None:
        plans, refused = self.plans()
        gone = [pk for pk, stream in self.streams.items() if plans.get(pk) != stream.plan]
        self._stop_streams(gone)
        do_forget_streams(pk for pk in gone if pk not in plans)
        now = self.clock()
        for pk, why in refused.items():
            do_record_stream_not_started(pk, why, now=now)
        for pk, plan in plans.items():
            if pk not in self.streams:
                stream = MailboxStream(plan, self.reports, self.options)
                self.streams[pk] = stream
                stream.start()
        self._next_reload = time.monotonic() + self.options.reload_seconds

    # -- running ------------------------------------------------------------------------------------

    def pump(self, seconds: float) -> None:
        """Handle reports for this long (and reload when it is time)."""
        deadline = time.monotonic() + seconds
        while True:
            if time.monotonic() >= self._next_reload:
                self.reload()
            left = min(deadline, self._next_reload) - time.monotonic()
            try:
                report = self.reports.get(timeout=max(left, 0.001))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return
                continue
            self.handle(report)
            if time.monotonic() >= deadline:
                return

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.pump(0.5)
        self.shutdown()

    def handle(self, report: Report) -> None:
        pk = report.mailbox_id
        stream = self.streams.get(pk)
        if stream is None or stream.serial != report.serial:
            return  # from a stream stopped since: its mailbox is polled only, or streamed anew
        now = self.clock()
        if report.kind == "subscribed":
            self._seen_written.pop(pk, None)  # the new connection's first answer is written at once
            folders = [f.folder for f in stream.plan.folders]
            do_record_stream_subscribed(pk, report.subscription_id, folders, now=now)
            log.info(
                "mailbox %s subscribed (%s): catching up %s", pk, report.subscription_id, ", ".join(folders)
            )
            for folder in folders:
                enqueue_folder_sync(pk, folder)
        elif report.kind == "seen":
            for folder in report.folders:
                enqueue_folder_sync(pk, folder)
            last = self._seen_written.get(pk, 0.0)
            if report.folders or time.monotonic() - last >= SEEN_WRITE_EVERY:
                do_record_stream_seen(pk, now=now, event=bool(report.folders))
                self._seen_written[pk] = time.monotonic()
        elif report.kind == "closed":
            do_record_stream_closed(pk)
            self._seen_written.pop(pk, None)
        elif report.kind == "lost":
            do_record_stream_lost(pk, report.error, now=now, subscription_lost=report.subscription_lost)
            self._seen_written.pop(pk, None)

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stop_streams(list(self.streams), timeout)
        # what the stopped threads reported last must not outlive them: the mailboxes are polled only now
        while not self.reports.empty():
            self.reports.get_nowait()

    def _stop_streams(self, ids: list[int], timeout: float = 10.0) -> None:
        stopping = [self.streams.pop(pk) for pk in ids if pk in self.streams]
        for stream in stopping:
            self._seen_written.pop(stream.plan.mailbox_id, None)
        if not stopping:
            return
        for stream in stopping:
            stream.stop()
        # unsubscribing ends each open connection at the server, which is what wakes its thread
        closers = [threading.Thread(target=s.unsubscribe, daemon=True) for s in stopping]
        for closer in closers:
            closer.start()
        deadline = time.monotonic() + timeout
        for thread in [*closers, *stopping]:
            thread.join(max(deadline - time.monotonic(), 0.01))
        do_forget_streams(s.plan.mailbox_id for s in stopping)
        stuck = [s.name for s in stopping if s.is_alive()]
        if stuck:
            log.warning(
                "%d stream thread(s) did not end in %.0f s: %s", len(stuck), timeout, ", ".join(stuck)
            )
