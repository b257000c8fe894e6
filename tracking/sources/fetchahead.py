"""Fetch-ahead: the next page of a long folder sync is fetched in a child process while this one is decided.

A scan decides and commits page N, with its sync state, before it asks for page N+1 (its correlation reads
page N's TrackedEmails, and a crash must lose no more than the page in flight). Fetching is mostly CPU
spent parsing the server's answers, so a thread would only take turns with the decisions (the GIL); a
child process fetches page N+1 on the other CPU while this process decides and commits page N
(docs/performance.md, B2). The database side does not change: this process alone writes, page by page,
in order.

Only a sync that has more than one page uses it: the first page is fetched here, and a child is forked
only when the server says more follow (a poll of a few new messages never forks). The child is a fork of
this process: it inherits the source, its settings, its tokens and the connection page 1 came on (a new one
would hold up its first page with a TCP and TLS handshake, and authentication where that is per
connection), and fetches one page ahead of what was asked, never more. This process forgets that
connection: its next request (attachments, the next folder) opens another. It is stopped when the sync
ends, fails or is abandoned; a page it fetched and nobody processed is fetched again by the next scan, from
the last committed state.

`SYNCADMIN_FETCH_AHEAD=0` turns it off (every page fetched in the scanning process, as before).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from typing import Protocol, runtime_checkable

from django.conf import settings

from tracking.choices import ErrorKind
from tracking.sources.base import MailSource, SourceError, SyncPage

log = logging.getLogger(__name__)

# How often the scanning process checks that a silent child is still alive while it waits for a page.
POLL_SECONDS = 1.0
# How long a child is given to stop on SIGTERM before it is killed.
STOP_SECONDS = 2.0


@runtime_checkable
class ForkableSource(Protocol):
    """A source that can go on syncing in a forked child process, on the connection it was using."""

    def after_fork_in_child(self) -> None:
        """In the child: renew what another thread may have held at the fork (locks); the pooled connections
        and tokens are kept, and are this process's from now on."""

    def after_fork_in_parent(self) -> None:
        """In the scanning process: the pooled connections went with the child. Forget them, closing only
        this process's descriptors (nothing is sent: the child's copies stay open), so that the next request
        here opens its own."""


def fetch_ahead_enabled(source: object) -> bool:
    return (
        bool(getattr(settings, "SYNCADMIN_FETCH_AHEAD", True))
        and isinstance(source, ForkableSource)
        # multiprocessing lets no daemonic process have children of its own
        and not multiprocessing.current_process().daemon
    )


@contextmanager
def synced_pages(source: MailSource, folder: str, state: str) -> Iterator[Iterator[SyncPage]]:
    """`source.sync(folder, state)`'s pages, the ones after the first fetched ahead in a child process when
    the source can fork. Leaving the block stops the child, whether the pages were all read or not."""
    if not fetch_ahead_enabled(source):
        pages = source.sync(folder, state)
        try:
            yield pages
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        return
    ahead = _FetchAhead(source, folder, state)
    try:
        yield ahead.pages()
    finally:
        ahead.stop()


class _FetchAhead:
    def __init__(self, source: MailSource, folder: str, state: str) -> None:
        self.source = source
        self.folder = folder
        self.state = state
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.finished = False

    def pages(self) -> Iterator[SyncPage]:
        first = self.source.sync(self.folder, self.state)
        try:
            page = next(first, None)
        finally:
            first.close()  # type: ignore[attr-defined]
        if page is None:
            return
        if not page.more:
            yield page
            return
        try:
            self._start(page.state)  # the child fetches page 2 while page 1 is decided
        except OSError as exc:  # no process to be had (a limit on processes, memory): fetch here instead
            log.warning("fetch-ahead for %s could not start (%s); fetching in this process", self.folder, exc)
            yield page
            yield from self.source.sync(self.folder, page.state)
            return
        yield page
        while True:
            page = self._receive()
            if page.more:
                self._ask_for_next()
            yield page
            if not page.more:
                self.finished = True
                return

    def _start(self, state: str) -> None:
        context = multiprocessing.get_context("fork")
        parent_end, child_end = context.Pipe(duplex=True)
        process = context.Process(
            target=_child,
            args=(self.source, self.folder, state, child_end, parent_end),
            name=f"fetch-ahead {self.folder}",
            daemon=True,
        )
        process.start()
        child_end.close()
        self.process, self.conn = process, parent_end
        self.source.after_fork_in_parent()  # type: ignore[attr-defined]
        log.debug("fetch-ahead pid=%s folder=%s started", process.pid, self.folder)

    def _ask_for_next(self) -> None:
        assert self.conn is not None
        with suppress(OSError):  # the child is gone: _receive says why
            self.conn.send(True)

    def _receive(self) -> SyncPage:
        assert self.conn is not None and self.process is not None
        while not self.conn.poll(POLL_SECONDS):
            if not self.process.is_alive():
                break
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(STOP_SECONDS)
            raise SourceError(
                f"the process fetching {self.folder} ahead ended without an answer "
                f"(exit status {self.process.exitcode}); the scan will be retried",
                kind=ErrorKind.INTERNAL,
                permanent=False,
            ) from None
        if kind == "page":
            page: SyncPage = payload
            return page
        raise payload

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        process = self.process
        if process is None:
            return
        if self.finished:
            process.join(STOP_SECONDS)  # it handed over the last page and is on its way out
        if process.is_alive():
            process.terminate()
            process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
        process.close()
        self.process = self.conn = None


def _child(source: ForkableSource, folder: str, state: str, conn: Connection, parent_end: Connection) -> None:
    """Fetch a page, hand it over, wait to be asked for the next one; an error is handed over in its place."""
    # The fork copied the parent's end of the pipe too: held open here, it would keep this process waiting
    # for an ask that never comes once the parent is gone (a work horse killed), and with it the database
    # connections it inherited.
    parent_end.close()
    # The parent's handlers (a worker's warm shutdown, runall's) are not this process's: SIGTERM ends it,
    # and Ctrl-C in a terminal, which reaches the whole process group, is the parent's to handle.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Everything inherited is shared with the parent until written to; a garbage collection would walk
    # (and so copy) all of it. Only what this process makes is collected.
    gc.freeze()
    pages: Iterator[SyncPage] | None = None
    try:
        while True:
            try:
                if pages is None:
                    source.after_fork_in_child()
                    pages = source.sync(folder, state)  # type: ignore[attr-defined]
                page = next(pages, None)
            except Exception as exc:
                _send_error(conn, exc)
                return
            if page is None:
                return
            conn.send(("page", page))
            if not page.more or not conn.recv():
                return
    except (EOFError, OSError):
        return  # the scanning process stopped reading: nothing is left to do
    finally:
        if pages is not None:
            with suppress(Exception):
                pages.close()  # type: ignore[attr-defined]
        conn.close()


def _send_error(conn: Connection, exc: Exception) -> None:
    if not isinstance(exc, SourceError):
        log.exception("fetch-ahead pid=%s failed", os.getpid())
    try:
        pickle.dumps(exc)
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    with suppress(OSError):
        conn.send(("error", exc))
