"""Which process a foreground ScanRun (`ingest`) belongs to, and closing runs whose process is gone.

A scan run by a worker is closed as interrupted when the mailbox's next scan starts; an `ingest` killed
mid-run has no next scan to do that, so its run records the process (host, pid and the pid's start time,
which tells a reused pid apart) and `do_close_interrupted_runs` — called by the scheduler's dispatch
every minute and by the dashboard — marks it failed once that process no longer exists.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path

from tracking.choices import ScanStatus
from tracking.models import ScanRun

PREFIX = "process:"
INTERRUPTED = "interrupted: the process running it stopped"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); "" off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def this_process() -> str:
    """The job id of a run made by this process."""
    pid = os.getpid()
    return f"{PREFIX}{socket.gethostname()}:{pid}:{_start_time(pid)}"


def _gone(tag: str) -> bool:
    """Whether the process named by `tag` has stopped; a process of another host is never judged here."""
    try:
        host, pid_text, started = tag[len(PREFIX) :].rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user
    return bool(started) and _start_time(pid) != started


def do_close_interrupted_runs(*, now: datetime) -> int:
    """Mark failed the running runs of processes of this host that no longer exist; returns how many."""
    running = ScanRun.objects.filter(status=ScanStatus.RUNNING, job_id__startswith=PREFIX)
    dead = [pk for pk, tag in running.values_list("pk", "job_id") if _gone(tag)]
    if not dead:
        return 0
    return ScanRun.objects.filter(pk__in=dead, status=ScanStatus.RUNNING).update(
        status=ScanStatus.FAILED, finished_at=now, error=INTERRUPTED
    )
