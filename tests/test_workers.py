"""Background scanning with RQ workers in other processes (issue 4): one scan per mailbox across workers,
a worker killed mid-scan, fifty mailboxes on two workers, a profile's connection limit, rqcron, health.

Workers are `manage.py rqworker default` processes on this test's database (transactional, so they see
its data) and the tests' Redis; the Exchange simulator runs in this process and they reach it over HTTPS.
"""

from __future__ import annotations

import email
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from django.db.models import Count, Sum
from django.utils import timezone
from rq import Worker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tracking.actions import check_set_org_setting
from tracking.choices import ScanStatus
from tracking.health import check_health
from tracking.jobs import CONNECTION_LEASE, dispatch_due_mailboxes, enqueue_scan
from tracking.models import CrmRecord, Decision, EmailServerProfile, Mailbox, ScanRun, TrackedEmail

pytestmark = pytest.mark.workers


@pytest.fixture
def graph(sim) -> EmailServerProfile:
    return h.add_sim_profile(sim, "graph", "exchange_graph")


def worker_count() -> int:
    return Worker.count(connection=h.redis())


def finished(*jobs: Job) -> bool:
    return all(job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED) for job in jobs)


def statuses(*jobs: Job) -> list[str]:
    return [job.get_status(refresh=True) for job in jobs]


# -- two workers never scan one mailbox at once -----------------------------------------------------------


def test_it_never_runs_two_scans_of_one_mailbox_at_once(sim, ews, tmp_path):
    h.fill(sim, "slow@contoso.example", count=30)
    box = h.add_enabled_mailbox("slow@contoso.example", ews)
    h.slow(sim, box, 1.0)
    with h.workers(2, log_dir=tmp_path) as procs:
        h.wait_for(lambda: worker_count() == 2, 30, "two workers")
        jobs = [job for job in (enqueue_scan(box.pk) for _ in range(3)) if job is not None]
        assert len(jobs) == 3
        h.wait_for(
            lambda: ScanRun.objects.filter(mailbox=box, status=ScanStatus.RUNNING).exists(), 30, "a scan"
        )
        assert statuses(*jobs) == [JobStatus.STARTED, JobStatus.RATE_LIMITED, JobStatus.RATE_LIMITED]
        h.wait_for(lambda: finished(*jobs), 60, "three scans", every=0.2)
        assert all(p.popen.poll() is None for p in procs), "a worker died"

    assert statuses(*jobs) == [JobStatus.FINISHED] * 3
    runs = list(ScanRun.objects.filter(mailbox=box).order_by("started_at"))
    assert runs[0].job_id == jobs[0].id and {r.job_id for r in runs} == {job.id for job in jobs}
    assert [r.status for r in runs] == [ScanStatus.SUCCEEDED] * 3
    assert h.overlapping(h.intervals(runs)) == []
    rq_spans = []
    for job in jobs:
        job.refresh()
        assert job.started_at is not None and job.ended_at is not None
        rq_spans.append((job.started_at, job.ended_at))
    assert h.overlapping(rq_spans) == []  # the workers' own record agrees
    assert [r.items_done for r in runs] == [30, 0, 0]
    assert Decision.objects.filter(mailbox=box).count() == 30


# -- a worker killed mid-scan -----------------------------------------------------------------------------

CRASH_USER = "lavorato-j"  # 277 messages: three EWS pages of 100


def kill_mid_scan(
    sim: Simulator, box: Mailbox, log_dir: Path, *, also: Callable[[], bool] = lambda: True
) -> tuple[Job, ScanRun]:
    """Dispatch `box`, let a subprocess worker commit at least one page (and `also` hold), then SIGKILL it
    and its horse."""
    h.slow(sim, box, 2.0)
    assert dispatch_due_mailboxes() == 1
    (job,) = h.queue().get_jobs()
    worker = h.worker_process("--burst", log_dir=log_dir)
    try:
        h.wait_for(
            lambda: ScanRun.objects.filter(mailbox=box, items_done__gt=0).exists() and also(), 60, "a page"
        )
    finally:
        worker.kill()
    sim.faults.clear()
    run = ScanRun.objects.get(mailbox=box)
    assert job.get_status(refresh=True) == JobStatus.STARTED  # as the dead worker left it
    return job, run


def test_it_resumes_a_scan_killed_mid_page_without_duplicates_or_gaps(sim, ews, tmp_path):
    for sender, kind in (
        ("louise.kitchen@enron.com", "contact"),
        ("frank.hayden@enron.com", "lead"),
        ("kenneth.thibodeaux@enron.com", "account"),
        ("svarga@kudlow.com", "contact"),
    ):
        CrmRecord.objects.create(kind=kind, name=sender.split("@")[0], email1=sender)
    boxes = {}
    for name in ("reference", "crashed"):
        raws = h.fill(sim, f"{name}@contoso.example", CRASH_USER, count=277)
        boxes[name] = h.add_enabled_mailbox(f"{name}@contoso.example", ews, track=2)
    # part of the mail is older than the mailbox's "process emails received after"
    Mailbox.objects.update(process_emails_received_after=datetime(2001, 10, 26, tzinfo=UTC))
    reference, crashed = boxes["reference"], boxes["crashed"]

    # the reference: one uninterrupted scan
    Mailbox.objects.filter(pk=crashed.pk).update(next_run_at=timezone.now() + timedelta(hours=1))
    assert dispatch_due_mailboxes() == 1
    h.burst()
    Mailbox.objects.filter(pk=crashed.pk).update(next_run_at=timezone.now())

    dead, killed = kill_mid_scan(sim, crashed, tmp_path)
    assert killed.status == ScanStatus.RUNNING and 0 < killed.items_done < len(raws)
    assert killed.items_done % 100 == 0  # whole EWS pages (100 items): the page in flight left nothing
    assert Decision.objects.filter(mailbox=crashed).count() == killed.items_done

    # the claim holds the mailbox until its lease has passed; the dead job still holds its RateLimit slot
    assert dispatch_due_mailboxes() == 0
    h.make_due(crashed)  # CLAIM_LEASE later
    assert dispatch_due_mailboxes() == 1
    assert h.queue().count == 0
    (rerun,) = h.rate_limited_jobs()
    h.release_dead_job(dead)
    assert rerun.get_status(refresh=True) == JobStatus.QUEUED  # promoted when the slot was freed
    h.burst()

    assert rerun.get_status(refresh=True) == JobStatus.FINISHED
    assert h.decision_keys(crashed) == h.decision_keys(reference)
    assert h.tracked_keys(crashed) == h.tracked_keys(reference)
    outcomes = Counter((o, r) for _, _, o, r in h.decision_keys(crashed))
    assert {"tracked", "not_tracked"} <= {o for o, _ in outcomes}, outcomes  # the comparison means something
    assert Decision.objects.filter(mailbox=crashed).count() == len(raws)
    assert len({k[1] for k in h.decision_keys(crashed)}) == len(raws)
    runs = ScanRun.objects.filter(mailbox=crashed).exclude(pk=killed.pk)
    assert [(r.status, r.items_done) for r in runs] == [(ScanStatus.SUCCEEDED, len(raws) - killed.items_done)]
    crashed.refresh_from_db()
    assert crashed.enabled and crashed.incoming_status == "success"
    # the run cut short was closed when the next scan of its folder started
    killed.refresh_from_db()
    assert (killed.status, killed.items_done) == (
        ScanStatus.FAILED,
        Decision.objects.filter(scan_run=killed).count(),
    )
    assert "interrupted" in killed.error and killed.finished_at is not None
    assert check_health(timezone.now()).scans_running == 0


def test_it_frees_the_connection_slot_of_a_killed_worker_when_its_lease_runs_out(sim, tmp_path):
    profile = h.add_sim_profile(sim, "one-connection", max_concurrent_connections=1)
    h.fill(sim, "killed@contoso.example", CRASH_USER, count=150)
    box = h.add_enabled_mailbox("killed@contoso.example", profile)
    slots = f"syncadmin:profile:{profile.pk}:connections"

    def lease_entries() -> list[tuple[bytes, float]]:
        return cast(list[tuple[bytes, float]], h.redis().zrange(slots, 0, -1, withscores=True))

    def renewed_after_the_page() -> bool:
        # Renewed when the page was committed, so that it lasts CONNECTION_LEASE from then, not from the
        # start; the kill waits for the renewal, which comes just after the commit.
        run = ScanRun.objects.get(mailbox=box)
        scores = [expires for _, expires in lease_entries()]
        return run.started_at is not None and any(
            e > run.started_at.timestamp() + CONNECTION_LEASE + 1 for e in scores
        )

    dead, _ = kill_mid_scan(sim, box, tmp_path, also=renewed_after_the_page)
    h.release_dead_job(dead)
    ((token, expires),) = lease_entries()
    assert expires <= time.time() + CONNECTION_LEASE  # the dead worker renews it no more

    h.make_due(box)
    assert dispatch_due_mailboxes() == 1
    h.burst()
    (postponed,) = [job for job in h.done_jobs() if job.id != dead.id]
    assert str(postponed.return_value()).startswith("postponed")
    assert ScanRun.objects.filter(mailbox=box).count() == 1

    h.redis().zadd(slots, {token: time.time() - 1})  # the lease has run out
    h.make_due(box)
    assert dispatch_due_mailboxes() == 1
    h.burst()
    assert Decision.objects.filter(mailbox=box).count() == 150
    assert h.redis().zcard(slots) == 0


# -- fifty mailboxes, two workers -------------------------------------------------------------------------

USERS = ["allen-p", "arnold-j", "grigsby-m", "kuykendall-t", "lavorato-j", "shively-h", "tholt-j"]


def test_it_scans_fifty_mailboxes_with_two_workers(sim, ews, graph, tmp_path):
    check_set_org_setting("AutoTrackSentFolderItems", "true")
    for sender in ("louise.kitchen@enron.com", "john.arnold@enron.com", "jeff.skilling@enron.com"):
        CrmRecord.objects.create(kind="contact", name=sender.split("@")[0], email1=sender)
    # two messages sent to everybody: the same Message-IDs in all fifty inboxes, scanned by both workers
    shared = h.enron("tholt-j", "sent_items", count=2)
    expected: dict[tuple[str, str], int] = {}
    for i in range(50):
        address = f"box{i:02}@contoso.example"
        user = USERS[i % len(USERS)]
        inbox = h.fill(sim, address, user, count=20 + (i * 7) % 21)
        sent = h.fill(sim, address, user, count=i % 4, folder="sentitems")
        for raw in shared:
            sim.store.add_message(address, "inbox", raw)
        expected[(address, "inbox")] = len(inbox) + len(shared)
        expected[(address, "sentitems")] = len(sent)
        h.add_enabled_mailbox(address, ews if i % 2 else graph, track=i % 3)
    total = sum(expected.values())

    assert dispatch_due_mailboxes() == 50
    # SimpleWorker runs each job in the worker process instead of a forked one: the same RQ worker
    # otherwise, and fifty scans fit the test's time (the other tests use the forking worker)
    workers = h.workers(2, "--burst", "--worker-class", "tracking.workers.SimpleWorker", log_dir=tmp_path)
    with workers as procs:
        for proc in procs:
            assert proc.wait(150) == 0, proc.output
    assert FailedJobRegistry(queue=h.queue()).count == 0, [p.output for p in procs]
    assert h.queue().count == 0

    # every folder scanned once, and every message decided once
    runs = ScanRun.objects.all()
    assert runs.count() == 100 and {r.status for r in runs} == {ScanStatus.SUCCEEDED}
    decided = Counter(
        (address, folder)
        for address, folder in Decision.objects.values_list("mailbox__email_address", "folder")
    )
    assert decided == +Counter(expected)
    assert (
        not Decision.objects.values("mailbox", "folder", "message_id").annotate(n=Count("pk")).filter(n__gt=1)
    )
    assert not TrackedEmail.objects.values("message_id", "direction").annotate(n=Count("pk")).filter(n__gt=1)
    assert TrackedEmail.objects.count() == Decision.objects.filter(outcome="tracked").count()
    # a message in every mailbox is tracked once, then already tracked, whichever worker came first
    for raw in shared:
        message_id = str(email.message_from_bytes(raw)["Message-ID"]).strip()
        outcomes = Counter(Decision.objects.filter(message_id=message_id).values_list("outcome", flat=True))
        assert outcomes["tracked"] == 1 and outcomes.total() == 50, outcomes
        assert TrackedEmail.objects.filter(message_id=message_id).count() == 1

    # the ScanRuns account for every message
    sums = runs.aggregate(
        items=Sum("items_done"),
        tracked=Sum("tracked"),
        already_tracked=Sum("already_tracked"),
        not_tracked=Sum("not_tracked"),
        failed=Sum("failed"),
    )
    assert sums.pop("items") == total
    by_outcome = Counter(Decision.objects.values_list("outcome", flat=True))
    assert sums == {o: by_outcome.get(o, 0) for o in ("tracked", "already_tracked", "not_tracked", "failed")}
    assert {k for k, v in by_outcome.items() if v} >= {"tracked", "already_tracked", "not_tracked"}
    assert not Mailbox.objects.exclude(incoming_status="success").exists()


# -- a profile's connection limit -------------------------------------------------------------------------


def test_it_keeps_a_profile_to_its_connection_limit(sim, tmp_path):
    profile = h.add_sim_profile(sim, "one-connection", max_concurrent_connections=1)
    boxes = []
    for name in ("first", "second"):
        h.fill(sim, f"{name}@contoso.example", count=10)
        boxes.append(h.add_enabled_mailbox(f"{name}@contoso.example", profile))
        h.slow(sim, boxes[-1], 2.0)
    with h.workers(2, log_dir=tmp_path):
        h.wait_for(lambda: worker_count() == 2, 30, "two workers")
        assert dispatch_due_mailboxes() == 2
        h.wait_for(lambda: len(h.done_jobs()) == 2, 60, "both jobs", every=0.2)
        jobs = h.done_jobs()
        results = sorted(str(job.return_value()) for job in jobs)
        assert results[0].startswith("postponed") and results[1] == "scanned inbox"
        (postponed,) = [m for m in boxes if not ScanRun.objects.filter(mailbox=m).exists()]
        postponed.refresh_from_db()
        assert postponed.next_run_at is not None
        assert timezone.now() < postponed.next_run_at <= timezone.now() + timedelta(seconds=30)

        h.make_due(postponed)
        assert dispatch_due_mailboxes() == 1
        h.wait_for(
            lambda: ScanRun.objects.filter(mailbox=postponed, finished_at__isnull=False).exists(),
            60,
            "a scan",
        )
    runs = ScanRun.objects.all()
    assert [r.status for r in runs] == [ScanStatus.SUCCEEDED] * 2
    assert h.overlapping(h.intervals(runs)) == []
    assert Decision.objects.count() == 20


# -- rqcron, health -------------------------------------------------------------------------------------


def test_it_runs_the_schedule_with_rqcron_and_reports_it_in_health(sim, ews, tmp_path):
    h.fill(sim, "cron@contoso.example", count=3)
    box = h.add_enabled_mailbox("cron@contoso.example", ews)
    cron = h.BackgroundProcess("rqcron", "tracking/cron.py", log_dir=tmp_path)
    try:
        with h.workers(1, log_dir=tmp_path):
            h.wait_for(
                lambda: ScanRun.objects.filter(mailbox=box, status=ScanStatus.SUCCEEDED).exists(),
                60,
                "the scheduled scan",
                every=0.2,
            )
            result = h.manage("health", "--json")
    finally:
        cron.stop()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["queue_available"] is True
    assert (report["workers"], report["cron_schedulers"], report["failed_jobs"]) == (1, 1, 0)
    assert (report["mailboxes_overdue"], report["problems"]) == ([], [])
    box.refresh_from_db()
    assert box.next_run_at is not None and box.next_run_at > timezone.now() + timedelta(minutes=4)


def test_it_says_the_queue_is_unavailable_when_redis_is_down(sim, ews):
    h.fill(sim, "noredis@contoso.example", count=2)
    h.add_enabled_mailbox("noredis@contoso.example", ews)
    Mailbox.objects.update(next_run_at=timezone.now() - timedelta(hours=1))
    down = {"REDIS_URL": f"redis://127.0.0.1:{h.free_port()}/0"}

    # independent commands: run side by side, each in its own process
    with ThreadPoolExecutor(4) as pool:
        health, enqueue, listing, scan = pool.map(
            lambda args: h.manage(*args, env=down),
            [
                ("health", "--json"),
                ("scan_mailbox", "noredis@contoso.example", "--enqueue"),
                ("mailbox", "list"),
                ("scan_mailbox", "noredis@contoso.example"),
            ],
        )
    assert health.returncode == 1
    report = json.loads(health.stdout)
    assert report["queue_available"] is False and report["queue_error"]
    assert report["problems"][0].startswith("the job queue is unavailable")
    assert report["mailboxes_overdue"] == ["noredis@contoso.example"]  # the database part still answers
    assert enqueue.returncode == 1 and "the job queue is unavailable" in enqueue.stderr
    # commands that need only the database still work, a scan in the foreground among them
    assert listing.returncode == 0 and "noredis@contoso.example" in listing.stdout
    assert scan.returncode == 0, scan.stderr
    assert Decision.objects.count() == 2
