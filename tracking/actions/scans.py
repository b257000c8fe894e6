"""Scans: runs, the commit of one page of decisions, folder sync state, manual tracking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from django.contrib.auth.models import User
from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from tracking.actions.audit import audit
from tracking.actions.folders import do_set_regarding_by_folder_rule
from tracking.bulk import bulk_insert, insert_rows
from tracking.choices import (
    AuditAction,
    EntityKind,
    ErrorKind,
    MailboxStatus,
    Outcome,
    PartyRole,
    ScanSource,
    ScanStatus,
)
from tracking.content import MessageContent
from tracking.decisions import DecisionResult, RecordRef
from tracking.messages import ParsedMessage, message_snapshot
from tracking.models import (
    CrmRecord,
    Decision,
    EmailHash,
    EmailParty,
    FolderSyncState,
    Mailbox,
    QueueItem,
    ReprocessRound,
    ScanRun,
    TrackedAttachment,
    TrackedEmail,
)


def do_start_scan_run(
    mailbox: Mailbox, folder: str, *, source: str = ScanSource.SCAN, now: datetime, job_id: str = ""
) -> ScanRun:
    # Scans of one mailbox never overlap, so a run still "running" now was cut short (its worker died).
    # A round's run is not: RQ retries its job, which resumes it (tracking.reprocessing).
    ScanRun.objects.filter(mailbox=mailbox, folder=folder, status=ScanStatus.RUNNING, round=None).update(
        status=ScanStatus.FAILED, finished_at=now, error="interrupted: the worker stopped during the scan"
    )
    return ScanRun.objects.create(
        mailbox=mailbox,
        folder=folder,
        source=source,
        status=ScanStatus.RUNNING,
        started_at=now,
        job_id=job_id,
    )


def do_record_skipped_scan(mailbox: Mailbox, folder: str, *, note: str, now: datetime) -> ScanRun:
    """A folder that is not scanned still leaves a row saying why (e.g. sent_items_unsupported_server)."""
    return ScanRun.objects.create(
        mailbox=mailbox, folder=folder, status=ScanStatus.SKIPPED, started_at=now, finished_at=now, note=note
    )


def do_set_scan_estimate(run: ScanRun, total: int) -> None:
    run.items_total = total
    run.save(update_fields=["items_total"])


def do_reset_sync_state(mailbox: Mailbox, folder: str) -> None:
    """Forget a folder's sync state: the next scan reads it from the start (nothing is duplicated)."""
    FolderSyncState.objects.filter(mailbox=mailbox, folder=folder).update(state="")


def do_mark_scan_started(mailbox: Mailbox, *, now: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(last_sync_started_at=now)


def do_mark_scan_succeeded(mailbox: Mailbox, *, now: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(
        incoming_status=MailboxStatus.SUCCESS,
        last_sync_succeeded_at=now,
        last_error="",
        last_error_kind="",
        transient_failure_count=0,
    )


def do_mark_scan_failed(mailbox: Mailbox, *, error: str, kind: ErrorKind, now: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(
        incoming_status=MailboxStatus.FAILURE, last_error=error, last_error_kind=kind
    )


def do_finish_scan_run(
    run: ScanRun, *, now: datetime, error: str = "", error_kind: ErrorKind | None = None
) -> None:
    """Close a run (failed when there is an error, of `error_kind`)."""
    run.status = ScanStatus.FAILED if error else ScanStatus.SUCCEEDED
    run.finished_at = now
    run.error = error
    run.error_kind = (error_kind or ErrorKind.INTERNAL) if error else ""
    run.save(update_fields=["status", "finished_at", "error", "error_kind"])


def _accepting_fields(res: DecisionResult) -> dict[str, object]:
    a = res.accepting
    if a is None:
        return {"accepting_kind": "", "accepting_id": None, "accepting_name": "", "accepting_email": ""}
    return {
        "accepting_kind": a.kind,
        "accepting_id": a.id,
        "accepting_name": a.name,
        "accepting_email": a.email,
    }


@transaction.atomic
def do_commit_page(
    mailbox: Mailbox,
    folder: str,
    results: Sequence[DecisionResult],
    *,
    scan_run: ScanRun | None,
    now: datetime,
    sync_state: str | None = None,
    manual: bool = False,
    round: ReprocessRound | None = None,
    supersedes: Mapping[str, int] | None = None,
    round_state: str | None = None,
    made_by: User | None = None,
    queue_items_for_mailbox: bool,
    contents: Mapping[str, MessageContent] | None = None,
) -> list[Decision]:
    """Write one page: auto-created records, TrackedEmails, hashes, queue items, Decisions, counts, sync
    state.

    `queue_items_for_mailbox` is the org's CreateQueueItemForSynchronizingMailbox, as the scan loaded it.
    `contents` are the bodies and attachments of the messages tracked, by Message-ID, as far as the source
    handed them over (tracking.content).

    One transaction, so a crash loses at most the page in flight; the unique constraints on
    Decision and TrackedEmail turn a replayed page into an IntegrityError, never a duplicate.
    A reprocessing round's page (`round`) names, per Message-ID, the decision each new one supersedes, and
    saves the round's own sync state (`round_state`) on its run instead of the folder's.
    """
    # Auto-created senders, one per address even if several messages asked.
    wanted = {r.auto_create.address: r.auto_create for r in results if r.auto_create is not None}
    created = [
        CrmRecord(kind=a.kind, name=a.name[:300], email1=a.address, owner_id=a.owner_user_id)
        for a in wanted.values()
    ]
    if created:
        CrmRecord.objects.bulk_create(created)

    # TrackedEmails; provisional keys (negative, in-batch) map to the ids just created.
    # A tracked result naming an existing email (a folder rule on a message tracked before) adds none.
    positions = [
        pos
        for pos, r in enumerate(results)
        if r.outcome == Outcome.TRACKED and isinstance(r.message, ParsedMessage) and r.existing is None
    ]
    for res in results:
        if res.outcome == Outcome.TRACKED and res.existing is not None and res.existing.key > 0:
            do_set_regarding_by_folder_rule(
                mailbox, folder, res.existing.key, res.regarding.id if res.regarding else None
            )
    tracked_results = [results[pos] for pos in positions]
    emails: list[TrackedEmail] = []
    contents = contents or {}
    for res in tracked_results:
        msg = res.message
        assert isinstance(msg, ParsedMessage)
        parent = res.correlated
        content = contents.get(msg.message_id) or MessageContent()
        emails.append(
            TrackedEmail(
                message_id=msg.message_id,
                direction=res.direction,
                subject=msg.subject,
                sender=msg.sender.address if msg.sender else "",
                sender_name=(msg.sender.name if msg.sender else "")[:300],
                recipients=[[h, a.address] for h, a in msg.recipients],
                sent_at=msg.sent_at,
                in_reply_to=" ".join(msg.in_reply_to),
                references=" ".join(msg.references),
                conversation_index=msg.conversation_index,
                tracking_token=res.tracking_token or "",
                regarding_id=res.regarding.id if res.regarding else None,
                owner_id=res.owner_user_id,
                receiving_mailbox=mailbox,
                correlation_method=res.correlation_method or "",
                correlated_email_id=parent.key if parent is not None and parent.key > 0 else None,
                body_text=content.text,
                body_html=content.html,
                timeline_at=msg.sent_at or now,
                **_accepting_fields(res),
            )
        )
    bulk_insert(emails)
    attachments = [
        TrackedAttachment(
            tracked_email=email,
            name=a.name,
            content_type=a.content_type,
            size=a.size,
            content=a.content,
            content_id=a.content_id,
        )
        for email in emails
        for a in contents.get(email.message_id, MessageContent()).attachments
    ]
    if attachments:
        # bulk_create, not bulk_insert: the JSON route cannot carry bytes; one INSERT per page all the same.
        TrackedAttachment.objects.bulk_create(attachments)
    by_position = {-(pos + 1): e for pos, e in zip(positions, emails, strict=True)}
    late_links = []
    for res, email in zip(tracked_results, emails, strict=True):
        if res.correlated is not None and res.correlated.key < 0:
            email.correlated_email_id = by_position[res.correlated.key].pk
            late_links.append(email)
    if late_links:
        TrackedEmail.objects.bulk_update(late_links, ["correlated_email"])
    bulk_insert(
        [
            EmailHash(tracked_email=email, kind=kind, value=value)
            for res, email in zip(tracked_results, emails, strict=True)
            for kind, values in (
                (EmailHash.SUBJECT, res.subject_hashes),
                (EmailHash.ADDRESS, res.address_hashes),
            )
            for value in values
        ]
    )

    bulk_insert(_queue_items(mailbox, tracked_results, emails, now=now, for_mailbox=queue_items_for_mailbox))
    insert_rows(
        EmailParty, PARTY_COLUMNS, _party_rows(tracked_results, emails, {r.email1: r.pk for r in created})
    )

    decisions = []
    for pos, res in enumerate(results):
        msg = res.message
        linked: TrackedEmail | None = by_position.get(-(pos + 1))
        linked_id = (
            linked.pk
            if linked is not None
            else (res.existing.key if res.existing and res.existing.key > 0 else None)
        )
        if linked is None and res.existing is not None and res.existing.key < 0:
            linked_id = by_position[res.existing.key].pk
        sender = (
            msg.sender.address
            if isinstance(msg, ParsedMessage) and msg.sender
            else getattr(msg, "sender", "")
        )
        decisions.append(
            Decision(
                mailbox=mailbox,
                folder=folder,
                scan_run=scan_run,
                provider_item_id=msg.provider_item_id[:500],
                message_id=msg.message_id,
                message_id_synthetic=isinstance(msg, ParsedMessage) and msg.message_id_synthetic,
                subject=msg.subject,
                sender=str(sender)[:320],
                received_at=msg.received_at,
                direction=res.direction,
                outcome=res.outcome,
                reason=res.reason,
                correlation_method=res.correlation_method or "",
                correlated_message_id=res.correlated.message_id if res.correlated else "",
                regarding_id=res.regarding.id if res.regarding else None,
                tracked_email_id=linked_id,
                trace=[s.as_json() for s in res.trace],
                message_snapshot=message_snapshot(msg) if isinstance(msg, ParsedMessage) else {},
                manual=manual,
                decided_at=now,
                round=round,
                supersedes_id=(supersedes or {}).get(msg.message_id),
                made_by=made_by,
                **_accepting_fields(res),
            )
        )
    bulk_insert(decisions)

    if scan_run is not None:
        counts = {o.value: 0 for o in Outcome}
        for res in results:
            counts[res.outcome] += 1
        ScanRun.objects.filter(pk=scan_run.pk).update(
            tracked=F("tracked") + counts[Outcome.TRACKED],
            already_tracked=F("already_tracked") + counts[Outcome.ALREADY_TRACKED],
            not_tracked=F("not_tracked") + counts[Outcome.NOT_TRACKED],
            failed=F("failed") + counts[Outcome.FAILED],
            items_done=F("items_done") + len(results),
        )

    if sync_state is not None:
        _save_sync_state(mailbox, folder, sync_state)
    if round_state is not None and scan_run is not None:
        ScanRun.objects.filter(pk=scan_run.pk).update(round_state=round_state)
    return decisions


def _queue_items(
    mailbox: Mailbox,
    results: Sequence[DecisionResult],
    emails: Sequence[TrackedEmail],
    *,
    now: datetime,
    for_mailbox: bool,
) -> list[QueueItem]:
    """The queue items of the emails just tracked (tracking-rules §2): one for the accepting entity when it
    is a queue, and one for the syncing mailbox's queue when the org asks for it; one per queue and email.

    Only new TrackedEmails get items, so a rescan, a replayed page or a reprocessing round (which tracks
    nothing twice) adds none; the unique constraint stands behind that.
    """
    items: list[QueueItem] = []
    for res, email in zip(results, emails, strict=True):
        queues: dict[int, None] = {}  # ordered, without repeats
        if res.accepting is not None and res.accepting.kind == EntityKind.QUEUE and res.accepting.id > 0:
            queues[res.accepting.id] = None
        if for_mailbox and mailbox.queue_id is not None:
            queues[mailbox.queue_id] = None
        items.extend(QueueItem(queue_id=q, tracked_email=email, created_at=now) for q in queues)
    return items


PARTY_FIELD = {EntityKind.USER: "user_id", EntityKind.QUEUE: "queue_id"}  # any other kind: a CRM record


PARTY_COLUMNS = ("tracked_email_id", "role", "address", "record_id", "user_id", "queue_id", "timeline_at")


def _party_rows(
    results: Sequence[DecisionResult], emails: Sequence[TrackedEmail], created: Mapping[str, int]
) -> list[tuple[object, ...]]:
    """The EmailParty rows (PARTY_COLUMNS) of the emails just tracked, as the engine resolved them
    (tracking-rules §6); plain rows, not model instances: a message to hundreds has hundreds of parties.

    A sender created on this page (`created`: record id by address) is the From party's record: the
    message that asked for it resolved to nothing, a later one of the page to a provisional entity.
    """
    connection = connections[router.db_for_write(EmailParty)]
    timeline_at = EmailParty._meta.get_field("timeline_at")
    rows: list[tuple[object, ...]] = []
    for res, email in zip(results, emails, strict=True):
        when = timeline_at.get_db_prep_value(email.timeline_at, connection)
        for party in res.parties:
            entity = party.entity
            ids: dict[str, int] = {}
            if entity is not None and entity.id > 0:
                ids[PARTY_FIELD.get(entity.kind, "record_id")] = entity.id
            elif party.address in created and (
                entity is not None or (party.role == PartyRole.FROM and res.auto_create is not None)
            ):
                ids["record_id"] = created[party.address]
            rows.append(
                (
                    email.pk,
                    party.role.value,
                    party.address[:320],
                    ids.get("record_id"),
                    ids.get("user_id"),
                    ids.get("queue_id"),
                    when,
                )
            )
    return rows


def _save_sync_state(mailbox: Mailbox, folder: str, sync_state: str) -> None:
    """Save the folder's sync token with the page it ends, in one UPDATE.

    The row is created on the folder's first page only; a writer that created it in between makes
    the INSERT fail, which rolls the page back for process_page to retry.
    """
    if not FolderSyncState.objects.filter(mailbox=mailbox, folder=folder).update(
        state=sync_state, updated_at=timezone.now()
    ):
        FolderSyncState.objects.create(mailbox=mailbox, folder=folder, state=sync_state)


def do_audit_manual_tracking(
    decision: Decision,
    made: Decision,
    regarding: RecordRef | None,
    *,
    acting_user: User | None,
    actor_label: str = "cli",
) -> None:
    """The audit row of Track / Set regarding: the scan's decision and the manual one beside it."""
    audit(
        AuditAction.MANUAL_TRACKING,
        f"{decision.mailbox.email_address} {decision.folder} {decision.message_id}"[:300],
        f"decision {decision.pk}: {decision.outcome}/{decision.reason}",
        f"decision {made.pk}: {made.outcome}/{made.reason}"
        + (f", regarding {regarding.kind}:{regarding.name}" if regarding is not None else ""),
        acting_user=acting_user,
        actor_label=actor_label,
    )
