"""Background scanning on RQ, in this process (issue 4, tracking-rules §9): dispatch, exclusivity, the
lifecycle.

Real Redis (the tests' database), real RQ (SimpleWorker in burst mode, which runs each job here, in this
thread), the Exchange simulator over HTTPS. The database is transactional (real commits), because the
product sends its jobs when the claim commits. Workers in other processes: tests/test_workers.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone
from rq.job import Job, JobStatus

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tracking.actions import (
    check_add_mailbox,
    check_set_org_setting,
    do_approve_mailbox,
    do_disable_mailbox,
    do_start_round,
)
from tracking.choices import ScanStatus
from tracking.jobqueues import NOTIFICATIONS, REPROCESSING
from tracking.jobs import (
    BUSY_PROFILE_RETRY,
    CLAIM_LEASE,
    dispatch_due_mailboxes,
    enqueue_notification,
    enqueue_scan,
    round_job_id,
    scan_mailbox,
)
from tracking.models import Alert, Decision, EmailServerProfile, Mailbox, ScanRun, TrackedEmail
from tracking.reprocessing import check_round
from tracking.scanning import run_test_and_enable

USING_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.fixture(autouse=True)
def every_test_on_an_empty_redis(clean_redis: None) -> None:
    """Not only the tests with the simulator (tests/worker_fixtures.py: clean_redis, sim, ews)."""


def mailbox_with_mail(sim: Simulator, address: str, profile: EmailServerProfile, count: int = 3) -> Mailbox:
    h.fill(sim, address, count=count)
    return h.add_enabled_mailbox(address, profile)


def queued_mailbox_ids() -> list[int]:
    return sorted(job.args[0] for job in h.queue().get_jobs())


def between(value: datetime | None, low: datetime, high: datetime) -> bool:
    return value is not None and low <= value <= high


# -- dispatch: due mailboxes enqueued once per interval ---------------------------------------------------


def test_it_enqueues_each_due_mailbox_once_when_dispatched_twice(sim, ews):
    boxes = [mailbox_with_mail(sim, f"due{i}@contoso.example", ews) for i in range(3)]
    assert dispatch_due_mailboxes() == 3
    assert dispatch_due_mailboxes() == 0
    assert queued_mailbox_ids() == sorted(b.pk for b in boxes)
    now = timezone.now()
    for box in boxes:
        box.refresh_from_db()
        # claimed: not due again before the scan ends, or before the lease has passed if it never does
        assert between(box.next_run_at, now + CLAIM_LEASE - timedelta(minutes=1), now + CLAIM_LEASE)


def test_it_sends_the_jobs_only_when_the_claim_commits(sim, ews):
    box = mailbox_with_mail(sim, "commit@contoso.example", ews)
    with transaction.atomic():
        assert dispatch_due_mailboxes() == 1
        assert h.queue().count == 0
    assert queued_mailbox_ids() == [box.pk]

    h.redis().flushdb()
    h.make_due(box)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert dispatch_due_mailboxes() == 1
        raise RuntimeError("the dispatcher's transaction fails")
    assert h.queue().count == 0
    assert dispatch_due_mailboxes() == 1  # the rolled-back claim left the mailbox due


def test_it_schedules_the_next_run_a_poll_interval_after_the_scan_ends(sim, ews, caplog):
    check_set_org_setting("MailboxPollIntervalMinutes", "7")
    box = mailbox_with_mail(sim, "poll@contoso.example", ews, count=4)
    assert dispatch_due_mailboxes() == 1
    with caplog.at_level(logging.INFO, logger="tracking.scanning"):
        h.burst()
    done = timezone.now()
    run = ScanRun.objects.get(mailbox=box)
    assert (run.status, run.items_done, run.tracked) == (ScanStatus.SUCCEEDED, 4, 4)
    assert run.finished_at is not None
    box.refresh_from_db()
    assert between(box.next_run_at, run.finished_at + timedelta(minutes=7), done + timedelta(minutes=7))
    assert box.transient_failure_count == 0 and box.incoming_status == "success"
    # one structured line per scan: mailbox, folder, counts, duration
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scan mailbox=")]
    assert len(lines) == 1
    assert "mailbox=poll@contoso.example folder=inbox tracked=4 already_tracked=0" in lines[0]
    assert "seconds=" in lines[0]

    assert dispatch_due_mailboxes() == 0  # the interval has not passed
    assert box.next_run_at is not None
    Mailbox.objects.filter(pk=box.pk).update(next_run_at=box.next_run_at - timedelta(minutes=7))
    assert dispatch_due_mailboxes() == 1  # now it has
    h.burst()
    second = ScanRun.objects.filter(mailbox=box).latest("pk")
    assert (second.status, second.items_done) == (ScanStatus.SUCCEEDED, 0)
    assert Decision.objects.filter(mailbox=box).count() == 4


def test_it_never_dispatches_mailboxes_that_may_not_be_scanned(sim, ews):
    def add(address: str, *, approve: bool = True, queue: bool = False) -> Mailbox:
        h.fill(sim, address, count=1)
        if queue:
            mailbox = check_add_mailbox(
                address, profile_name=ews.name, queue_name=address.split("@")[0], approve=approve
            )
            h.enable(mailbox)
            return mailbox
        return h.add_enabled_mailbox(address, ews, approve=approve)

    user_ok = add("user-ok@contoso.example")
    queue_ok = add("queue-ok@contoso.example", queue=True)
    user_pending = add("user-pending@contoso.example", approve=False)
    queue_pending = add("queue-pending@contoso.example", approve=False, queue=True)
    user_rejected = add("user-rejected@contoso.example")
    do_approve_mailbox(user_rejected, approve=False)
    disabled = add("disabled@contoso.example")
    assert do_disable_mailbox(disabled)
    no_sync = add("no-sync@contoso.example")
    Mailbox.objects.filter(pk=no_sync.pk).update(incoming_method="none")
    h.make_due(*Mailbox.objects.all())

    assert dispatch_due_mailboxes() == 2
    assert queued_mailbox_ids() == sorted([user_ok.pk, queue_ok.pk])

    check_set_org_setting("RequireApprovalForUserEmail", "false")
    check_set_org_setting("RequireApprovalForQueueEmail", "false")
    h.redis().flushdb()
    h.make_due(*Mailbox.objects.all())
    dispatch_due_mailboxes()
    dispatched = set(queued_mailbox_ids())
    assert {user_ok.pk, queue_ok.pk, user_pending.pk, queue_pending.pk} <= dispatched
    assert not {disabled.pk, no_sync.pk} & dispatched
    h.burst()
    assert set(ScanRun.objects.values_list("mailbox_id", flat=True)) == dispatched


def test_it_dispatches_a_claimed_mailbox_again_once_the_claim_lease_has_passed(sim, ews):
    box = mailbox_with_mail(sim, "lost@contoso.example", ews)
    assert dispatch_due_mailboxes() == 1
    h.redis().flushdb()  # the job is lost (Redis restarted without persistence)
    assert dispatch_due_mailboxes() == 0
    h.make_due(box)  # CLAIM_LEASE later
    assert dispatch_due_mailboxes() == 1
    h.burst()
    assert ScanRun.objects.get(mailbox=box).status == ScanStatus.SUCCEEDED


def run_at_once(function: Callable[[], Any], times: int) -> list[Any]:
    """Call `function` from `times` threads released together; each thread has its own DB connection."""
    barrier = threading.Barrier(times)
    results: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            barrier.wait(10)
            results.append(function())
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_it_claims_each_mailbox_once_when_two_dispatchers_run_at_once(sim, ews):
    boxes = [h.add_enabled_mailbox(f"race{i}@contoso.example", ews) for i in range(12)]
    for _ in range(5):
        h.redis().flushdb()
        h.make_due(*boxes)
        if h.is_postgres():
            counts = run_at_once(dispatch_due_mailboxes, 2)
        else:
            # SQLite has one writer at a time: two dispatchers can only take turns
            counts = [dispatch_due_mailboxes(), dispatch_due_mailboxes()]
        assert sum(counts) == len(boxes)
        assert queued_mailbox_ids() == sorted(b.pk for b in boxes)


@pytest.mark.skipif(USING_POSTGRES, reason="PostgreSQL: the test above runs the dispatchers at once")
def test_it_lets_two_dispatchers_take_turns_on_sqlite(sim, ews):
    boxes = [h.add_enabled_mailbox(f"turns{i}@contoso.example", ews) for i in range(12)]
    for _ in range(10):
        h.redis().flushdb()
        h.make_due(*boxes)
        assert sum(run_at_once(dispatch_due_mailboxes, 2)) == len(boxes)
        assert queued_mailbox_ids() == sorted(b.pk for b in boxes)


# -- exclusivity in one process ---------------------------------------------------------------------------


def test_the_dispatchers_scan_waits_behind_a_scan_of_its_mailbox_already_queued(sim, ews):
    box = mailbox_with_mail(sim, "held@contoso.example", ews, count=4)
    other = mailbox_with_mail(sim, "free@contoso.example", ews, count=2)
    manual = enqueue_scan(box.pk)  # Scan now, just before the dispatcher's cycle
    assert manual is not None
    assert dispatch_due_mailboxes() == 2
    # one queued job per mailbox: the dispatcher's scan of `box` waits for its RateLimit slot
    assert queued_mailbox_ids() == sorted([box.pk, other.pk]) and manual.id in h.queue().job_ids
    assert [job.args for job in h.rate_limited_jobs()] == [(box.pk, None)]
    h.burst()
    runs = list(ScanRun.objects.filter(mailbox=box).order_by("pk"))
    assert [(r.status, r.items_done) for r in runs] == [(ScanStatus.SUCCEEDED, 4), (ScanStatus.SUCCEEDED, 0)]
    assert not h.overlapping(h.intervals(runs)) and not h.rate_limited_jobs()


def test_a_push_notifications_job_goes_to_the_notifications_queue_and_runs():
    job = enqueue_notification(json.dumps, {"folder": "inbox"}, description="a notification's sync")
    assert job is not None and job.origin == NOTIFICATIONS
    assert h.queue(NOTIFICATIONS).job_ids == [job.id] and h.queue().count == 0
    h.burst()
    assert job.return_value() == '{"folder": "inbox"}'


def test_it_holds_a_second_scan_of_a_mailbox_until_the_first_is_done(sim, ews):
    box = mailbox_with_mail(sim, "twice@contoso.example", ews, count=5)
    other = mailbox_with_mail(sim, "other@contoso.example", ews, count=2)
    first, second = enqueue_scan(box.pk), enqueue_scan(box.pk)
    assert first is not None and second is not None
    assert (first.get_status(), second.get_status()) == (JobStatus.QUEUED, JobStatus.RATE_LIMITED)
    third = enqueue_scan(other.pk)  # the limit is per mailbox
    assert third is not None and third.get_status() == JobStatus.QUEUED
    assert h.queue().job_ids == [first.id, third.id]

    h.burst()
    assert all(job.get_status() == JobStatus.FINISHED for job in (first, second, third))
    runs = list(ScanRun.objects.filter(mailbox=box).order_by("pk"))
    assert [(r.job_id, r.items_done) for r in runs] == [(first.id, 5), (second.id, 0)]
    assert not h.overlapping(h.intervals(runs))
    assert Decision.objects.filter(mailbox=box).count() == 5


def test_it_postpones_a_scan_while_its_profile_has_no_free_connection(sim):
    profile = h.add_sim_profile(sim, "one-connection", max_concurrent_connections=1)
    busy = mailbox_with_mail(sim, "busy@contoso.example", profile)
    waiting = mailbox_with_mail(sim, "waiting@contoso.example", profile)
    sim.faults.add(
        Fault("slow", protocol="ews", operation="SyncFolderItems", mailbox=busy.email_address, delay=1.5)
    )

    def another_worker() -> None:
        try:
            scan_mailbox(busy.pk)  # the job itself, as a worker runs it
        finally:
            connection.close()

    scanning = threading.Thread(target=another_worker)
    scanning.start()
    h.wait_for(
        lambda: ScanRun.objects.filter(mailbox=busy, status=ScanStatus.RUNNING).exists(), 10, "busy scan"
    )
    job = enqueue_scan(waiting.pk)
    assert job is not None
    before = timezone.now()
    h.burst()
    after = timezone.now()
    scanning.join(30)

    assert str(job.return_value()).startswith("postponed")
    assert not ScanRun.objects.filter(mailbox=waiting).exists()
    waiting.refresh_from_db()
    assert between(waiting.next_run_at, before + BUSY_PROFILE_RETRY, after + BUSY_PROFILE_RETRY)
    assert ScanRun.objects.get(mailbox=busy).status == ScanStatus.SUCCEEDED

    h.make_due(waiting)
    assert dispatch_due_mailboxes() == 1
    h.burst()
    run = ScanRun.objects.get(mailbox=waiting)
    assert (run.status, run.items_done) == (ScanStatus.SUCCEEDED, 3)


# -- the lifecycle: transient faults retried, then disabled; permanent ones disable at once ----------------

PROTOCOL = {"exchange_ews": "ews", "exchange_graph": "graph"}


def busy_fault(protocol: str, seconds: int) -> Fault:
    """EWS ErrorServerBusy with BackOffMilliseconds, or Graph 429 with Retry-After."""
    return Fault("server_busy", protocol=protocol, back_off_ms=seconds * 1000, retry_after=seconds)


def scan_cycle() -> tuple[datetime, datetime]:
    """Dispatch, then run the scan; the times around it."""
    before = timezone.now()
    assert dispatch_due_mailboxes() == 1
    h.burst()
    return before, timezone.now()


@pytest.mark.parametrize("kind", ["exchange_ews", "exchange_graph"])
def test_it_retries_transient_faults_then_disables_the_mailbox(sim, kind):
    check_set_org_setting("TransientFailureRetryLimit", "2")
    check_set_org_setting("TransientFailureRetryMinutes", "1")
    profile = h.add_sim_profile(sim, kind, kind)
    box = mailbox_with_mail(sim, "flaky@contoso.example", profile)
    protocol = PROTOCOL[kind]

    # 1: the server asks for 150 s, longer than the 1 minute between retries
    sim.faults.add(busy_fault(protocol, 150))
    before, after = scan_cycle()
    box.refresh_from_db()
    assert (box.enabled, box.transient_failure_count, box.incoming_status) == (True, 1, "failure")
    assert between(box.next_run_at, before + timedelta(seconds=150), after + timedelta(seconds=150))
    assert dispatch_due_mailboxes() == 0  # not before the server's back-off

    # 2: HTTP 503 asking for 20 s: the 1 minute between retries wins
    sim.faults.add(Fault("http_status", protocol=protocol, status=503, retry_after=20))
    h.make_due(box)
    before, after = scan_cycle()
    box.refresh_from_db()
    assert (box.enabled, box.transient_failure_count) == (True, 2)
    assert between(box.next_run_at, before + timedelta(minutes=1), after + timedelta(minutes=1))
    warnings = list(Alert.objects.filter(mailbox=box, level="warning").order_by("pk"))
    assert ["retry 1 of 2" in a.message for a in warnings] == [True, False]
    assert ["retry 2 of 2" in a.message for a in warnings] == [False, True]

    # 3: one failure more than the limit
    sim.faults.add(busy_fault(protocol, 1))
    h.make_due(box)
    scan_cycle()
    box.refresh_from_db()
    assert (box.enabled, box.next_run_at, box.incoming_status) == (False, None, "failure")
    assert Alert.objects.filter(mailbox=box, level="warning").count() == 2
    error = Alert.objects.get(mailbox=box, level="error")
    assert "disabled after 2 retries" in error.message
    runs = ScanRun.objects.filter(mailbox=box)
    assert [r.status for r in runs] == [ScanStatus.FAILED] * 3 and all(r.error for r in runs)
    assert not Decision.objects.filter(mailbox=box).exists()

    h.make_due(box)
    assert dispatch_due_mailboxes() == 0  # a disabled mailbox waits for Test & Enable

    ok, message = run_test_and_enable(box.pk)
    assert ok, message
    box.refresh_from_db()
    assert (box.enabled, box.transient_failure_count) == (True, 0)
    scan_cycle()
    box.refresh_from_db()
    assert box.incoming_status == "success" and Decision.objects.filter(mailbox=box).count() == 3


def test_it_resets_the_failure_count_after_a_successful_cycle(sim, ews):
    box = mailbox_with_mail(sim, "recovers@contoso.example", ews)
    sim.faults.add(busy_fault("ews", 5))
    scan_cycle()
    box.refresh_from_db()
    assert box.transient_failure_count == 1

    h.make_due(box)
    before, after = scan_cycle()
    box.refresh_from_db()
    assert (box.enabled, box.transient_failure_count, box.incoming_status, box.last_error) == (
        True,
        0,
        "success",
        "",
    )
    assert between(box.next_run_at, before + timedelta(minutes=5), after + timedelta(minutes=5))
    assert Decision.objects.filter(mailbox=box).count() == 3


@pytest.mark.parametrize(
    ("kind", "secret", "fault"),
    [
        ("exchange_ews", "not-the-secret", None),
        ("exchange_graph", "not-the-secret", None),
        ("exchange_graph", h.SIM_SECRET, Fault("unauthorized", protocol="graph")),
    ],
    ids=["ews-wrong-secret", "graph-wrong-secret", "graph-401"],
)
def test_it_disables_a_mailbox_at_once_when_the_server_refuses_the_credentials(sim, kind, secret, fault):
    profile = h.add_sim_profile(sim, kind, kind, secret=secret)
    box = mailbox_with_mail(sim, "refused@contoso.example", profile)
    if fault is not None:
        sim.faults.add(fault)
    scan_cycle()
    box.refresh_from_db()
    assert (box.enabled, box.next_run_at, box.transient_failure_count) == (False, None, 0)
    assert not Alert.objects.filter(mailbox=box, level="warning").exists()
    error = Alert.objects.get(mailbox=box, level="error")
    assert "permanent" in error.message
    assert ScanRun.objects.get(mailbox=box).status == ScanStatus.FAILED
    h.make_due(box)
    assert dispatch_due_mailboxes() == 0


def test_it_disables_a_mailbox_whose_approval_was_revoked_after_its_scan_was_queued(sim, ews):
    box = mailbox_with_mail(sim, "revoked@contoso.example", ews)
    assert dispatch_due_mailboxes() == 1
    do_approve_mailbox(box, approve=False)
    h.burst()
    assert not Decision.objects.filter(mailbox=box).exists()
    box.refresh_from_db()
    assert not box.enabled
    assert Alert.objects.filter(mailbox=box, level="error").exists()


def test_it_does_not_scan_a_mailbox_disabled_after_its_scan_was_queued(sim, ews):
    box = mailbox_with_mail(sim, "stopped@contoso.example", ews)
    assert dispatch_due_mailboxes() == 1
    assert do_disable_mailbox(box)
    h.burst()
    assert not Decision.objects.filter(mailbox=box).exists()
    assert not ScanRun.objects.filter(mailbox=box).exclude(status=ScanStatus.SKIPPED).exists()


# -- commands ---------------------------------------------------------------------------------------------


def test_it_enqueues_a_scan_from_the_command_line(sim, ews, cmd):
    box = mailbox_with_mail(sim, "cli@contoso.example", ews, count=2)
    result = cmd("scan_mailbox", "cli@contoso.example", "--enqueue", "--json")
    (line,) = result.json_lines()
    assert line["mailbox"] == "cli@contoso.example" and line["folder"] is None
    assert h.queue().job_ids == [line["job_id"]]
    job = Job.fetch(line["job_id"], connection=h.redis())
    assert job.args == (box.pk, None)

    out = cmd("scan_mailbox", "cli@contoso.example", "--enqueue", "--folder", "inbox").out
    assert out.startswith("queued scan of cli@contoso.example (inbox): job ")
    h.burst()
    runs = list(ScanRun.objects.filter(mailbox=box).order_by("pk"))
    assert [(r.job_id, r.status, r.items_done) for r in runs] == [
        (line["job_id"], ScanStatus.SUCCEEDED, 2),
        (out.split()[-1], ScanStatus.SUCCEEDED, 0),
    ]
    assert TrackedEmail.objects.filter(receiving_mailbox=box).count() == 2


def health_json() -> tuple[dict[str, Any], bool]:
    out = io.StringIO()
    try:
        call_command("health", "--json", stdout=out)
    except CommandError:
        return json.loads(out.getvalue()), False
    return json.loads(out.getvalue()), True


def test_it_reports_the_queue_and_overdue_mailboxes_in_health(sim, ews):
    now = timezone.now()
    boxes = {
        name: mailbox_with_mail(sim, f"{name}@contoso.example", ews, count=1)
        for name in ("overdue", "late", "fine", "disabled", "failing")
    }
    # poll interval 5 minutes: overdue = next run more than 10 minutes ago
    Mailbox.objects.filter(pk=boxes["overdue"].pk).update(next_run_at=now - timedelta(minutes=11))
    Mailbox.objects.filter(pk=boxes["late"].pk).update(next_run_at=now - timedelta(minutes=9))
    Mailbox.objects.filter(pk=boxes["fine"].pk).update(next_run_at=now + timedelta(minutes=3))
    Mailbox.objects.filter(pk=boxes["disabled"].pk).update(
        enabled=False, next_run_at=now - timedelta(hours=2)
    )
    Mailbox.objects.filter(pk=boxes["failing"].pk).update(
        incoming_status="failure", next_run_at=now + timedelta(minutes=3)
    )
    gone = enqueue_scan(10**9)  # a mailbox deleted after its scan was queued: the job fails
    h.burst()
    assert gone is not None and gone.get_status() == JobStatus.FAILED
    enqueue_scan(boxes["fine"].pk)
    enqueue_scan(boxes["late"].pk)

    report, ok = health_json()
    assert not ok
    assert report["queue_available"] is True
    assert (report["queued_jobs"], report["running_jobs"], report["failed_jobs"]) == (2, 0, 1)
    assert (report["workers"], report["cron_schedulers"]) == (0, 0)
    assert report["mailboxes_enabled"] == 4
    assert report["mailboxes_overdue"] == ["overdue@contoso.example"]
    assert report["mailboxes_failing"] == ["failing@contoso.example"]
    assert any("no worker" in p for p in report["problems"])
    assert any("no scheduler" in p for p in report["problems"])
    assert any("1 mailbox(es) overdue" in p for p in report["problems"])

    h.make_due(boxes["overdue"])
    report, _ = health_json()
    assert report["mailboxes_overdue"] == []


# -- reprocessing rounds whose jobs Redis does not have ---------------------------------------------------


def test_the_dispatcher_queues_again_a_round_run_whose_job_was_never_sent(sim, ews):
    box = mailbox_with_mail(sim, "round@contoso.example", ews, count=4)
    assert dispatch_due_mailboxes() == 1
    h.burst()
    request = check_round([box], datetime(1990, 1, 1, tzinfo=UTC), now=timezone.now())
    round = do_start_round(request, acting_user=None, via="test")  # its jobs never reached Redis
    (run,) = ScanRun.objects.filter(round=round)
    rounds = h.queue(REPROCESSING)
    assert dispatch_due_mailboxes() == 0 and not rounds.get_jobs()  # too recent: its enqueue may be coming
    ScanRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(minutes=2))

    dispatch_due_mailboxes()
    assert [job.id for job in rounds.get_jobs()] == [round_job_id(run.pk)]
    dispatch_due_mailboxes()
    assert len(rounds.get_jobs()) == 1  # once
    h.burst()
    run.refresh_from_db()
    assert (run.status, run.items_done) == (ScanStatus.SUCCEEDED, 4)
    assert Decision.objects.filter(round=round).count() == 4
