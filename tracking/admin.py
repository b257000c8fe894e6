"""Django admin registrations: for superusers, and read-only for every product model.

Changes go through the product's pages and commands, which validate them and write the audit trail;
an edit here would skip both (an invalid regular expression, a poll interval of 0, an unaudited
setting), so the admin shows the rows and changes none, superusers included. Deleting a user here
is refused when it would take decisions with it (users are deactivated on the Users & roles page).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from tracking.models import (
    Alert,
    AuditEvent,
    CrmRecord,
    Decision,
    EmailServerProfile,
    ExclusionEntry,
    FolderSyncState,
    FolderTrackingRule,
    Mailbox,
    OrgSettings,
    PersonalOptions,
    Queue,
    QueueItem,
    ScanRun,
    TrackedEmail,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows of the record: nobody adds, edits or deletes them here, superusers included."""

    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EmailServerProfile)
class EmailServerProfileAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "endpoint", "auth_method", "secret_state")
    exclude = ("secret_encrypted",)  # neither the secret nor its ciphertext is ever shown

    @admin.display(description="secret")
    def secret_state(self, obj: EmailServerProfile) -> str:
        return "set" if obj.has_secret else "not set"


@admin.register(Mailbox)
class MailboxAdmin(ReadOnlyAdmin):
    list_display = (
        "email_address",
        "user",
        "queue",
        "profile",
        "approval",
        "enabled",
        "incoming_status",
        "next_run_at",
    )
    list_filter = ("approval", "enabled", "incoming_status", "profile")
    search_fields = ("email_address",)
    # Internal state changes only through the actions (Approve, Test & Enable, scans), never by hand.
    readonly_fields = (
        "approval",
        "enabled",
        "incoming_status",
        "last_sync_started_at",
        "last_sync_succeeded_at",
        "last_error",
        "transient_failure_count",
        "next_run_at",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the product's New mailbox page adds them, audited


@admin.register(Queue)
class QueueAdmin(ReadOnlyAdmin):
    list_display = ("name", "email", "track", "active")


@admin.register(QueueItem)
class QueueItemAdmin(ReadOnlyAdmin):
    # Marked done on the queue's page, which audits it; here only read.
    list_display = ("queue", "tracked_email", "state", "created_at", "done_at", "done_by")
    list_filter = ("state", "queue")
    list_select_related = ("queue", "tracked_email", "done_by")
    raw_id_fields = ("tracked_email",)


@admin.register(CrmRecord)
class CrmRecordAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "other_kind", "email1", "owner", "active")
    list_filter = ("kind", "active")
    search_fields = ("name", "email1", "email2", "email3")


@admin.register(OrgSettings)
class OrgSettingsAdmin(ReadOnlyAdmin):
    pass


@admin.register(PersonalOptions)
class PersonalOptionsAdmin(ReadOnlyAdmin):
    list_display = ("user", "track", "auto_create")


@admin.register(TrackedEmail)
class TrackedEmailAdmin(ReadOnlyAdmin):
    list_display = ("subject", "direction", "sender", "correlation_method", "regarding", "created_at")
    list_filter = ("direction", "correlation_method")
    search_fields = ("message_id", "subject", "sender")


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "decided_at",
        "mailbox",
        "folder",
        "subject",
        "sender",
        "outcome",
        "reason",
        "correlation_method",
    )
    list_filter = ("outcome", "reason", "folder", "correlation_method")
    search_fields = ("message_id", "subject", "sender")
    list_select_related = ("mailbox",)


@admin.register(ScanRun)
class ScanRunAdmin(ReadOnlyAdmin):
    list_display = ("mailbox", "folder", "source", "status", "started_at", "tracked", "not_tracked", "failed")
    list_filter = ("status", "source")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "action", "target", "old_value", "new_value")
    list_filter = ("action",)


admin.site.register(Alert, ReadOnlyAdmin)
admin.site.register(FolderSyncState, ReadOnlyAdmin)
admin.site.register(FolderTrackingRule, ReadOnlyAdmin)
admin.site.register(ExclusionEntry, ReadOnlyAdmin)
