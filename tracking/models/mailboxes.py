from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from tracking import crypto
from tracking.choices import (
    EXCHANGE_KINDS,
    AlertLevel,
    Approval,
    AuthMethod,
    ErrorKind,
    IncomingMethod,
    MailboxStatus,
    ProfileKind,
)
from tracking.messages import is_email_address
from tracking.roles import is_admin, reads_everything

if TYPE_CHECKING:
    from tracking.decisions import OrgRules


class EmailServerProfile(models.Model):
    """How to reach a mail server; the secret is stored encrypted and never shown back."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ProfileKind.choices)
    endpoint = models.CharField(
        max_length=500,
        blank=True,
        help_text="EWS/Graph URL, imap(s)://host:port, or a directory for 'local'.",
    )
    auth_method = models.CharField(max_length=10, choices=AuthMethod.choices, default=AuthMethod.NONE)
    username = models.CharField(max_length=320, blank=True)
    tenant_id = models.CharField(max_length=100, blank=True)
    authority = models.CharField(
        max_length=300,
        blank=True,
        help_text="OAuth authority host; empty means https://login.microsoftonline.com.",
    )
    client_id = models.CharField(max_length=100, blank=True)
    secret_encrypted = models.TextField(blank=True, editable=False)
    ca_bundle = models.CharField(
        max_length=500, blank=True, help_text="CA file for servers with an internal CA."
    )
    use_impersonation = models.BooleanField(default=False)
    process_emails_received_after = models.DateTimeField(null=True, blank=True)
    max_concurrent_connections = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(300)]
    )
    minimum_poll_interval_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1440)],
        help_text="Scan this profile's mailboxes at most this often; empty: MailboxPollIntervalMinutes.",
    )
    # The profile new mailboxes get (at most one; set through do_set_default_profile).
    is_default = models.BooleanField(default=False, editable=False)
    # A "more than half of the mailboxes fail" mail went out and the profile has not recovered since.
    failure_episode_open = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_concurrent_connections__gte=1, max_concurrent_connections__lte=300),
                name="profile_connections_range",
            ),
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="profile_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_exchange(self) -> bool:
        return self.kind in EXCHANGE_KINDS

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    @sensitive_variables("plaintext")
    def set_secret(self, plaintext: str) -> None:
        self.secret_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""


def validate_mailbox_address(value: str) -> None:
    """A mailbox's address must be an email address (it also names the mailbox's folder in a local profile,
    so nothing like `a/../../x@y` may pass)."""
    if not is_email_address(value):
        raise ValidationError(
            _("%(value)s is not an email address a mailbox can have."),
            code="invalid",
            params={"value": value},
        )


class MailboxQuerySet(models.QuerySet["Mailbox"]):
    def approved_as_required(self, rules: OrgRules) -> MailboxQuerySet:
        """The mailboxes whose address is approved, or of a kind (user, queue) the org does not ask it of."""
        approved = models.Q(approval=Approval.APPROVED)
        users = models.Q(user__isnull=False) & (approved if rules.require_approval_user else models.Q())
        queues = models.Q(queue__isnull=False) & (approved if rules.require_approval_queue else models.Q())
        return self.filter(users | queues)

    def due(self, rules: OrgRules, now: datetime) -> MailboxQuerySet:
        """Mailboxes that may be scanned (§3.1) and whose next run has come."""
        return self.approved_as_required(rules).filter(
            models.Q(next_run_at__isnull=True) | models.Q(next_run_at__lte=now),
            enabled=True,
            incoming_method=IncomingMethod.SERVER_SIDE_SYNC,
        )

    def visible_to(self, user: User | AnonymousUser) -> MailboxQuerySet:
        """Every mailbox for admins and auditors; a user's own for everyone else (tracking-rules §1)."""
        if reads_everything(user):
            return self
        if not user.is_authenticated:
            return self.none()
        return self.filter(user_id=user.pk)

    def explainable_by(self, user: User | AnonymousUser) -> MailboxQuerySet:
        """Every mailbox for an admin; otherwise the user's own (for auditors too: explain is not a log)."""
        if is_admin(user):
            return self
        if not user.is_authenticated:
            return self.none()
        return self.filter(user_id=user.pk)


class FolderTrackingRuleQuerySet(models.QuerySet["FolderTrackingRule"]):
    def scanned(self) -> FolderTrackingRuleQuerySet:
        """Rules whose folder exists on the server (when the org has folder tracking on, §3.4)."""
        return self.filter(folder_deleted_at__isnull=True).exclude(folder_id="")

    def visible_to(self, user: User | AnonymousUser) -> FolderTrackingRuleQuerySet:
        """The rules of the user's own mailbox, for admins too: the rules are Personal Options."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(mailbox__user_id=user.pk)


class Mailbox(models.Model):
    """One per user or per queue: what to scan, whether it may be scanned, and how the last scan went."""

    email_address = models.CharField(
        max_length=320, unique=True, validators=[validate_mailbox_address], help_text="Stored lower-case."
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="mailbox"
    )
    queue = models.OneToOneField(
        "tracking.Queue", null=True, blank=True, on_delete=models.CASCADE, related_name="mailbox"
    )
    profile = models.ForeignKey(EmailServerProfile, on_delete=models.PROTECT, related_name="mailboxes")
    incoming_method = models.CharField(
        max_length=20, choices=IncomingMethod.choices, default=IncomingMethod.SERVER_SIDE_SYNC
    )
    approval = models.CharField(max_length=10, choices=Approval.choices, default=Approval.PENDING)
    enabled = models.BooleanField(default=False)
    incoming_status = models.CharField(
        max_length=10, choices=MailboxStatus.choices, default=MailboxStatus.NOT_RUN
    )
    process_emails_received_after = models.DateTimeField(
        null=True, blank=True, help_text="Watermark: only messages received after it are evaluated."
    )
    last_sync_started_at = models.DateTimeField(null=True, blank=True)
    last_sync_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_kind = models.CharField(max_length=20, choices=ErrorKind.choices, blank=True)
    transient_failure_count = models.PositiveIntegerField(default=0)
    next_run_at = models.DateTimeField(null=True, blank=True)
    # Which dispatcher run claimed the mailbox last: two dispatchers never both enqueue one scan.
    dispatch_token = models.CharField(max_length=32, blank=True, editable=False)
    # When the last error-alert mail went out (at most one per mailbox per hour).
    alert_mailed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MailboxQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "mailboxes"
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, queue__isnull=True)
                    | models.Q(user__isnull=True, queue__isnull=False)
                ),
                name="mailbox_user_xor_queue",
            )
        ]
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="mailbox_due")]

    def __str__(self) -> str:
        return self.email_address

    @property
    def is_queue(self) -> bool:
        return self.queue_id is not None

    def needs_approval(self, rules: OrgRules) -> bool:
        """Whether the org asks approval of this kind of mailbox (user or queue) and it is not approved."""
        required = rules.require_approval_queue if self.is_queue else rules.require_approval_user
        return required and self.approval != Approval.APPROVED

    def configured_start_date(self) -> datetime | None:
        """The later of the profile's and the mailbox's "process emails received after" (None: neither)."""
        marks = [
            m for m in (self.profile.process_emails_received_after, self.process_emails_received_after) if m
        ]
        return max(marks) if marks else None


class FolderSyncState(models.Model):
    """The opaque incremental-sync token of one mailbox folder (EWS SyncState, Graph deltaLink, IMAP UIDs).

    It is the only record of a folder's progress (tracking-rules §3.5): no time moves with it, so mail
    that turns up late is still evaluated. It is saved with each committed page, so a crashed scan
    resumes after the last page it committed.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="sync_states")
    folder = models.CharField(max_length=255)
    state = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mailbox", "folder"], name="syncstate_unique_folder")]

    def __str__(self) -> str:
        return f"{self.mailbox} / {self.folder}"


class FolderTrackingRule(models.Model):
    """A folder under the Inbox whose messages are all tracked, with an optional regarding record (§3.4).

    Keyed by the server's folder id; `folder` is its display path (Inbox/Projects/Contoso), refreshed on
    each hierarchy sync, so a renamed or moved folder keeps its rule. A folder gone from the server
    makes the rule inactive (`folder_deleted_at`) rather than deleting it.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="folder_rules")
    folder = models.CharField(
        max_length=255, help_text="The folder's display path, e.g. Inbox/Projects/Contoso."
    )
    folder_id = models.CharField(max_length=500, blank=True, default="", help_text="The server's folder id.")
    folder_deleted_at = models.DateTimeField(null=True, blank=True)
    regarding = models.ForeignKey("tracking.CrmRecord", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = FolderTrackingRuleQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "folder"], name="folderrule_unique_folder"),
            models.UniqueConstraint(
                fields=["mailbox", "folder_id"],
                condition=~models.Q(folder_id=""),
                name="folderrule_unique_folder_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mailbox}: {self.folder}"

    @property
    def source_folder(self) -> str:
        """How the sources name this folder: by the server's id."""
        return f"id:{self.folder_id}"


class Alert(models.Model):
    mailbox = models.ForeignKey(
        Mailbox, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    level = models.CharField(max_length=12, choices=AlertLevel.choices)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["mailbox", "-created_at"], name="alert_mailbox_recent")]

    def __str__(self) -> str:
        return f"{self.level}: {self.message[:60]}"
