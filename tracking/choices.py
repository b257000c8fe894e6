"""Every closed vocabulary of DOMAIN.md, in one place."""

from __future__ import annotations

from django.db import models


class TrackOption(models.IntegerChoices):
    """Personal Options → "Select the email messages to track" (DOMAIN §4)."""

    ALL = 0, "All email messages"
    RESPONSES = 1, "Email messages in response to SyncAdmin email"
    CRM_PARTIES = 2, "Email messages from SyncAdmin Leads, Contacts, and Accounts"
    EMAIL_ENABLED = 3, "Email messages from SyncAdmin records that are email enabled"
    NONE = 4, "No email messages"


# Words the CLI accepts for --track besides the numbers.
TRACK_OPTION_WORDS: dict[str, TrackOption] = {
    "all": TrackOption.ALL,
    "responses": TrackOption.RESPONSES,
    "crm": TrackOption.CRM_PARTIES,
    "email-enabled": TrackOption.EMAIL_ENABLED,
    "none": TrackOption.NONE,
}


class AutoCreate(models.TextChoices):
    OFF = "off", "Do not create records"
    CONTACT = "contact", "Contacts"
    LEAD = "lead", "Leads"


class Folder(models.TextChoices):
    INBOX = "inbox", "Inbox"
    SENT_ITEMS = "sentitems", "Sent Items"


class Direction(models.TextChoices):
    INCOMING = "incoming", "Incoming"
    OUTGOING = "outgoing", "Outgoing"


class Outcome(models.TextChoices):
    TRACKED = "tracked", "Tracked"
    ALREADY_TRACKED = "already_tracked", "Already tracked"
    NOT_TRACKED = "not_tracked", "Not tracked"
    FAILED = "failed", "Failed"


class Reason(models.TextChoices):
    ACCEPTED_ALL = "accepted_all", "Accepted: all email messages"
    ACCEPTED_CORRELATED = "accepted_correlated", "Accepted: in response to a tracked email"
    ACCEPTED_CRM_PARTY = "accepted_crm_party", "Accepted: lead, contact or account party"
    ACCEPTED_EMAIL_ENABLED_PARTY = "accepted_email_enabled_party", "Accepted: email-enabled record party"
    FOLDER_RULE = "folder_rule", "Folder tracking rule"
    MANUAL = "manual", "Tracked manually"
    DUPLICATE_MESSAGE_ID = "duplicate_message_id", "Message-ID already tracked"
    OPTION_NONE = "option_none", "Track option is 'No email messages'"
    NO_CORRELATION = "no_correlation", "Not in response to a tracked email"
    NO_CRM_PARTY = "no_crm_party", "No lead, contact or account party"
    NO_EMAIL_ENABLED_PARTY = "no_email_enabled_party", "No email-enabled record party"
    SENT_ITEMS_DISABLED = "sent_items_disabled", "Sent Items tracking is off (AutoTrackSentFolderItems)"
    SENT_ITEMS_UNSUPPORTED_SERVER = "sent_items_unsupported_server", "Sent Items need an Exchange mailbox"
    BEFORE_WATERMARK = "before_watermark", "Received before 'process emails received after'"
    INTERNAL_DUPLICATE = "internal_duplicate", "Internal email already tracked in the other direction"
    EXCLUDED_ADDRESS = "excluded_address", "Address on the exclusion list"
    UNPARSEABLE = "unparseable", "Message could not be parsed"
    FETCH_ERROR = "fetch_error", "Message could not be fetched"


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
        }
    ),
    Outcome.FAILED: frozenset({Reason.UNPARSEABLE, Reason.FETCH_ERROR}),
}


class CorrelationMethod(models.TextChoices):
    IN_REPLY_TO = "in_reply_to", "In-Reply-To"
    TRACKING_TOKEN = "tracking_token", "Tracking token"
    CONVERSATION_INDEX = "conversation_index", "Conversation index"
    SMART_MATCHING = "smart_matching", "Smart matching"


class ProfileKind(models.TextChoices):
    EXCHANGE_GRAPH = "exchange_graph", "Exchange Online (Microsoft Graph)"
    EXCHANGE_EWS = "exchange_ews", "Exchange Server (EWS)"
    IMAP = "imap", "IMAP"
    LOCAL = "local", "Local folder (.eml / mbox / Maildir)"


EXCHANGE_KINDS = frozenset({ProfileKind.EXCHANGE_GRAPH, ProfileKind.EXCHANGE_EWS})


class AuthMethod(models.TextChoices):
    NONE = "none", "None"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2", "OAuth 2.0 client credentials"
    NTLM = "ntlm", "NTLM"
    BASIC = "basic", "Basic"
    PASSWORD = "password", "User name and password"


class IncomingMethod(models.TextChoices):
    SERVER_SIDE_SYNC = "server_side_sync", "Server-side synchronization"
    NONE = "none", "None"


class Approval(models.TextChoices):
    EMPTY = "empty", "Empty"
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class MailboxStatus(models.TextChoices):
    NOT_RUN = "not_run", "Not run"
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"


class ScanStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class ScanSource(models.TextChoices):
    SCAN = "scan", "Mailbox scan"
    INGEST = "ingest", "File ingest"
    MANUAL = "manual", "Manual tracking"


class RecordKind(models.TextChoices):
    """Kinds of CRM directory rows; users and queues are email-enabled too but live elsewhere."""

    ACCOUNT = "account", "Account"
    CONTACT = "contact", "Contact"
    LEAD = "lead", "Lead"
    OTHER = "other", "Other email-enabled record"


class EntityKind(models.TextChoices):
    """Every kind of email-enabled thing a party can resolve to (DOMAIN §6)."""

    USER = "user", "User"
    QUEUE = "queue", "Queue"
    CONTACT = "contact", "Contact"
    ACCOUNT = "account", "Account"
    LEAD = "lead", "Lead"
    OTHER = "other", "Other email-enabled record"


class AlertLevel(models.TextChoices):
    ERROR = "error", "Error"
    WARNING = "warning", "Warning"
    INFORMATION = "information", "Information"
