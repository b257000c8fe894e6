from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from tracking.choices import AutoCreate, TrackOption
from tracking.orgsettings import default_of


class OrgSettings(models.Model):
    """The one row of organisation settings (tracking-rules §11); names and ranges live in
    tracking.orgsettings."""

    auto_track_sent_folder_items = models.BooleanField(default=default_of("AutoTrackSentFolderItems"))
    force_filtering_method = models.SmallIntegerField(
        default=default_of("SSSForceFilteringMethodForUserMailboxes")
    )
    syncing_mailbox_only = models.BooleanField(
        default=default_of("UseFilteringMethodOfSyncingMailboxOnlyForCorrelation")
    )
    email_correlation_enabled = models.BooleanField(default=default_of("EmailCorrelationEnabled"))
    ignore_headers_for_correlation = models.BooleanField(
        default=default_of("IgnoreConversationIndexAndInReplyToForCorrelation")
    )
    do_not_correlate_forwards = models.BooleanField(
        default=default_of("DoNotCorrelateForwardedEmailsAsReplies")
    )
    use_tracking_tokens = models.BooleanField(default=default_of("UseTrackingTokens"))
    tracking_prefix = models.CharField(max_length=20, default=default_of("TrackingPrefix"))
    tracking_token_id_base = models.PositiveIntegerField(default=default_of("TrackingTokenIdBase"))
    tracking_token_id_digits = models.PositiveSmallIntegerField(default=default_of("TrackingTokenIdDigits"))
    tracking_token_counter_digits = models.PositiveSmallIntegerField(
        default=default_of("TrackingTokenCounterDigits")
    )
    enable_smart_matching = models.BooleanField(default=default_of("EnableSmartMatching"))
    hash_filter_keywords = models.CharField(max_length=500, default=default_of("HashFilterKeywords"))
    hash_max_count = models.PositiveSmallIntegerField(default=default_of("HashMaxCount"))
    hash_delta_subject_count = models.PositiveIntegerField(default=default_of("HashDeltaSubjectCount"))
    hash_min_address_count = models.PositiveIntegerField(default=default_of("HashMinAddressCount"))
    two_activities_for_internal = models.BooleanField(
        default=default_of("TrackEmailsBetweenUsersAsTwoActivities")
    )
    auto_create_on_promote = models.BooleanField(default=default_of("AutoCreateContactOnPromote"))
    unresolve_sender_if_multiple = models.BooleanField(
        default=default_of("UnresolveSenderInCaseOfMultipleMatch")
    )
    unresolve_recipient_if_multiple = models.BooleanField(
        default=default_of("UnresolveEmailAddressIfMultipleMatch")
    )
    resolve_inactive = models.BooleanField(default=default_of("ResolveForInactiveEntities"))
    hide_track_all_option = models.BooleanField(default=default_of("HideTrackAllOption"))
    hide_auto_track_options = models.BooleanField(default=default_of("HideEmailAutoTrackOptions"))
    require_approval_user = models.BooleanField(default=default_of("RequireApprovalForUserEmail"))
    require_approval_queue = models.BooleanField(default=default_of("RequireApprovalForQueueEmail"))
    folder_tracking_enabled = models.BooleanField(default=default_of("IsFolderBasedTrackingEnabled"))
    max_folder_mappings = models.PositiveSmallIntegerField(
        default=default_of("MaxFolderBasedTrackingMappings")
    )
    poll_interval_minutes = models.PositiveIntegerField(default=default_of("MailboxPollIntervalMinutes"))
    push_safety_net_poll_minutes = models.PositiveIntegerField(default=default_of("PushSafetyNetPollMinutes"))
    user_reprocess_max_days = models.PositiveIntegerField(default=default_of("UserReprocessMaxDays"))
    transient_retry_limit = models.PositiveIntegerField(default=default_of("TransientFailureRetryLimit"))
    transient_retry_minutes = models.PositiveIntegerField(default=default_of("TransientFailureRetryMinutes"))
    max_subject_length = models.PositiveIntegerField(default=default_of("MaximumSubjectLengthOnMailServer"))
    create_queue_item_for_mailbox = models.BooleanField(
        default=default_of("CreateQueueItemForSynchronizingMailbox")
    )
    max_tracked_attachment_mb = models.PositiveIntegerField(default=default_of("MaxTrackedAttachmentMB"))

    class Meta:
        verbose_name = "organisation settings"
        verbose_name_plural = "organisation settings"
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="orgsettings_single_row")]

    def __str__(self) -> str:
        return "Organisation settings"

    @classmethod
    def load(cls) -> OrgSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class PersonalOptionsManager(models.Manager["PersonalOptions"]):
    def of(self, user: User) -> PersonalOptions:
        """A user's options, created with the defaults on first use."""
        return self.get_or_create(user=user)[0]


class PersonalOptions(models.Model):
    """A user's Set Personal Options (tracking-rules §2); created with defaults on first use."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_options"
    )
    track = models.PositiveSmallIntegerField(choices=TrackOption.choices, default=TrackOption.RESPONSES)
    auto_create = models.CharField(max_length=10, choices=AutoCreate.choices, default=AutoCreate.OFF)
    allow_send_on_behalf = models.BooleanField(default=False)
    time_zone = models.CharField(max_length=64, default="UTC")
    rows_per_page = models.PositiveSmallIntegerField(
        default=50, validators=[MinValueValidator(10), MaxValueValidator(250)]
    )
    language = models.CharField(max_length=10, default="en")
    alert_mail = models.BooleanField(default=True, help_text="Mail me the error alerts of my mailboxes.")
    # Per-user counter of the tracking token (tracking-rules §5 step 2); wraps at TrackingTokenCounterDigits.
    next_tracking_number = models.PositiveIntegerField(default=0)

    objects = PersonalOptionsManager()

    class Meta:
        verbose_name_plural = "personal options"

    def __str__(self) -> str:
        return f"Personal options of {self.user}"
