"""SyncAdmin's stored things (tracking-rules §2)."""

from tracking.models.activity import (
    Decision,
    EmailHash,
    EmailParty,
    QueueItem,
    ReprocessRound,
    ScanRun,
    TrackedAttachment,
    TrackedEmail,
)
from tracking.models.audit import AuditEvent
from tracking.models.directory import CrmRecord, ExclusionEntry, Queue
from tracking.models.imports import ImportRun
from tracking.models.mailboxes import Alert, EmailServerProfile, FolderSyncState, FolderTrackingRule, Mailbox
from tracking.models.operations import BulkOperation
from tracking.models.options import OrgSettings, PersonalOptions
from tracking.models.push import GraphSubscription
from tracking.models.push_ews import EwsStreamState

__all__ = [
    "Alert",
    "AuditEvent",
    "BulkOperation",
    "CrmRecord",
    "Decision",
    "EmailHash",
    "EmailParty",
    "EmailServerProfile",
    "EwsStreamState",
    "ExclusionEntry",
    "FolderSyncState",
    "FolderTrackingRule",
    "GraphSubscription",
    "ImportRun",
    "Mailbox",
    "OrgSettings",
    "PersonalOptions",
    "Queue",
    "QueueItem",
    "ReprocessRound",
    "ScanRun",
    "TrackedAttachment",
    "TrackedEmail",
]
