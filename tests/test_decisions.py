"""Unit tests of the pure decision engine (tracking.decisions) against tracking-rules §3–§8.

Everything here is built in memory: no database, no parser. Every decision goes through `run()`,
which also checks the invariants of tracking-rules §8 (the trace ends with an "outcome" step and the
(outcome, reason) pair is one of choices.REASONS_BY_OUTCOME).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from tracking.choices import (
    REASONS_BY_OUTCOME,
    AutoCreate,
    CorrelationMethod,
    Direction,
    EntityKind,
    Folder,
    Outcome,
    Reason,
    TrackOption,
)
from tracking.decisions import (
    AutoCreateRequest,
    DecisionContext,
    DecisionResult,
    Entity,
    MailboxInfo,
    ManualTracking,
    OrgRules,
    RecordRef,
    TrackedRef,
    address_hashes,
    candidates,
    decide,
    decide_batch,
    format_tracking_token,
    resolve_recipients,
    resolve_sender,
    subject_hashes,
    tracking_tokens_in,
)
from tracking.messages import Address, ParsedMessage, ParseFailure

# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ALICE_ADDR = "alice@contoso.com"
BOB_ADDR = "bob@contoso.com"
SUPPORT_ADDR = "support@contoso.com"
CAROL_ADDR = "carol@fabrikam.com"

ACME = RecordRef(id=900, kind="account", name="Acme")
GLOBEX = RecordRef(id=901, kind="account", name="Globex")
INITECH = RecordRef(id=902, kind="account", name="Initech")
UMBRELLA = RecordRef(id=903, kind="account", name="Umbrella")

ROOT_INDEX = "01" + "ab" * 21  # 22 bytes: a conversation's header block
CHILD_INDEX = ROOT_INDEX + "0000000001"  # + one 5-byte child block
GRANDCHILD_INDEX = CHILD_INDEX + "0000000002"


def user(
    id: int,
    email: str,
    name: str = "",
    *,
    track: int = TrackOption.RESPONSES,
    auto_create: str = AutoCreate.OFF,
    has_mailbox: bool = True,
    active: bool = True,
    created: datetime | None = None,
) -> Entity:
    return Entity(
        kind=EntityKind.USER,
        id=id,
        name=name or email.partition("@")[0],
        email=email,
        active=active,
        created=created,
        has_mailbox=has_mailbox,
        track=track,
        auto_create=auto_create,
    )


def queue(
    id: int,
    email: str,
    name: str = "",
    *,
    track: int = TrackOption.ALL,
    has_mailbox: bool = True,
    active: bool = True,
    created: datetime | None = None,
) -> Entity:
    return Entity(
        kind=EntityKind.QUEUE,
        id=id,
        name=name or email.partition("@")[0],
        email=email,
        active=active,
        created=created,
        has_mailbox=has_mailbox,
        track=track,
    )


def record(
    kind: EntityKind,
    id: int,
    email: str,
    name: str = "",
    *,
    owner_id: int | None = None,
    active: bool = True,
    created: datetime | None = None,
) -> Entity:
    return Entity(
        kind=kind,
        id=id,
        name=name or f"{kind} {id}",
        email=email,
        active=active,
        owner_id=owner_id,
        created=created,
        other_kind="Competitor" if kind == EntityKind.OTHER else "",
    )


ALICE = user(1, ALICE_ADDR, "Alice")
BOB = user(2, BOB_ADDR, "Bob")
SUPPORT = queue(3, SUPPORT_ADDR, "Support")


def message(
    mid: str = "<m1@fabrikam.com>",
    *,
    sender: str | None = CAROL_ADDR,
    sender_name: str = "",
    to: Sequence[str] = (ALICE_ADDR,),
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    subject: str = "Hello",
    in_reply_to: Sequence[str] = (),
    conversation_index: str = "",
    received_at: datetime | None = None,
) -> ParsedMessage:
    return ParsedMessage(
        provider_item_id=f"item-{mid}",
        message_id=mid,
        message_id_synthetic=False,
        subject=subject,
        sender=Address(sender, sender_name) if sender else None,
        to=tuple(Address(a) for a in to),
        cc=tuple(Address(a) for a in cc),
        bcc=tuple(Address(a) for a in bcc),
        sent_at=received_at,
        received_at=received_at,
        in_reply_to=tuple(in_reply_to),
        conversation_index=conversation_index,
    )


def tracked(
    key: int,
    mid: str,
    *,
    direction: Direction = Direction.INCOMING,
    regarding: RecordRef | None = None,
    conversation_index: str = "",
    token: str | None = None,
    subject: str | None = None,
    addresses: Iterable[str] = (),
) -> TrackedRef:
    rules = OrgRules()
    return TrackedRef(
        key=key,
        message_id=mid,
        direction=direction,
        regarding=regarding,
        conversation_index=conversation_index,
        tracking_token=token,
        subject_hashes=subject_hashes(subject, rules) if subject is not None else frozenset(),
        address_hashes=address_hashes(addresses, rules),
    )


def context(
    *,
    owner: Entity = ALICE,
    folder: str = Folder.INBOX,
    entities: Iterable[Entity] = (),
    refs: Iterable[TrackedRef] = (),
    is_exchange: bool = True,
    start_date: datetime | None = None,
    org_exclusions: Iterable[str] = (),
    owner_exclusions: Iterable[str] = (),
    is_folder_rule: bool = False,
    folder_rule_regarding: RecordRef | None = None,
    earlier_prefixes: tuple[str, ...] = (),
    **rules: object,
) -> DecisionContext:
    """A context for `owner`'s mailbox; the owner resolves by address, as the loader would make it."""
    by_address: dict[str, list[Entity]] = {}
    everyone = list(entities)
    if not any(e.kind == owner.kind and e.id == owner.id for e in everyone):
        everyone.insert(0, owner)
    for e in everyone:
        by_address.setdefault(e.email, []).append(e)
    refs = list(refs)
    by_mid: dict[str, list[TrackedRef]] = {}
    for r in refs:
        by_mid.setdefault(r.message_id, []).append(r)
    return DecisionContext(
        rules=OrgRules(**rules),  # type: ignore[arg-type]
        mailbox=MailboxInfo(
            id=10,
            address=owner.email,
            owner=owner,
            is_exchange=is_exchange,
            start_date=start_date,
            owner_exclusions=frozenset(owner_exclusions),
        ),
        folder=folder,
        entities_by_address=by_address,
        tracked_by_message_id=by_mid,
        tracked_by_token={r.tracking_token.upper(): r for r in refs if r.tracking_token},
        tracked_by_conversation_index={r.conversation_index: r for r in refs if r.conversation_index},
        smart_candidates=[r for r in refs if r.subject_hashes],
        org_exclusions=frozenset(org_exclusions),
        folder_rule_regarding=folder_rule_regarding,
        is_folder_rule=is_folder_rule,
        earlier_prefixes=earlier_prefixes,
    )


def sent_context(**kw: object) -> DecisionContext:
    """Sent Items of an Exchange mailbox with AutoTrackSentFolderItems on."""
    kw.setdefault("auto_track_sent_folder_items", True)
    return context(folder=Folder.SENT_ITEMS, **kw)  # type: ignore[arg-type]


def check_invariants(res: DecisionResult) -> None:
    assert res.trace, "a decision without a trace"
    last = res.trace[-1]
    assert last.check == "outcome"
    assert last.result == f"{res.outcome.value}/{res.reason.value}"
    assert res.reason in REASONS_BY_OUTCOME[res.outcome], (res.outcome, res.reason)


def run(
    msg: ParsedMessage | ParseFailure, ctx: DecisionContext, manual: ManualTracking | None = None
) -> DecisionResult:
    res = decide(msg, ctx, manual=manual)
    check_invariants(res)
    return res


def step(res: DecisionResult, check: str):
    found = [s for s in res.trace if s.check == check]
    assert len(found) == 1, f"{check!r} appears {len(found)} times in {res.trace}"
    return found[0]


def candidate_names(res: DecisionResult) -> list[str]:
    return [s.check.rpartition(" ")[2] for s in res.trace if s.check.startswith("candidate:")]


# ---------------------------------------------------------------------------------------------
# §4 acceptance table: every track option, both folders, accepted and declined
# ---------------------------------------------------------------------------------------------

PARTY = "xavier@fabrikam.com"
PARENT = tracked(50, "<parent@contoso.com>", direction=Direction.OUTGOING, regarding=ACME)


def party_entities(kind: EntityKind | None) -> list[Entity]:
    """What PARTY resolves to: nothing, or one entity of `kind` (no mailbox, so never a candidate)."""
    if kind is None:
        return []
    if kind == EntityKind.USER:
        return [user(30, PARTY, "Xavier", has_mailbox=False)]
    if kind == EntityKind.QUEUE:
        return [queue(31, PARTY, "Sales", has_mailbox=False)]
    return [record(kind, 32, PARTY)]


def table_case(folder: str, track: int, party: EntityKind | None, reply: bool):
    """Inbox: PARTY writes to Alice. Sent Items: Alice writes to PARTY. Optionally a reply to PARENT."""
    owner = user(1, ALICE_ADDR, "Alice", track=track)
    in_reply_to = (PARENT.message_id,) if reply else ()
    if folder == Folder.INBOX:
        msg = message(sender=PARTY, to=(ALICE_ADDR,), in_reply_to=in_reply_to)
    else:
        msg = message(sender=ALICE_ADDR, to=(PARTY,), in_reply_to=in_reply_to)
    ctx = context(
        owner=owner,
        folder=folder,
        entities=party_entities(party),
        refs=[PARENT] if reply else [],
        auto_track_sent_folder_items=True,
    )
    return msg, ctx, owner


CON, ACC, LEA, OTH = EntityKind.CONTACT, EntityKind.ACCOUNT, EntityKind.LEAD, EntityKind.OTHER
USR, QUE = EntityKind.USER, EntityKind.QUEUE
TABLE = [
    # track, party kind, reply to a tracked email, outcome, reason
    (0, None, False, Outcome.TRACKED, Reason.ACCEPTED_ALL),
    (0, CON, True, Outcome.TRACKED, Reason.ACCEPTED_ALL),
    (1, None, True, Outcome.TRACKED, Reason.ACCEPTED_CORRELATED),
    (1, CON, True, Outcome.TRACKED, Reason.ACCEPTED_CORRELATED),
    (1, None, False, Outcome.NOT_TRACKED, Reason.NO_CORRELATION),
    (1, CON, False, Outcome.NOT_TRACKED, Reason.NO_CORRELATION),
    (2, CON, False, Outcome.TRACKED, Reason.ACCEPTED_CRM_PARTY),
    (2, ACC, False, Outcome.TRACKED, Reason.ACCEPTED_CRM_PARTY),
    (2, LEA, False, Outcome.TRACKED, Reason.ACCEPTED_CRM_PARTY),
    (2, None, False, Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY),
    (2, None, True, Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY),  # correlation does not help option 2
    (2, USR, False, Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY),  # users, queues and "other" count for 3 only
    (2, QUE, False, Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY),
    (2, OTH, False, Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY),
    (3, CON, False, Outcome.TRACKED, Reason.ACCEPTED_EMAIL_ENABLED_PARTY),
    (3, ACC, False, Outcome.TRACKED, Reason.ACCEPTED_EMAIL_ENABLED_PARTY),
    (3, LEA, False, Outcome.TRACKED, Reason.ACCEPTED_EMAIL_ENABLED_PARTY),
    (3, USR, False, Outcome.TRACKED, Reason.ACCEPTED_EMAIL_ENABLED_PARTY),
    (3, QUE, False, Outcome.TRACKED, Reason.ACCEPTED_EMAIL_ENABLED_PARTY),
    (3, OTH, False, Outcome.TRACKED, Reason.ACCEPTED_EMAIL_ENABLED_PARTY),
    (3, None, False, Outcome.NOT_TRACKED, Reason.NO_EMAIL_ENABLED_PARTY),
    (3, None, True, Outcome.NOT_TRACKED, Reason.NO_EMAIL_ENABLED_PARTY),
    (4, None, False, Outcome.NOT_TRACKED, Reason.OPTION_NONE),
    (4, CON, True, Outcome.NOT_TRACKED, Reason.OPTION_NONE),  # even a correlated reply from a contact
]


@pytest.mark.parametrize("folder", [Folder.INBOX, Folder.SENT_ITEMS])
@pytest.mark.parametrize(("track", "party", "reply", "outcome", "reason"), TABLE)
def test_it_applies_the_acceptance_table(folder, track, party, reply, outcome, reason):
    msg, ctx, owner = table_case(folder, track, party, reply)
    res = run(msg, ctx)
    assert (res.outcome, res.reason) == (outcome, reason)
    if outcome == Outcome.TRACKED:
        assert res.accepting == owner
        assert res.owner_user_id == owner.id
    else:
        assert res.accepting is None
    assert res.direction == (Direction.OUTGOING if folder == Folder.SENT_ITEMS else Direction.INCOMING)


def test_it_decides_option_2_and_3_on_the_sender_not_the_recipients_in_the_inbox():
    contact = record(EntityKind.CONTACT, 40, "dana@fabrikam.com")
    msg = message(sender=CAROL_ADDR, to=(ALICE_ADDR, "dana@fabrikam.com"))
    for track, reason in ((2, Reason.NO_CRM_PARTY), (3, Reason.NO_EMAIL_ENABLED_PARTY)):
        res = run(msg, context(owner=user(1, ALICE_ADDR, "Alice", track=track), entities=[contact]))
        assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, reason)


def test_it_ignores_the_sender_in_sent_items():
    # Alice (a user, so an email-enabled record) sends to an unknown address: the recipients decide.
    owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.EMAIL_ENABLED)
    res = run(message(sender=ALICE_ADDR, to=(CAROL_ADDR,)), sent_context(owner=owner))
    assert step(res, "sender").result == "resolved"
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.NO_EMAIL_ENABLED_PARTY)


@pytest.mark.parametrize(
    ("track", "reason"), [(2, Reason.ACCEPTED_CRM_PARTY), (3, Reason.ACCEPTED_EMAIL_ENABLED_PARTY)]
)
def test_it_accepts_sent_items_when_any_recipient_resolves(track, reason):
    owner = user(1, ALICE_ADDR, "Alice", track=track)
    lead = record(EntityKind.LEAD, 41, "lena@fabrikam.com")
    msg = message(sender=ALICE_ADDR, to=(CAROL_ADDR,), cc=("nobody@example.org",), bcc=("lena@fabrikam.com",))
    res = run(msg, sent_context(owner=owner, entities=[lead]))
    assert (res.outcome, res.reason) == (Outcome.TRACKED, reason)


def test_it_counts_a_user_recipient_in_sent_items_for_option_3_only():
    msg = message(sender=ALICE_ADDR, to=(BOB_ADDR,))
    res2 = run(msg, sent_context(owner=user(1, ALICE_ADDR, track=2), entities=[BOB]))
    res3 = run(msg, sent_context(owner=user(1, ALICE_ADDR, track=3), entities=[BOB]))
    assert (res2.outcome, res2.reason) == (Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY)
    assert (res3.outcome, res3.reason) == (Outcome.TRACKED, Reason.ACCEPTED_EMAIL_ENABLED_PARTY)


# ---------------------------------------------------------------------------------------------
# §3 Sent Items rules and direction
# ---------------------------------------------------------------------------------------------


def test_it_does_not_track_sent_items_when_the_setting_is_off():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    res = run(
        message(sender=ALICE_ADDR, to=(CAROL_ADDR,)),
        sent_context(owner=owner, auto_track_sent_folder_items=False),
    )
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.SENT_ITEMS_DISABLED)
    assert res.direction == Direction.OUTGOING


def test_it_does_not_track_sent_items_of_a_non_exchange_mailbox():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    res = run(message(sender=ALICE_ADDR, to=(CAROL_ADDR,)), sent_context(owner=owner, is_exchange=False))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.SENT_ITEMS_UNSUPPORTED_SERVER)


def test_it_tracks_the_inbox_of_a_non_exchange_mailbox():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    res = run(message(), context(owner=owner, is_exchange=False))
    assert (res.outcome, res.reason) == (Outcome.TRACKED, Reason.ACCEPTED_ALL)


@pytest.mark.parametrize(
    ("folder", "direction"), [(Folder.INBOX, Direction.INCOMING), (Folder.SENT_ITEMS, Direction.OUTGOING)]
)
@pytest.mark.parametrize("track", [0, 4])
def test_it_sets_the_direction_from_the_folder(folder, direction, track):
    owner = user(1, ALICE_ADDR, track=track)
    res = run(
        message(sender=ALICE_ADDR, to=(CAROL_ADDR,)),
        context(owner=owner, folder=folder, auto_track_sent_folder_items=True),
    )
    assert res.direction == direction
    assert res.folder == folder


# ---------------------------------------------------------------------------------------------
# §4 candidates
# ---------------------------------------------------------------------------------------------

DAVE = user(4, "dave@contoso.com", "Dave", track=TrackOption.NONE)
ERIN = user(5, "erin@contoso.com", "Erin", track=TrackOption.ALL, has_mailbox=False)
HELPDESK = queue(6, "helpdesk@contoso.com", "Helpdesk", track=TrackOption.NONE)
CONTACT_CAROL = record(EntityKind.CONTACT, 60, CAROL_ADDR, "Carol")


def test_it_lists_the_owner_then_to_cc_bcc_users_and_queues_having_a_mailbox():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.NONE)
    msg = message(
        sender="frank@fabrikam.com",
        to=("erin@contoso.com", "helpdesk@contoso.com", CAROL_ADDR),
        cc=(ALICE_ADDR, BOB_ADDR),
        bcc=("dave@contoso.com",),
    )
    ctx = context(
        owner=user(1, ALICE_ADDR, "Alice", track=4), entities=[bob, DAVE, ERIN, HELPDESK, CONTACT_CAROL]
    )
    assert [e.name for e in candidates(ctx, resolve_recipients(msg, ctx))] == [
        "Alice",
        "Helpdesk",
        "Bob",
        "Dave",
    ]
    res = run(msg, ctx)
    assert candidate_names(res) == ["Alice", "Helpdesk", "Bob", "Dave"]
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.OPTION_NONE)


def test_it_makes_the_first_accepting_candidate_the_accepting_entity():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    support = queue(3, SUPPORT_ADDR, "Support", track=TrackOption.ALL)
    msg = message(to=("dave@contoso.com",), cc=(BOB_ADDR,), bcc=(SUPPORT_ADDR,))
    res = run(msg, context(owner=user(1, ALICE_ADDR, "Alice", track=4), entities=[DAVE, bob, support]))
    assert (res.outcome, res.reason) == (Outcome.TRACKED, Reason.ACCEPTED_ALL)
    assert res.accepting == bob
    assert candidate_names(res) == ["Alice", "Dave", "Bob"]  # stops at the first that accepts
    assert res.owner_user_id == bob.id


def test_it_gives_the_reason_of_the_accepting_candidates_option():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.CRM_PARTIES)
    res = run(
        message(to=(ALICE_ADDR, BOB_ADDR)),
        context(owner=user(1, ALICE_ADDR, track=4), entities=[bob, CONTACT_CAROL]),
    )
    assert (res.outcome, res.reason, res.accepting) == (Outcome.TRACKED, Reason.ACCEPTED_CRM_PARTY, bob)


def test_it_does_not_make_recipients_without_a_mailbox_candidates():
    res = run(message(to=("erin@contoso.com",)), context(owner=user(1, ALICE_ADDR, track=4), entities=[ERIN]))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.OPTION_NONE)
    assert candidate_names(res) == ["alice"]


def test_it_gives_the_mailbox_owners_reason_when_nobody_accepts():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.CRM_PARTIES)
    helpdesk = queue(6, "helpdesk@contoso.com", "Helpdesk", track=TrackOption.EMAIL_ENABLED)
    msg = message(to=(ALICE_ADDR, BOB_ADDR, "helpdesk@contoso.com"))
    res = run(msg, context(owner=user(1, ALICE_ADDR, "Alice", track=1), entities=[bob, helpdesk]))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.NO_CORRELATION)
    assert candidate_names(res) == ["Alice", "Bob", "Helpdesk"]
    assert [s.result for s in res.trace if s.check.startswith("candidate:")] == ["declines"] * 3
    assert "option 2" in step(res, "candidate: user Bob").detail


def test_it_only_asks_the_owner_with_use_filtering_method_of_syncing_mailbox_only():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    msg = message(to=(ALICE_ADDR, BOB_ADDR))
    owner = user(1, ALICE_ADDR, "Alice", track=4)
    off = run(msg, context(owner=owner, entities=[bob]))
    on = run(msg, context(owner=owner, entities=[bob], syncing_mailbox_only=True))
    assert (off.outcome, off.accepting) == (Outcome.TRACKED, bob)
    assert (on.outcome, on.reason) == (Outcome.NOT_TRACKED, Reason.OPTION_NONE)
    assert candidate_names(on) == ["Alice"]


def test_it_only_asks_the_owner_in_sent_items():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    support = queue(3, SUPPORT_ADDR, "Support", track=TrackOption.ALL)
    msg = message(sender=ALICE_ADDR, to=(BOB_ADDR, SUPPORT_ADDR))
    res = run(msg, sent_context(owner=user(1, ALICE_ADDR, "Alice", track=4), entities=[bob, support]))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.OPTION_NONE)
    assert candidate_names(res) == ["Alice"]


def test_it_lets_a_queue_mailbox_accept_everything_with_track_0():
    res = run(message(to=(SUPPORT_ADDR,)), context(owner=SUPPORT))
    assert (res.outcome, res.reason, res.accepting) == (Outcome.TRACKED, Reason.ACCEPTED_ALL, SUPPORT)
    assert res.owner_user_id is None


def test_it_lets_a_queue_recipient_accept_for_a_user_mailbox():
    res = run(message(to=(ALICE_ADDR,), cc=(SUPPORT_ADDR,)), context(owner=ALICE, entities=[SUPPORT]))
    assert (res.outcome, res.reason, res.accepting) == (Outcome.TRACKED, Reason.ACCEPTED_ALL, SUPPORT)
    assert res.owner_user_id == ALICE.id  # the queue does not own it: the syncing mailbox's owner does


@pytest.mark.parametrize(
    ("force", "own", "outcome", "reason"),
    [
        (-1, 0, Outcome.TRACKED, Reason.ACCEPTED_ALL),
        (4, 0, Outcome.NOT_TRACKED, Reason.OPTION_NONE),
        (0, 4, Outcome.TRACKED, Reason.ACCEPTED_ALL),
        (2, 0, Outcome.NOT_TRACKED, Reason.NO_CRM_PARTY),
        (1, 0, Outcome.NOT_TRACKED, Reason.NO_CORRELATION),
    ],
)
def test_it_forces_the_filtering_method_of_user_mailboxes(force, own, outcome, reason):
    res = run(message(), context(owner=user(1, ALICE_ADDR, "Alice", track=own), force_filtering_method=force))
    assert (res.outcome, res.reason) == (outcome, reason)
    if force >= 0:
        assert "SSSForceFilteringMethodForUserMailboxes" in step(res, "candidate: user Alice").detail


def test_it_forces_user_recipients_too():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), context(entities=[bob], force_filtering_method=4))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.OPTION_NONE)


def test_it_does_not_force_queues():
    as_owner = run(message(to=(SUPPORT_ADDR,)), context(owner=SUPPORT, force_filtering_method=4))
    as_recipient = run(
        message(to=(ALICE_ADDR, SUPPORT_ADDR)), context(entities=[SUPPORT], force_filtering_method=4)
    )
    assert (as_owner.outcome, as_owner.reason, as_owner.accepting) == (
        Outcome.TRACKED,
        Reason.ACCEPTED_ALL,
        SUPPORT,
    )
    assert (as_recipient.outcome, as_recipient.accepting) == (Outcome.TRACKED, SUPPORT)


# ---------------------------------------------------------------------------------------------
# §5 correlation
# ---------------------------------------------------------------------------------------------

# Four tracked emails, each reachable by exactly one correlation step, each with its own regarding.
BY_REPLY = tracked(1, "<p1@contoso.com>", regarding=ACME)
BY_TOKEN = tracked(2, "<p2@contoso.com>", regarding=GLOBEX, token="CRM:0001007")
BY_INDEX = tracked(3, "<p3@contoso.com>", regarding=INITECH, conversation_index=ROOT_INDEX)
BY_SMART = tracked(
    4, "<p4@contoso.com>", regarding=UMBRELLA, subject="Quarterly figures", addresses=[ALICE_ADDR, CAROL_ADDR]
)
ALL_PARENTS = [BY_REPLY, BY_TOKEN, BY_INDEX, BY_SMART]
STEPS = ["in_reply_to", "tracking_token", "conversation_index", "smart_matching"]


def reply(*signals: str, subject: str = "Quarterly figures", **kw) -> ParsedMessage:
    """A reply from Carol to Alice carrying the given correlation signals (smart matching: same words)."""
    if "tracking_token" in signals:
        subject = f"{subject} CRM:0001007"
    if "smart_matching" not in signals:
        subject = f"{subject} unrelated"
    return message(
        subject=f"RE: {subject}",
        in_reply_to=(BY_REPLY.message_id,) if "in_reply_to" in signals else (),
        conversation_index=CHILD_INDEX if "conversation_index" in signals else "",
        **kw,
    )


def correlate_ctx(**rules: object) -> DecisionContext:
    rules.setdefault("enable_smart_matching", True)
    return context(entities=[CONTACT_CAROL], refs=ALL_PARENTS, **rules)  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "parent"), list(zip(STEPS, ALL_PARENTS, strict=True)))
def test_it_correlates_by_each_step(method, parent):
    res = run(reply(method), correlate_ctx())
    assert (res.outcome, res.reason) == (Outcome.TRACKED, Reason.ACCEPTED_CORRELATED)
    assert res.correlation_method == CorrelationMethod(method)
    assert res.correlated == parent
    assert res.regarding == parent.regarding
    assert step(res, f"correlation: {method}").result == "match"


@pytest.mark.parametrize("first", range(4))
def test_it_takes_the_first_step_that_matches(first):
    signals = STEPS[first:]
    res = run(reply(*signals), correlate_ctx())
    assert res.correlation_method == CorrelationMethod(STEPS[first])
    assert res.correlated == ALL_PARENTS[first]
    assert res.regarding == ALL_PARENTS[first].regarding
    checks = [s.check for s in res.trace if s.check.startswith("correlation:")]
    assert checks == [f"correlation: {s}" for s in STEPS[: first + 1]]  # later steps are not tried


def test_it_does_not_correlate_without_a_signal():
    res = run(reply(), correlate_ctx())
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.NO_CORRELATION)
    assert res.correlation_method is None and res.correlated is None
    assert [s.result for s in res.trace if s.check.startswith("correlation:")] == ["no match"] * 4


@pytest.mark.parametrize(
    "rules", [{"email_correlation_enabled": False}, {"ignore_headers_for_correlation": True}]
)
def test_it_skips_header_correlation_with_the_toggles(rules):
    ctx = correlate_ctx(**rules)
    only_headers = run(reply("in_reply_to", "conversation_index"), ctx)
    assert (only_headers.outcome, only_headers.reason) == (Outcome.NOT_TRACKED, Reason.NO_CORRELATION)
    assert step(only_headers, "correlation: in_reply_to").result == "skipped"
    assert step(only_headers, "correlation: conversation_index").result == "skipped"
    assert (
        run(reply("in_reply_to", "tracking_token"), ctx).correlation_method
        == CorrelationMethod.TRACKING_TOKEN
    )
    assert run(reply("conversation_index", "smart_matching"), ctx).correlation_method == (
        CorrelationMethod.SMART_MATCHING
    )


@pytest.mark.parametrize("prefix", ["FW:", "Fwd:", "fw :", "FWD:"])
def test_it_does_not_correlate_forwards_by_in_reply_to_when_asked(prefix):
    msg = message(subject=f"{prefix} Quarterly figures", in_reply_to=(BY_REPLY.message_id,))
    on = run(msg, correlate_ctx(enable_smart_matching=False, do_not_correlate_forwards=True))
    off = run(msg, correlate_ctx(enable_smart_matching=False))
    assert (on.outcome, on.reason) == (Outcome.NOT_TRACKED, Reason.NO_CORRELATION)
    assert step(on, "correlation: in_reply_to").result == "skipped"
    assert off.correlation_method == CorrelationMethod.IN_REPLY_TO


def test_it_still_correlates_replies_by_in_reply_to_when_forwards_are_excluded():
    msg = message(subject="RE: Quarterly figures", in_reply_to=(BY_REPLY.message_id,))
    res = run(msg, correlate_ctx(do_not_correlate_forwards=True))
    assert res.correlation_method == CorrelationMethod.IN_REPLY_TO


def test_it_still_correlates_a_forward_by_token_when_forwards_are_excluded():
    msg = message(subject="FW: offer CRM:0001007", in_reply_to=(BY_REPLY.message_id,))
    res = run(msg, correlate_ctx(do_not_correlate_forwards=True))
    assert res.correlation_method == CorrelationMethod.TRACKING_TOKEN


def test_it_skips_tokens_when_use_tracking_tokens_is_off():
    res = run(reply("tracking_token"), correlate_ctx(use_tracking_tokens=False))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.NO_CORRELATION)
    assert step(res, "correlation: tracking_token").result == "skipped"


def test_it_skips_smart_matching_by_default():
    res = run(reply("smart_matching"), correlate_ctx(enable_smart_matching=False))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.NO_CORRELATION)
    assert step(res, "correlation: smart_matching").result == "skipped"


@pytest.mark.parametrize(
    ("subject", "delta", "matches"),
    [
        ("RE: Quarterly figures", 0, True),
        ("RE: FW: Quarterly figures", 0, True),  # HashFilterKeywords strips every leading prefix
        ("RE: Quarterly figures final", 0, False),
        ("RE: Quarterly figures final", 1, True),
        ("RE: Quarterly numbers final", 1, False),
        ("RE: Quarterly numbers final", 3, True),
    ],
)
def test_it_smart_matches_within_hash_delta_subject_count(subject, delta, matches):
    res = run(message(subject=subject), correlate_ctx(hash_delta_subject_count=delta))
    assert (res.correlation_method == CorrelationMethod.SMART_MATCHING) is matches
    assert (res.correlated == BY_SMART) is matches


@pytest.mark.parametrize(
    ("to", "minimum", "matches"),
    [
        ((ALICE_ADDR,), 2, True),  # From carol + To alice: two shared addresses
        (("someone@else.org",), 2, False),  # only carol shared
        (("someone@else.org",), 1, True),
        ((ALICE_ADDR,), 3, False),
    ],
)
def test_it_smart_matches_with_hash_min_address_count(to, minimum, matches):
    res = run(message(subject="RE: Quarterly figures", to=to), correlate_ctx(hash_min_address_count=minimum))
    assert (res.correlation_method == CorrelationMethod.SMART_MATCHING) is matches


@pytest.mark.parametrize(("max_count", "matches"), [(20, False), (2, True)])
def test_it_hashes_at_most_hash_max_count_subject_words(max_count, matches):
    # The tracked subject has two words; extra words after HashMaxCount are not hashed.
    res = run(
        message(subject="RE: Quarterly figures and more words"), correlate_ctx(hash_max_count=max_count)
    )
    assert (res.correlation_method == CorrelationMethod.SMART_MATCHING) is matches


@pytest.mark.parametrize(
    ("own_index", "tracked_indexes", "expected"),
    [
        (GRANDCHILD_INDEX, [ROOT_INDEX, CHILD_INDEX], CHILD_INDEX),  # nearest ancestor wins
        (GRANDCHILD_INDEX, [ROOT_INDEX], ROOT_INDEX),
        (CHILD_INDEX, [ROOT_INDEX, GRANDCHILD_INDEX], ROOT_INDEX),  # a descendant is not an ancestor
        (CHILD_INDEX, [CHILD_INDEX], CHILD_INDEX),  # the same index is its own prefix
        ("02" + "cd" * 21 + "0000000001", [ROOT_INDEX], None),  # another conversation
    ],
)
def test_it_correlates_to_the_nearest_conversation_ancestor(own_index, tracked_indexes, expected):
    refs = [
        tracked(100 + i, f"<c{i}@contoso.com>", conversation_index=ix) for i, ix in enumerate(tracked_indexes)
    ]
    res = run(message(conversation_index=own_index), context(refs=refs))
    if expected is None:
        assert res.correlated is None
    else:
        assert res.correlation_method == CorrelationMethod.CONVERSATION_INDEX
        assert res.correlated is not None and res.correlated.conversation_index == expected


@pytest.mark.parametrize("subject", ["RE: offer OLD:0001007", "RE: offer old:0001007", "[OLD:0001007] offer"])
def test_it_recognises_tokens_of_an_earlier_prefix(subject):
    earlier = tracked(7, "<old@contoso.com>", regarding=ACME, token="OLD:0001007")
    res = run(
        message(subject=subject), context(refs=[earlier], tracking_prefix="CRM", earlier_prefixes=("OLD",))
    )
    assert res.correlation_method == CorrelationMethod.TRACKING_TOKEN
    assert (res.correlated, res.regarding) == (earlier, ACME)


def test_it_reports_a_new_token_for_the_tracked_email():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    res = run(message(subject="Offer CRM:0001042"), context(owner=owner, refs=[BY_TOKEN]))
    assert res.tracking_token == "CRM:0001042"
    again = run(message(subject="RE: Offer CRM:0001007"), context(owner=owner, refs=[BY_TOKEN]))
    assert again.tracking_token is None  # already on a tracked email


def test_it_correlates_even_when_the_option_does_not_need_it():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    res = run(reply("in_reply_to"), context(owner=owner, refs=ALL_PARENTS))
    assert (res.reason, res.correlation_method, res.regarding) == (
        Reason.ACCEPTED_ALL,
        CorrelationMethod.IN_REPLY_TO,
        ACME,
    )


# ---------------------------------------------------------------------------------------------
# §6 party resolution
# ---------------------------------------------------------------------------------------------


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


ADDR = "shared@fabrikam.com"


def sender_ctx(entities: Iterable[Entity], owner: Entity = ALICE, **rules: object) -> DecisionContext:
    return context(owner=owner, entities=entities, **rules)  # type: ignore[arg-type]


def test_it_prefers_records_owned_by_the_mailbox_owner():
    old = record(EntityKind.CONTACT, 70, ADDR, created=day(0))
    owned = record(EntityKind.CONTACT, 71, ADDR, owner_id=ALICE.id, created=day(5))
    assert resolve_sender(ADDR, sender_ctx([old, owned]))[0] == owned


def test_it_prefers_an_owned_account_to_a_user_or_contact():
    u = user(72, ADDR, has_mailbox=False, created=day(0))
    contact = record(EntityKind.CONTACT, 73, ADDR, created=day(0))
    account = record(EntityKind.ACCOUNT, 74, ADDR, owner_id=ALICE.id, created=day(9))
    assert resolve_sender(ADDR, sender_ctx([u, contact, account]))[0] == account


def test_it_does_not_prefer_owned_records_in_a_queue_mailbox():
    contact = record(EntityKind.CONTACT, 70, ADDR, owner_id=SUPPORT.id, created=day(5))
    lead = record(EntityKind.LEAD, 71, ADDR, created=day(0))
    assert resolve_sender(ADDR, sender_ctx([lead, contact], owner=SUPPORT))[0] == contact  # kind, not owner


KIND_ORDER = [USR, CON, ACC, LEA, OTH, QUE]


@pytest.mark.parametrize("start", range(len(KIND_ORDER)))
def test_it_prefers_kinds_in_order(start):
    # Lower-priority kinds are older, so the kind order is what decides.
    entities = []
    for i, kind in enumerate(KIND_ORDER[start:]):
        created = day(-i)
        if kind == USR:
            entities.append(user(80 + i, ADDR, has_mailbox=False, created=created))
        elif kind == QUE:
            entities.append(queue(80 + i, ADDR, has_mailbox=False, created=created))
        else:
            entities.append(record(kind, 80 + i, ADDR, created=created))
    entities.reverse()
    best, _ = resolve_sender(ADDR, sender_ctx(entities))
    assert best is not None and best.kind == KIND_ORDER[start]


def test_it_prefers_the_oldest_record_of_a_kind():
    newer = record(EntityKind.CONTACT, 90, ADDR, created=day(3))
    oldest = record(EntityKind.CONTACT, 91, ADDR, created=day(1))
    middle = record(EntityKind.CONTACT, 92, ADDR, created=day(2))
    assert resolve_sender(ADDR, sender_ctx([newer, oldest, middle]))[0] == oldest


@pytest.mark.parametrize(("count", "resolved"), [(1, True), (2, True), (100, True), (101, False)])
def test_it_leaves_a_sender_with_more_than_100_matches_unresolved(count, resolved):
    contacts = [record(EntityKind.CONTACT, 1000 + i, ADDR, created=day(i)) for i in range(count)]
    best, why = resolve_sender(ADDR, sender_ctx(contacts))
    assert (best is not None) is resolved
    if not resolved:
        assert "more than 100" in why


@pytest.mark.parametrize(("count", "resolved"), [(1, True), (2, False), (3, False)])
def test_it_unresolves_multiple_matches_with_unresolve_sender_in_case_of_multiple_match(count, resolved):
    contacts = [record(EntityKind.CONTACT, 1000 + i, ADDR) for i in range(count)]
    best, _ = resolve_sender(ADDR, sender_ctx(contacts, unresolve_sender_if_multiple=True))
    assert (best is not None) is resolved


@pytest.mark.parametrize("resolve_inactive", [False, True])
def test_it_never_resolves_a_disabled_user(resolve_inactive):
    disabled = user(95, ADDR, active=False, has_mailbox=False)
    assert resolve_sender(ADDR, sender_ctx([disabled], resolve_inactive=resolve_inactive))[0] is None
    contact = record(EntityKind.CONTACT, 96, ADDR)
    ctx = sender_ctx([disabled, contact], resolve_inactive=resolve_inactive)
    assert resolve_sender(ADDR, ctx)[0] == contact


@pytest.mark.parametrize("kind", [CON, ACC, LEA, OTH, QUE])
def test_it_resolves_several_inactive_records_only_with_resolve_for_inactive_entities(kind):
    def inactive(id: int) -> Entity:
        return (
            queue(id, ADDR, has_mailbox=False, active=False)
            if kind == QUE
            else record(kind, id, ADDR, active=False)
        )

    # The only match resolves whatever its state (tracking-rules §6); several inactive ones need the setting.
    assert resolve_sender(ADDR, sender_ctx([inactive(97)]))[0] == inactive(97)
    assert resolve_sender(ADDR, sender_ctx([inactive(97), inactive(98)]))[0] is None
    assert resolve_sender(ADDR, sender_ctx([inactive(97), inactive(98)], resolve_inactive=True))[
        0
    ] == inactive(97)


def test_it_drives_option_2_from_the_resolved_sender():
    # Carol is a contact but also a user: the user wins, so option 2 declines and option 3 accepts.
    carol_user = user(98, CAROL_ADDR, "Carol", has_mailbox=False)
    entities = [CONTACT_CAROL, carol_user]
    res2 = run(message(), context(owner=user(1, ALICE_ADDR, track=2), entities=entities))
    res3 = run(message(), context(owner=user(1, ALICE_ADDR, track=3), entities=entities))
    assert res2.reason == Reason.NO_CRM_PARTY
    assert res3.reason == Reason.ACCEPTED_EMAIL_ENABLED_PARTY


def test_it_resolves_every_matching_recipient():
    contact = record(EntityKind.CONTACT, 110, ADDR)
    lead = record(EntityKind.LEAD, 111, ADDR)
    single = record(EntityKind.ACCOUNT, 112, "single@fabrikam.com")
    msg = message(to=(ADDR,), cc=("single@fabrikam.com",), bcc=("unknown@example.org",))
    ctx = context(entities=[contact, lead, single])
    assert [(h, a.address, es) for h, a, es in resolve_recipients(msg, ctx)] == [
        ("to", ADDR, [contact, lead]),
        ("cc", "single@fabrikam.com", [single]),
        ("bcc", "unknown@example.org", []),
    ]
    ctx = context(entities=[contact, lead, single], unresolve_recipient_if_multiple=True)
    assert [es for *_, es in resolve_recipients(msg, ctx)] == [[], [single], []]


def test_it_filters_inactive_recipients():
    contact = record(EntityKind.CONTACT, 110, ADDR, active=False)
    lead = record(EntityKind.LEAD, 112, ADDR, active=False)
    disabled = user(111, ADDR, active=False)
    msg = message(to=(ADDR,))
    # A disabled user never resolves, so the inactive contact is the address's only match (tracking-rules §6).
    assert resolve_recipients(msg, context(entities=[contact, disabled]))[0][2] == [contact]
    assert resolve_recipients(msg, context(entities=[contact, lead, disabled]))[0][2] == []
    assert resolve_recipients(msg, context(entities=[contact, lead, disabled], resolve_inactive=True))[0][
        2
    ] == [
        contact,
        lead,
    ]


def test_it_declines_sent_items_when_recipients_are_unresolved_for_multiple_matches():
    contact = record(EntityKind.CONTACT, 110, ADDR)
    lead = record(EntityKind.LEAD, 111, ADDR)
    msg = message(sender=ALICE_ADDR, to=(ADDR,))
    owner = user(1, ALICE_ADDR, track=2)
    assert run(msg, sent_context(owner=owner, entities=[contact, lead])).reason == Reason.ACCEPTED_CRM_PARTY
    res = run(msg, sent_context(owner=owner, entities=[contact, lead], unresolve_recipient_if_multiple=True))
    assert res.reason == Reason.NO_CRM_PARTY


# ---------------------------------------------------------------------------------------------
# §7 duplicates
# ---------------------------------------------------------------------------------------------

MID = "<m1@fabrikam.com>"


@pytest.mark.parametrize(
    ("folder", "direction"), [(Folder.INBOX, Direction.INCOMING), (Folder.SENT_ITEMS, Direction.OUTGOING)]
)
def test_it_links_an_already_tracked_message(folder, direction):
    existing = tracked(500, MID, direction=direction, regarding=ACME)
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    res = run(
        message(MID), context(owner=owner, folder=folder, refs=[existing], auto_track_sent_folder_items=True)
    )
    assert (res.outcome, res.reason) == (Outcome.ALREADY_TRACKED, Reason.DUPLICATE_MESSAGE_ID)
    assert res.existing == existing
    assert res.regarding == ACME
    assert res.accepting is None


def test_it_links_an_already_tracked_internal_message_in_the_same_direction():
    existing = tracked(500, MID, direction=Direction.INCOMING)
    res = run(
        message(MID, sender=BOB_ADDR),
        context(owner=user(1, ALICE_ADDR, track=0), entities=[BOB], refs=[existing]),
    )
    assert (res.outcome, res.existing) == (Outcome.ALREADY_TRACKED, existing)


@pytest.mark.parametrize(
    ("folder", "existing_direction"),
    [(Folder.INBOX, Direction.OUTGOING), (Folder.SENT_ITEMS, Direction.INCOMING)],
)
def test_it_tracks_internal_mail_once_per_direction(folder, existing_direction):
    existing = tracked(500, MID, direction=existing_direction)
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    sender, to = (BOB_ADDR, ALICE_ADDR) if folder == Folder.INBOX else (ALICE_ADDR, BOB_ADDR)
    res = run(
        message(MID, sender=sender, to=(to,)),
        context(
            owner=owner, folder=folder, entities=[BOB], refs=[existing], auto_track_sent_folder_items=True
        ),
    )
    assert (res.outcome, res.reason) == (Outcome.TRACKED, Reason.ACCEPTED_ALL)
    assert step(res, "duplicate").result == "other direction"
    assert res.existing is None


def test_it_tracks_internal_mail_once_without_two_activities():
    existing = tracked(500, MID, direction=Direction.OUTGOING)
    ctx = context(
        owner=user(1, ALICE_ADDR, track=0), entities=[BOB], refs=[existing], two_activities_for_internal=False
    )
    res = run(message(MID, sender=BOB_ADDR), ctx)
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.INTERNAL_DUPLICATE)


@pytest.mark.parametrize("two_activities", [True, False])
def test_it_links_non_internal_mail_tracked_in_the_other_direction(two_activities):
    existing = tracked(500, MID, direction=Direction.OUTGOING, regarding=GLOBEX)
    ctx = context(
        owner=user(1, ALICE_ADDR, track=0),
        entities=[CONTACT_CAROL],
        refs=[existing],
        two_activities_for_internal=two_activities,
    )
    res = run(message(MID, sender=CAROL_ADDR), ctx)
    assert (res.outcome, res.reason, res.existing, res.regarding) == (
        Outcome.ALREADY_TRACKED,
        Reason.DUPLICATE_MESSAGE_ID,
        existing,
        GLOBEX,
    )


def test_it_does_not_count_a_disabled_user_as_internal():
    existing = tracked(500, MID, direction=Direction.OUTGOING)
    ctx = context(
        owner=user(1, ALICE_ADDR, track=0), entities=[user(7, BOB_ADDR, active=False)], refs=[existing]
    )
    res = run(message(MID, sender=BOB_ADDR), ctx)
    assert (res.outcome, res.existing) == (Outcome.ALREADY_TRACKED, existing)


# ---------------------------------------------------------------------------------------------
# §3.5 start date, §10 exclusions, manual tracking, folder rules, failures
# ---------------------------------------------------------------------------------------------

TRACK_ALL = user(1, ALICE_ADDR, "Alice", track=TrackOption.ALL)


@pytest.mark.parametrize(
    ("received", "outcome", "reason"),
    [
        (T0 - timedelta(days=1), Outcome.NOT_TRACKED, Reason.BEFORE_WATERMARK),
        (T0, Outcome.NOT_TRACKED, Reason.BEFORE_WATERMARK),
        (T0 + timedelta(seconds=1), Outcome.TRACKED, Reason.ACCEPTED_ALL),
        (None, Outcome.TRACKED, Reason.ACCEPTED_ALL),
    ],
)
@pytest.mark.parametrize("folder", [Folder.INBOX, Folder.SENT_ITEMS])
def test_it_evaluates_only_messages_after_the_start_date(received, outcome, reason, folder):
    ctx = context(owner=TRACK_ALL, folder=folder, start_date=T0, auto_track_sent_folder_items=True)
    res = run(message(received_at=received, sender=ALICE_ADDR, to=(CAROL_ADDR,)), ctx)
    assert (res.outcome, res.reason) == (outcome, reason)
    if received is None:
        assert "no received time; evaluated" in step(res, "start_date").detail


def test_it_evaluates_everything_without_a_start_date():
    res = run(message(received_at=T0 - timedelta(days=3650)), context(owner=TRACK_ALL))
    assert res.outcome == Outcome.TRACKED


@pytest.mark.parametrize("where", ["org", "owner"])
@pytest.mark.parametrize("pattern", [CAROL_ADDR, "@fabrikam.com"])
def test_it_excludes_inbox_mail_from_an_excluded_sender(where, pattern):
    ctx = context(owner=TRACK_ALL, **{f"{where}_exclusions": [pattern]})  # type: ignore[arg-type]
    res = run(message(sender=CAROL_ADDR), ctx)
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.EXCLUDED_ADDRESS)


def test_it_does_not_exclude_inbox_mail_for_a_recipient_or_another_domain():
    ctx = context(
        owner=TRACK_ALL,
        org_exclusions=["dana@fabrikam.com", "@fabrikam.co"],
        owner_exclusions=["@example.org"],
    )
    res = run(message(sender=CAROL_ADDR, to=(ALICE_ADDR, "dana@fabrikam.com"), cc=("x@example.org",)), ctx)
    assert (res.outcome, res.reason) == (Outcome.TRACKED, Reason.ACCEPTED_ALL)


@pytest.mark.parametrize("where", ["org", "owner"])
@pytest.mark.parametrize("pattern", ["dana@fabrikam.com", "@fabrikam.com"])
def test_it_excludes_sent_items_to_an_excluded_recipient(where, pattern):
    ctx = sent_context(owner=TRACK_ALL, **{f"{where}_exclusions": [pattern]})
    res = run(message(sender=ALICE_ADDR, to=("someone@example.org",), bcc=("dana@fabrikam.com",)), ctx)
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.EXCLUDED_ADDRESS)


def test_it_does_not_exclude_sent_items_for_an_excluded_sender():
    ctx = sent_context(owner=TRACK_ALL, org_exclusions=[ALICE_ADDR])
    res = run(message(sender=ALICE_ADDR, to=(CAROL_ADDR,)), ctx)
    assert res.outcome == Outcome.TRACKED


def test_it_tracks_manually_whatever_the_option():
    owner = user(1, ALICE_ADDR, track=TrackOption.NONE)
    res = run(message(), context(owner=owner), ManualTracking(regarding=ACME))
    assert (res.outcome, res.reason, res.regarding) == (Outcome.TRACKED, Reason.MANUAL, ACME)
    assert res.accepting is None
    assert res.owner_user_id == owner.id
    assert step(res, "manual").result == "requested"


def test_it_tracks_manually_before_the_start_date_and_despite_exclusions():
    ctx = context(owner=user(1, ALICE_ADDR, track=4), start_date=T0, org_exclusions=[CAROL_ADDR])
    res = run(message(received_at=T0 - timedelta(days=1)), ctx, ManualTracking())
    assert (res.outcome, res.reason) == (Outcome.TRACKED, Reason.MANUAL)


def test_it_tracks_sent_items_manually_when_auto_tracking_is_off():
    ctx = sent_context(
        owner=user(1, ALICE_ADDR, track=4), auto_track_sent_folder_items=False, is_exchange=False
    )
    res = run(message(sender=ALICE_ADDR, to=(CAROL_ADDR,)), ctx, ManualTracking())
    assert (res.outcome, res.reason, res.direction) == (Outcome.TRACKED, Reason.MANUAL, Direction.OUTGOING)


def test_it_inherits_the_regarding_when_tracked_manually_without_one():
    ctx = context(owner=user(1, ALICE_ADDR, track=4), refs=[BY_REPLY])
    res = run(message(in_reply_to=(BY_REPLY.message_id,)), ctx, ManualTracking())
    assert (res.reason, res.regarding, res.correlated) == (Reason.MANUAL, ACME, BY_REPLY)
    given = run(message(in_reply_to=(BY_REPLY.message_id,)), ctx, ManualTracking(regarding=GLOBEX))
    assert given.regarding == GLOBEX  # a regarding given by the person wins


def test_it_does_not_track_a_duplicate_manually():
    existing = tracked(500, MID, regarding=ACME)
    res = run(message(MID), context(refs=[existing]), ManualTracking(regarding=GLOBEX))
    assert (res.outcome, res.reason, res.existing) == (
        Outcome.ALREADY_TRACKED,
        Reason.DUPLICATE_MESSAGE_ID,
        existing,
    )


def test_it_tracks_everything_in_a_mapped_folder():
    ctx = context(
        owner=user(1, ALICE_ADDR, track=4),
        folder="Projects/Acme",
        is_folder_rule=True,
        folder_rule_regarding=ACME,
    )
    res = run(message(), ctx)
    assert (res.outcome, res.reason, res.regarding) == (Outcome.TRACKED, Reason.FOLDER_RULE, ACME)
    assert res.direction == Direction.INCOMING
    assert res.accepting is not None and res.accepting.id == 1
    assert res.owner_user_id == 1


def test_it_inherits_the_regarding_in_a_mapped_folder_without_one():
    ctx = context(owner=user(1, ALICE_ADDR, track=4), folder="Projects", is_folder_rule=True, refs=[BY_REPLY])
    res = run(message(in_reply_to=(BY_REPLY.message_id,)), ctx)
    assert (res.reason, res.regarding) == (Reason.FOLDER_RULE, ACME)


@pytest.mark.parametrize(
    ("fetch_failed", "reason"), [(False, Reason.UNPARSEABLE), (True, Reason.FETCH_ERROR)]
)
@pytest.mark.parametrize("manual", [None, ManualTracking(regarding=ACME)])
def test_it_fails_a_message_it_cannot_read(fetch_failed, reason, manual):
    failure = ParseFailure(
        "item-1", "<x@unparseable.synthetic.syncadmin.invalid>", "boom", fetch_failed=fetch_failed
    )
    res = run(failure, context(owner=TRACK_ALL), manual)
    assert (res.outcome, res.reason) == (Outcome.FAILED, reason)
    assert res.accepting is None and res.existing is None
    assert res.trace[0].result == "failed"


# ---------------------------------------------------------------------------------------------
# §6 auto-create
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [AutoCreate.CONTACT, AutoCreate.LEAD])
def test_it_asks_to_create_a_record_for_an_unresolved_sender(kind):
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL, auto_create=kind)
    res = run(message(sender="new@fabrikam.com", sender_name="New Person"), context(owner=owner))
    assert res.outcome == Outcome.TRACKED
    assert res.auto_create == AutoCreateRequest(
        kind=kind, address="new@fabrikam.com", name="New Person", owner_user_id=1
    )


def test_it_names_an_auto_created_record_after_its_address_without_a_display_name():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL, auto_create=AutoCreate.CONTACT)
    res = run(message(sender="new@fabrikam.com"), context(owner=owner))
    assert res.auto_create is not None and res.auto_create.name == "new@fabrikam.com"


def test_it_asks_the_accepting_user_not_the_mailbox_owner():
    owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.NONE, auto_create=AutoCreate.CONTACT)
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL, auto_create=AutoCreate.LEAD)
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), context(owner=owner, entities=[bob]))
    assert res.auto_create == AutoCreateRequest(
        kind="lead", address=CAROL_ADDR, name=CAROL_ADDR, owner_user_id=2
    )


@pytest.mark.parametrize(
    "case",
    ["org_off", "user_off", "sent_items", "queue_mailbox", "queue_recipient", "resolved", "not_tracked"],
)
def test_it_does_not_always_auto_create(case):
    owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.ALL, auto_create=AutoCreate.CONTACT)
    msg = message(sender="new@fabrikam.com")
    if case == "org_off":
        ctx = context(owner=owner, auto_create_on_promote=False)
    elif case == "user_off":
        ctx = context(owner=user(1, ALICE_ADDR, track=TrackOption.ALL))
    elif case == "sent_items":
        msg = message(sender="alias@contoso.com", to=("new@fabrikam.com",))  # the sender does not resolve
        ctx = sent_context(owner=owner)
    elif case == "queue_mailbox":
        msg = message(sender="new@fabrikam.com", to=(SUPPORT_ADDR,))
        ctx = context(owner=SUPPORT)
    elif case == "queue_recipient":
        owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.NONE, auto_create=AutoCreate.CONTACT)
        msg = message(sender="new@fabrikam.com", to=(ALICE_ADDR, SUPPORT_ADDR))
        ctx = context(owner=owner, entities=[SUPPORT])
    elif case == "resolved":
        msg = message(sender=CAROL_ADDR)
        ctx = context(owner=owner, entities=[CONTACT_CAROL])
    else:
        ctx = context(owner=user(1, ALICE_ADDR, track=TrackOption.RESPONSES, auto_create=AutoCreate.CONTACT))
    res = run(msg, ctx)
    assert res.auto_create is None
    if case != "not_tracked":
        assert res.outcome == Outcome.TRACKED
    if case == "org_off":
        assert step(res, "auto-create").result == "off"


# ---------------------------------------------------------------------------------------------
# §7 owner
# ---------------------------------------------------------------------------------------------


def test_it_makes_the_accepting_user_the_owner():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), context(owner=user(1, ALICE_ADDR, track=4), entities=[bob]))
    assert (res.accepting, res.owner_user_id) == (bob, 2)


def test_it_makes_the_mailbox_owner_the_owner_when_a_queue_accepts():
    res = run(
        message(to=(ALICE_ADDR, SUPPORT_ADDR)),
        context(owner=user(1, ALICE_ADDR, track=4), entities=[SUPPORT]),
    )
    assert (res.accepting, res.owner_user_id) == (SUPPORT, 1)


def test_it_has_no_owner_user_when_a_queue_mailbox_accepts():
    res = run(message(to=(SUPPORT_ADDR,)), context(owner=SUPPORT))
    assert (res.accepting, res.owner_user_id) == (SUPPORT, None)


def test_it_makes_a_user_recipient_accepting_in_a_queue_mailbox_the_owner():
    helpdesk = queue(6, "helpdesk@contoso.com", "Helpdesk", track=TrackOption.NONE)
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    res = run(message(to=("helpdesk@contoso.com", BOB_ADDR)), context(owner=helpdesk, entities=[bob]))
    assert (res.accepting, res.owner_user_id) == (bob, 2)


# ---------------------------------------------------------------------------------------------
# decide_batch
# ---------------------------------------------------------------------------------------------


def batch(msgs: Sequence[ParsedMessage | ParseFailure], ctx: DecisionContext, **kw) -> list[DecisionResult]:
    results = decide_batch(msgs, ctx, **kw)
    for res in results:
        check_invariants(res)
    return results


def test_it_correlates_a_reply_to_a_message_tracked_earlier_in_the_batch():
    first = message("<a@fabrikam.com>", in_reply_to=(BY_REPLY.message_id,), conversation_index=CHILD_INDEX)
    second = message("<b@fabrikam.com>", in_reply_to=("<a@fabrikam.com>",))
    ctx = context(refs=[BY_REPLY])
    a, b = batch([first, second], ctx)
    assert (a.outcome, a.reason, a.regarding) == (Outcome.TRACKED, Reason.ACCEPTED_CORRELATED, ACME)
    assert (b.outcome, b.reason, b.correlation_method) == (
        Outcome.TRACKED,
        Reason.ACCEPTED_CORRELATED,
        CorrelationMethod.IN_REPLY_TO,
    )
    assert b.correlated is not None and (b.correlated.key, b.correlated.message_id) == (
        -1,
        "<a@fabrikam.com>",
    )
    assert b.regarding == ACME  # inherited through the chain
    assert ctx.tracked_by_message_id.keys() == {BY_REPLY.message_id}  # the given context is not changed


def test_it_correlates_by_token_and_conversation_index_within_a_batch():
    owner = user(1, ALICE_ADDR, track=TrackOption.RESPONSES)
    first = message("<a@fabrikam.com>", subject="Offer CRM:0001042", in_reply_to=(BY_REPLY.message_id,))
    by_token = message("<b@fabrikam.com>", subject="RE: Offer CRM:0001042")
    root = message("<c@fabrikam.com>", in_reply_to=(BY_REPLY.message_id,), conversation_index=ROOT_INDEX)
    by_index = message("<d@fabrikam.com>", conversation_index=CHILD_INDEX)
    results = batch([first, by_token, root, by_index], context(owner=owner, refs=[BY_REPLY]))
    assert [r.correlation_method for r in results] == [
        CorrelationMethod.IN_REPLY_TO,
        CorrelationMethod.TRACKING_TOKEN,
        CorrelationMethod.IN_REPLY_TO,
        CorrelationMethod.CONVERSATION_INDEX,
    ]
    assert results[1].correlated is not None and results[1].correlated.key == -1
    assert results[3].correlated is not None and results[3].correlated.key == -3


def test_it_smart_matches_within_a_batch():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    first = message("<a@fabrikam.com>", subject="Budget review")
    second = message("<b@fabrikam.com>", subject="RE: Budget review")
    a, b = batch([first, second], context(owner=owner, enable_smart_matching=True))
    assert a.correlated is None
    assert b.correlation_method == CorrelationMethod.SMART_MATCHING
    assert b.correlated is not None and b.correlated.key == -1


def test_it_auto_creates_once_per_unresolved_sender_in_a_batch():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL, auto_create=AutoCreate.CONTACT)
    msgs = [message(f"<{i}@fabrikam.com>", sender="new@fabrikam.com") for i in range(3)]
    results = batch(msgs, context(owner=owner))
    assert [r.outcome for r in results] == [Outcome.TRACKED] * 3
    assert [r.auto_create is not None for r in results] == [True, False, False]
    assert step(results[1], "sender").result == "resolved"


def test_it_lets_an_auto_created_contact_accept_a_later_message_for_option_2():
    # Alice (option 2) declines the unknown sender; Boss (option 0, auto-create contact) accepts and asks
    # for a contact, which Alice's option 2 then accepts for the second message of the batch.
    owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.CRM_PARTIES, auto_create=AutoCreate.CONTACT)
    boss = user(3, "boss@contoso.com", "Boss", track=TrackOption.ALL, auto_create=AutoCreate.CONTACT)
    first = message("<a@fabrikam.com>", sender="new@fabrikam.com", to=(ALICE_ADDR, "boss@contoso.com"))
    second = message("<b@fabrikam.com>", sender="new@fabrikam.com")
    a, b = batch([first, second], context(owner=owner, entities=[boss]))
    assert a.accepting == boss
    assert a.auto_create == AutoCreateRequest(
        kind="contact", address="new@fabrikam.com", name="new@fabrikam.com", owner_user_id=3
    )
    assert (b.outcome, b.reason, b.accepting, b.auto_create) == (
        Outcome.TRACKED,
        Reason.ACCEPTED_CRM_PARTY,
        owner,
        None,
    )


def test_it_links_the_same_message_twice_in_a_batch():
    owner = user(1, ALICE_ADDR, track=TrackOption.ALL)
    a, b = batch([message(MID), message(MID)], context(owner=owner))
    assert (a.outcome, a.reason) == (Outcome.TRACKED, Reason.ACCEPTED_ALL)
    assert (b.outcome, b.reason) == (Outcome.ALREADY_TRACKED, Reason.DUPLICATE_MESSAGE_ID)
    assert b.existing is not None and (b.existing.key, b.existing.message_id) == (-1, MID)


def test_it_does_not_remember_untracked_or_failed_messages_in_a_batch():
    owner = user(1, ALICE_ADDR, track=TrackOption.RESPONSES)
    failure = ParseFailure("item-0", MID, "boom")
    results = batch([failure, message(MID), message(MID)], context(owner=owner))
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.FAILED, Reason.UNPARSEABLE),
        (Outcome.NOT_TRACKED, Reason.NO_CORRELATION),
        (Outcome.NOT_TRACKED, Reason.NO_CORRELATION),
    ]


def test_it_tracks_a_batch_manually():
    results = batch(
        [message("<a@x.org>"), message("<b@x.org>")],
        context(owner=user(1, ALICE_ADDR, track=4)),
        manual=ManualTracking(regarding=ACME),
    )
    assert [(r.reason, r.regarding) for r in results] == [(Reason.MANUAL, ACME)] * 2


# ---------------------------------------------------------------------------------------------
# Tracking tokens
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "index", "counter", "token"),
    [
        ({}, 1, 1, "CRM:0001001"),
        ({}, 1, 999, "CRM:0001999"),
        ({}, 1, 1000, "CRM:0001000"),  # the counter wraps to 0
        ({}, 1, 1001, "CRM:0001001"),
        ({}, 12, 34, "CRM:0012034"),
        ({"tracking_token_id_base": 500}, 1, 1, "CRM:0501001"),
        ({"tracking_token_id_digits": 5}, 1, 1, "CRM:000001001"),
        ({"tracking_token_counter_digits": 1}, 1, 12, "CRM:00012"),
        ({"tracking_token_counter_digits": 5}, 2, 7, "CRM:000200007"),
        ({"tracking_prefix": "ACME"}, 1, 1, "ACME:0001001"),
    ],
)
def test_it_formats_tracking_tokens(settings, index, counter, token):
    rules = OrgRules(**settings)
    assert format_tracking_token(rules, index, counter) == token
    prefix = settings.get("tracking_prefix", "CRM")
    assert tracking_tokens_in(f"RE: Offer {token}", (prefix,)) == [token.upper()]


@pytest.mark.parametrize("prefix", ["CRM", "crm", "A", "T" * 20, "Crm2"])
def test_it_recognises_tokens_of_any_alphanumeric_prefix(prefix):
    token = format_tracking_token(OrgRules(tracking_prefix=prefix), 1, 1)
    assert tracking_tokens_in(f"Re: Offer {token}", (prefix,)) == [token.upper()]


@pytest.mark.parametrize("prefix", ["CRM-EU", "1CRM", "Case#", "TRK_"])
def test_it_correlates_tokens_of_any_valid_prefix(prefix):
    rules = {"tracking_prefix": prefix}
    token = format_tracking_token(OrgRules(**rules), 1, 7)
    parent = tracked(8, "<tok@contoso.com>", regarding=ACME, token=token)
    res = run(message(subject=f"RE: Offer {token}"), context(refs=[parent], **rules))
    assert res.correlation_method == CorrelationMethod.TRACKING_TOKEN
    assert res.correlated == parent


@pytest.mark.parametrize("subject", ["ISO:9001 audit", "Re:2024 budget", "Build v2:100 released"])
def test_it_does_not_take_other_text_for_a_tracking_token(subject):
    assert tracking_tokens_in(subject) == []
    res = run(message(subject=subject), context(owner=TRACK_ALL))
    assert res.tracking_token is None


def test_it_does_not_correlate_unrelated_messages_on_a_non_token():
    first = message("<a@fabrikam.com>", subject="ISO:9001 audit", in_reply_to=(BY_REPLY.message_id,))
    second = message("<b@initech.com>", sender="dave@initech.com", subject="ISO:9001 certificate renewal")
    a, b = batch([first, second], context(owner=TRACK_ALL, refs=[BY_REPLY]))
    assert a.regarding == ACME
    assert b.correlation_method is None
    assert b.regarding is None


# ---------------------------------------------------------------------------------------------
# §8 every reason is reachable and every trace is well formed
# ---------------------------------------------------------------------------------------------


def catalogue() -> list[DecisionResult]:
    """One decision for every reason of tracking-rules §8."""
    all_ = TRACK_ALL
    return [
        run(message(), context(owner=all_)),
        run(reply("in_reply_to"), correlate_ctx()),
        run(message(), context(owner=user(1, ALICE_ADDR, track=2), entities=[CONTACT_CAROL])),
        run(message(), context(owner=user(1, ALICE_ADDR, track=3), entities=[CONTACT_CAROL])),
        run(message(), context(is_folder_rule=True, folder="Projects")),
        run(message(), context(), ManualTracking()),
        run(message(MID), context(refs=[tracked(1, MID)])),
        run(message(), context(owner=user(1, ALICE_ADDR, track=4))),
        run(message(), context()),
        run(message(), context(owner=user(1, ALICE_ADDR, track=2))),
        run(message(), context(owner=user(1, ALICE_ADDR, track=3))),
        run(message(), sent_context(auto_track_sent_folder_items=False)),
        run(message(), sent_context(is_exchange=False)),
        run(message(received_at=T0), context(owner=all_, start_date=T0)),
        run(
            message(MID, sender=BOB_ADDR),
            context(
                owner=all_,
                entities=[BOB],
                refs=[tracked(1, MID, direction=Direction.OUTGOING)],
                two_activities_for_internal=False,
            ),
        ),
        run(message(), context(owner=all_, org_exclusions=[CAROL_ADDR])),
        run(message(MID), context(owner=all_, refs=[dataclasses.replace(tracked(1, MID), untracked=True)])),
        run(ParseFailure("i", "<f@x>", "bad"), context()),
        run(ParseFailure("i", "<f@x>", "gone", fetch_failed=True), context()),
    ]


def test_it_reaches_every_reason_with_a_well_formed_trace():
    results = catalogue()
    assert {r.reason for r in results} == set(Reason)
    for res in results:
        check_invariants(res)
        assert [s.check for s in res.trace].count("outcome") == 1


def test_it_keeps_a_reason_for_every_outcome_in_the_closed_sets():
    assert set(REASONS_BY_OUTCOME) == set(Outcome)
    assert set().union(*REASONS_BY_OUTCOME.values()) == set(Reason)


def test_an_untracked_email_is_never_tracked_again_automatically_and_is_no_correlation_parent():
    gone = dataclasses.replace(tracked(1, MID), untracked=True)
    res = run(message(MID), context(owner=TRACK_ALL, refs=[gone]))
    assert (res.outcome, res.reason) == (Outcome.NOT_TRACKED, Reason.UNTRACKED)
    assert step(res, "duplicate").result == "untracked"
    reply = run(
        message("<r@x>", in_reply_to=(MID,)), context(owner=user(1, ALICE_ADDR, track=1), refs=[gone])
    )
    assert (reply.outcome, reply.reason) == (Outcome.NOT_TRACKED, Reason.NO_CORRELATION)
