"""Faults with real processes (issue 7): a worker SIGKILLed at seeded points of a scan, Redis restarted
and a PostgreSQL connection cut under a scan, two schedulers at once, the web application without Redis.

Workers and schedulers are `manage.py rqworker default` / `manage.py rqcron` processes on this test's
database, as in tests/test_workers.py; the Exchange simulator runs in this process. Whatever the fault,
what the scans leave behind must equal what one uninterrupted scan of the same mail leaves
(rq_helpers.outcome_snapshot).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tests.conftest import run_command
from tracking.actions import ProfileValues, check_add_profile, do_start_round
from tracking.choices import MailboxStatus, ScanStatus
from tracking.jobqueues import DEFAULT, MAIL, NOTIFICATIONS, REPROCESSING, SCANS, rq_queues
from tracking.jobs import dispatch_due_mailboxes, enqueue_round
from tracking.models import (
    Alert,
    AuditEvent,
    CrmRecord,
    Decision,
    EmailServerProfile,
    FolderSyncState,
    Mailbox,
    ReprocessRound,
    ScanRun,
    TrackedEmail,
)
from tracking.reprocessing import check_round

Snapshot = dict[str, list[tuple[object, ...]]]


# -- the mail every fault is tried on, and what one uninterrupted scan of it leaves ----------------------

MAIL_USER = "lavorato-j"
MAIL_COUNT = 250  # three EWS pages of 100, each a SyncFolderItems and a GetItem
PAGE = 100
# part of the mail is older than the mailbox's start date, "process emails received after" (before_watermark)
RECEIVED_AFTER = datetime(2001, 10, 26, tzinfo=UTC)
PARTIES = {
    "louise.kitchen@enron.com": "contact",
    "frank.hayden@enron.com": "lead",
    "kenneth.thibodeaux@enron.com": "account",
    "svarga@kudlow.com": "contact",
}


def faulted_mailbox(sim: Simulator, profile: EmailServerProfile, name: str) -> Mailbox:
    """A mailbox holding MAIL_USER's mail, Track option 2, due now (and the CRM parties it needs)."""
    for address, kind in PARTIES.items():
        CrmRecord.objects.get_or_create(kind=kind, name=address.split("@")[0], email1=address)
    h.fill(sim, f"{name}@contoso.example", MAIL_USER, count=MAIL_COUNT)
    box = h.add_enabled_mailbox(f"{name}@contoso.example", profile, track=2)
    Mailbox.objects.filter(pk=box.pk).update(process_emails_received_after=RECEIVED_AFTER)
    box.refresh_from_db()
    return box


_uninterrupted: list[tuple[Snapshot, int]] = []


def uninterrupted(sim: Simulator, profile: EmailServerProfile) -> tuple[Snapshot, int]:
    """The snapshot of one uninterrupted scan of the mail, and how many requests it made to the server.

    Made once per session, by the first test that needs it: the mail and the directory are the same in
    every test, and a snapshot leaves out what is particular to one mailbox.
    """
    if not _uninterrupted:
        assert not Mailbox.objects.exists()
        box = faulted_mailbox(sim, profile, "reference")
        assert dispatch_due_mailboxes() == 1
        h.burst()
        snapshot = h.outcome_snapshot(box)
        outcomes = {(d[2], d[3]) for d in snapshot["decisions"]}
        # the comparisons mean something: mail tracked, not tracked, and turned away by the start date
        assert {("tracked", "accepted_crm_party"), ("not_tracked", "before_watermark")} <= outcomes
        assert ("not_tracked", "no_crm_party") in outcomes and len(snapshot["decisions"]) == MAIL_COUNT
        _uninterrupted.append((snapshot, sim.count(mailbox=box.email_address)))
        Mailbox.objects.filter(pk=box.pk).update(enabled=False)
    return _uninterrupted[0]


def assert_scanned_as_if_uninterrupted(box: Mailbox, expected: Snapshot) -> None:
    assert h.outcome_snapshot(box) == expected
    assert (
        not Decision.objects.filter(mailbox=box)
        .values("folder", "message_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    assert not ScanRun.objects.filter(mailbox=box, status=ScanStatus.RUNNING).exists()
    assert ScanRun.objects.filter(mailbox=box).latest("started_at").status == ScanStatus.SUCCEEDED
    box.refresh_from_db()
    assert box.enabled and box.incoming_status == MailboxStatus.SUCCESS and box.last_error == ""
    assert box.next_run_at is not None and box.next_run_at > timezone.now() + timedelta(minutes=4)


# -- 1. a worker SIGKILLed at a seeded point of a scan --------------------------------------------------


@pytest.mark.workers
@pytest.mark.faultloop
@pytest.mark.parametrize("seed", range(20))
def test_a_worker_killed_at_a_seeded_point_leaves_what_an_uninterrupted_scan_leaves(sim, ews, tmp_path, seed):
    expected, requests = uninterrupted(sim, ews)
    box = faulted_mailbox(sim, ews, "killed")
    rng = random.Random(seed)
    # the kill comes a seeded time after a seeded number of the scan's requests were answered, while the
    # simulator holds the next one: in a page's parse, decisions or commit, or waiting for the server
    answered = rng.randrange(1, requests)
    delay = rng.uniform(0, 0.6)
    sim.faults.add(Fault("slow", mailbox=box.email_address, after=answered, delay=5.0))
    assert dispatch_due_mailboxes() == 1
    (dead,) = h.queue().get_jobs()
    worker = h.worker_process("--burst", log_dir=tmp_path)
    try:
        h.wait_for(lambda: sim.count(mailbox=box.email_address) >= answered, 60, "requests", every=0.01)
        time.sleep(delay)
    finally:
        worker.kill()
    sim.faults.clear()
    (cut,) = ScanRun.objects.filter(mailbox=box)
    assert cut.status == ScanStatus.RUNNING and dead.get_status(refresh=True) == JobStatus.STARTED
    # whole pages or nothing: the page in flight left no Decision, TrackedEmail or sync state behind
    committed = Decision.objects.filter(mailbox=box).count()
    assert committed == cut.items_done and committed % PAGE == 0, worker.output
    assert TrackedEmail.objects.filter(receiving_mailbox=box).count() == cut.tracked

    # the claim's lease runs out and the next dispatch queues a scan, which waits for the dead job's
    # RateLimit slot until RQ gives the job up (the dead worker's heartbeat has expired)
    h.make_due(box)
    assert dispatch_due_mailboxes() == 1
    h.release_dead_job(dead)
    h.burst()
    assert_scanned_as_if_uninterrupted(box, expected)
    cut.refresh_from_db()
    assert cut.status == ScanStatus.FAILED and "interrupted" in cut.error


@pytest.mark.workers
def test_a_round_whose_worker_is_killed_resumes_and_decides_each_message_once(sim, ews, tmp_path):
    box = faulted_mailbox(sim, ews, "round")
    assert dispatch_due_mailboxes() == 1
    h.burst()
    tracked = TrackedEmail.objects.filter(receiving_mailbox=box).count()
    scanned = Decision.objects.filter(mailbox=box).count()
    request = check_round([box], RECEIVED_AFTER, now=timezone.now())
    round = do_start_round(request, acting_user=None, via="test")
    (run,) = ScanRun.objects.filter(round=round)
    # the kill comes while the simulator holds the round's request after its first page
    requests = sim.count(mailbox=box.email_address)
    sim.faults.add(Fault("slow", mailbox=box.email_address, after=requests + 2, delay=5.0))
    enqueue_round(round)
    (dead,) = h.queue(REPROCESSING).get_jobs()
    worker = h.worker_process("--burst", log_dir=tmp_path)
    try:
        h.wait_for(lambda: Decision.objects.filter(round=round).exists(), 60, "the round's first page")
        h.wait_for(lambda: sim.count(mailbox=box.email_address) >= requests + 3, 60, "the next request")
    finally:
        worker.kill()
    sim.faults.clear()
    run.refresh_from_db()
    assert run.status == ScanStatus.RUNNING and 0 < run.items_done < scanned, worker.output

    h.release_dead_job(dead, retried=True)
    h.burst()
    run.refresh_from_db()
    assert run.status == ScanStatus.SUCCEEDED
    again = Decision.objects.filter(round=round)
    # every message after the date once, each superseding the scan's decision; nothing tracked twice
    after = Decision.objects.filter(mailbox=box, round=None).exclude(reason="before_watermark")
    assert sorted(again.values_list("supersedes", flat=True)) == sorted(after.values_list("pk", flat=True))  # type: ignore[type-var]
    assert TrackedEmail.objects.filter(receiving_mailbox=box).count() == tracked


# -- 2. Redis restarted under a scan --------------------------------------------------------------------


@pytest.fixture
def private_redis(sim: Simulator, tmp_path: Path) -> Iterator[h.RedisServer]:
    """A Redis of the test's own, to kill and start again, that the queue and the workers use.

    It depends on `sim` so that it is set up after, and torn down before, `clean_redis` (which flushes
    the tests' Redis, not this one)."""
    with (
        h.RedisServer(tmp_path) as server,
        override_settings(RQ_QUEUES=rq_queues(server.url, 60)),
    ):
        yield server


@pytest.mark.workers
def test_a_scan_goes_on_while_redis_restarts_empty_under_it(sim, ews, private_redis, tmp_path):
    expected, _ = uninterrupted(sim, ews)
    box = faulted_mailbox(sim, ews, "restart")
    h.slow(sim, box, 1.0)
    with h.workers(1, log_dir=tmp_path) as (worker,):
        assert dispatch_due_mailboxes() == 1
        h.wait_for(lambda: ScanRun.objects.filter(mailbox=box, items_done__gt=0).exists(), 60, "a page")
        private_redis.kill()
        # the next page is committed while Redis is away, and the scan's lease renewed after it
        h.wait_for(lambda: ScanRun.objects.filter(mailbox=box, items_done__gt=PAGE).exists(), 60, "a page")
        private_redis.start()
        h.wait_for(
            lambda: not ScanRun.objects.filter(mailbox=box, status=ScanStatus.RUNNING).exists(),
            60,
            "the scan to end",
        )
    sim.faults.clear()
    (run,) = ScanRun.objects.filter(mailbox=box)
    assert run.status == ScanStatus.SUCCEEDED, (run.error, worker.output)
    assert_scanned_as_if_uninterrupted(box, expected)

    # the Redis that came back knows nothing of the scan: the next dispatch works as ever
    h.make_due(box)
    assert dispatch_due_mailboxes() == 1
    h.burst()
    assert ScanRun.objects.filter(mailbox=box).latest("started_at").items_done == 0
    assert_scanned_as_if_uninterrupted(box, expected)


def test_a_scan_queued_when_redis_restarts_empty_is_dispatched_again_when_its_claim_ends(
    sim, ews, private_redis
):
    expected, _ = uninterrupted(sim, ews)
    box = faulted_mailbox(sim, ews, "lost")
    assert dispatch_due_mailboxes() == 1
    private_redis.kill()
    private_redis.start()
    assert h.queue().count == 0  # the job went with Redis
    assert dispatch_due_mailboxes() == 0  # and the mailbox stays claimed
    h.make_due(box)  # until the claim's lease ends
    assert dispatch_due_mailboxes() == 1
    h.burst()
    assert_scanned_as_if_uninterrupted(box, expected)


def assert_round_decided_each_message_once(round: ReprocessRound, box: Mailbox, tracked: int) -> None:
    """Every message after the round's date decided again once, superseding its scan's decision."""
    again = Decision.objects.filter(round=round, mailbox=box)
    after = Decision.objects.filter(mailbox=box, round=None).exclude(reason="before_watermark")
    assert sorted(again.values_list("supersedes", flat=True)) == sorted(after.values_list("pk", flat=True))  # type: ignore[type-var]
    assert TrackedEmail.objects.filter(receiving_mailbox=box).count() == tracked


@pytest.mark.workers
def test_workers_split_by_purpose_lose_redis_mid_job_and_nothing_is_lost_or_decided_twice(
    sim, ews, private_redis, tmp_path
):
    """Two hosts: one worker on the scans queue, one on the others. Redis restarts empty while each runs a
    job (a scan, a round's folder) with another of its kind waiting behind it. The running jobs go on to
    the end; the waiting ones, gone with Redis, are queued again by the dispatcher (the scan once its
    claim's lease has ended, the round's runs as queued runs without a job); every message is decided
    once by its scan and once by the round."""
    expected, _ = uninterrupted(sim, ews)
    rounded = [faulted_mailbox(sim, ews, f"round{n}") for n in (1, 2)]
    assert dispatch_due_mailboxes() == 2
    h.burst()
    tracked = {box.pk: TrackedEmail.objects.filter(receiving_mailbox=box).count() for box in rounded}
    round = do_start_round(
        check_round(rounded, RECEIVED_AFTER, now=timezone.now()), acting_user=None, via="t"
    )
    scanned = [faulted_mailbox(sim, ews, f"scan{n}") for n in (1, 2)]
    for box in (*rounded, *scanned):
        h.slow(sim, box, 1.0)

    scans_host = h.worker_process(log_dir=tmp_path, queues=[SCANS])
    other_host = h.worker_process(log_dir=tmp_path, queues=[NOTIFICATIONS, MAIL, DEFAULT, REPROCESSING])
    try:
        assert dispatch_due_mailboxes() == 2
        enqueue_round(round)
        running = ScanRun.objects.filter(status=ScanStatus.RUNNING, items_done__gt=0)
        h.wait_for(
            lambda: running.filter(round=None).exists() and running.filter(round=round).exists(), 60, "pages"
        )
        (scan_run,) = running.filter(round=None)
        (round_run,) = running.filter(round=round)
        assert h.queue(SCANS).count == 1 and h.queue(REPROCESSING).count >= 1  # waiting behind them
        private_redis.kill()
        # both go on while Redis is away: their next pages are committed
        progressed = ScanRun.objects.filter(pk__in=[scan_run.pk, round_run.pk], items_done__gt=PAGE)
        h.wait_for(lambda: progressed.count() == 2, 60, "the next pages")
        private_redis.start()
        ended = ScanRun.objects.filter(pk__in=[scan_run.pk, round_run.pk], finished_at__isnull=False)
        h.wait_for(lambda: ended.count() == 2, 60, "the two jobs to end")
    finally:
        scans_host.stop()
        other_host.stop()
    sim.faults.clear()
    assert {r.status for r in ended} == {ScanStatus.SUCCEEDED}, (scans_host.output, other_host.output)
    assert h.queue(SCANS).count == 0 and h.queue(REPROCESSING).count == 0  # the waiting jobs went with Redis

    # the waiting scan's claim runs out, and the round's runs have been queued for more than a minute
    waiting_scan = next(box for box in scanned if box.pk != scan_run.mailbox_id)
    h.make_due(waiting_scan)
    ScanRun.objects.filter(round=round, status=ScanStatus.QUEUED).update(
        queued_at=timezone.now() - timedelta(minutes=2)
    )
    assert dispatch_due_mailboxes() == 1
    assert h.queue(REPROCESSING).count >= 1
    h.burst()
    for box in scanned:
        assert_scanned_as_if_uninterrupted(box, expected)
    assert set(ScanRun.objects.filter(round=round).values_list("status", flat=True)) == {ScanStatus.SUCCEEDED}
    for box in rounded:
        assert_round_decided_each_message_once(round, box, tracked[box.pk])


# -- 3. the database connection cut in the middle of a page's commit -------------------------------------

STALL = "syncadmin_test_stall"


def stall_decision_inserts(box: Mailbox, after: int) -> None:
    """A trigger that holds the transaction inserting `box`'s Decisions once `after` are committed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE FUNCTION {STALL}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF (SELECT count(*) FROM tracking_decision WHERE mailbox_id = {box.pk}) >= {after} THEN
                    PERFORM pg_sleep(60);
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER {STALL} BEFORE INSERT ON tracking_decision
                FOR EACH STATEMENT EXECUTE FUNCTION {STALL}();
            """
        )


def stalled_backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def unstall() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DROP TRIGGER IF EXISTS {STALL} ON tracking_decision; DROP FUNCTION IF EXISTS {STALL}()"
        )


@pytest.mark.workers
def test_a_page_whose_database_connection_is_cut_mid_commit_is_rolled_back_whole(sim, ews, tmp_path):
    if not h.is_postgres():
        pytest.skip("cutting a worker's database connection needs PostgreSQL")
    expected, _ = uninterrupted(sim, ews)
    box = faulted_mailbox(sim, ews, "cut")
    stall_decision_inserts(box, after=PAGE)
    assert dispatch_due_mailboxes() == 1
    worker = h.worker_process("--burst", log_dir=tmp_path)
    try:
        h.wait_for(stalled_backends, 60, "the second page's commit")
        # what the first page committed: the second page must leave all of it as it was
        before = (
            list(FolderSyncState.objects.filter(mailbox=box).values_list("state", flat=True)),
            ScanRun.objects.filter(mailbox=box).values_list("items_done", "tracked", "not_tracked").get(),
            TrackedEmail.objects.filter(receiving_mailbox=box).count(),
            CrmRecord.objects.count(),
        )
        assert before[1][0] == PAGE
        (backend,) = stalled_backends()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
        assert worker.wait(60) == 0, worker.output
    finally:
        worker.kill()
        unstall()
    after = (
        list(FolderSyncState.objects.filter(mailbox=box).values_list("state", flat=True)),
        ScanRun.objects.filter(mailbox=box).values_list("items_done", "tracked", "not_tracked").get(),
        TrackedEmail.objects.filter(receiving_mailbox=box).count(),
        CrmRecord.objects.count(),
    )
    assert after == before
    assert Decision.objects.filter(mailbox=box).count() == PAGE
    # a transient failure: retried after TransientFailureRetryMinutes, not when the claim runs out
    run = ScanRun.objects.get(mailbox=box)
    assert run.status == ScanStatus.FAILED and "terminating connection" in run.error
    box.refresh_from_db()
    assert box.enabled and box.transient_failure_count == 1
    assert box.last_error.startswith("the database connection failed: terminating connection")
    assert box.next_run_at is not None and box.next_run_at < timezone.now() + timedelta(minutes=6)
    assert Alert.objects.filter(mailbox=box, level="warning", message__contains="retry 1 of 10").exists()

    h.make_due(box)  # TransientFailureRetryMinutes later
    assert dispatch_due_mailboxes() == 1
    h.burst()
    assert_scanned_as_if_uninterrupted(box, expected)
    box.refresh_from_db()
    assert box.transient_failure_count == 0


# -- 4. two schedulers at once ----------------------------------------------------------------------------


def dispatch_results() -> list[int]:
    return [
        int(job.return_value() or 0)
        for job in h.done_jobs()
        if (job.func_name or "").endswith("dispatch_due_mailboxes") and job.get_status() == JobStatus.FINISHED
    ]


@pytest.mark.workers
def test_two_schedulers_at_once_never_scan_a_mailbox_twice_at_the_same_time(sim, ews, tmp_path):
    boxes, counts = [], {}
    for i, user in enumerate(("allen-p", "arnold-j", "grigsby-m", "kuykendall-t", "shively-h", "tholt-j")):
        address = f"sched{i}@contoso.example"
        counts[address] = len(h.fill(sim, address, user, count=20 + 4 * i))
        boxes.append(h.add_enabled_mailbox(address, ews, track=i % 3))
        h.slow(sim, boxes[-1], 0.3)
    schedulers = [h.BackgroundProcess("rqcron", "tracking/cron.py", log_dir=tmp_path) for _ in range(2)]
    try:
        with h.workers(2, log_dir=tmp_path):
            # time runs fast: every claim's lease is over at once, so both schedulers find every mailbox
            # due at each of their dispatches, also while it is being scanned
            def four_dispatches() -> bool:
                h.make_due(*boxes)
                return len(dispatch_results()) >= 4

            h.wait_for(four_dispatches, 120, "four dispatches", every=0.5)
            for scheduler in schedulers:
                scheduler.stop()
            started = StartedJobRegistry(queue=h.queue())
            h.wait_for(
                lambda: h.queue().count == 0 and started.count == 0 and not h.rate_limited_jobs(),
                120,
                "the queued and held scans",
                every=0.2,
            )
            claimed = sum(dispatch_results())
            h.wait_for(
                lambda: ScanRun.objects.filter(finished_at__isnull=False).count() >= claimed, 60, "scans"
            )
    finally:
        for scheduler in schedulers:
            scheduler.stop()
    # every claim became one scan: none was lost, and none ran beside another scan of its mailbox
    assert ScanRun.objects.count() == claimed
    for box in boxes:
        runs = ScanRun.objects.filter(mailbox=box)
        assert runs.exists() and {r.status for r in runs} == {ScanStatus.SUCCEEDED}
        assert h.overlapping(h.intervals(runs)) == [], box
        decided = list(Decision.objects.filter(mailbox=box).values_list("message_id", flat=True))
        assert len(decided) == len(set(decided)) == counts[box.email_address]
    assert not Alert.objects.filter(level="error").exists()


# -- 5. the web application with Redis down -----------------------------------------------------------

# Nothing listens here: django-rq pointed at it is Redis being down.
REDIS_DOWN = rq_queues("redis://127.0.0.1:1/0", 60)


@pytest.fixture
def web_mailbox(db, tmp_path) -> Mailbox:
    """dana@contoso.com on a local profile, enabled, with one decision in the log."""
    root = tmp_path / "mail"
    (root / "dana@contoso.com").mkdir(parents=True)
    profile = check_add_profile(ProfileValues("files", "local", endpoint=str(root)))
    box = h.add_enabled_mailbox("dana@contoso.com", profile, track=0, username="dana")
    eml = tmp_path / "one.eml"
    eml.write_bytes(h.enron("kuykendall-t", count=1)[0])
    run_command("ingest", "--mailbox", box.email_address, "--folder", "inbox", str(eml))
    return box


def mailbox_row(box: Mailbox) -> dict[str, object]:
    return dict(Mailbox.objects.filter(pk=box.pk).values().get())


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_the_pages_that_need_no_queue_work_without_redis(
    client: Client, admin: User, auditor: User, web_mailbox
):
    decision = Decision.objects.get(mailbox=web_mailbox)
    owner = web_mailbox.user
    assert isinstance(owner, User)
    pages = [
        reverse("web-mailboxes"),
        reverse("web-mailbox", args=[web_mailbox.pk]),
        reverse("web-decisions"),
        reverse("web-decision", args=[decision.pk]),
        reverse("web-decisions-export"),
        reverse("web-orgsettings"),
        reverse("web-personal-options"),
        reverse("web-profiles"),
        reverse("web-directory"),
        reverse("web-exclusions"),
    ]
    for user in (admin, auditor, owner):
        client.force_login(user)
        for page in pages:
            if user is owner and page in (reverse("web-orgsettings"), reverse("web-profiles")):
                continue
            response = client.get(page)
            assert response.status_code == 200, (user, page)


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_scan_now_and_test_and_enable_say_the_queue_is_unavailable_and_change_nothing(
    client: Client, admin: User, web_mailbox
):
    before = mailbox_row(web_mailbox)
    counts = (
        ScanRun.objects.count(),
        Alert.objects.count(),
        AuditEvent.objects.exclude(action="signed_in").count(),
    )
    client.force_login(admin)
    for name, what in (("web-mailbox-scan", "Scan now"), ("web-mailbox-test", "Test &amp; Enable")):
        response = client.post(reverse(name, args=[web_mailbox.pk]), follow=True)
        body = response.content.decode()
        assert response.status_code == 200
        assert "The job queue is unavailable" in body and f"{what} was not queued" in body, body
    assert mailbox_row(web_mailbox) == before
    assert (
        ScanRun.objects.count(),
        Alert.objects.count(),
        AuditEvent.objects.exclude(action="signed_in").count(),
    ) == counts
