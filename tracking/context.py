"""Batch loaders: the only place the engine's data comes from.

`load_context` reads everything the rules need for a whole page of messages with a fixed number
of queries, however many messages, recipients or CRM records there are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice, zip_longest

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Q
from django.db.models.functions import Lower

from tracking.choices import AuditAction, EntityKind, Folder, TrackOption
from tracking.decisions import (
    DecisionContext,
    Entity,
    MailboxInfo,
    OrgRules,
    RecordRef,
    TrackedRef,
    conversation_index_ancestors,
    message_address_hashes,
    tracking_tokens_in,
)
from tracking.messages import ParsedMessage, ParseFailure
from tracking.models import (
    AuditEvent,
    CrmRecord,
    Decision,
    EmailHash,
    ExclusionEntry,
    FolderTrackingRule,
    Mailbox,
    OrgSettings,
    PersonalOptions,
    Queue,
    TrackedEmail,
)
from tracking.orgsettings import ORG_SETTINGS

# Keeps each IN (...) list under SQLite's bound-parameter limit; a page of 100 ordinary messages
# needs one chunk, so the query count stays constant per page.
IN_CHUNK = 2000


def _chunks(values: Iterable[str], size: int = IN_CHUNK) -> Iterable[list[str]]:
    it = iter(sorted(set(values)))
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass(frozen=True)
class Scope:
    """What one signed-in user may see, for Explain and What-if (a scan, and an admin, see everything).

    Parties: the user and the CRM directory (every user may browse it), not other users or queues.
    Tracked emails: those a decision of the user's own mailboxes tracked, not other mailboxes'.
    """

    user_id: int
    label: str

    def note(self) -> str:
        return (
            f"only what {self.label} may see was considered: as parties themselves and the CRM directory, "
            "and the emails tracked from their own mailbox; other users, queues and other mailboxes' "
            "tracked emails were left out (an admin's Explain sees everything)"
        )


def scope_of(user: User) -> Scope:
    return Scope(user.pk, user.get_username())


def load_rules(org: OrgSettings | None = None) -> OrgRules:
    org = org or OrgSettings.load()
    return OrgRules.from_values({spec.field: getattr(org, spec.field) for spec in ORG_SETTINGS})


@dataclass(frozen=True)
class ScanRules:
    """What every page of a scan is decided by, loaded once per scan rather than once per page."""

    org: OrgRules
    earlier_prefixes: tuple[str, ...] = ()


def load_scan_rules(org: OrgRules | None = None) -> ScanRules:
    org = org or load_rules()
    earlier = earlier_tracking_prefixes(org.tracking_prefix) if org.use_tracking_tokens else ()
    return ScanRules(org, earlier)


def _with_mailbox(entity: Entity, mailbox: Mailbox | None) -> Entity:
    """With what makes the owner's mailbox active for server-side sync (tracking-rules §4), if it has one."""
    if mailbox is None:
        return entity
    return dataclasses.replace(
        entity,
        mailbox_incoming=mailbox.incoming_method,
        mailbox_enabled=mailbox.enabled,
        mailbox_approval=mailbox.approval,
    )


def user_entity(
    user: User, options: PersonalOptions | None, *, has_mailbox: bool, mailbox: Mailbox | None = None
) -> Entity:
    entity = Entity(
        kind=EntityKind.USER,
        id=user.pk,
        name=user.get_full_name() or user.get_username(),
        email=(user.email or "").lower(),
        active=user.is_active,
        created=user.date_joined,
        has_mailbox=has_mailbox,
        track=options.track if options else TrackOption.RESPONSES,
        auto_create=options.auto_create if options else "off",
    )
    return _with_mailbox(entity, mailbox)


def queue_entity(queue: Queue, *, has_mailbox: bool, mailbox: Mailbox | None = None) -> Entity:
    entity = Entity(
        kind=EntityKind.QUEUE,
        id=queue.pk,
        name=queue.name,
        email=queue.email,
        active=queue.active,
        created=queue.created_at,
        has_mailbox=has_mailbox,
        track=queue.track,
    )
    return _with_mailbox(entity, mailbox)


def record_entity(record: CrmRecord, email: str) -> Entity:
    return Entity(
        kind=EntityKind(record.kind),
        id=record.pk,
        name=record.name,
        email=email,
        active=record.active,
        owner_id=record.owner_id,
        created=record.created_at,
        other_kind=record.other_kind,
    )


def mailbox_for_scan(mailbox_id: int) -> Mailbox:
    return Mailbox.objects.select_related("user__personal_options", "queue__owner", "profile").get(
        pk=mailbox_id
    )


def _options_of(user: User) -> PersonalOptions | None:
    try:
        return user.personal_options
    except PersonalOptions.DoesNotExist:
        return None


def mailbox_owner(mailbox: Mailbox) -> Entity:
    if mailbox.user is not None:
        return user_entity(mailbox.user, _options_of(mailbox.user), has_mailbox=True, mailbox=mailbox)
    assert mailbox.queue is not None
    return queue_entity(mailbox.queue, has_mailbox=True, mailbox=mailbox)


def load_entities(addresses: Iterable[str], scope: Scope | None = None) -> dict[str, list[Entity]]:
    """Every user, queue and CRM record having one of these addresses, keyed by lower-case address.

    Within a `scope`, of the users only its user and no queue.
    """
    found: dict[str, list[Entity]] = {}
    User = get_user_model()
    people = User.objects.all() if scope is None else User.objects.filter(pk=scope.user_id)
    queues_seen = Queue.objects.all() if scope is None else Queue.objects.none()
    for chunk in _chunks(addresses):
        wanted = set(chunk)
        users = (
            people.annotate(email_lower=Lower("email"))
            .filter(Q(email_lower__in=chunk) | Q(mailbox__email_address__in=chunk))
            .select_related("personal_options", "mailbox")
        )
        for user in users:
            has_mailbox = hasattr(user, "mailbox")
            entity = user_entity(
                user,
                _options_of(user),
                has_mailbox=has_mailbox,
                mailbox=user.mailbox if has_mailbox else None,
            )
            own = {entity.email} | ({user.mailbox.email_address} if has_mailbox else set())
            for address in own & wanted:
                found.setdefault(address, []).append(entity)
        queues = queues_seen.filter(Q(email__in=chunk) | Q(mailbox__email_address__in=chunk)).select_related(
            "mailbox"
        )
        for queue in queues:
            has_mailbox = hasattr(queue, "mailbox")
            entity = queue_entity(
                queue, has_mailbox=has_mailbox, mailbox=queue.mailbox if has_mailbox else None
            )
            own = {queue.email} | ({queue.mailbox.email_address} if has_mailbox else set())
            for address in own & wanted:
                found.setdefault(address, []).append(entity)
        records = CrmRecord.objects.filter(Q(email1__in=chunk) | Q(email2__in=chunk) | Q(email3__in=chunk))
        for record in records:
            for address in set(record.addresses) & wanted:
                found.setdefault(address, []).append(record_entity(record, address))
    return found


def _regarding(email: TrackedEmail) -> RecordRef | None:
    r = email.regarding
    return RecordRef(r.pk, r.kind, r.name) if r is not None else None


def tracked_ref(email: TrackedEmail, hashes: Sequence[EmailHash] = ()) -> TrackedRef:
    return TrackedRef(
        key=email.pk,
        message_id=email.message_id,
        direction=email.direction,
        regarding=_regarding(email),
        conversation_index=email.conversation_index,
        tracking_token=email.tracking_token or None,
        subject_hashes=frozenset(h.value for h in hashes if h.kind == EmailHash.SUBJECT),
        address_hashes=frozenset(h.value for h in hashes if h.kind == EmailHash.ADDRESS),
        owner_id=email.owner_id,
        untracked=email.untracked_at is not None,
    )


def _lookup_rounds(*values: set[str]) -> Iterator[tuple[set[str], ...]]:
    """Chunks of several value sets side by side, so each round is one query within the parameter limit."""
    for chunks in zip_longest(*(_chunks(v) for v in values), fillvalue=[]):
        yield tuple(set(c) for c in chunks)


def earlier_tracking_prefixes(current: str) -> tuple[str, ...]:
    """Every TrackingPrefix the audit trail shows in use before, so their tokens keep correlating."""
    values = AuditEvent.objects.filter(
        action=AuditAction.ORGSETTING_CHANGED, target="TrackingPrefix"
    ).values_list("old_value", flat=True)
    return tuple(sorted({v for v in values if v and v != current}))


def load_context(
    mailbox: Mailbox,
    folder: str,
    messages: Sequence[ParsedMessage | ParseFailure],
    *,
    rules: OrgRules | None = None,
    earlier_prefixes: tuple[str, ...] | None = None,
    start_date: datetime | None = None,
    scope: Scope | None = None,
) -> DecisionContext:
    """Load, for one page, all data the engine may consult; the query count does not grow with the page.

    `earlier_prefixes` None reads them from the audit trail (a scan passes the ones it loaded once).
    `start_date` None is the mailbox's configured one (tracking-rules §3.5); a reprocessing round has its own.
    `scope` limits the parties and tracked emails to what one user may see (Scope); None is everything.
    """
    rules = rules or load_rules()
    parsed = [m for m in messages if isinstance(m, ParsedMessage)]
    owner = mailbox_owner(mailbox)

    exclusions = ExclusionEntry.objects.filter(Q(user__isnull=True) | Q(user_id=mailbox.user_id)).values_list(
        "pattern", "user_id"
    )
    org_ex = frozenset(p.lower() for p, uid in exclusions if uid is None)
    own_ex = frozenset(p.lower() for p, uid in exclusions if uid is not None)

    queue_owner = mailbox.queue.owner if mailbox.queue is not None else None
    info = MailboxInfo(
        id=mailbox.pk,
        address=mailbox.email_address,
        queue_owner_id=queue_owner.pk if queue_owner else None,
        queue_owner_name=(queue_owner.get_full_name() or queue_owner.get_username()) if queue_owner else "",
        owner=owner,
        is_exchange=mailbox.profile.is_exchange,
        start_date=start_date if start_date is not None else mailbox.configured_start_date(),
        owner_exclusions=own_ex,
    )
    ctx = DecisionContext(rules=rules, mailbox=info, folder=folder, org_exclusions=org_ex)

    addresses = {a.address for m in parsed for _, a in m.recipients} | {
        m.sender.address for m in parsed if m.sender
    }
    ctx.entities_by_address = load_entities(addresses, scope)

    if rules.use_tracking_tokens:
        ctx.earlier_prefixes = (
            earlier_tracking_prefixes(rules.tracking_prefix) if earlier_prefixes is None else earlier_prefixes
        )
    ids = {m.message_id for m in parsed} | {i for m in parsed for i in m.in_reply_to}
    tokens = (
        {t for m in parsed for t in tracking_tokens_in(m.subject, ctx.token_prefixes)}
        if rules.use_tracking_tokens
        else set()
    )
    # Each message's own index (tracking-rules §5.3: the exact value first, whatever its shape) and ancestors.
    prefixes = (
        {p for m in parsed for p in conversation_index_ancestors(m.conversation_index)}
        | {m.conversation_index for m in parsed if m.conversation_index}
        if rules.email_correlation_enabled and not rules.ignore_headers_for_correlation
        else set()
    )
    tracked = TrackedEmail.objects.select_related("regarding").order_by("pk")
    if scope is not None:
        # A subquery, not a second round trip: the query count stays what it is without a scope.
        own = Decision.objects.filter(mailbox__user_id=scope.user_id, tracked_email__isnull=False)
        tracked = tracked.filter(pk__in=own.values("tracked_email_id"))
    # One query finds the tracked emails by Message-ID, tracking token and ConversationIndex at once.
    for id_chunk, token_chunk, prefix_chunk in _lookup_rounds(ids, tokens, prefixes):
        wanted = Q()
        for lookup, chunk in (
            ("message_id__in", id_chunk),
            ("tracking_token__in", token_chunk),
            ("conversation_index__in", prefix_chunk),
        ):
            if chunk:
                wanted |= Q(**{lookup: sorted(chunk)})
        for email in tracked.filter(wanted):
            ref = tracked_ref(email)
            if email.message_id in id_chunk:
                ctx.tracked_by_message_id.setdefault(email.message_id, []).append(ref)
            if email.untracked_at is not None:
                continue  # kept for the duplicate rule (§7a), never a correlation parent
            if email.tracking_token and email.tracking_token in token_chunk:
                ctx.tracked_by_token.setdefault(email.tracking_token.upper(), ref)
            if email.conversation_index in prefix_chunk:
                ctx.tracked_by_conversation_index.setdefault(email.conversation_index, ref)

    if rules.enable_smart_matching and parsed:
        hashes = sorted({h for m in parsed for h in message_address_hashes(m, rules)})
        if hashes:
            sharing = EmailHash.objects.filter(kind=EmailHash.ADDRESS, value__in=hashes).values(
                "tracked_email_id"
            )
            candidates = tracked.filter(pk__in=sharing, untracked_at__isnull=True)
            for email in candidates.prefetch_related("hashes"):
                ctx.smart_candidates.append(tracked_ref(email, list(email.hashes.all())))

    if folder not in (Folder.INBOX, Folder.SENT_ITEMS):
        rule = (
            FolderTrackingRule.objects.scanned()
            .select_related("regarding")
            .filter(mailbox=mailbox, folder__iexact=folder)
            .first()
        )
        if rule is not None:
            ctx.is_folder_rule = True
            r = rule.regarding
            ctx.folder_rule_regarding = RecordRef(r.pk, r.kind, r.name) if r else None
    return ctx
