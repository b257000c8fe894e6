from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from tracking.choices import AuditAction
from tracking.models.activity import ImmutableRecordError


class AuditEvent(models.Model):
    """Who changed what, when, from what to what (org settings, personal options, approvals, ...)."""

    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=150, help_text="User name, or 'cli' / 'system'.")
    action = models.CharField(max_length=50, choices=AuditAction.choices)
    target = models.CharField(max_length=300)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["action", "-created_at"], name="audit_action_recent")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableRecordError(f"audit event {self.pk} cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableRecordError(f"audit event {self.pk} cannot be deleted")
