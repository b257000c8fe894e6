"""The System Settings email tab: the tracking-rules §11 settings in sections, validated with their registry
specs.

Not a Django Form: the fields come from tracking.orgsettings.ORG_SETTINGS, and every value goes through
the same SettingSpec.parse the `orgsettings` command uses, so the page and the CLI accept the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.http import QueryDict
from django.utils.functional import Promise
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from tracking.choices import TRUE_WORDS, TrackOption
from tracking.models import OrgSettings
from tracking.orgsettings import (
    DB_INT_MAX,
    ORG_SETTINGS,
    SettingError,
    SettingSpec,
    SettingValue,
    has_control_characters,
    spec_for,
)

# Readable labels on the settings page (issue 18); the OrgDBOrgSettings name stays beside each, as the
# `orgsettings` command and Microsoft's documentation spell it.
LABELS: dict[str, Promise] = {
    "AutoTrackSentFolderItems": _("Track Sent Items"),
    "SSSForceFilteringMethodForUserMailboxes": _("Track option for every user mailbox"),
    "UseFilteringMethodOfSyncingMailboxOnlyForCorrelation": _("Only the syncing mailbox's owner accepts"),
    "EmailCorrelationEnabled": _("Correlate replies by their headers"),
    "IgnoreConversationIndexAndInReplyToForCorrelation": _("Ignore In-Reply-To and conversation index"),
    "DoNotCorrelateForwardedEmailsAsReplies": _("Do not correlate forwards as replies"),
    "TrackingPrefix": _("Tracking token prefix"),
    "TrackingTokenIdBase": _("Tracking token user number base"),
    "TrackingTokenIdDigits": _("Tracking token user number digits"),
    "TrackingTokenCounterDigits": _("Tracking token counter digits"),
    "UseTrackingTokens": _("Correlate by tracking tokens"),
    "EnableSmartMatching": _("Smart matching"),
    "HashFilterKeywords": _("Subject prefixes removed before hashing"),
    "HashMaxCount": _("Most words and addresses hashed"),
    "HashDeltaSubjectCount": _("Subject hashes that may differ"),
    "HashMinAddressCount": _("Address hashes that must match"),
    "TrackEmailsBetweenUsersAsTwoActivities": _("Internal mail as two activities"),
    "AutoCreateContactOnPromote": _("Create a contact or lead for unknown senders"),
    "UnresolveSenderInCaseOfMultipleMatch": _("Leave an ambiguous sender unresolved"),
    "UnresolveEmailAddressIfMultipleMatch": _("Leave an ambiguous recipient unresolved"),
    "ResolveForInactiveEntities": _("Resolve to inactive records"),
    "HideTrackAllOption": _("Hide the option to track all messages"),
    "HideEmailAutoTrackOptions": _("Hide the automatic tracking options"),
    "RequireApprovalForUserEmail": _("User mailboxes need approval"),
    "RequireApprovalForQueueEmail": _("Queue mailboxes need approval"),
    "IsFolderBasedTrackingEnabled": _("Folder-level tracking"),
    "MaxFolderBasedTrackingMappings": _("Most folder rules per user"),
    "MailboxPollIntervalMinutes": _("Scan every (minutes)"),
    "PushSafetyNetPollMinutes": _("Scan every (minutes) when new mail arrives by push"),
    "UserReprocessMaxDays": _("Users may reprocess their own mail back (days)"),
    "CreateQueueItemForSynchronizingMailbox": _("Queue items for mail tracked from a queue's mailbox"),
    "MaxTrackedAttachmentMB": _("Largest attachment kept with a tracked email (MB)"),
    "TransientFailureRetryLimit": _("Retries after a temporary failure"),
    "TransientFailureRetryMinutes": _("Minutes between retries"),
    "MaximumSubjectLengthOnMailServer": _("Longest subject on the mail server"),
}

SECTIONS: tuple[tuple[Promise, tuple[str, ...]], ...] = (
    (
        _("Sent Items & filtering"),
        (
            "AutoTrackSentFolderItems",
            "SSSForceFilteringMethodForUserMailboxes",
            "UseFilteringMethodOfSyncingMailboxOnlyForCorrelation",
        ),
    ),
    (
        _("Correlation"),
        (
            "EmailCorrelationEnabled",
            "IgnoreConversationIndexAndInReplyToForCorrelation",
            "DoNotCorrelateForwardedEmailsAsReplies",
        ),
    ),
    (
        _("Tracking tokens"),
        (
            "UseTrackingTokens",
            "TrackingPrefix",
            "TrackingTokenIdBase",
            "TrackingTokenIdDigits",
            "TrackingTokenCounterDigits",
        ),
    ),
    (
        _("Smart matching"),
        (
            "EnableSmartMatching",
            "HashFilterKeywords",
            "HashMaxCount",
            "HashDeltaSubjectCount",
            "HashMinAddressCount",
        ),
    ),
    (
        _("Party resolution"),
        (
            "TrackEmailsBetweenUsersAsTwoActivities",
            "AutoCreateContactOnPromote",
            "UnresolveSenderInCaseOfMultipleMatch",
            "UnresolveEmailAddressIfMultipleMatch",
            "ResolveForInactiveEntities",
        ),
    ),
    (_("Personal Options display"), ("HideTrackAllOption", "HideEmailAutoTrackOptions")),
    (
        _("Approval & folder tracking"),
        (
            "RequireApprovalForUserEmail",
            "RequireApprovalForQueueEmail",
            "IsFolderBasedTrackingEnabled",
            "MaxFolderBasedTrackingMappings",
        ),
    ),
    (
        _("Scheduling & retries"),
        (
            "MailboxPollIntervalMinutes",
            "PushSafetyNetPollMinutes",
            "TransientFailureRetryLimit",
            "TransientFailureRetryMinutes",
            "UserReprocessMaxDays",
        ),
    ),
    (_("Queues"), ("CreateQueueItemForSynchronizingMailbox",)),
    (_("Tracked email content"), ("MaxTrackedAttachmentMB",)),
    (_("Mail server"), ("MaximumSubjectLengthOnMailServer",)),
)

TYPE_LABELS: dict[str, Promise] = {
    "bool": pgettext_lazy("setting type", "yes/no"),
    "int": pgettext_lazy("setting type", "number"),
    "text": pgettext_lazy("setting type", "text"),
    "regex": pgettext_lazy("setting type", "regular expression"),
}

FORCE_SETTING = "SSSForceFilteringMethodForUserMailboxes"


def accepts(spec: SettingSpec) -> str:
    """What a setting accepts, in the reader's language (SettingSpec.accepts is the CLI's English)."""
    if spec.type == "bool":
        return gettext("true or false (also yes/no or 1/0)")
    if spec.type == "int":
        if spec.maximum is None or spec.maximum == DB_INT_MAX:
            return gettext("a whole number of at least %(min)d") % {"min": spec.minimum}
        return gettext("a whole number from %(min)d to %(max)d") % {"min": spec.minimum, "max": spec.maximum}
    if spec.type == "text" and spec.charset is not None:
        return gettext("letters and digits (A–Z, 0–9), %(min)d to %(max)d of them") % {
            "min": spec.minimum,
            "max": spec.maximum,
        }
    if spec.type == "text":
        return gettext("text of %(min)d to %(max)d characters, without spaces at either end") % {
            "min": spec.minimum,
            "max": spec.maximum,
        }
    return gettext("a valid regular expression")


def refusal(spec: SettingSpec, raw: str) -> str:
    """The message shown next to a refused field: what was typed and what the setting accepts."""
    if has_control_characters(raw):
        return gettext(
            "%(name)s may not hold a control character (NUL, a line break, a bidi override …)."
        ) % {"name": spec.name}
    if spec.type == "regex":
        try:
            re.compile(raw)
        except re.error as exc:
            return gettext("“%(value)s” is not a valid regular expression (%(detail)s).") % {
                "value": raw,
                "detail": exc,
            }
    return gettext("“%(value)s” is not valid; %(name)s accepts %(accepts)s.") % {
        "value": raw,
        "name": spec.name,
        "accepts": accepts(spec),
    }


def display(spec: SettingSpec, value: SettingValue) -> str:
    if spec.type == "bool":
        return gettext("on") if value else gettext("off")
    if spec.name == FORCE_SETTING:
        return force_label(int(value))
    return str(value)


def force_label(value: int) -> str:
    if value < 0:
        return gettext("-1 — off (each user's own Track option)")
    return f"{value} — {TrackOption(value).label}"


@dataclass
class SettingRow:
    spec: SettingSpec
    current: SettingValue
    raw: str  # what the input shows: the current value, or what was posted when the form is re-shown
    error: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return str(LABELS.get(self.spec.name, self.spec.name))

    @property
    def description(self) -> str:
        return str(self.spec.description)

    @property
    def type_label(self) -> str:
        return str(TYPE_LABELS[self.spec.type])

    @property
    def accepts(self) -> str:
        return accepts(self.spec)

    @property
    def default_raw(self) -> str:
        return self.spec.format(self.spec.default)

    @property
    def default_display(self) -> str:
        return display(self.spec, self.spec.default)

    @property
    def current_display(self) -> str:
        return display(self.spec, self.current)

    @property
    def is_default(self) -> bool:
        return self.current == self.spec.default

    @property
    def checked(self) -> bool:
        return self.raw.strip().lower() in TRUE_WORDS | {"on"}  # "on": what a ticked checkbox sends

    @property
    def input_max(self) -> int | None:
        return None if self.spec.maximum == DB_INT_MAX else self.spec.maximum

    @property
    def choices(self) -> list[tuple[str, str]]:
        """A select instead of a number box: only the Track-option override has named values."""
        if self.spec.name != FORCE_SETTING:
            return []
        return [(str(v), force_label(v)) for v in range(-1, 5)]


@dataclass
class Section:
    title: str
    rows: list[SettingRow]


def current_values(org: OrgSettings) -> dict[str, SettingValue]:
    return {spec.name: getattr(org, spec.field) for spec in ORG_SETTINGS}


def build_sections(
    current: Mapping[str, SettingValue],
    posted: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> list[Section]:
    posted, errors = posted or {}, errors or {}
    sections = []
    for title, names in SECTIONS:
        rows = []
        for name in names:
            spec = spec_for(name)
            raw = posted[name] if name in posted else spec.format(current[name])
            rows.append(SettingRow(spec, current[name], raw, errors.get(name, "")))
        sections.append(Section(str(title), rows))
    return sections


def posted_values(data: QueryDict) -> dict[str, str]:
    """The raw text of every setting the form sent.

    The form lists each of its settings in a hidden `setting` field, because an unticked checkbox
    sends nothing: a listed bool that is absent means off. A setting neither listed nor sent is left alone.
    """
    listed = set(data.getlist("setting"))
    raw: dict[str, str] = {}
    for spec in ORG_SETTINGS:
        if spec.name in data:
            raw[spec.name] = str(data.get(spec.name, ""))
        elif spec.name in listed:
            raw[spec.name] = "false" if spec.type == "bool" else ""
    return raw


def validate(raw: Mapping[str, str]) -> tuple[dict[str, SettingValue], dict[str, str]]:
    """Parse every posted value; returns (values, errors by setting name). Nothing is saved here."""
    values: dict[str, SettingValue] = {}
    errors: dict[str, str] = {}
    for name, text in raw.items():
        spec = spec_for(name)
        try:
            if "\x00" in text:  # PostgreSQL cannot store it
                raise SettingError(spec.name)
            values[name] = spec.parse(text)
        except SettingError:
            errors[name] = refusal(spec, text)
    return values, errors


def changed(values: Mapping[str, SettingValue], current: Mapping[str, SettingValue]) -> Sequence[str]:
    return [name for name, value in values.items() if current[name] != value]
