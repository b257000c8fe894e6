from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.db.models.functions import Lower

from tracking.choices import RecordKind, TrackOption


class Queue(models.Model):
    """A shared mailbox owner such as support@; email-enabled, with its own Track option (default All)."""

    name = models.CharField(max_length=200, unique=True)
    email = models.CharField(max_length=320, blank=True, help_text="Stored lower-case.")
    track = models.PositiveSmallIntegerField(choices=TrackOption.choices, default=TrackOption.ALL)
    active = models.BooleanField(default=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["email"], name="queue_email")]

    def __str__(self) -> str:
        return self.name


class CrmRecord(models.Model):
    """An account, contact, lead or other email-enabled record of the CRM directory.

    One table for all kinds keeps address resolution one query per batch; `other_kind` names the
    record type of an `other` row (e.g. "Competitor"). Addresses are stored lower-case because
    lookups are case-insensitive on the whole address.
    """

    kind = models.CharField(max_length=10, choices=RecordKind.choices)
    other_kind = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=300)
    email1 = models.CharField(max_length=320, blank=True)
    email2 = models.CharField(max_length=320, blank=True)
    email3 = models.CharField(max_length=320, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="crm_records"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "CRM record"
        indexes = [
            models.Index(fields=["email1"], name="crm_email1"),
            models.Index(fields=["email2"], name="crm_email2"),
            models.Index(fields=["email3"], name="crm_email3"),
            models.Index(fields=["kind", "name"], name="crm_kind_name"),
        ]

    def __str__(self) -> str:
        label = self.other_kind or self.get_kind_display()
        return f"{label}: {self.name}"

    @property
    def addresses(self) -> list[str]:
        return [e for e in (self.email1, self.email2, self.email3) if e]


class ExclusionEntryQuerySet(models.QuerySet["ExclusionEntry"]):
    def visible_to(self, user: User | AnonymousUser) -> ExclusionEntryQuerySet:
        """The org-wide entries and the user's own; another user's personal entries for nobody, admins too."""
        if not user.is_authenticated:
            return self.filter(user__isnull=True)
        return self.filter(models.Q(user__isnull=True) | models.Q(user_id=user.pk))


class ExclusionEntry(models.Model):
    """An address or @domain that is never tracked (tracking-rules §10); org-wide when `user` is empty."""

    pattern = models.CharField(max_length=320, help_text="name@example.com or @example.com; lower-case.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="exclusions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ExclusionEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "exclusion entries"
        constraints = [
            models.UniqueConstraint(Lower("pattern"), "user", name="exclusion_unique_per_user"),
            models.UniqueConstraint(
                Lower("pattern"), condition=models.Q(user__isnull=True), name="exclusion_unique_org"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pattern} ({self.user or 'organisation'})"
