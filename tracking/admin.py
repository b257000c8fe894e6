"""Django admin registrations: for superusers; decisions and audit rows are read-only here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tracking.actions import ProfileValues, secret_bound_changes, secret_required_message
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


class ProfileForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: leave empty to keep the stored secret.",
    )

    class Meta:
        model = EmailServerProfile
        fields = ProfileValues.names()

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        if data is not None and self.instance.pk is not None and not data.get("secret"):
            # self.instance still holds the stored values here; the form's are applied after clean()
            bound = secret_bound_changes(self.instance, {f: data[f] for f in self.changed_data if f in data})
            if bound:
                self.add_error("secret", secret_required_message(bound))
        return data


@admin.register(EmailServerProfile)
class EmailServerProfileAdmin(admin.ModelAdmin[EmailServerProfile]):
    form = ProfileForm
    list_display = ("name", "kind", "endpoint", "auth_method", "secret_state")

    @admin.display(description="secret")
    def secret_state(self, obj: EmailServerProfile) -> str:
        return "set" if obj.has_secret else "not set"

    def save_model(self, request: HttpRequest, obj: EmailServerProfile, form: Any, change: bool) -> None:
        if form.cleaned_data.get("secret"):
            obj.set_secret(form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin[Mailbox]):
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


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin[Queue]):
    list_display = ("name", "email", "track", "active")


@admin.register(CrmRecord)
class CrmRecordAdmin(admin.ModelAdmin[CrmRecord]):
    list_display = ("name", "kind", "other_kind", "email1", "owner", "active")
    list_filter = ("kind", "active")
    search_fields = ("name", "email1", "email2", "email3")

    def get_deleted_objects(
        self, objs: Sequence[CrmRecord] | QuerySet[CrmRecord], request: HttpRequest
    ) -> tuple[list[Any], dict[Any, Any], set[Any], list[Any]]:
        # Deleting a record would blank the regarding of the decisions naming it, an edit of the record;
        # Django refuses a deletion whose perms_needed is not empty.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if Decision.objects.filter(regarding__in=objs).exists():
            perms_needed.add(str(Decision._meta.verbose_name))
        return deleted, counts, perms_needed, protected


@admin.register(OrgSettings)
class OrgSettingsAdmin(admin.ModelAdmin[OrgSettings]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return not OrgSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PersonalOptions)
class PersonalOptionsAdmin(admin.ModelAdmin[PersonalOptions]):
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
admin.site.register(FolderTrackingRule)
admin.site.register(ExclusionEntry)
