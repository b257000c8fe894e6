from __future__ import annotations

from django.conf import settings
from django.db import models

from tracking.choices import BulkAction


class BulkOperation(models.Model):
    """One bulk action an admin queued on a set of mailboxes, and how far its job has got.

    The job works through `mailbox_ids` in order and appends one entry per mailbox to `results`
    ({"mailbox": address, "ok": bool, "message": words}); each mailbox's change is its own action,
    with its own audit event.
    """

    action = models.CharField(max_length=30, choices=BulkAction.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    mailbox_ids = models.JSONField(default=list)
    results = models.JSONField(default=list)
    job_id = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"{self.action} × {self.total}"

    @property
    def total(self) -> int:
        return len(self.mailbox_ids)

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.get("ok"))
