"""The organisation settings of tracking-rules §11: names, types, ranges, defaults and parsing.

The `OrgSettings` model stores them as one typed row; this registry is what the `orgsettings`
command, the settings page and validation read, so each name is spelled in exactly one place.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from tracking.choices import FALSE_WORDS, TRUE_WORDS

SettingType = Literal["bool", "int", "text", "regex"]
SettingValue = bool | int | str


class SettingError(ValueError):
    """A setting name or value that is refused; the message names the setting and what it accepts."""


def has_control_characters(value: str) -> bool:
    """Control, format (bidi overrides, zero-width) or surrogate characters: never wanted in a setting."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value)


@dataclass(frozen=True)
class SettingSpec:
    name: str
    field: str
    type: SettingType
    default: SettingValue
    description: str | Promise
    minimum: int | None = None
    maximum: int | None = None
    # text only: the characters allowed (a regex character class) and how accepts() names them
    charset: str | None = None
    charset_label: str = ""

    def accepts(self) -> str:
        if self.type == "bool":
            return "true/false, 1/0 or yes/no"
        if self.type == "int":
            if self.maximum is None:
                return f"an integer ≥ {self.minimum}"
            return f"an integer from {self.minimum} to {self.maximum}"
        if self.type == "text":
            return f"{self.charset_label or 'text'} of {self.minimum} to {self.maximum} characters"
        return "a valid regular expression"

    def parse(self, raw: str) -> SettingValue:
        """Turn command-line or form text into a typed value, or raise SettingError."""
        refused = SettingError(f"{self.name}: {raw!r} is not valid; it accepts {self.accepts()}")
        if self.type in ("text", "regex") and has_control_characters(raw):
            raise SettingError(
                f"{self.name}: {raw!r} holds a control character (NUL, a line break, a bidi override …); "
                "none is allowed"
            )
        if self.type == "bool":
            word = raw.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise refused
        if self.type == "int":
            try:
                number = int(raw.strip())
            except ValueError:
                raise refused from None
            if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum
            ):
                raise refused
            return number
        if self.type == "text":
            assert self.minimum is not None and self.maximum is not None
            if not (self.minimum <= len(raw) <= self.maximum) or raw != raw.strip():
                raise refused
            if self.charset is not None and not re.fullmatch(f"[{self.charset}]+", raw):
                raise refused
            return raw
        try:
            re.compile(raw)
        except re.error as exc:
            raise SettingError(f"{self.name}: {raw!r} is not a valid regular expression ({exc})") from None
        return raw

    def format(self, value: SettingValue) -> str:
        if self.type == "bool":
            return "true" if value else "false"
        return str(value)


def _bool(name: str, field: str, default: bool, description: str | Promise) -> SettingSpec:
    return SettingSpec(name, field, "bool", default, description)


DB_INT_MAX = 2_147_483_647  # the columns are 32-bit integers; "≥ n" settings stop there


def _int(
    name: str, field: str, default: int, lo: int, hi: int | None, description: str | Promise
) -> SettingSpec:
    return SettingSpec(name, field, "int", default, description, lo, DB_INT_MAX if hi is None else hi)


DEFAULT_HASH_FILTER_KEYWORDS = r"^[\s]*([\w]+\s?:[\s]*)+"

ORG_SETTINGS: tuple[SettingSpec, ...] = (
    _bool(
        "AutoTrackSentFolderItems",
        "auto_track_sent_folder_items",
        False,
        _("Scan Sent Items of Exchange mailboxes and track them with each owner's Track option."),
    ),
    _int(
        "SSSForceFilteringMethodForUserMailboxes",
        "force_filtering_method",
        -1,
        -1,
        4,
        _("Override every user mailbox's Track option (0–4); -1 leaves each user's own option."),
    ),
    _bool(
        "UseFilteringMethodOfSyncingMailboxOnlyForCorrelation",
        "syncing_mailbox_only",
        False,
        _("Only the syncing mailbox's owner may accept a message; other recipients are ignored."),
    ),
    _bool(
        "EmailCorrelationEnabled",
        "email_correlation_enabled",
        True,
        _("Correlate by In-Reply-To and conversation index."),
    ),
    _bool(
        "IgnoreConversationIndexAndInReplyToForCorrelation",
        "ignore_headers_for_correlation",
        False,
        _("Skip In-Reply-To and conversation-index correlation (tokens and smart matching still apply)."),
    ),
    _bool(
        "DoNotCorrelateForwardedEmailsAsReplies",
        "do_not_correlate_forwards",
        False,
        _("A forwarded message (FW:/Fwd: subject) does not correlate by In-Reply-To."),
    ),
    _bool(
        "UseTrackingTokens", "use_tracking_tokens", True, _("Correlate by the tracking token in the subject.")
    ),
    SettingSpec(
        "TrackingPrefix",
        "tracking_prefix",
        "text",
        "CRM",
        _("Prefix of tracking tokens; tokens with earlier prefixes stay recognised."),
        1,
        20,
        charset="A-Za-z0-9",
        charset_label="letters and digits (A–Z, 0–9)",
    ),
    _int(
        "TrackingTokenIdBase",
        "tracking_token_id_base",
        0,
        0,
        None,
        _("Number added to each user's index in tracking tokens."),
    ),
    _int(
        "TrackingTokenIdDigits",
        "tracking_token_id_digits",
        3,
        1,
        9,
        _("Digits for the user number in tracking tokens."),
    ),
    _int(
        "TrackingTokenCounterDigits",
        "tracking_token_counter_digits",
        3,
        1,
        9,
        _("Digits for the per-user counter in tracking tokens (wraps to 0)."),
    ),
    _bool(
        "EnableSmartMatching",
        "enable_smart_matching",
        False,
        _("Correlate by subject and address hashes (may give false positives)."),
    ),
    SettingSpec(
        "HashFilterKeywords",
        "hash_filter_keywords",
        "regex",
        DEFAULT_HASH_FILTER_KEYWORDS,
        _("Regular expression removed from subjects before hashing (strips RE:, FW:)."),
    ),
    _int(
        "HashMaxCount",
        "hash_max_count",
        20,
        1,
        100,
        _("Maximum number of subject words and addresses hashed."),
    ),
    _int(
        "HashDeltaSubjectCount",
        "hash_delta_subject_count",
        0,
        0,
        None,
        _("How many subject hashes may differ for a smart match."),
    ),
    _int(
        "HashMinAddressCount",
        "hash_min_address_count",
        2,
        1,
        None,
        _("How many address hashes must be shared for a smart match."),
    ),
    _bool(
        "TrackEmailsBetweenUsersAsTwoActivities",
        "two_activities_for_internal",
        True,
        _("Internal mail may be tracked once outgoing (sender) and once incoming (recipient)."),
    ),
    _bool(
        "AutoCreateContactOnPromote",
        "auto_create_on_promote",
        True,
        _("Create a contact or lead for an unresolved sender when the accepting user asks for it."),
    ),
    _bool(
        "UnresolveSenderInCaseOfMultipleMatch",
        "unresolve_sender_if_multiple",
        False,
        _("Leave the sender unresolved when it matches two or more records."),
    ),
    _bool(
        "UnresolveEmailAddressIfMultipleMatch",
        "unresolve_recipient_if_multiple",
        False,
        _("Leave a To/Cc/Bcc address unresolved when it matches two or more records."),
    ),
    _bool(
        "ResolveForInactiveEntities",
        "resolve_inactive",
        False,
        _(
            "Resolve an address that matches several inactive records and no active one "
            "(never to disabled users)."
        ),
    ),
    _bool(
        "HideTrackAllOption",
        "hide_track_all_option",
        False,
        _("Hide 'All email messages' in Personal Options (stored values are kept)."),
    ),
    _bool(
        "HideEmailAutoTrackOptions",
        "hide_auto_track_options",
        False,
        _("Hide the automatic Track options 0, 2 and 3 in Personal Options (stored values are kept)."),
    ),
    _bool(
        "RequireApprovalForUserEmail",
        "require_approval_user",
        True,
        _("User mailboxes are scanned only once their email is approved."),
    ),
    _bool(
        "RequireApprovalForQueueEmail",
        "require_approval_queue",
        True,
        _("Queue mailboxes are scanned only once their email is approved."),
    ),
    _bool(
        "IsFolderBasedTrackingEnabled",
        "folder_tracking_enabled",
        True,
        _("Users may map Inbox sub-folders to records (Exchange mailboxes only)."),
    ),
    _int(
        "MaxFolderBasedTrackingMappings",
        "max_folder_mappings",
        25,
        1,
        100,
        _("Most folder tracking rules a user may have."),
    ),
    _int(
        "MailboxPollIntervalMinutes",
        "poll_interval_minutes",
        5,
        1,
        1440,
        _("Minutes between the end of one scan cycle and the next."),
    ),
    _int(
        "PushSafetyNetPollMinutes",
        "push_safety_net_poll_minutes",
        60,
        1,
        1440,
        _(
            "Minutes between scan cycles of a mailbox whose new mail arrives by push (Microsoft Graph "
            "change notifications); the poll only catches what a lost notification missed."
        ),
    ),
    _int(
        "UserReprocessMaxDays",
        "user_reprocess_max_days",
        30,
        0,
        3650,
        _("How far back (days) a user may reprocess their own mailbox after changing their Track option."),
    ),
    _int(
        "TransientFailureRetryLimit",
        "transient_retry_limit",
        10,
        0,
        100,
        _("Transient failures retried before a mailbox is disabled."),
    ),
    _int(
        "TransientFailureRetryMinutes",
        "transient_retry_minutes",
        5,
        1,
        1440,
        _("Minutes between retries after a transient failure (or the server's back-off, if longer)."),
    ),
    _int(
        "MaximumSubjectLengthOnMailServer",
        "max_subject_length",
        255,
        255,
        400,
        _("Longest subject, tracking token included, written to the mail server."),
    ),
    _bool(
        "CreateQueueItemForSynchronizingMailbox",
        "create_queue_item_for_mailbox",
        True,
        _("Put every email tracked from a queue's own mailbox on that queue's work list (a queue item)."),
    ),
    _int(
        "MaxTrackedAttachmentMB",
        "max_tracked_attachment_mb",
        5,
        0,
        100,
        _("Largest attachment (MB) kept with a tracked email; 0 keeps only names, types and sizes."),
    ),
)

SETTINGS_BY_NAME: dict[str, SettingSpec] = {spec.name.lower(): spec for spec in ORG_SETTINGS}


def spec_for(name: str) -> SettingSpec:
    """Find a setting by name (case-insensitive, as the OrgDBOrgSettings tool is)."""
    try:
        return SETTINGS_BY_NAME[name.strip().lower()]
    except KeyError:
        raise SettingError(
            f"unknown setting {name!r}; run 'orgsettings list' for the {len(ORG_SETTINGS)} names"
        ) from None


def default_of(name: str) -> SettingValue:
    return spec_for(name).default
