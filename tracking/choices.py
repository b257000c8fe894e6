"""Every closed vocabulary of the tracking rules (docs/tracking-rules.md), in one place."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class TrackOption(models.IntegerChoices):
    """Personal Options → "Select the email messages to track" (tracking-rules §4)."""

    ALL = 0, _("All email messages")
    RESPONSES = 1, _("Email messages in response to SyncAdmin email")
    CRM_PARTIES = 2, _("Email messages from SyncAdmin Leads, Contacts, and Accounts")
    EMAIL_ENABLED = 3, _("Email messages from SyncAdmin records that are email enabled")
    NONE = 4, _("No email messages")


# Words the CLI accepts for --track besides the numbers.
TRACK_OPTION_WORDS: dict[str, TrackOption] = {
    "all": TrackOption.ALL,
    "responses": TrackOption.RESPONSES,
    "crm": TrackOption.CRM_PARTIES,
    "email-enabled": TrackOption.EMAIL_ENABLED,
    "none": TrackOption.NONE,
}


# The words a yes/no value may be typed as (a setting, a CSV cell); forms and files add their own.
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


class AutoCreate(models.TextChoices):
    OFF = "off", _("Do not create records")
    CONTACT = "contact", _("Contacts")
    LEAD = "lead", _("Leads")


class Folder(models.TextChoices):
    INBOX = "inbox", _("Inbox")
    SENT_ITEMS = "sentitems", _("Sent Items")


class Direction(models.TextChoices):
    INCOMING = "incoming", _("Incoming")
    OUTGOING = "outgoing", _("Outgoing")


class PartyRole(models.TextChoices):
    """Where an address stood on a tracked email (tracking-rules §6)."""

    FROM = "from", _("From")
    TO = "to", _("To")
    CC = "cc", _("Cc")
    BCC = "bcc", _("Bcc")


class Outcome(models.TextChoices):
    TRACKED = "tracked", _("Tracked")
    ALREADY_TRACKED = "already_tracked", _("Already tracked")
    NOT_TRACKED = "not_tracked", _("Not tracked")
    FAILED = "failed", _("Failed")


class Reason(models.TextChoices):
    ACCEPTED_ALL = "accepted_all", _("Accepted: all email messages")
    ACCEPTED_CORRELATED = "accepted_correlated", _("Accepted: in response to a tracked email")
    ACCEPTED_CRM_PARTY = "accepted_crm_party", _("Accepted: lead, contact or account party")
    ACCEPTED_EMAIL_ENABLED_PARTY = "accepted_email_enabled_party", _("Accepted: email-enabled record party")
    FOLDER_RULE = "folder_rule", _("Folder tracking rule")
    MANUAL = "manual", _("Tracked manually")
    DUPLICATE_MESSAGE_ID = "duplicate_message_id", _("Message-ID already tracked")
    OPTION_NONE = "option_none", _("Track option is 'No email messages'")
    NO_CORRELATION = "no_correlation", _("Not in response to a tracked email")
    NO_CRM_PARTY = "no_crm_party", _("No lead, contact or account party")
    NO_EMAIL_ENABLED_PARTY = "no_email_enabled_party", _("No email-enabled record party")
    SENT_ITEMS_DISABLED = "sent_items_disabled", _("Sent Items tracking is off (AutoTrackSentFolderItems)")
    SENT_ITEMS_UNSUPPORTED_SERVER = "sent_items_unsupported_server", _("Sent Items need an Exchange mailbox")
    # The code predates the start date (tracking-rules §3.5) and stays: stored decisions and exports use it.
    BEFORE_WATERMARK = "before_watermark", _("Received before the start date")
    INTERNAL_DUPLICATE = "internal_duplicate", _("Internal email already tracked in the other direction")
    EXCLUDED_ADDRESS = "excluded_address", _("Address on the exclusion list")
    UNTRACKED = "untracked", _("Untracked by a person")
    UNPARSEABLE = "unparseable", _("Message could not be parsed")
    FETCH_ERROR = "fetch_error", _("Message could not be fetched")


REASONS_BY_OUTCOME: dict[Outcome, frozenset[Reason]] = {
    Outcome.TRACKED: frozenset(
        {
            Reason.ACCEPTED_ALL,
            Reason.ACCEPTED_CORRELATED,
            Reason.ACCEPTED_CRM_PARTY,
            Reason.ACCEPTED_EMAIL_ENABLED_PARTY,
            Reason.FOLDER_RULE,
            Reason.MANUAL,
        }
    ),
    Outcome.ALREADY_TRACKED: frozenset({Reason.DUPLICATE_MESSAGE_ID}),
    Outcome.NOT_TRACKED: frozenset(
        {
            Reason.OPTION_NONE,
            Reason.NO_CORRELATION,
            Reason.NO_CRM_PARTY,
            Reason.NO_EMAIL_ENABLED_PARTY,
            Reason.SENT_ITEMS_DISABLED,
            Reason.SENT_ITEMS_UNSUPPORTED_SERVER,
            Reason.BEFORE_WATERMARK,
            Reason.INTERNAL_DUPLICATE,
            Reason.EXCLUDED_ADDRESS,
            Reason.UNTRACKED,
        }
    ),
    Outcome.FAILED: frozenset({Reason.UNPARSEABLE, Reason.FETCH_ERROR}),
}


class CorrelationMethod(models.TextChoices):
    IN_REPLY_TO = "in_reply_to", _("In-Reply-To")
    TRACKING_TOKEN = "tracking_token", _("Tracking token")
    CONVERSATION_INDEX = "conversation_index", _("Conversation index")
    SMART_MATCHING = "smart_matching", _("Smart matching")


class ProfileKind(models.TextChoices):
    EXCHANGE_GRAPH = "exchange_graph", _("Exchange Online (Microsoft Graph)")
    EXCHANGE_EWS = "exchange_ews", _("Exchange Server (EWS)")
    IMAP = "imap", _("IMAP")
    LOCAL = "local", _("Local folder (.eml / mbox / Maildir)")


EXCHANGE_KINDS = frozenset({ProfileKind.EXCHANGE_GRAPH, ProfileKind.EXCHANGE_EWS})


class AuthMethod(models.TextChoices):
    NONE = "none", _("None")
    OAUTH2_CLIENT_CREDENTIALS = "oauth2", _("OAuth 2.0 client credentials")
    NTLM = "ntlm", _("NTLM")
    BASIC = "basic", _("Basic")
    PASSWORD = "password", _("User name and password")


class IncomingMethod(models.TextChoices):
    SERVER_SIDE_SYNC = "server_side_sync", _("Server-side synchronization")
    NONE = "none", _("None")


class Approval(models.TextChoices):
    EMPTY = "empty", _("Empty")
    PENDING = "pending", _("Pending approval")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class MailboxStatus(models.TextChoices):
    NOT_RUN = "not_run", _("Not run")
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")


class SubscriptionStatus(models.TextChoices):
    """A Microsoft Graph change-notification subscription of one mailbox folder (tracking-rules §9)."""

    ACTIVE = "active", _("Active")
    FAILED = "failed", _("Failed")  # creating or renewing it failed; retried by the scheduler
    REMOVED = "removed", _("Removed")  # Graph removed it (subscriptionRemoved) or it expired; recreated


class ScanStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")
    CANCELLED = "cancelled", _("Cancelled")


class ScanSource(models.TextChoices):
    SCAN = "scan", _("Mailbox scan")
    INGEST = "ingest", _("File ingest")
    MANUAL = "manual", _("Manual tracking")
    REPROCESS = "reprocess", _("Reprocessing round")


class RecordKind(models.TextChoices):
    """Kinds of CRM directory rows; users and queues are email-enabled too but live elsewhere."""

    ACCOUNT = "account", _("Account")
    CONTACT = "contact", _("Contact")
    LEAD = "lead", _("Lead")
    OTHER = "other", _("Other email-enabled record")


class EntityKind(models.TextChoices):
    """Every kind of email-enabled thing a party can resolve to (tracking-rules §6)."""

    USER = "user", _("User")
    QUEUE = "queue", _("Queue")
    CONTACT = "contact", _("Contact")
    ACCOUNT = "account", _("Account")
    LEAD = "lead", _("Lead")
    OTHER = "other", _("Other email-enabled record")


class AlertLevel(models.TextChoices):
    ERROR = "error", _("Error")
    WARNING = "warning", _("Warning")
    INFORMATION = "information", _("Information")


class AuditAction(models.TextChoices):
    """What an audit row records; the values are stored, so they never change."""

    ORGSETTING_CHANGED = "orgsetting_changed", _("Organisation setting changed")
    PERSONAL_OPTIONS_CHANGED = "personal_options_changed", _("Personal options changed")
    PROFILE_ADDED = "profile_added", _("Server profile added")
    PROFILE_CHANGED = "profile_changed", _("Server profile changed")
    MAILBOX_ADDED = "mailbox_added", _("Mailbox added")
    MAILBOX_APPROVED = "mailbox_approved", _("Mailbox email approved")
    MAILBOX_REJECTED = "mailbox_rejected", _("Mailbox email rejected")
    MAILBOX_TESTED = "mailbox_tested", _("Mailbox tested")
    MAILBOX_DISABLED = "mailbox_disabled", _("Mailbox disabled")
    # The value predates the start date's name (tracking-rules §3.5); stored audit rows use it.
    MAILBOX_START_DATE_CHANGED = "mailbox_watermark_changed", _("Mailbox start date changed")
    MAILBOX_SYNC_STATE_RESET = "mailbox_sync_state_reset", _("Mailbox sync state reset")
    REPROCESS_STARTED = "reprocess_started", _("Reprocessing round started")
    REPROCESS_CANCELLED = "reprocess_cancelled", _("Reprocessing round cancelled")
    MAILBOX_TEST_QUEUED = "mailbox_test_queued", _("Test & Enable queued")
    MAILBOX_SCAN_QUEUED = "mailbox_scan_queued", _("Scan queued")
    EXCLUSION_ADDED = "exclusion_added", _("Exclusion added")
    EXCLUSION_DELETED = "exclusion_deleted", _("Exclusion deleted")
    FOLDER_RULE_ADDED = "folder_rule_added", _("Folder tracking rule added")
    FOLDER_RULE_DELETED = "folder_rule_deleted", _("Folder tracking rule deleted")
    FOLDER_RULE_REGARDING = "folder_rule_regarding", _("Regarding set by a folder tracking rule")
    FOLDER_RULE_FOLDER_GONE = "folder_rule_folder_gone", _("Folder of a tracking rule deleted")
    MANUAL_TRACKING = "manual_tracking", _("Tracked manually")
    MANUAL_REGARDING = "manual_regarding", _("Regarding set by hand")
    MANUAL_UNTRACKED = "manual_untracked", _("Untracked by hand")
    DECISIONS_PURGED = "decisions_purged", _("Decisions purged")
    CONTENT_PURGED = "content_purged", _("Tracked email content purged")
    RECORDS_IMPORTED = "records_imported", _("CRM records imported")
    USER_INVITED = "user_invited", _("User invited")
    USER_ROLE_CHANGED = "user_role_changed", _("User role changed")
    USER_DEACTIVATED = "user_deactivated", _("User deactivated")
    USER_CREATED = "user_created", _("User created at sign-in")
    PASSWORD_SET = "password_set", _("Password set")
    PASSWORD_RESET_REQUESTED = "password_reset_requested", _("Password reset requested")
    SIGNED_IN = "signed_in", _("Signed in")
    SIGN_IN_FAILED = "sign_in_failed", _("Sign-in failed")
    SIGN_IN_REFUSED = "sign_in_refused", _("Sign-in refused")
    LOCKED_OUT = "locked_out", _("Locked out")
    MAILBOX_CHANGED = "mailbox_changed", _("Mailbox changed")
    QUEUE_CHANGED = "queue_changed", _("Queue changed")
    PROFILE_DEFAULT_SET = "profile_default_set", _("Default server profile set")
    BULK_QUEUED = "bulk_queued", _("Bulk action queued")
    QUEUE_ITEM_DONE = "queue_item_done", _("Queue item marked done")


class QueueItemState(models.TextChoices):
    """Where a queue item stands on its queue's work list (tracking-rules §2)."""

    ACTIVE = "active", _("Active")
    DONE = "done", _("Done")


class Role(models.TextChoices):
    """A person's role (tracking-rules §1): admins and auditors are the two groups, users are in neither."""

    ADMIN = "admin", _("Admin")
    AUDITOR = "auditor", _("Auditor")
    USER = "user", _("User")


class BulkAction(models.TextChoices):
    """What the mailbox list can do to many mailboxes at once (tracking-rules §9)."""

    APPROVE = "approve", _("Approve email")
    REJECT = "reject", _("Reject email")
    TEST = "test", _("Test & Enable")
    DISABLE = "disable", _("Disable")
    APPLY_DEFAULT_PROFILE = "apply_default_profile", _("Apply default profile")


class ErrorKind(models.TextChoices):
    """What kind of failure a source error is (tracking-rules §9), stored with a mailbox's last error and a
    failed
    scan so that it is shown in words for its kind. NOT_APPROVED is the one that is no source error: the
    mailbox's address lost its approval, which stops a scan cycle before any server is asked."""

    CREDENTIALS = "credentials", _("Credentials refused")
    PERMISSION = "permission", _("Access denied")
    NOT_FOUND = "not_found", _("Not found")
    TLS = "tls", _("TLS / certificate")
    UNREACHABLE = "unreachable", _("Server unreachable")
    THROTTLED = "throttled", _("Throttled by the server")
    SERVER_ERROR = "server_error", _("Server error")
    TOO_LARGE = "too_large", _("Response too large")
    SYNC_STATE = "sync_state", _("Sync state refused")
    INTERNAL = "internal", _("Internal error")
    NOT_APPROVED = "not_approved", _("Not approved")
