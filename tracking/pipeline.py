"""The one line a message travels: parse → load context → decide → commit page.

`ingest`, `explain`, scans and manual tracking all come through here; `explain_message` stops
before the commit. No second code path decides anything.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet, prefetch_related_objects

from tracking.actions import current_decision, do_audit_manual_tracking, do_commit_page, do_track_again
from tracking.choices import Folder, Outcome
from tracking.content import MessageContent, content_from_server, extract_content
from tracking.context import (
    ScanRules,
    Scope,
    load_context,
    load_rules,
    load_scan_rules,
    mailbox_for_scan,
)
from tracking.decisions import DecisionResult, ManualTracking, RecordRef, TraceStep, decide, decide_batch
from tracking.messages import (
    Item,
    ParsedMessage,
    ParseFailure,
    RawItem,
    message_from_snapshot,
    parse_message,
)
from tracking.models import CrmRecord, Decision, Mailbox, QueueItem, ScanRun, TrackedEmail
from tracking.sources.base import AttachmentFetcher, FetchedAttachments

log = logging.getLogger(__name__)

PAGE_SIZE = 100
COMMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class Processed:
    decision: Decision
    new: bool  # False when the decision already existed (a rescan or re-ingest)


def parse_item(item: Item) -> ParsedMessage | ParseFailure:
    if isinstance(item, RawItem):
        return parse_message(item.data, provider_item_id=item.provider_item_id, received_at=item.received_at)
    return item


def contents_of(
    items: Sequence[Item],
    parsed: Sequence[ParsedMessage | ParseFailure],
    results: Sequence[DecisionResult],
    *,
    attachment_limit_mb: int,
    fetcher: AttachmentFetcher | None = None,
    fetched: dict[str, FetchedAttachments] | None = None,
) -> dict[str, MessageContent]:
    """The bodies and attachments of the messages these results track anew, by Message-ID.

    Read only for those: most messages of a scan are not tracked, and their content is never needed.
    A raw (RFC 5322) item gives bodies and attachments; a message a source read from fields gives the
    body the server sent with them, and the attachments `fetcher` (the source) fetches now, for the
    tracked messages that have any, in a few batched requests (tracking-rules §2). `fetched` keeps what
    was fetched across the attempts of one page commit, so a retried commit asks the server nothing again.
    """
    raw: dict[str, bytes] = {}
    for item, msg in zip(items, parsed, strict=True):
        if isinstance(item, RawItem) and isinstance(msg, ParsedMessage):
            raw.setdefault(msg.message_id, item.data)
    limit = attachment_limit_mb * 1024 * 1024
    out: dict[str, MessageContent] = {}
    from_fields: list[ParsedMessage] = []
    for r in results:
        msg = r.message
        if r.outcome != Outcome.TRACKED or r.existing is not None or not isinstance(msg, ParsedMessage):
            continue
        if msg.message_id in raw:
            out[msg.message_id] = extract_content(raw[msg.message_id], attachment_limit_bytes=limit)
            continue
        out[msg.message_id] = content_from_server(msg.body) if msg.body is not None else MessageContent()
        if msg.has_attachments:
            from_fields.append(msg)
    if fetcher is None or not from_fields:
        return out
    fetched = {} if fetched is None else fetched
    missing = [m for m in from_fields if m.provider_item_id not in fetched]
    if missing:
        fetched.update(fetcher.fetch_attachments(missing, limit))
    for msg in from_fields:
        got = fetched.get(msg.provider_item_id)
        if got is not None:
            if got.notes:
                # kept nowhere else: a TrackedEmail has no field for notes on its content
                log.info("attachments of %s: %s", msg.message_id, "; ".join(got.notes))
            content = out[msg.message_id]
            out[msg.message_id] = dataclasses.replace(
                content, attachments=got.attachments, notes=(*content.notes, *got.notes)
            )
    return out


def pages(items: Iterable[Item], size: int = PAGE_SIZE) -> Iterator[list[Item]]:
    page: list[Item] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def process_page(
    mailbox: Mailbox,
    folder: str,
    items: Sequence[Item],
    *,
    scan_run: ScanRun | None,
    now: datetime,
    manual: ManualTracking | None = None,
    sync_state: str | None = None,
    start_date: datetime | None = None,
    rules: ScanRules | None = None,
    made_by: User | None = None,
    fetcher: AttachmentFetcher | None = None,
) -> list[Processed]:
    """Decide and commit one page; messages already decided in this mailbox folder are returned as they are.

    Manual tracking keeps its own decisions: tracking by hand a message a scan did not track adds a
    manual decision next to the scan's (both stay in the log), once (`ingest --regarding` run twice adds
    nothing). A person's Track (`made_by`) is a new decision each time, superseding the message's current
    one (tracking-rules §7a).

    `start_date` and `rules` are the ones the scan started with (it loads them once for all its pages);
    a start date of None is the mailbox's configured one. `fetcher` (the scan's source) fetches the
    attachments of the messages this page tracks, between the decision and the commit.
    """
    rules = rules or load_scan_rules()
    parsed = [parse_item(i) for i in items]
    fetched: dict[str, FetchedAttachments] = {}
    by_person = manual is not None and made_by is not None
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        # a person's Track is decided again whatever was decided before: nothing to look up
        existing = (
            {}
            if by_person
            else {
                d.message_id: d
                for d in Decision.objects.select_related("regarding").filter(
                    mailbox=mailbox,
                    folder=folder,
                    manual=manual is not None,
                    message_id__in=sorted({m.message_id for m in parsed}),
                )
            }
        )
        fresh: list[ParsedMessage | ParseFailure] = []
        seen: set[str] = set()
        for m in parsed:
            if m.message_id not in existing and m.message_id not in seen:
                seen.add(m.message_id)
                fresh.append(m)
        ctx = load_context(
            mailbox,
            folder,
            fresh,
            rules=rules.org,
            earlier_prefixes=rules.earlier_prefixes,
            start_date=start_date,
        )
        results = decide_batch(fresh, ctx, manual=manual)
        contents = contents_of(
            items,
            parsed,
            results,
            attachment_limit_mb=rules.org.max_tracked_attachment_mb,
            fetcher=fetcher,
            fetched=fetched,
        )
        try:
            created = do_commit_page(
                mailbox,
                folder,
                results,
                scan_run=scan_run,
                now=now,
                sync_state=sync_state,
                manual=manual is not None,
                made_by=made_by,
                supersedes=current_decision_ids(mailbox, folder, seen) if by_person else None,
                queue_items_for_mailbox=rules.org.create_queue_item_for_mailbox,
                contents=contents,
            )
            break
        except IntegrityError:
            # Another worker tracked or decided one of these messages since we loaded the context;
            # deciding again against fresh data makes it already_tracked (or an existing decision).
            if attempt == COMMIT_ATTEMPTS:
                raise
            log.info(
                "page commit of %s/%s raced with another writer; retrying (%d)", mailbox, folder, attempt
            )
    by_id = {d.message_id: d for d in created}
    out = []
    emitted: set[str] = set()
    for m in parsed:
        if m.message_id in existing:
            out.append(Processed(existing[m.message_id], new=False))
        elif m.message_id in emitted:
            out.append(Processed(by_id[m.message_id], new=False))  # the same message twice in one page
        else:
            emitted.add(m.message_id)
            out.append(Processed(by_id[m.message_id], new=True))
    return out


def in_round(msg: ParsedMessage | ParseFailure, since: datetime, *, by_modified: bool) -> bool:
    """Whether a round from `since` evaluates this message again: received (in a mapped folder, last
    modified) after it, or of unknown time (tracking-rules §3.6)."""
    when = msg.last_modified if by_modified and isinstance(msg, ParsedMessage) else None
    when = when or msg.received_at
    return when is None or when > since


def current_decision_ids(mailbox: Mailbox, folder: str, message_ids: Iterable[str]) -> dict[str, int]:
    """Per Message-ID, the id of the newest decision of this mailbox folder that nothing supersedes."""
    rows = (
        Decision.objects.filter(
            mailbox=mailbox,
            folder=folder,
            message_id__in=sorted(set(message_ids)),
            superseded_by__isnull=True,
        )
        .order_by("message_id", "-id")
        .values_list("message_id", "pk")
    )
    current: dict[str, int] = {}
    for message_id, pk in rows:
        current.setdefault(message_id, pk)
    return current


def process_round_page(
    mailbox: Mailbox,
    folder: str,
    items: Sequence[Item],
    *,
    run: ScanRun,
    since: datetime,
    now: datetime,
    round_state: str | None,
    rules: ScanRules,
    fetcher: AttachmentFetcher | None = None,
) -> list[Processed]:
    """Decide one page of a reprocessing round again and commit it (tracking-rules §3.6).

    Each message after `since` gets one decision of this round, naming the decision it supersedes; a
    message this round already decided (a resumed round) is returned as it is. Never a second
    TrackedEmail: the engine finds the one made earlier and says already_tracked.
    """
    assert run.round is not None
    by_modified = folder not in (Folder.INBOX, Folder.SENT_ITEMS)  # a mapped folder (§3.4)
    pairs = [
        (i, m) for i, m in ((i, parse_item(i)) for i in items) if in_round(m, since, by_modified=by_modified)
    ]
    parsed = [m for _, m in pairs]
    fetched: dict[str, FetchedAttachments] = {}
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        ids = {m.message_id for m in parsed}
        existing = {
            d.message_id: d
            for d in Decision.objects.select_related("regarding").filter(
                mailbox=mailbox, folder=folder, round=run.round, message_id__in=sorted(ids)
            )
        }
        fresh: list[ParsedMessage | ParseFailure] = []
        seen: set[str] = set()
        for m in parsed:
            if m.message_id not in existing and m.message_id not in seen:
                seen.add(m.message_id)
                fresh.append(m)
        supersedes = current_decision_ids(mailbox, folder, seen)
        ctx = load_context(
            mailbox, folder, fresh, rules=rules.org, earlier_prefixes=rules.earlier_prefixes, start_date=since
        )
        results = decide_batch(fresh, ctx)
        contents = contents_of(
            [i for i, _ in pairs],
            parsed,
            results,
            attachment_limit_mb=rules.org.max_tracked_attachment_mb,
            fetcher=fetcher,
            fetched=fetched,
        )
        try:
            created = do_commit_page(
                mailbox,
                folder,
                results,
                scan_run=run,
                now=now,
                round=run.round,
                supersedes=supersedes,
                round_state=round_state,
                queue_items_for_mailbox=rules.org.create_queue_item_for_mailbox,
                contents=contents,
            )
            break
        except IntegrityError:
            if attempt == COMMIT_ATTEMPTS:
                raise
            log.info("round page of %s/%s raced with another writer; retrying (%d)", mailbox, folder, attempt)
    by_id = {d.message_id: d for d in created}
    return [
        Processed(existing[m.message_id], new=False)
        if m.message_id in existing
        else Processed(by_id[m.message_id], new=True)
        for m in parsed
        if m.message_id in existing or m.message_id in by_id
    ]


def explain_message(
    mailbox: Mailbox, folder: str, item: Item, *, scope: Scope | None = None
) -> DecisionResult:
    """The decision a scan would make for this message now, with its trace; writes nothing.

    With a `scope`, only what its user may see is considered, and the trace says so first.
    """
    msg = parse_item(item)
    ctx = load_context(mailbox, folder, [msg], rules=load_rules(), scope=scope)
    return scoped(decide(msg, ctx), scope)


def scoped(result: DecisionResult, scope: Scope | None) -> DecisionResult:
    """The result with its trace opened by the scope it was decided in (none: unchanged)."""
    if scope is None:
        return result
    return dataclasses.replace(result, trace=(TraceStep("scope", "limited", scope.note()), *result.trace))


# ---------------------------------------------------------------------------------------------
# JSON (the keys are a public interface: see README "Command line")
# ---------------------------------------------------------------------------------------------


def result_as_json(res: DecisionResult) -> dict[str, object]:
    a = res.accepting
    return {
        "message_id": res.message_id,
        "folder": res.folder,
        "outcome": res.outcome.value,
        "reason": res.reason.value,
        "accepting_entity": {"kind": str(a.kind), "name": a.name, "email": a.email} if a else None,
        "correlation_method": res.correlation_method.value if res.correlation_method else None,
        "correlated_message_id": res.correlated.message_id if res.correlated else None,
        "regarding": {"kind": res.regarding.kind, "name": res.regarding.name} if res.regarding else None,
        "direction": res.direction.value,
        "trace": [s.as_json() for s in res.trace],
    }


def _json_lookups() -> tuple[Prefetch[str], Prefetch[str]]:
    # Made anew for each use: prefetching changes a Prefetch's paths as it goes.
    return (
        Prefetch("tracked_email", queryset=TrackedEmail.objects.select_related("owner")),
        Prefetch(
            "tracked_email__queue_items",
            queryset=QueueItem.objects.select_related("queue").order_by("queue__name"),
        ),
    )


def with_json_relations(decisions: QuerySet[Decision]) -> QuerySet[Decision]:
    """The decisions with what decision_as_json reads beyond their own row, fetched per batch rather than
    per row (regarding, the tracked email's owner and queue items)."""
    return decisions.select_related("regarding").prefetch_related(*_json_lookups())


def load_json_relations(decisions: Sequence[Decision]) -> None:
    """The same for decisions already in hand (a committed page): three queries for the lot."""
    prefetch_related_objects(list(decisions), "regarding", *_json_lookups())


def _owner_json(email: TrackedEmail | None) -> dict[str, str] | None:
    # Owners are users today; "queue" is the other kind the interface allows (issue 14).
    if email is None or email.owner is None:
        return None
    return {"kind": "user", "name": email.owner.get_username()}


def decision_as_json(d: Decision, *, new: bool) -> dict[str, object]:
    """A decision as the commands print it; callers printing many load their relations first
    (with_json_relations, load_json_relations), or each row costs queries of its own."""
    email = d.tracked_email if d.tracked_email_id is not None else None
    return {
        "message_id": d.message_id,
        "folder": d.folder,
        "outcome": d.outcome,
        "reason": d.reason,
        "accepting_entity": (
            {"kind": d.accepting_kind, "name": d.accepting_name, "email": d.accepting_email}
            if d.accepting_kind
            else None
        ),
        "correlation_method": d.correlation_method or None,
        "correlated_message_id": d.correlated_message_id or None,
        "regarding": {"kind": d.regarding.kind, "name": d.regarding.name} if d.regarding else None,
        "direction": d.direction,
        "new": new,
        "trace": d.trace,
        "decision_id": d.pk,
        "supersedes": d.supersedes_id,
        "round": d.round_id,
        "owner": _owner_json(email),
        "queue_items": [item.queue.name for item in email.queue_items.all()] if email is not None else [],
    }


def message_of(decision: Decision) -> ParsedMessage:
    """The message a decision was made about, rebuilt from its fields and snapshot."""
    snapshot = decision.message_snapshot if isinstance(decision.message_snapshot, dict) else {}
    return message_from_snapshot(
        provider_item_id=decision.provider_item_id,
        message_id=decision.message_id,
        synthetic=decision.message_id_synthetic,
        subject=decision.subject,
        sender=decision.sender,
        received_at=decision.received_at,
        snapshot=snapshot,
    )


def tracked_email_of(decision: Decision) -> TrackedEmail | None:
    """The TrackedEmail of a decision's message in its direction, tracked or untracked, if there is one."""
    return TrackedEmail.objects.filter(message_id=decision.message_id, direction=decision.direction).first()


@transaction.atomic
def track_decision_manually(
    decision: Decision,
    regarding: RecordRef | None,
    *,
    now: datetime,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> Processed:
    """Track (optionally regarding a record) a message that is not tracked (tracking-rules §7a): any message
    there is a decision for, in any folder. A new manual decision superseding the current one, audited
    in the same transaction; an email untracked before is tracked again (the same TrackedEmail). A message
    that is tracked already is returned as it is: set its regarding instead.

    The caller checks who may do this (the mailbox's owner or an admin).
    """
    email = tracked_email_of(decision)
    if email is not None and email.untracked_at is None:
        return Processed(current_decision(decision), new=False)
    if email is not None:
        record = CrmRecord.objects.get(pk=regarding.id) if regarding is not None else None
        made = do_track_again(
            decision, email, record, now=now, acting_user=acting_user, actor_label=actor_label
        )
        return Processed(made, new=True)
    mailbox = mailbox_for_scan(decision.mailbox_id)
    [processed] = process_page(
        mailbox,
        decision.folder,
        [message_of(decision)],
        scan_run=None,
        now=now,
        manual=ManualTracking(regarding),
        made_by=acting_user,
    )
    if processed.new:
        do_audit_manual_tracking(
            decision, processed.decision, regarding, acting_user=acting_user, actor_label=actor_label
        )
    return processed
