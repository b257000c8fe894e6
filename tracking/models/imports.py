from __future__ import annotations

from django.conf import settings
from django.db import models

from tracking.choices import RecordKind, ScanStatus


class ImportRun(models.Model):
    """One CSV import of CRM records, run as a job: its file, progress and result.

    `rejected` lists [line number, reason] pairs, in file order.
    """

    kind = models.CharField(max_length=10, choices=RecordKind.choices)
    file_name = models.CharField(max_length=255, blank=True)
    text = models.TextField(help_text="The CSV text; emptied once the import has finished.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=ScanStatus.choices, default=ScanStatus.QUEUED)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    rejected = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"import {self.pk} of {self.kind} records ({self.status})"
