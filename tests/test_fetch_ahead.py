"""Fetch-ahead (tracking/sources/fetchahead.py): a long sync's next page is fetched in a forked child.

Real scans through the simulator over HTTPS with pages of 5 messages. What the child hands over must be
what a scan in one process would have decided, each message once; a child must never outlive its scan,
whether it ended, failed in the scanning process or died. The server faults of tests/test_faults_servers.py
arrive after the first page, so there they are raised in the child and cross the pipe: those tests cover
the errors' kinds, back-offs and resyncs on this path.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tracking import reprocessing, scanning
from tracking.actions import do_start_round
from tracking.choices import ErrorKind, ScanStatus
from tracking.models import Decision, FolderSyncState, Mailbox, ScanRun
from tracking.reprocessing import check_round
from tracking.scanning import run_scan_cycle
from tracking.sources.base import SourceError, SyncStateInvalid

COUNT = 12
PAGE = 5  # pages of 5, 5 and 2 messages
KINDS = {"ews": "exchange_ews", "graph": "exchange_graph"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim(fresh_sim: Simulator) -> Simulator:
    return fresh_sim


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    real = scanning.connection_settings
    monkeypatch.setattr(
        scanning, "connection_settings", lambda mailbox: replace(real(mailbox), page_size=PAGE)
    )


def fetchers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("fetch-ahead")]


def mailbox(sim: Simulator, protocol: str, address: str, count: int = COUNT) -> Mailbox:
    profile = h.add_sim_profile(sim, f"{protocol}-{address}", KINDS[protocol])
    h.fill(sim, address, count=count)
    return h.add_enabled_mailbox(address, profile)


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_long_scan_fetches_ahead_in_a_child_and_decides_what_one_process_decides(sim, protocol, settings):
    settings.SYNCADMIN_FETCH_AHEAD = False
    alone = mailbox(sim, protocol, "alone@contoso.example")
    assert run_scan_cycle(alone.pk) == "scanned inbox"
    settings.SYNCADMIN_FETCH_AHEAD = True
    ahead = mailbox(sim, protocol, "ahead@contoso.example")
    seen: list[list[str]] = []

    said = run_scan_cycle(ahead.pk, on_page=lambda run: seen.append([p.name for p in fetchers()]))

    assert said == "scanned inbox"
    # forked when the first page said more follow; after the last page it may have ended already
    assert seen[:2] == [["fetch-ahead inbox"]] * 2 and len(seen) == 3
    assert fetchers() == []
    assert h.decision_keys(ahead) == h.decision_keys(alone)
    assert len(h.decision_keys(ahead)) == COUNT
    assert h.tracked_keys(ahead) == h.tracked_keys(alone)
    state = FolderSyncState.objects.get(mailbox=ahead, folder="inbox").state
    assert state and run_scan_cycle(ahead.pk) == "scanned inbox"  # the saved state resumes: nothing new
    assert Decision.objects.filter(mailbox=ahead).count() == COUNT


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_the_child_goes_on_on_the_connection_page_1_came_on_and_the_scanning_process_opens_another(
    sim, protocol
):
    box = mailbox(sim, protocol, "conn@contoso.example")
    sim.clear_requests()

    assert run_scan_cycle(box.pk) == "scanned inbox"
    scanning.source_for(box).test_connection(["inbox"])

    peers = [r.peer for r in sim.requests if r.mailbox == "conn@contoso.example"]
    *scan, after = peers
    assert len(scan) >= 3 and all(scan)
    assert set(scan) == {scan[0]}, "no new connection (no handshake) in the way of the child's first page"
    assert after != scan[0], "the scanning process gave its connection to the child"


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_reprocessing_round_reads_the_folder_again_fetching_ahead(sim, protocol, monkeypatch):
    box = mailbox(sim, protocol, "round@contoso.example")
    assert run_scan_cycle(box.pk) == "scanned inbox"
    request = check_round([box], datetime(1990, 1, 1, tzinfo=UTC), (), now=timezone.now())
    round = do_start_round(request, acting_user=None, via="test")
    seen: list[list[str]] = []
    real = reprocessing.process_round_page

    def watched(*args: object, **kwargs: object) -> object:
        seen.append([p.name for p in fetchers()])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reprocessing, "process_round_page", watched)

    for run in ScanRun.objects.filter(round=round):
        assert reprocessing.run_round_folder(run.pk).status == ScanStatus.SUCCEEDED

    assert seen[:2] == [["fetch-ahead inbox"]] * 2 and len(seen) == 3
    assert fetchers() == []
    again = Decision.objects.filter(mailbox=box, round=round)
    assert again.count() == COUNT and not again.filter(supersedes__isnull=True).exists()


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_sync_of_one_page_forks_nothing(sim, protocol):
    box = mailbox(sim, protocol, "short@contoso.example", count=PAGE - 1)
    seen: list[list[str]] = []

    assert (
        run_scan_cycle(box.pk, on_page=lambda run: seen.append([p.name for p in fetchers()]))
        == "scanned inbox"
    )

    assert seen == [[]]
    assert len(h.decision_keys(box)) == PAGE - 1


def test_no_child_when_fetch_ahead_is_off(sim, settings):
    settings.SYNCADMIN_FETCH_AHEAD = False
    box = mailbox(sim, "ews", "off@contoso.example")
    seen: list[list[str]] = []

    assert (
        run_scan_cycle(box.pk, on_page=lambda run: seen.append([p.name for p in fetchers()]))
        == "scanned inbox"
    )

    assert seen == [[], [], []]


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_scan_that_fails_in_the_scanning_process_stops_its_child_and_the_next_misses_nothing(sim, protocol):
    box = mailbox(sim, protocol, "fails@contoso.example")

    def fail_after_first_page(run: ScanRun) -> None:
        assert fetchers(), "a child fetches page 2 while page 1 is decided"
        raise RuntimeError("the scanning process failed")

    with pytest.raises(RuntimeError):
        scanning.scan_folder(box.pk, "inbox", on_page=fail_after_first_page)

    assert fetchers() == []
    run = ScanRun.objects.get(mailbox=box)
    assert run.status == ScanStatus.FAILED and run.items_done == PAGE
    assert run_scan_cycle(box.pk) == "scanned inbox"
    keys = h.decision_keys(box)
    assert len(keys) == len(set(keys)) == COUNT


def test_a_child_that_dies_is_a_transient_error_and_the_next_scan_misses_nothing(sim):
    box = mailbox(sim, "ews", "dies@contoso.example")

    def kill_the_child(run: ScanRun) -> None:
        for child in fetchers():
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(5)

    said = run_scan_cycle(box.pk, on_page=kill_the_child)

    assert said.startswith("retry at ")
    box.refresh_from_db()
    assert box.enabled and box.transient_failure_count == 1
    assert "ended without an answer" in box.last_error and box.last_error_kind == ErrorKind.INTERNAL
    assert fetchers() == []
    assert run_scan_cycle(box.pk) == "scanned inbox"
    keys = h.decision_keys(box)
    assert len(keys) == len(set(keys)) == COUNT


@pytest.mark.parametrize(
    "error",
    [
        SourceError("throttled", kind=ErrorKind.THROTTLED, permanent=False, retry_after=30.0),
        SourceError("no such mailbox", kind=ErrorKind.NOT_FOUND, permanent=True),
        SyncStateInvalid(),
        SyncStateInvalid("the saved state belongs to another server"),
    ],
)
def test_a_source_error_crosses_a_pipe_whole(error):
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert (str(copy), copy.kind, copy.permanent, copy.retry_after) == (
        str(error),
        error.kind,
        error.permanent,
        error.retry_after,
    )
