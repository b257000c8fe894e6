from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.utils import timezone

from tracking.choices import (
    CorrelationMethod,
    Direction,
    EntityKind,
    ErrorKind,
    Outcome,
    PartyRole,
    QueueItemState,
    Reason,
    ScanSource,
    ScanStatus,
)
from tracking.messages import MESSAGE_ID_MAX
from tracking.models.mailboxes import Mailbox
from tracking.roles import reads_everything


class ImmutableRecordError(Exception):
    """An attempt to edit or delete a row of the record (a Decision or an AuditEvent)."""


class TrackedEmailQuerySet(models.QuerySet["TrackedEmail"]):
    def visible_to(self, user: User | AnonymousUser) -> TrackedEmailQuerySet:
        """Every tracked email for admins and auditors; for everyone else those they own, those their own
        mailbox received, and those a decision of their own mailbox links to (tracking-rules §1)."""
        if reads_everything(user):
            return self
        if not user.is_authenticated:
            return self.none()
        own = list(Mailbox.objects.filter(user_id=user.pk).values_list("pk", flat=True))
        # EXISTS for each email (the decision index on tracked_email) rather than IN over every decision
        # of the user's mailboxes: under an OR, PostgreSQL hashes that whole list for every query.
        decided = Decision.objects.filter(mailbox_id__in=own, tracked_email_id=models.OuterRef("pk"))
        return self.filter(
            models.Q(owner_id=user.pk) | models.Q(receiving_mailbox_id__in=own) | models.Exists(decided)
        )


class TrackedEmail(models.Model):
    """The CRM email activity created when a message is tracked (tracking-rules §2, §7).

    Search (tracking/search.py) indexes subject, sender, sender_name, recipients and body_text: on
    PostgreSQL a generated column made of them (`search_document`, migration 0016, not a model field),
    so a migration that changes one of their types must drop that column first and add it back (PostgreSQL
    refuses otherwise); on SQLite an FTS5 table kept by triggers.
    """

    message_id = models.CharField(max_length=MESSAGE_ID_MAX)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    subject = models.TextField(blank=True)
    sender = models.CharField(max_length=320, blank=True)
    sender_name = models.CharField(max_length=300, blank=True)
    recipients = models.JSONField(default=list, blank=True, help_text='[["to", "a@example.com"], ...]')
    sent_at = models.DateTimeField(null=True, blank=True)
    in_reply_to = models.TextField(blank=True)
    references = models.TextField(blank=True)
    conversation_index = models.CharField(
        max_length=2000, blank=True, help_text="Hex of the ConversationIndex."
    )
    tracking_token = models.CharField(max_length=40, blank=True)
    regarding = models.ForeignKey(
        "tracking.CrmRecord", null=True, blank=True, on_delete=models.SET_NULL, related_name="tracked_emails"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tracked_emails",
    )
    accepting_kind = models.CharField(max_length=10, choices=EntityKind.choices, blank=True)
    accepting_id = models.BigIntegerField(null=True, blank=True)
    accepting_name = models.CharField(max_length=300, blank=True)
    accepting_email = models.CharField(max_length=320, blank=True)
    receiving_mailbox = models.ForeignKey(
        "tracking.Mailbox", null=True, blank=True, on_delete=models.SET_NULL, related_name="tracked_emails"
    )
    correlation_method = models.CharField(max_length=20, choices=CorrelationMethod.choices, blank=True)
    correlated_email = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="correlated_replies"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Untracked by a person (tracking-rules §7a): kept for the audit, never tracked again automatically.
    untracked_at = models.DateTimeField(null=True, blank=True)
    # The content a CRM user reads (tracking-rules §2). body_html is sanitized when stored (tracking.content):
    # no script, no event handlers, no remote loads; the page still shows it only in a sandboxed frame.
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    # Where the email stands on timelines (tracking-rules §2): its sent time, else when it was tracked.
    timeline_at = models.DateTimeField(default=timezone.now)
    # When purge_decisions --content-older-than cleared the bodies and attachment contents (metadata stays).
    content_purged_at = models.DateTimeField(null=True, blank=True)

    objects = TrackedEmailQuerySet.as_manager()

    class Meta:
        constraints = [
            # With TrackEmailsBetweenUsersAsTwoActivities an internal message has one row per direction.
            models.UniqueConstraint(
                fields=["message_id", "direction"], name="trackedemail_unique_message_direction"
            )
        ]
        indexes = [
            models.Index(fields=["tracking_token"], name="tracked_token"),
            models.Index(fields=["conversation_index"], name="tracked_conversation_index"),
            models.Index(fields=["regarding", "-timeline_at", "-id"], name="tracked_regarding_timeline"),
            # Search takes the newest matches first (tracking/search.py): for a common word PostgreSQL walks
            # this index and stops after a few thousand rows instead of reading every match.
            models.Index(fields=["-timeline_at", "-id"], name="tracked_timeline"),
        ]

    def __str__(self) -> str:
        return f"{self.subject[:60]} ({self.direction})"


class TrackedAttachment(models.Model):
    """An attachment of a tracked email: name, type and size always; the content only when it was under
    the org's MaxTrackedAttachmentMB when the email was tracked (tracking-rules §2)."""

    tracked_email = models.ForeignKey(TrackedEmail, on_delete=models.CASCADE, related_name="attachments")
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content = models.BinaryField(null=True, blank=True)
    # The part's Content-ID without its angle brackets: what a `cid:` image of the HTML body names.
    content_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type}, {self.size} bytes)"


class EmailParty(models.Model):
    """A party of a tracked email (tracking-rules §6): one row per address and role and what it resolved
    to — a CRM record, a user or a queue — or one row with none of them when it resolved to nothing.

    `timeline_at` repeats the email's so that a record's timeline is one index range read, newest first,
    however many emails the store holds.
    """

    tracked_email = models.ForeignKey(TrackedEmail, on_delete=models.CASCADE, related_name="parties")
    role = models.CharField(max_length=4, choices=PartyRole.choices)
    address = models.CharField(max_length=320)
    record = models.ForeignKey(
        "tracking.CrmRecord", null=True, blank=True, on_delete=models.CASCADE, related_name="email_parties"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="email_parties",
    )
    queue = models.ForeignKey(
        "tracking.Queue", null=True, blank=True, on_delete=models.CASCADE, related_name="email_parties"
    )
    timeline_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["record", "-timeline_at", "-tracked_email"], name="party_record_timeline"),
            models.Index(fields=["user", "-timeline_at", "-tracked_email"], name="party_user_timeline"),
            models.Index(fields=["queue", "-timeline_at", "-tracked_email"], name="party_queue_timeline"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.address}"


class QueueItem(models.Model):
    """A tracked email on a queue's work list (tracking-rules §2): one per queue and email, made when the
    email is tracked, by the queue accepting it or from the queue's own mailbox."""

    queue = models.ForeignKey("tracking.Queue", on_delete=models.CASCADE, related_name="items")
    tracked_email = models.ForeignKey(TrackedEmail, on_delete=models.CASCADE, related_name="queue_items")
    state = models.CharField(max_length=10, choices=QueueItemState.choices, default=QueueItemState.ACTIVE)
    created_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["queue", "tracked_email"], name="queueitem_unique_queue_email")
        ]
        # The queue page pages by id (keyset), newest first, with or without its state filter.
        indexes = [
            models.Index(fields=["queue", "-id"], name="queueitem_queue"),
            models.Index(fields=["queue", "state", "-id"], name="queueitem_queue_state"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_id}: email {self.tracked_email_id} ({self.state})"


class EmailHash(models.Model):
    """Subject-word and address hashes of a tracked email, for smart matching (tracking-rules §5 step 4)."""

    SUBJECT = "s"
    ADDRESS = "a"

    tracked_email = models.ForeignKey(TrackedEmail, on_delete=models.CASCADE, related_name="hashes")
    kind = models.CharField(max_length=1, choices=[(SUBJECT, "subject"), (ADDRESS, "address")])
    value = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["kind", "value"], name="emailhash_lookup")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} hash {self.value}"


class ReprocessRound(models.Model):
    """One evaluation round (tracking-rules §3.6): mailbox folders read again from the server from `since`,
    every message decided again under today's settings; one ScanRun (source `reprocess`) per folder."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_via = models.CharField(max_length=20, help_text="web, cli, personal options")
    since = models.DateTimeField()
    folders = models.JSONField(
        default=list, blank=True, help_text="The folders asked for; empty: all scanned."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"round {self.pk} since {self.since:%Y-%m-%d %H:%M}"


class ScanRun(models.Model):
    """One scan of one mailbox folder (or one ingest, or one folder of a reprocessing round), with its
    counts per outcome."""

    mailbox = models.ForeignKey("tracking.Mailbox", on_delete=models.CASCADE, related_name="scan_runs")
    folder = models.CharField(max_length=255)
    source = models.CharField(max_length=10, choices=ScanSource.choices, default=ScanSource.SCAN)
    status = models.CharField(max_length=10, choices=ScanStatus.choices, default=ScanStatus.QUEUED)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    job_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=20, choices=ErrorKind.choices, blank=True)
    note = models.CharField(max_length=200, blank=True, help_text="Why a scan was skipped, in words.")
    tracked = models.PositiveIntegerField(default=0)
    already_tracked = models.PositiveIntegerField(default=0)
    not_tracked = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    items_total = models.PositiveIntegerField(null=True, blank=True)
    round = models.ForeignKey(
        ReprocessRound, null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    # A round reads its folder afresh, with a sync state of its own, so a killed round resumes where it
    # was without touching the folder's scan progress.
    round_state = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["mailbox", "-queued_at"], name="scanrun_mailbox_recent")]

    def __str__(self) -> str:
        return f"{self.mailbox} {self.folder} {self.status}"


class DecisionQuerySet(models.QuerySet["Decision"]):
    def purgeable(self, cutoff: datetime, mailbox: Mailbox | None = None) -> DecisionQuerySet:
        """The decisions made before cutoff (of one mailbox, or of all): what a purge would delete."""
        decisions = self.filter(decided_at__lt=cutoff)
        return decisions if mailbox is None else decisions.filter(mailbox=mailbox)

    def visible_to(self, user: User | AnonymousUser) -> DecisionQuerySet:
        """Every decision for admins and auditors; those of a user's own mailbox for everyone else.

        By mailbox id rather than a join on the owner: scoped only by the join (mailbox.user_id),
        PostgreSQL walks the whole table backwards by id to find one user's rows; with
        mailbox_id IN (...) it uses the (mailbox, -id) index.
        """
        if reads_everything(user):
            return self
        if not user.is_authenticated:
            return self.none()
        own = list(Mailbox.objects.filter(user_id=user.pk).values_list("pk", flat=True))
        return self.filter(mailbox_id__in=own)


class Decision(models.Model):
    """Why one message was or was not tracked. Append-only: written once, never edited."""

    mailbox = models.ForeignKey("tracking.Mailbox", on_delete=models.CASCADE, related_name="decisions")
    folder = models.CharField(max_length=255)
    scan_run = models.ForeignKey(
        ScanRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    provider_item_id = models.CharField(max_length=500, blank=True)
    message_id = models.CharField(max_length=MESSAGE_ID_MAX)
    message_id_synthetic = models.BooleanField(default=False)
    subject = models.TextField(blank=True)
    sender = models.CharField(max_length=320, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    accepting_kind = models.CharField(max_length=10, choices=EntityKind.choices, blank=True)
    accepting_id = models.BigIntegerField(null=True, blank=True)
    accepting_name = models.CharField(max_length=300, blank=True)
    accepting_email = models.CharField(max_length=320, blank=True)
    correlation_method = models.CharField(max_length=20, choices=CorrelationMethod.choices, blank=True)
    correlated_message_id = models.CharField(max_length=MESSAGE_ID_MAX, blank=True)
    regarding = models.ForeignKey("tracking.CrmRecord", null=True, blank=True, on_delete=models.SET_NULL)
    tracked_email = models.ForeignKey(
        TrackedEmail, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    trace = models.JSONField(default=list)
    # What a later "Track" / "Set regarding" needs to track the message without fetching it again.
    message_snapshot = models.JSONField(default=dict, blank=True)
    manual = models.BooleanField(
        default=False, help_text="Made by Track / Set regarding (or ingest --regarding), not by a scan."
    )
    decided_at = models.DateTimeField()
    round = models.ForeignKey(
        ReprocessRound, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    # The decision this one replaces as the message's current one (tracking-rules §3.6); both stay.
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="superseded_by"
    )
    # Who made a manual decision (Track, set or clear regarding, untrack: tracking-rules §7a); null: the CLI.
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = DecisionQuerySet.as_manager()

    class Meta:
        constraints = [
            # One automatic decision per message and folder; a round adds one more per message (its key
            # makes a resumed round idempotent); every manual action is a decision of its own (§7a).
            models.UniqueConstraint(
                fields=["mailbox", "folder", "message_id"],
                condition=models.Q(round__isnull=True, manual=False),
                name="decision_unique_message",
            ),
            models.UniqueConstraint(
                fields=["mailbox", "folder", "message_id", "round"],
                condition=models.Q(round__isnull=False),
                name="decision_unique_message_round",
            ),
        ]
        # The decision log pages by id (keyset) under each filter, newest first.
        indexes = [
            models.Index(fields=["mailbox", "-id"], name="decision_mailbox"),
            models.Index(fields=["outcome", "-id"], name="decision_outcome"),
            models.Index(fields=["reason", "-id"], name="decision_reason"),
            models.Index(fields=["mailbox", "outcome", "-id"], name="decision_mailbox_outcome"),
            models.Index(fields=["correlation_method", "-id"], name="decision_correlation"),
            models.Index(fields=["received_at"], name="decision_received"),
            models.Index(fields=["decided_at"], name="decision_decided"),
            models.Index(fields=["message_id"], name="decision_message_id"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}: {self.outcome}/{self.reason}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Append-only: a manual Track is a second Decision, never an edit of the first.
        if not self._state.adding:
            raise ImmutableRecordError(f"decision {self.pk} is append-only and cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableRecordError(
            f"decision {self.pk} cannot be deleted on its own; manage.py purge_decisions removes old ones"
        )
