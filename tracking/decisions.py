"""The decision engine: tracking-rules §3–§8 as pure functions.

Plain data in (a ParsedMessage and a DecisionContext loaded by tracking.context), a
DecisionResult with a human-readable trace out. No ORM, no network, no clock: everything the
rules look at is in the context, so `explain`, `ingest`, scans and what-if all decide alike.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.utils import translation

from tracking.choices import (
    Approval,
    AutoCreate,
    CorrelationMethod,
    Direction,
    EntityKind,
    Folder,
    IncomingMethod,
    Outcome,
    PartyRole,
    Reason,
    TrackOption,
)
from tracking.messages import Address, ParsedMessage, ParseFailure
from tracking.orgsettings import DEFAULT_HASH_FILTER_KEYWORDS

MAX_SENDER_MATCHES = 100
CRM_PARTY_KINDS = frozenset({EntityKind.LEAD, EntityKind.CONTACT, EntityKind.ACCOUNT})
MAILBOX_OWNER_KINDS = frozenset({EntityKind.USER, EntityKind.QUEUE})
# tracking-rules §6: User > Contact > Account > Lead > other email-enabled > Queue.
SENDER_KIND_PRIORITY: Mapping[str, int] = {
    EntityKind.USER: 0,
    EntityKind.CONTACT: 1,
    EntityKind.ACCOUNT: 2,
    EntityKind.LEAD: 3,
    EntityKind.OTHER: 4,
    EntityKind.QUEUE: 5,
}
# Forward prefixes in the languages Outlook ships most (English, German, French, Spanish, Nordic, Dutch).
FORWARD_SUBJECT_RE = re.compile(r"^\s*(fw|fwd|wg|tr|rv|vs|vb|doorst)\s*:", re.IGNORECASE)
REASON_BY_OPTION_ACCEPT: Mapping[int, Reason] = {
    TrackOption.ALL: Reason.ACCEPTED_ALL,
    TrackOption.RESPONSES: Reason.ACCEPTED_CORRELATED,
    TrackOption.CRM_PARTIES: Reason.ACCEPTED_CRM_PARTY,
    TrackOption.EMAIL_ENABLED: Reason.ACCEPTED_EMAIL_ENABLED_PARTY,
}
REASON_BY_OPTION_DECLINE: Mapping[int, Reason] = {
    TrackOption.RESPONSES: Reason.NO_CORRELATION,
    TrackOption.CRM_PARTIES: Reason.NO_CRM_PARTY,
    TrackOption.EMAIL_ENABLED: Reason.NO_EMAIL_ENABLED_PARTY,
    TrackOption.NONE: Reason.OPTION_NONE,
}


# ---------------------------------------------------------------------------------------------
# Data the engine is given
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgRules:
    """The org settings the engine reads; field names and defaults as tracking.orgsettings."""

    auto_track_sent_folder_items: bool = False
    force_filtering_method: int = -1
    syncing_mailbox_only: bool = False
    email_correlation_enabled: bool = True
    ignore_headers_for_correlation: bool = False
    do_not_correlate_forwards: bool = False
    use_tracking_tokens: bool = True
    tracking_prefix: str = "CRM"
    tracking_token_id_base: int = 0
    tracking_token_id_digits: int = 3
    tracking_token_counter_digits: int = 3
    enable_smart_matching: bool = False
    hash_filter_keywords: str = DEFAULT_HASH_FILTER_KEYWORDS
    hash_max_count: int = 20
    hash_delta_subject_count: int = 0
    hash_min_address_count: int = 2
    two_activities_for_internal: bool = True
    auto_create_on_promote: bool = True
    unresolve_sender_if_multiple: bool = False
    unresolve_recipient_if_multiple: bool = False
    resolve_inactive: bool = False
    require_approval_user: bool = True
    require_approval_queue: bool = True
    # read by scheduling, not by the engine; here so that one load gives all settings as plain data
    poll_interval_minutes: int = 5
    push_safety_net_poll_minutes: int = 60  # the poll interval of a mailbox on push (§9)
    user_reprocess_max_days: int = 30
    transient_retry_limit: int = 10
    transient_retry_minutes: int = 5
    folder_tracking_enabled: bool = True  # read by scanning: which mapped folders a cycle reads (§3.4)
    create_queue_item_for_mailbox: bool = True  # read by the page commit: queue items (§2)
    max_tracked_attachment_mb: int = 5  # read by the pipeline: which attachments keep their content (§2)

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> OrgRules:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Entity:
    """Something an address can resolve to: a user, queue or CRM record."""

    kind: EntityKind
    id: int
    name: str
    email: str
    active: bool = True
    owner_id: int | None = None  # owning user of a CRM record
    created: datetime | None = None
    has_mailbox: bool = False  # users and queues only
    track: int = TrackOption.RESPONSES  # users and queues only
    auto_create: str = AutoCreate.OFF  # users only
    other_kind: str = ""
    # users and queues with a mailbox: what makes it active for server-side sync or not (tracking-rules §4)
    mailbox_incoming: str = IncomingMethod.SERVER_SIDE_SYNC
    mailbox_enabled: bool = True
    mailbox_approval: str = Approval.APPROVED

    def label(self) -> str:
        kind = self.other_kind or english(EntityKind(self.kind))
        return (
            f"{kind} {self.name!r} <{self.email}> (#{self.id})"
            if self.id > 0
            else f"new {kind} <{self.email}>"
        )


@dataclass(frozen=True)
class RecordRef:
    """A CRM record as a regarding object."""

    id: int
    kind: str
    name: str


@dataclass(frozen=True)
class TrackedRef:
    """A tracked email as correlation and dedup see it. `key` < 0: tracked earlier in this batch."""

    key: int
    message_id: str
    direction: str
    regarding: RecordRef | None = None
    conversation_index: str = ""
    tracking_token: str | None = None
    subject_hashes: frozenset[int] = frozenset()
    address_hashes: frozenset[int] = frozenset()
    owner_id: int | None = None  # the owning user, for ownership rule 1 (tracking-rules §7)
    untracked: bool = False  # a person untracked it (§7a): never tracked again automatically


@dataclass(frozen=True)
class MailboxInfo:
    id: int
    address: str
    owner: Entity  # kind user or queue
    is_exchange: bool
    start_date: datetime | None = None  # tracking-rules §3.5: the only time floor
    owner_exclusions: frozenset[str] = frozenset()
    # a queue mailbox's owning user: ownership rule 4 (tracking-rules §7)
    queue_owner_id: int | None = None
    queue_owner_name: str = ""


@dataclass
class DecisionContext:
    """Everything the rules may look at for one batch of messages of one mailbox folder."""

    rules: OrgRules
    mailbox: MailboxInfo
    folder: str
    entities_by_address: dict[str, list[Entity]] = field(default_factory=dict)
    tracked_by_message_id: dict[str, list[TrackedRef]] = field(default_factory=dict)
    tracked_by_token: dict[str, TrackedRef] = field(default_factory=dict)
    tracked_by_conversation_index: dict[str, TrackedRef] = field(default_factory=dict)
    smart_candidates: list[TrackedRef] = field(default_factory=list)
    org_exclusions: frozenset[str] = frozenset()
    folder_rule_regarding: RecordRef | None = None
    is_folder_rule: bool = False
    earlier_prefixes: tuple[str, ...] = ()  # TrackingPrefix values used before; their tokens still count

    @property
    def token_prefixes(self) -> tuple[str, ...]:
        return (self.rules.tracking_prefix, *self.earlier_prefixes)

    def copy(self) -> DecisionContext:
        return dataclasses.replace(
            self,
            entities_by_address={k: list(v) for k, v in self.entities_by_address.items()},
            tracked_by_message_id={k: list(v) for k, v in self.tracked_by_message_id.items()},
            tracked_by_token=dict(self.tracked_by_token),
            tracked_by_conversation_index=dict(self.tracked_by_conversation_index),
            smart_candidates=list(self.smart_candidates),
        )


@dataclass(frozen=True)
class ManualTracking:
    """Track / Set regarding by a person: bypasses the filter options (tracking-rules §3.3)."""

    regarding: RecordRef | None = None


# ---------------------------------------------------------------------------------------------
# What the engine answers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceStep:
    check: str
    result: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "result": self.result, "detail": self.detail}


@dataclass(frozen=True)
class AutoCreateRequest:
    kind: str  # contact or lead
    address: str
    name: str
    owner_user_id: int


@dataclass(frozen=True)
class Party:
    """One party of a message and what it resolved to (tracking-rules §6): the sender's best match, or
    one of each recipient's matches; `entity` None when the address resolved to nothing."""

    role: PartyRole
    address: str
    entity: Entity | None


@dataclass(frozen=True)
class DecisionResult:
    message: ParsedMessage | ParseFailure
    folder: str
    direction: Direction
    outcome: Outcome
    reason: Reason
    trace: tuple[TraceStep, ...]
    accepting: Entity | None = None
    correlation_method: CorrelationMethod | None = None
    correlated: TrackedRef | None = None
    regarding: RecordRef | None = None
    existing: TrackedRef | None = None  # the TrackedEmail an already_tracked decision links to
    owner_user_id: int | None = None
    auto_create: AutoCreateRequest | None = None
    tracking_token: str | None = None  # a new token found in the subject, stored on the new TrackedEmail
    subject_hashes: frozenset[int] = frozenset()
    address_hashes: frozenset[int] = frozenset()
    # Who the message's parties are, for the EmailParty rows of a new tracked email.
    parties: tuple[Party, ...] = ()

    @property
    def message_id(self) -> str:
        return self.message.message_id


@dataclass(frozen=True)
class _Correlation:
    """What correlation found, carried onto the result of a tracked message."""

    method: CorrelationMethod | None = None
    parent: TrackedRef | None = None
    new_token: str | None = None
    subject_hashes: frozenset[int] = frozenset()
    address_hashes: frozenset[int] = frozenset()


class _Trace:
    def __init__(self) -> None:
        self.steps: list[TraceStep] = []

    def add(self, check: str, result: str, detail: str) -> None:
        self.steps.append(TraceStep(check, result, detail))


# ---------------------------------------------------------------------------------------------
# Small pure helpers (also used by the loaders, so both sides agree on keys)
# ---------------------------------------------------------------------------------------------


class LabelledChoice(Protocol):
    """A member of a TextChoices or IntegerChoices (its label a lazy, translated string)."""

    @property
    def label(self) -> object: ...


@functools.cache
def english(choice: LabelledChoice) -> str:
    """A choice's label as the engine stores it: in English whoever is signed in (tracking-rules §8).

    Kept per choice: switching the language for every label of every trace was a third of the engine's time.
    """
    with translation.override("en"):
        return str(choice.label)


def direction_for(folder: str) -> Direction:
    return Direction.OUTGOING if folder == Folder.SENT_ITEMS else Direction.INCOMING


def effective_option(candidate: Entity, rules: OrgRules) -> int:
    """SSSForceFilteringMethodForUserMailboxes (users only) else the candidate's own option."""
    if candidate.kind == EntityKind.USER and rules.force_filtering_method >= 0:
        return rules.force_filtering_method
    return candidate.track


@functools.lru_cache(maxsize=32)
def _token_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    # prefix + ":" + designator digit (0 online, 1 legacy offline) + user number + counter
    alternatives = "|".join(re.escape(p) for p in sorted(set(prefixes), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives}):[01]\d{{2,18}}(?!\d)", re.IGNORECASE)


def tracking_tokens_in(subject: str, prefixes: Sequence[str] = ("CRM",)) -> list[str]:
    """Tokens with one of these prefixes (any case) in a subject, upper-cased as they are stored."""
    wanted = tuple(p for p in prefixes if p)
    if not wanted or ":" not in subject:
        return []
    return [m.group(0).upper() for m in _token_pattern(wanted).finditer(subject)]


def format_tracking_token(rules: OrgRules, user_index: int, counter: int) -> str:
    """prefix:0 + user number (base + index, padded) + per-user counter (padded, wraps to 0)."""
    user_number = f"{rules.tracking_token_id_base + user_index:0{rules.tracking_token_id_digits}d}"
    wrapped = counter % (10**rules.tracking_token_counter_digits)
    return f"{rules.tracking_prefix}:0{user_number}{wrapped:0{rules.tracking_token_counter_digits}d}"


def conversation_index_ancestors(conversation_index: str) -> list[str]:
    """The index itself and each ancestor (22-byte header + 5-byte child blocks), nearest first."""
    if len(conversation_index) < 44:
        return []
    out = []
    length = len(conversation_index)
    while length >= 44:
        out.append(conversation_index[:length])
        length -= 10
    return out


def _hash(text: str) -> int:
    return (
        int.from_bytes(hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest(), "big") >> 1
    )


def subject_hashes(subject: str, rules: OrgRules) -> frozenset[int]:
    try:
        # Every match, not the first only (tracking-rules §5.4): a tag pattern removes the tag everywhere.
        stripped = re.sub(rules.hash_filter_keywords, "", subject)
    except re.error:
        stripped = subject
    words = stripped.lower().split()[: rules.hash_max_count]
    return frozenset(_hash(w) for w in words)


def address_hashes(addresses: Iterable[str], rules: OrgRules) -> frozenset[int]:
    unique = list(dict.fromkeys(a for a in addresses if a))[: rules.hash_max_count]
    return frozenset(_hash(a) for a in unique)


def message_address_hashes(msg: ParsedMessage, rules: OrgRules) -> frozenset[int]:
    parties = ([msg.sender.address] if msg.sender else []) + [a.address for _, a in msg.recipients]
    return address_hashes(parties, rules)


def is_excluded(address: str, patterns: frozenset[str]) -> bool:
    domain = "@" + address.rpartition("@")[2]
    return address in patterns or domain in patterns


# ---------------------------------------------------------------------------------------------
# Party resolution (tracking-rules §6)
# ---------------------------------------------------------------------------------------------


def _resolvable(entities: Sequence[Entity], rules: OrgRules) -> list[Entity]:
    # Disabled users never resolve. Active matches win; inactive ones count only when nothing active
    # matches: the only match resolves whatever its state, several only with ResolveForInactiveEntities.
    known = [e for e in entities if e.active or e.kind != EntityKind.USER]
    active = [e for e in known if e.active]
    if active:
        return active
    return known if len(known) == 1 or rules.resolve_inactive else []


def resolve_sender(address: str, ctx: DecisionContext) -> tuple[Entity | None, str]:
    everything = ctx.entities_by_address.get(address, [])
    matches = _resolvable(everything, ctx.rules)
    if not matches:
        inactive = [e for e in everything if e.kind != EntityKind.USER]
        if inactive:
            # Never "matches no record" for an address the directory has (tracking-rules §6).
            return (
                None,
                f"{address} matches {len(inactive)} inactive records and no active one: unresolved "
                "(ResolveForInactiveEntities is off)",
            )
        if everything:
            return None, f"{address} belongs to a disabled user, and disabled users never resolve"
        return None, f"{address} matches no user, queue or record"
    if len(matches) > MAX_SENDER_MATCHES:
        return (
            None,
            f"{address} matches {len(matches)} records (more than {MAX_SENDER_MATCHES}): left unresolved",
        )
    if len(matches) >= 2 and ctx.rules.unresolve_sender_if_multiple:
        return (
            None,
            f"{address} matches {len(matches)} records: unresolved (UnresolveSenderInCaseOfMultipleMatch)",
        )
    owner = ctx.mailbox.owner
    owner_user = owner.id if owner.kind == EntityKind.USER else None

    def rank(e: Entity) -> tuple[int, int, float, int]:
        owned = 0 if owner_user is not None and e.owner_id == owner_user else 1
        created = e.created.timestamp() if e.created else 0.0
        return (owned, SENDER_KIND_PRIORITY[e.kind], created, abs(e.id))

    best = min(matches, key=rank)
    why = (
        "only match"
        if len(matches) == 1
        else f"best of {len(matches)}: owner's records, then kind, then oldest"
    )
    if not best.active:
        why += (
            ", inactive"
            if len(matches) == 1
            else ", inactive: no active one matches (ResolveForInactiveEntities)"
        )
    elif left_out := sum(1 for e in everything if not e.active and e.kind != EntityKind.USER):
        why += f"; {left_out} inactive left out"
    return best, f"{address} → {best.label()} ({why})"


_ROLES: Mapping[str, PartyRole] = {role.value: role for role in PartyRole}


def party_list(
    msg: ParsedMessage, sender: Entity | None, recipients: Sequence[tuple[str, Address, list[Entity]]]
) -> tuple[Party, ...]:
    """The parties of a message: From with the resolved sender; each To, Cc and Bcc address once per role,
    one party per entity it resolved to, or one with none."""
    out = [Party(PartyRole.FROM, msg.sender.address, sender)] if msg.sender is not None else []
    seen: set[tuple[str, str]] = set()
    for header, address, matches in recipients:
        key = (header, address.address)
        if key in seen:
            continue
        seen.add(key)
        role = _ROLES[header]
        if matches:
            out.extend(Party(role, address.address, e) for e in matches)
        else:
            out.append(Party(role, address.address, None))
    return tuple(out)


def resolve_recipients(msg: ParsedMessage, ctx: DecisionContext) -> list[tuple[str, Address, list[Entity]]]:
    out = []
    for header, address in msg.recipients:
        matches = _resolvable(ctx.entities_by_address.get(address.address, []), ctx.rules)
        if len(matches) > 1 and ctx.rules.unresolve_recipient_if_multiple:
            matches = []
        out.append((header, address, matches))
    return out


# ---------------------------------------------------------------------------------------------
# Correlation (tracking-rules §5)
# ---------------------------------------------------------------------------------------------


def correlate(
    msg: ParsedMessage, ctx: DecisionContext, trace: _Trace
) -> tuple[CorrelationMethod | None, TrackedRef | None]:
    rules = ctx.rules
    header_steps = rules.email_correlation_enabled and not rules.ignore_headers_for_correlation
    header_off = (
        "off (EmailCorrelationEnabled is false)"
        if not rules.email_correlation_enabled
        else "off (IgnoreConversationIndexAndInReplyToForCorrelation)"
    )

    # 1. In-Reply-To
    if not header_steps:
        trace.add("correlation: in_reply_to", "skipped", header_off)
    elif not msg.in_reply_to:
        trace.add("correlation: in_reply_to", "no match", "the message has no In-Reply-To header")
    elif rules.do_not_correlate_forwards and FORWARD_SUBJECT_RE.match(msg.subject):
        trace.add(
            "correlation: in_reply_to",
            "skipped",
            "subject starts with a forward prefix (DoNotCorrelateForwardedEmailsAsReplies)",
        )
    else:
        for parent_id in msg.in_reply_to:
            hits = [t for t in ctx.tracked_by_message_id.get(parent_id, []) if not t.untracked]
            if hits:
                parent = hits[0]
                trace.add("correlation: in_reply_to", "match", f"In-Reply-To {parent_id} is a tracked email")
                return CorrelationMethod.IN_REPLY_TO, parent
        trace.add(
            "correlation: in_reply_to", "no match", f"In-Reply-To {', '.join(msg.in_reply_to)} is not tracked"
        )

    # 2. Tracking token
    tokens = tracking_tokens_in(msg.subject, ctx.token_prefixes)
    if not rules.use_tracking_tokens:
        trace.add("correlation: tracking_token", "skipped", "off (UseTrackingTokens is false)")
    elif not tokens:
        trace.add("correlation: tracking_token", "no match", "the subject carries no tracking token")
    else:
        for token in tokens:
            hit = ctx.tracked_by_token.get(token.upper())
            if hit is not None:
                trace.add("correlation: tracking_token", "match", f"token {token} belongs to a tracked email")
                return CorrelationMethod.TRACKING_TOKEN, hit
        trace.add(
            "correlation: tracking_token", "no match", f"token {', '.join(tokens)} is not on a tracked email"
        )

    # 3. Conversation index: the nearest tracked ancestor
    if not header_steps:
        trace.add("correlation: conversation_index", "skipped", header_off)
    elif not msg.conversation_index:
        trace.add("correlation: conversation_index", "no match", "the message has no conversation index")
    else:
        # The exact value first, whatever its shape; then the nearest tracked ancestor (tracking-rules §5.3).
        exact = msg.conversation_index
        for prefix in dict.fromkeys([exact, *conversation_index_ancestors(exact)]):
            hit = ctx.tracked_by_conversation_index.get(prefix)
            if hit is not None and hit.message_id != msg.message_id:
                depth = (len(exact) - len(prefix)) // 10
                trace.add(
                    "correlation: conversation_index",
                    "match",
                    "a tracked email has the same conversation index"
                    if prefix == exact
                    else f"no tracked email has the same conversation index; the nearest tracked ancestor "
                    f"is {depth} level(s) up (this project's refinement)",
                )
                return CorrelationMethod.CONVERSATION_INDEX, hit
        trace.add("correlation: conversation_index", "no match", "no tracked email shares this conversation")

    # 4. Smart matching
    if not rules.enable_smart_matching:
        trace.add("correlation: smart_matching", "skipped", "off (EnableSmartMatching is false)")
        return None, None
    subj = subject_hashes(msg.subject, rules)
    if not subj:
        # Without subject words every other empty subject would match on shared addresses alone.
        trace.add("correlation: smart_matching", "no match", "the subject has no words to match on")
        return None, None
    addrs = message_address_hashes(msg, rules)
    best: TrackedRef | None = None
    for cand in ctx.smart_candidates:
        if cand.message_id == msg.message_id:
            continue
        if len(subj ^ cand.subject_hashes) > rules.hash_delta_subject_count:
            continue
        if len(addrs & cand.address_hashes) < rules.hash_min_address_count:
            continue
        if best is None or _newer(cand, best):
            best = cand
    if best is None:
        trace.add(
            "correlation: smart_matching",
            "no match",
            f"no tracked email with the same subject words (±{rules.hash_delta_subject_count}) and "
            f"{rules.hash_min_address_count}+ shared addresses",
        )
        return None, None
    trace.add(
        "correlation: smart_matching",
        "match",
        f"same subject words and shared addresses as {best.message_id}",
    )
    return CorrelationMethod.SMART_MATCHING, best


def _newer(a: TrackedRef, b: TrackedRef) -> bool:
    # Provisional (in-batch, negative) keys are newer than stored ones, later in the batch newer still.
    def order(r: TrackedRef) -> tuple[int, int]:
        return (1, -r.key) if r.key < 0 else (0, r.key)

    return order(a) > order(b)


# ---------------------------------------------------------------------------------------------
# Acceptance (tracking-rules §4)
# ---------------------------------------------------------------------------------------------


def mailbox_not_syncing(entity: Entity, rules: OrgRules) -> str | None:
    """Why a user's or queue's mailbox is not active for server-side sync; None when it is (§4, §3.1)."""
    if not entity.has_mailbox:
        return "has no mailbox"
    if entity.mailbox_incoming != IncomingMethod.SERVER_SIDE_SYNC:
        return "mailbox's incoming method is not server-side synchronization"
    if not entity.mailbox_enabled:
        return "mailbox is disabled"
    required = (
        rules.require_approval_queue if entity.kind == EntityKind.QUEUE else rules.require_approval_user
    )
    if required and entity.mailbox_approval != Approval.APPROVED:
        state = "rejected" if entity.mailbox_approval == Approval.REJECTED else "not approved"
        return f"mailbox is {state} (approval is required)"
    return None


def candidates(ctx: DecisionContext, recipients: list[tuple[str, Address, list[Entity]]]) -> list[Entity]:
    owner = ctx.mailbox.owner
    out = [owner]
    if ctx.folder == Folder.SENT_ITEMS or ctx.rules.syncing_mailbox_only:
        return out
    seen = {(owner.kind, owner.id)}
    for _, _, entities in recipients:
        for e in entities:
            if (
                e.kind in MAILBOX_OWNER_KINDS
                and mailbox_not_syncing(e, ctx.rules) is None
                and (e.kind, e.id) not in seen
            ):
                seen.add((e.kind, e.id))
                out.append(e)
    return out


def left_out_recipients(
    ctx: DecisionContext, recipients: list[tuple[str, Address, list[Entity]]]
) -> list[tuple[Entity, str]]:
    """Users and queues among the recipients whose mailbox exists but does not sync: no candidates (§4)."""
    if ctx.folder == Folder.SENT_ITEMS or ctx.rules.syncing_mailbox_only:
        return []
    owner = ctx.mailbox.owner
    seen = {(owner.kind, owner.id)}
    out = []
    for _, _, entities in recipients:
        for e in entities:
            if e.kind in MAILBOX_OWNER_KINDS and e.has_mailbox and (e.kind, e.id) not in seen:
                seen.add((e.kind, e.id))
                why = mailbox_not_syncing(e, ctx.rules)
                if why is not None:
                    out.append((e, why))
    return out


def owner_of(
    ctx: DecisionContext,
    *,
    accepting: Entity | None,
    correlated: TrackedRef | None,
    sender: Entity | None,
    recipients: list[tuple[str, Address, list[Entity]]],
    incoming: bool,
) -> tuple[int | None, str, str]:
    """The owning user of a new tracked email, the first rule that applies (tracking-rules §7).

    Returns (user id or None, the rule's short name, a detail for the trace).
    """
    users = [e for _, _, es in recipients for e in es if e.kind == EntityKind.USER]
    if correlated is not None and correlated.owner_id is not None:
        parties = ([sender] if sender is not None and sender.kind == EntityKind.USER else []) + users
        party = next((e for e in parties if e.id == correlated.owner_id), None)
        if party is not None:
            return (
                party.id,
                "1: correlated",
                f"the owner of the correlated email {correlated.message_id}, {party.name}, is a party",
            )
    if accepting is not None and accepting.kind == EntityKind.USER:
        return accepting.id, "2: accepting user", f"the accepting user {accepting.name}"
    if incoming:
        # To, then Cc, then Bcc: resolve_recipients keeps the message's order.
        first = next((e for e in users if mailbox_not_syncing(e, ctx.rules) is None), None)
        if first is not None:
            return first.id, "3: first user recipient", f"{first.name}, the first user with an active mailbox"
    owner = ctx.mailbox.owner
    if owner.kind == EntityKind.USER:
        return owner.id, "4: mailbox owner", f"{owner.name}, the syncing mailbox's owner"
    if ctx.mailbox.queue_owner_id is not None:
        return (
            ctx.mailbox.queue_owner_id,
            "4: mailbox owner",
            f"{ctx.mailbox.queue_owner_name}, the owning user of queue {owner.name}",
        )
    return None, "none", f"no rule applies and queue {owner.name} has no owning user"


def _accepts(
    option: int,
    *,
    incoming: bool,
    sender: Entity | None,
    recipients: list[tuple[str, Address, list[Entity]]],
    correlated: bool,
) -> tuple[bool, str]:
    if option == TrackOption.ALL:
        return True, "accepts every message"
    if option == TrackOption.NONE:
        return False, "accepts no message"
    if option == TrackOption.RESPONSES:
        return (
            (True, "the message correlates to a tracked email")
            if correlated
            else (
                False,
                "the message does not correlate to a tracked email",
            )
        )
    kinds = CRM_PARTY_KINDS if option == TrackOption.CRM_PARTIES else frozenset(SENDER_KIND_PRIORITY)
    what = "a lead, contact or account" if option == TrackOption.CRM_PARTIES else "an email-enabled record"
    if incoming:
        if sender is not None and sender.kind in kinds:
            return True, f"the sender is {what}"
        return False, f"the sender is not {what}"
    for _, address, entities in recipients:
        if any(e.kind in kinds for e in entities):
            return True, f"recipient {address.address} is {what}"
    return False, f"no recipient is {what}"


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


def decide(
    msg: ParsedMessage | ParseFailure, ctx: DecisionContext, *, manual: ManualTracking | None = None
) -> DecisionResult:
    """Decide one message; the trace records every check made, in order."""
    trace = _Trace()
    direction = direction_for(ctx.folder)
    rules = ctx.rules
    # What §6 resolved, once it has; a tracked result carries it as its parties (only a tracked one: most
    # messages are not, and a message to hundreds would make hundreds of parties for nothing).
    resolution: list[tuple[ParsedMessage, Entity | None, list[tuple[str, Address, list[Entity]]]]] = []

    def result(
        outcome: Outcome,
        reason: Reason,
        detail: str,
        *,
        accepting: Entity | None = None,
        regarding: RecordRef | None = None,
        existing: TrackedRef | None = None,
        owner_user_id: int | None = None,
        auto_create: AutoCreateRequest | None = None,
        correlation: _Correlation | None = None,
    ) -> DecisionResult:
        trace.add("outcome", f"{outcome.value}/{reason.value}", detail)
        c = correlation or _Correlation()
        return DecisionResult(
            message=msg,
            folder=ctx.folder,
            direction=direction,
            outcome=outcome,
            reason=reason,
            trace=tuple(trace.steps),
            accepting=accepting,
            correlation_method=c.method,
            correlated=c.parent,
            regarding=regarding,
            existing=existing,
            owner_user_id=owner_user_id,
            auto_create=auto_create,
            tracking_token=c.new_token,
            subject_hashes=c.subject_hashes,
            address_hashes=c.address_hashes,
            parties=party_list(*resolution[0]) if resolution and outcome == Outcome.TRACKED else (),
        )

    if isinstance(msg, ParseFailure):
        if msg.fetch_failed:
            trace.add("fetch", "failed", msg.error)
            return result(
                Outcome.FAILED, Reason.FETCH_ERROR, "the message could not be fetched; nothing was tracked"
            )
        trace.add("parse", "failed", msg.error)
        return result(
            Outcome.FAILED, Reason.UNPARSEABLE, "the message could not be parsed; nothing was tracked"
        )

    parse_detail = f"Message-ID {msg.message_id}" + (
        " (synthetic: the message has none)" if msg.message_id_synthetic else ""
    )
    parse_detail += f"; {len(msg.recipients)} recipient(s)"
    if msg.defects:
        parse_detail += f"; defects: {', '.join(msg.defects[:5])}" + (" …" if len(msg.defects) > 5 else "")
    trace.add("parse", "ok", parse_detail)

    # §3: what is scanned
    if manual is None:
        if ctx.folder == Folder.SENT_ITEMS:
            if not rules.auto_track_sent_folder_items:
                trace.add(
                    "folder", "not scanned", "Sent Items are tracked only with AutoTrackSentFolderItems on"
                )
                return result(Outcome.NOT_TRACKED, Reason.SENT_ITEMS_DISABLED, "Sent Items tracking is off")
            if not ctx.mailbox.is_exchange:
                trace.add("folder", "not scanned", "Sent Items are tracked only for Exchange mailboxes")
                return result(
                    Outcome.NOT_TRACKED,
                    Reason.SENT_ITEMS_UNSUPPORTED_SERVER,
                    "this mailbox's server is not Exchange",
                )
            trace.add("folder", "sentitems", "Sent Items of an Exchange mailbox, AutoTrackSentFolderItems on")
        elif ctx.is_folder_rule:
            trace.add("folder", ctx.folder, "a folder tracking rule maps this folder")
        else:
            trace.add("folder", "inbox", "the root Inbox is always scanned")
        # §3.5: the configured start date is the only time floor; how far earlier scans got plays no part,
        # so mail that turns up late (moved out of Junk Email, delayed, restored) is still evaluated.
        start_date = ctx.mailbox.start_date
        # In a mapped folder the time that counts is when the message got there (§3.4): its last change.
        by_modified = ctx.is_folder_rule and msg.last_modified is not None
        when = msg.last_modified if by_modified else msg.received_at
        what = "last modified" if by_modified else "received"
        if start_date is not None and when is not None and when <= start_date:
            trace.add(
                "start_date",
                "before",
                f"{what} {when:%Y-%m-%d %H:%M:%S} UTC,"
                f" not after the start date {start_date:%Y-%m-%d %H:%M:%S} UTC",
            )
            return result(
                Outcome.NOT_TRACKED, Reason.BEFORE_WATERMARK, f"{what} before the mailbox's start date"
            )
        trace.add(
            "start_date",
            "after",
            "no start date set"
            if start_date is None
            else (
                f"no {what} time; evaluated"
                if when is None
                else f"{what} after the start date {start_date:%Y-%m-%d %H:%M:%S} UTC"
            ),
        )
    else:
        trace.add(
            "manual",
            "requested",
            "tracked by a person: filter options, start date and exclusions do not apply",
        )

    # §6: parties
    sender: Entity | None = None
    if msg.sender is None:
        trace.add("sender", "missing", "the message has no readable From address")
    else:
        sender, detail = resolve_sender(msg.sender.address, ctx)
        trace.add("sender", "resolved" if sender else "unresolved", detail)
    recipients = resolve_recipients(msg, ctx)
    resolved = [(a, es) for _, a, es in recipients if es]
    # Labels only for the ten shown: a label is a translated string, and mail to hundreds costs hundreds.
    shown = [f"{a.address} → {', '.join(e.label() for e in es)}" for a, es in resolved[:10]]
    trace.add(
        "recipients",
        f"{len(resolved)} of {len(recipients)} resolved",
        "; ".join(shown) + (f"; … {len(resolved) - 10} more" if len(resolved) > 10 else "")
        or "none resolved",
    )
    resolution.append((msg, sender, recipients))
    internal = sender is not None and sender.kind == EntityKind.USER

    # §7a: an email a person untracked is never tracked again by a scan or a round (by hand it may be)
    untracked = [t for t in ctx.tracked_by_message_id.get(msg.message_id, []) if t.untracked]
    if untracked and manual is None:
        trace.add("duplicate", "untracked", "a person untracked the email with this Message-ID")
        return result(
            Outcome.NOT_TRACKED,
            Reason.UNTRACKED,
            "untracked by a person; scans never track it again",
            existing=untracked[0],
        )

    # §7: duplicates
    existing = [t for t in ctx.tracked_by_message_id.get(msg.message_id, []) if not t.untracked]
    same = [t for t in existing if t.direction == direction]
    other = [t for t in existing if t.direction != direction]
    if existing and ctx.is_folder_rule and manual is None:
        # Tracked before (from the Inbox, say) and then moved into a mapped folder: the rule sets the
        # regarding of that email; there is never a second one (§3.4).
        first = (same or other)[0]
        regarding = ctx.folder_rule_regarding or first.regarding
        trace.add(
            "duplicate",
            "found",
            "already tracked; moved into a mapped folder, so the rule sets its regarding"
            + (f" to {regarding.name}" if regarding else ""),
        )
        owner = ctx.mailbox.owner
        return result(
            Outcome.TRACKED,
            Reason.FOLDER_RULE,
            f"everything in folder {ctx.folder!r} is tracked; linked to the existing tracked email",
            accepting=owner,
            existing=first,
            regarding=regarding,
            owner_user_id=owner.id if owner.kind == EntityKind.USER else None,
        )
    if same:
        trace.add("duplicate", "found", f"a {direction.value} email with this Message-ID is already tracked")
        return result(
            Outcome.ALREADY_TRACKED,
            Reason.DUPLICATE_MESSAGE_ID,
            "linked to the existing tracked email",
            existing=same[0],
            regarding=same[0].regarding,
        )
    if other:
        if internal and rules.two_activities_for_internal:
            trace.add(
                "duplicate",
                "other direction",
                "tracked in the other direction; internal mail may be tracked once per direction "
                "(TrackEmailsBetweenUsersAsTwoActivities)",
            )
        elif internal:
            trace.add("duplicate", "other direction", "internal mail already tracked in the other direction")
            return result(
                Outcome.NOT_TRACKED,
                Reason.INTERNAL_DUPLICATE,
                "TrackEmailsBetweenUsersAsTwoActivities is off: one activity per internal message",
            )
        else:
            trace.add("duplicate", "found", "already tracked in the other direction")
            return result(
                Outcome.ALREADY_TRACKED,
                Reason.DUPLICATE_MESSAGE_ID,
                "linked to the existing tracked email",
                existing=other[0],
                regarding=other[0].regarding,
            )
    else:
        trace.add("duplicate", "none", "no tracked email has this Message-ID")

    # §10: exclusion list
    if manual is None:
        patterns = ctx.org_exclusions | ctx.mailbox.owner_exclusions
        checked = (
            [a.address for _, a in msg.recipients]
            if direction == Direction.OUTGOING
            else ([msg.sender.address] if msg.sender else [])
        )
        hit = next((a for a in checked if is_excluded(a, patterns)), None)
        if hit is not None:
            trace.add("exclusion", "excluded", f"{hit} is on the exclusion list")
            return result(Outcome.NOT_TRACKED, Reason.EXCLUDED_ADDRESS, "an address on the exclusion list")
        trace.add("exclusion", "none", "no address of the message is on the exclusion list")

    # §5: correlation, for option 1 and to inherit the regarding
    method, parent = correlate(msg, ctx, trace)
    inherited = parent.regarding if parent else None
    token = next(
        (t for t in tracking_tokens_in(msg.subject, ctx.token_prefixes) if t not in ctx.tracked_by_token),
        None,
    )
    owner = ctx.mailbox.owner
    found = _Correlation(
        method=method,
        parent=parent,
        new_token=token,
        subject_hashes=subject_hashes(msg.subject, rules),
        address_hashes=message_address_hashes(msg, rules),
    )

    incoming = direction == Direction.INCOMING

    def owned(accepted_by: Entity | None) -> int | None:
        # tracking-rules §7: the first ownership rule that applies, named in the trace
        user_id, rule, detail = owner_of(
            ctx,
            accepting=accepted_by,
            correlated=parent,
            sender=sender,
            recipients=recipients,
            incoming=incoming,
        )
        trace.add("owner", rule, detail)
        return user_id

    if manual is not None:
        regarding = manual.regarding or inherited
        # The mailbox's owner asked for it, so for ownership they stand where an accepting entity would.
        manual_owner = owned(owner)
        return result(
            Outcome.TRACKED,
            Reason.MANUAL,
            "tracked manually" + (f", regarding {regarding.name}" if regarding else ""),
            regarding=regarding,
            owner_user_id=manual_owner,
            correlation=found,
        )
    if ctx.is_folder_rule:
        regarding = ctx.folder_rule_regarding or inherited
        rule_owner = owned(owner)
        return result(
            Outcome.TRACKED,
            Reason.FOLDER_RULE,
            f"everything in folder {ctx.folder!r} is tracked",
            regarding=regarding,
            accepting=owner,
            owner_user_id=rule_owner,
            correlation=found,
        )

    # §4: who accepts
    accepting: Entity | None = None
    owner_reason: Reason | None = None
    left_out = left_out_recipients(ctx, recipients)
    if left_out:
        trace.add(
            "candidates",
            f"{len(left_out)} left out",
            "; ".join(f"{e.kind} {e.name}: {why}" for e, why in left_out)
            + "; only mailboxes active for server-side sync take part",
        )
    for position, cand in enumerate(candidates(ctx, recipients)):
        option = effective_option(cand, rules)
        forced = (
            " (forced by SSSForceFilteringMethodForUserMailboxes)"
            if (cand.kind == EntityKind.USER and rules.force_filtering_method >= 0)
            else ""
        )
        ok, why = _accepts(
            option, incoming=incoming, sender=sender, recipients=recipients, correlated=parent is not None
        )
        role = "mailbox owner" if position == 0 else "recipient with a mailbox"
        trace.add(
            f"candidate: {cand.kind} {cand.name}",
            "accepts" if ok else "declines",
            f"{role}; option {option} '{english(TrackOption(option))}'{forced}: {why}",
        )
        if position == 0 and not ok:
            owner_reason = REASON_BY_OPTION_DECLINE[option]
        if ok:
            accepting = cand
            reason = REASON_BY_OPTION_ACCEPT[option]
            break
    if accepting is None:
        assert owner_reason is not None
        return result(
            Outcome.NOT_TRACKED,
            owner_reason,
            "no candidate accepts the message; the reason is the mailbox owner's",
        )

    auto_create = None
    # Only a sender no record has at all: one left unresolved by several or inactive matches
    # already exists in the directory, and creating it again would make a duplicate.
    unknown_sender = msg.sender is not None and not ctx.entities_by_address.get(msg.sender.address)
    if incoming and sender is None and msg.sender is not None:
        if not unknown_sender:
            trace.add("auto-create", "not needed", "the sender's address is already in the directory")
        elif not rules.auto_create_on_promote:
            trace.add("auto-create", "off", "unresolved sender; AutoCreateContactOnPromote is false")
        elif accepting.kind == EntityKind.USER and accepting.auto_create in (
            AutoCreate.CONTACT,
            AutoCreate.LEAD,
        ):
            auto_create = AutoCreateRequest(
                kind=accepting.auto_create,
                address=msg.sender.address,
                name=msg.sender.name or msg.sender.address,
                owner_user_id=accepting.id,
            )
            trace.add(
                "auto-create",
                accepting.auto_create,
                f"create a {accepting.auto_create} for {msg.sender.address}, owned by {accepting.name}",
            )
        else:
            trace.add(
                "auto-create", "not asked", "the accepting entity does not create records automatically"
            )
    owner_user_id = owned(accepting)
    return result(
        Outcome.TRACKED,
        reason,
        f"accepted by {accepting.kind} {accepting.name}",
        accepting=accepting,
        regarding=inherited,
        owner_user_id=owner_user_id,
        auto_create=auto_create,
        correlation=found,
    )


def decide_batch(
    messages: Sequence[ParsedMessage | ParseFailure],
    ctx: DecisionContext,
    *,
    manual: ManualTracking | None = None,
) -> list[DecisionResult]:
    """Decide messages in order, as if each earlier one were already committed.

    A message tracked early in the batch is visible to correlation and dedup of later ones, and an
    auto-created sender resolves for later messages: a batch decides exactly as one-by-one would.
    Keys of those provisional rows are negative (-1 for the first message, ...).
    """
    work = ctx.copy()
    results = []
    for position, msg in enumerate(messages):
        res = decide(msg, work, manual=manual)
        results.append(res)
        if res.outcome == Outcome.TRACKED and isinstance(msg, ParsedMessage) and res.existing is None:
            ref = TrackedRef(
                key=-(position + 1),
                message_id=msg.message_id,
                direction=res.direction,
                regarding=res.regarding,
                conversation_index=msg.conversation_index,
                tracking_token=res.tracking_token,
                subject_hashes=res.subject_hashes,
                address_hashes=res.address_hashes,
                owner_id=res.owner_user_id,
            )
            work.tracked_by_message_id.setdefault(ref.message_id, []).append(ref)
            if ref.tracking_token:
                work.tracked_by_token.setdefault(ref.tracking_token.upper(), ref)
            if ref.conversation_index:
                work.tracked_by_conversation_index.setdefault(ref.conversation_index, ref)
            if work.rules.enable_smart_matching:
                work.smart_candidates.append(ref)
        if res.auto_create is not None:
            provisional = Entity(
                kind=EntityKind(res.auto_create.kind),
                id=-(position + 1),
                name=res.auto_create.name,
                email=res.auto_create.address,
                owner_id=res.auto_create.owner_user_id,
            )
            work.entities_by_address.setdefault(provisional.email, []).append(provisional)
    return results
