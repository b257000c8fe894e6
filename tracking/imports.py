"""The CRM import as an RQ job: the web page stores the checked file as an ImportRun and queues
`import_records_job` with its id; the run's row shows the progress and, at the end, the result."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.utils import timezone

from tracking.actions import ActionError
from tracking.actions.directory import ImportReport, check_csv, check_import_records
from tracking.choices import ScanStatus
from tracking.models import ImportRun

log = logging.getLogger(__name__)


def check_queue_import(kind: str, text: str, *, file_name: str, requested_by: User | None) -> ImportRun:
    """Check the file and store it as a queued ImportRun; the caller enqueues `import_records_job`."""
    rows = check_csv(kind, text)
    return ImportRun.objects.create(
        kind=kind,
        text=text,
        file_name=file_name[:255],
        requested_by=requested_by,
        rows_total=rows,
    )


def import_records_job(run_id: int) -> str:
    """Run a queued import; the ImportRun row shows its progress and, at the end, its result."""
    run = ImportRun.objects.get(pk=run_id)
    if run.status != ScanStatus.QUEUED:
        return f"import {run_id} is {run.status}, not queued"
    ImportRun.objects.filter(pk=run_id).update(status=ScanStatus.RUNNING, started_at=timezone.now())

    def progress(done: int, report: ImportReport) -> None:
        ImportRun.objects.filter(pk=run_id).update(
            rows_done=done, created=report.created, updated=report.updated
        )

    try:
        report = check_import_records(run.kind, run.text, progress=progress)
    except Exception as exc:
        # Batches written before the error stay written; the page says what happened.
        log.exception("import %s failed", run_id)
        message = str(exc) if isinstance(exc, ActionError) else f"{type(exc).__name__}: {exc}"
        ImportRun.objects.filter(pk=run_id).update(
            status=ScanStatus.FAILED, finished_at=timezone.now(), error=message
        )
        raise
    ImportRun.objects.filter(pk=run_id).update(
        status=ScanStatus.SUCCEEDED,
        finished_at=timezone.now(),
        rows_done=run.rows_total,
        created=report.created,
        updated=report.updated,
        rejected=[list(r) for r in report.rejected],
        text="",
    )
    return f"created {report.created}, updated {report.updated}, rejected {len(report.rejected)}"
