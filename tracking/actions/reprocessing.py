"""Reprocessing rounds (tracking-rules §3.6): starting one, its runs' lifecycle, cancelling it.

Which folders a round reads and whether a person may start it is decided in tracking.reprocessing (it
needs the scanning layer); these functions change state once that is settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Q, Sum

from tracking.actions.audit import audit, utc_text
from tracking.choices import AuditAction, ScanSource, ScanStatus
from tracking.models import Mailbox, ReprocessRound, ScanRun

# A round's run that is not finished: a second round of the same mailbox folder is refused meanwhile.
ACTIVE = (ScanStatus.QUEUED, ScanStatus.RUNNING)


@dataclass(frozen=True)
class RoundRequest:
    """A checked request: the mailbox folders a round reads, from `since`."""

    since: datetime
    folders_by_mailbox: Sequence[tuple[Mailbox, Sequence[str]]]
    folders_asked: Sequence[str] = ()


@transaction.atomic
def do_start_round(
    request: RoundRequest, *, acting_user: User | None, via: str, actor_label: str = "cli"
) -> ReprocessRound:
    """Create the round and one queued run per mailbox folder (the caller enqueues them on commit)."""
    round = ReprocessRound.objects.create(
        requested_by=acting_user, requested_via=via, since=request.since, folders=list(request.folders_asked)
    )
    ScanRun.objects.bulk_create(
        [
            ScanRun(mailbox=mailbox, folder=folder, source=ScanSource.REPROCESS, round=round)
            for mailbox, folders in request.folders_by_mailbox
            for folder in folders
        ]
    )
    for mailbox, folders in request.folders_by_mailbox:
        audit(
            AuditAction.REPROCESS_STARTED,
            mailbox.email_address,
            "",
            f"round {round.pk} since {utc_text(request.since)}: {', '.join(folders)}",
            acting_user=acting_user,
            actor_label=actor_label,
        )
    return round


def do_begin_round_run(run: ScanRun, *, now: datetime, job_id: str) -> None:
    """The run's job has started (or started again after its worker died: it resumes, counts kept)."""
    run.status = ScanStatus.RUNNING
    run.started_at = run.started_at or now
    run.job_id = job_id
    ScanRun.objects.filter(pk=run.pk).update(status=run.status, started_at=run.started_at, job_id=job_id)


def do_reset_round_state(run: ScanRun) -> None:
    """The server refused the round's sync state: read the folder from the start (decisions are kept)."""
    run.round_state = ""
    ScanRun.objects.filter(pk=run.pk).update(round_state="")


def do_finish_round_run(run: ScanRun, *, now: datetime, status: ScanStatus, error: str = "") -> None:
    ScanRun.objects.filter(pk=run.pk).update(status=status, finished_at=now, error=error)


@transaction.atomic
def do_cancel_round(
    round: ReprocessRound, *, now: datetime, acting_user: User | None, actor_label: str = "cli"
) -> int:
    """Cancel a round: its queued runs never start, a running one stops after its page in flight.

    Returns how many runs were still to do; 0 when the round had finished (nothing is changed then).
    """
    round = ReprocessRound.objects.select_for_update().get(pk=round.pk)
    pending = ScanRun.objects.filter(round=round, status__in=ACTIVE)
    count = pending.count()
    if round.cancelled_at is not None or count == 0:
        return 0
    round.cancelled_at = now
    round.save(update_fields=["cancelled_at"])
    # A running run sees the mark between pages and closes itself; queued ones are closed here.
    pending.filter(status=ScanStatus.QUEUED).update(status=ScanStatus.CANCELLED, finished_at=now)
    audit(
        AuditAction.REPROCESS_CANCELLED,
        f"round {round.pk}",
        "",
        f"{count} folder run(s) not finished",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return count


@dataclass(frozen=True)
class RoundStatus:
    runs: int
    finished: int
    active: int
    items_done: int
    tracked: int
    already_tracked: int
    not_tracked: int
    failed: int

    @property
    def done(self) -> bool:
        return self.active == 0


def round_status(round: ReprocessRound) -> RoundStatus:
    """The round's progress and counts per outcome, summed over its runs (one query)."""
    totals = ScanRun.objects.filter(round=round).aggregate(
        runs=Count("pk"),
        active=Count("pk", filter=Q(status__in=ACTIVE)),
        items_done=Sum("items_done", default=0),
        tracked=Sum("tracked", default=0),
        already_tracked=Sum("already_tracked", default=0),
        not_tracked=Sum("not_tracked", default=0),
        failed=Sum("failed", default=0),
    )
    return RoundStatus(finished=totals["runs"] - totals["active"], **totals)
