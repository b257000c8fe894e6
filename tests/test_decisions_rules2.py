"""Unit tests of the pure engine for the rules of issue #14: inactive records (tracking-rules §6), eligible
recipients (§4), ownership (§7), smart matching and conversation index (§5), language-neutral traces (§8).

In memory, as tests/test_decisions.py, whose builders these tests use.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.utils import translation

from tests.test_decisions import (
    ALICE_ADDR,
    BOB_ADDR,
    CAROL_ADDR,
    CHILD_INDEX,
    GRANDCHILD_INDEX,
    ROOT_INDEX,
    SUPPORT_ADDR,
    batch,
    candidate_names,
    context,
    message,
    queue,
    record,
    run,
    step,
    tracked,
    user,
)
from tracking.choices import (
    Approval,
    CorrelationMethod,
    EntityKind,
    IncomingMethod,
    Outcome,
    Reason,
    TrackOption,
)
from tracking.decisions import (
    DecisionContext,
    Entity,
    ManualTracking,
    OrgRules,
    candidates,
    mailbox_not_syncing,
    resolve_recipients,
    resolve_sender,
    subject_hashes,
)

ADDR = "shared@fabrikam.com"


def steps(res, check: str) -> list:
    return [s for s in res.trace if s.check == check]


# ---------------------------------------------------------------------------------------------
# §6 inactive records
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [EntityKind.CONTACT, EntityKind.ACCOUNT, EntityKind.LEAD, EntityKind.OTHER])
def test_it_resolves_an_inactive_record_that_is_the_only_match(kind):
    inactive = record(kind, 50, CAROL_ADDR, "Old Carol", active=False)
    best, detail = resolve_sender(CAROL_ADDR, context(entities=[inactive]))
    assert best == inactive
    assert detail.endswith("(only match, inactive)")
    assert "matches no" not in detail


def test_it_resolves_an_inactive_queue_that_is_the_only_match():
    old = queue(51, CAROL_ADDR, "Old queue", active=False, has_mailbox=False)
    assert resolve_sender(CAROL_ADDR, context(entities=[old]))[0] == old


def test_an_inactive_only_match_sender_takes_part_in_option_2():
    inactive = record(EntityKind.CONTACT, 50, CAROL_ADDR, "Old Carol", active=False)
    res = run(
        message(),
        context(owner=user(1, ALICE_ADDR, "Alice", track=TrackOption.CRM_PARTIES), entities=[inactive]),
    )
    assert (res.outcome, res.reason) == (Outcome.TRACKED, Reason.ACCEPTED_CRM_PARTY)
    assert "inactive" in step(res, "sender").detail
    assert step(res, "sender").result == "resolved"


def test_it_prefers_an_active_match_to_an_inactive_one():
    inactive = record(EntityKind.CONTACT, 50, ADDR, "Old", active=False)  # a contact would outrank a lead
    active = record(EntityKind.LEAD, 51, ADDR, "Current")
    for resolve_inactive in (False, True):
        best, detail = resolve_sender(
            ADDR, context(entities=[inactive, active], resolve_inactive=resolve_inactive)
        )
        assert best == active
        assert detail.endswith("(only match; 1 inactive left out)")


def test_it_leaves_several_inactive_matches_unresolved_without_the_setting_and_says_why():
    a = record(EntityKind.CONTACT, 50, ADDR, active=False)
    b = record(EntityKind.LEAD, 51, ADDR, active=False)
    best, detail = resolve_sender(ADDR, context(entities=[a, b]))
    assert best is None
    assert detail == (
        f"{ADDR} matches 2 inactive records and no active one: unresolved (ResolveForInactiveEntities is off)"
    )
    best, detail = resolve_sender(ADDR, context(entities=[a, b], resolve_inactive=True))
    assert best == a
    assert "inactive: no active one matches (ResolveForInactiveEntities)" in detail


def test_it_never_resolves_a_disabled_user_and_says_so():
    disabled = user(52, ADDR, active=False, has_mailbox=False)
    best, detail = resolve_sender(ADDR, context(entities=[disabled]))
    assert best is None
    assert detail == f"{ADDR} belongs to a disabled user, and disabled users never resolve"


def test_an_unknown_address_still_matches_no_record():
    assert resolve_sender(ADDR, context())[1] == f"{ADDR} matches no user, queue or record"


def test_it_resolves_an_inactive_only_match_recipient():
    inactive = record(EntityKind.ACCOUNT, 53, ADDR, active=False)
    active = record(EntityKind.ACCOUNT, 54, "other@fabrikam.com")
    inactive_too = record(EntityKind.LEAD, 55, "other@fabrikam.com", active=False)
    msg = message(to=(ADDR, "other@fabrikam.com"))
    resolved = resolve_recipients(msg, context(entities=[inactive, active, inactive_too]))
    assert [es for *_, es in resolved] == [[inactive], [active]]


def test_no_record_is_auto_created_for_an_inactive_only_match():
    inactive = record(EntityKind.CONTACT, 50, CAROL_ADDR, active=False)
    owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.ALL, auto_create="contact")
    res = run(message(), context(owner=owner, entities=[inactive]))
    assert res.outcome == Outcome.TRACKED
    assert res.auto_create is None


# ---------------------------------------------------------------------------------------------
# §4 eligible recipients: only mailboxes active for server-side sync
# ---------------------------------------------------------------------------------------------


def with_mailbox(entity: Entity, **facts: object) -> Entity:
    return dataclasses.replace(entity, **facts)  # type: ignore[arg-type]


INACTIVE_MAILBOXES: dict[str, tuple[dict[str, Any], str]] = {
    "disabled": ({"mailbox_enabled": False}, "mailbox is disabled"),
    "rejected": ({"mailbox_approval": Approval.REJECTED}, "mailbox is rejected (approval is required)"),
    "pending": ({"mailbox_approval": Approval.PENDING}, "mailbox is not approved (approval is required)"),
    "incoming none": (
        {"mailbox_incoming": IncomingMethod.NONE},
        "mailbox's incoming method is not server-side synchronization",
    ),
}


@pytest.mark.parametrize("state", sorted(INACTIVE_MAILBOXES))
def test_a_user_whose_mailbox_is_not_syncing_is_no_candidate(state):
    facts, why = INACTIVE_MAILBOXES[state]
    bob = with_mailbox(user(2, BOB_ADDR, "Bob", track=TrackOption.ALL), **facts)
    owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.NONE)
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), context(owner=owner, entities=[bob]))
    assert (res.outcome, res.reason, res.accepting) == (Outcome.NOT_TRACKED, Reason.OPTION_NONE, None)
    assert candidate_names(res) == ["Alice"]
    left = step(res, "candidates")
    assert left.result == "1 left out"
    assert left.detail == f"user Bob: {why}; only mailboxes active for server-side sync take part"


@pytest.mark.parametrize("state", sorted(INACTIVE_MAILBOXES))
def test_a_queue_whose_mailbox_is_not_syncing_is_no_candidate(state):
    facts, why = INACTIVE_MAILBOXES[state]
    support = with_mailbox(queue(3, SUPPORT_ADDR, "Support"), **facts)
    owner = user(1, ALICE_ADDR, "Alice", track=TrackOption.NONE)
    res = run(message(cc=(SUPPORT_ADDR,)), context(owner=owner, entities=[support]))
    assert (res.outcome, res.accepting) == (Outcome.NOT_TRACKED, None)
    assert step(res, "candidates").detail.startswith(f"queue Support: {why}")


def test_an_active_mailbox_still_makes_a_candidate_and_no_left_out_step():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), context(owner=user(1, ALICE_ADDR, track=4), entities=[bob]))
    assert res.accepting == bob
    assert steps(res, "candidates") == []


@pytest.mark.parametrize(
    ("kind", "setting"), [("user", "require_approval_user"), ("queue", "require_approval_queue")]
)
def test_a_pending_mailbox_is_a_candidate_when_approval_is_not_required(kind, setting):
    entity = (
        user(2, BOB_ADDR, "Bob", track=TrackOption.ALL) if kind == "user" else queue(3, BOB_ADDR, "Bob queue")
    )
    entity = with_mailbox(entity, mailbox_approval=Approval.PENDING)
    overrides: dict[str, Any] = {setting: False}
    rules = OrgRules(**overrides)
    assert mailbox_not_syncing(entity, rules) is None
    assert mailbox_not_syncing(entity, OrgRules()) == "mailbox is not approved (approval is required)"
    ctx = context(owner=user(1, ALICE_ADDR, track=4), entities=[entity], **overrides)
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), ctx)
    assert res.accepting == entity


def test_a_recipient_without_a_mailbox_is_silently_no_candidate():
    erin = user(5, "erin@contoso.com", "Erin", track=TrackOption.ALL, has_mailbox=False)
    ctx = context(owner=user(1, ALICE_ADDR, "Alice", track=4), entities=[erin])
    res = run(message(to=(ALICE_ADDR, "erin@contoso.com")), ctx)
    assert candidate_names(res) == ["Alice"]
    assert steps(res, "candidates") == []


def test_candidates_leaves_out_a_disabled_mailbox():
    bob = with_mailbox(user(2, BOB_ADDR, "Bob"), mailbox_enabled=False)
    ctx = context(entities=[bob])
    msg = message(to=(ALICE_ADDR, BOB_ADDR))
    assert [c.name for c in candidates(ctx, resolve_recipients(msg, ctx))] == ["Alice"]


# ---------------------------------------------------------------------------------------------
# §7 ownership: the four rules, named in the trace
# ---------------------------------------------------------------------------------------------


def owner_step(res):
    return step(res, "owner")


def test_rule_1_the_owner_of_the_correlated_email_when_a_party():
    bob = user(2, BOB_ADDR, "Bob")
    parent = dataclasses.replace(tracked(7, "<parent@x>"), owner_id=bob.id)
    alice = user(1, ALICE_ADDR, "Alice", track=TrackOption.RESPONSES)
    res = run(
        message(to=(ALICE_ADDR,), cc=(BOB_ADDR,), in_reply_to=("<parent@x>",)),
        context(owner=alice, entities=[bob], refs=[parent]),
    )
    assert (res.outcome, res.accepting, res.owner_user_id) == (Outcome.TRACKED, alice, bob.id)
    assert owner_step(res).result == "1: correlated"
    assert owner_step(res).detail == "the owner of the correlated email <parent@x>, Bob, is a party"


def test_rule_1_does_not_apply_when_the_correlated_owner_is_no_party():
    bob = user(2, BOB_ADDR, "Bob")
    parent = dataclasses.replace(tracked(7, "<parent@x>"), owner_id=bob.id)
    alice = user(1, ALICE_ADDR, "Alice", track=TrackOption.RESPONSES)
    res = run(
        message(to=(ALICE_ADDR,), in_reply_to=("<parent@x>",)),
        context(owner=alice, entities=[bob], refs=[parent]),
    )
    assert res.owner_user_id == alice.id
    assert (owner_step(res).result, owner_step(res).detail) == (
        "2: accepting user",
        "the accepting user Alice",
    )


def test_rule_1_counts_the_sender_as_a_party():
    bob = user(2, BOB_ADDR, "Bob")
    parent = dataclasses.replace(tracked(7, "<parent@x>"), owner_id=bob.id)
    alice = user(1, ALICE_ADDR, "Alice", track=TrackOption.RESPONSES)
    msg = message(sender=BOB_ADDR, to=(ALICE_ADDR,), in_reply_to=("<parent@x>",))
    res = run(msg, context(owner=alice, entities=[bob], refs=[parent]))
    assert (res.owner_user_id, owner_step(res).result) == (bob.id, "1: correlated")


def test_rule_2_the_accepting_user():
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), context(owner=user(1, ALICE_ADDR, track=4), entities=[bob]))
    assert (res.owner_user_id, owner_step(res).result) == (bob.id, "2: accepting user")


def test_rule_3_the_first_user_recipient_with_an_active_mailbox_when_a_queue_accepts():
    support = queue(3, SUPPORT_ADDR, "Support", track=TrackOption.ALL)
    erin = user(5, "erin@contoso.com", "Erin", has_mailbox=False)  # no mailbox: skipped
    dan = with_mailbox(user(6, "dan@contoso.com", "Dan"), mailbox_enabled=False)  # not syncing: skipped
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.NONE)
    carol = user(7, "carol@contoso.com", "Carol", track=TrackOption.NONE)
    msg = message(
        to=(SUPPORT_ADDR, "erin@contoso.com", "dan@contoso.com"), cc=(BOB_ADDR,), bcc=("carol@contoso.com",)
    )
    res = run(msg, context(owner=support, entities=[erin, dan, bob, carol]))
    assert (res.accepting, res.owner_user_id) == (support, bob.id)
    assert owner_step(res).result == "3: first user recipient"
    assert owner_step(res).detail == "Bob, the first user with an active mailbox"


def test_rule_4_the_queues_owning_user():
    support = queue(3, SUPPORT_ADDR, "Support", track=TrackOption.ALL)
    ctx = context(owner=support)
    ctx.mailbox = dataclasses.replace(ctx.mailbox, queue_owner_id=9, queue_owner_name="Quinn")
    res = run(message(to=(SUPPORT_ADDR,)), ctx)
    assert (res.accepting, res.owner_user_id) == (support, 9)
    assert (owner_step(res).result, owner_step(res).detail) == (
        "4: mailbox owner",
        "Quinn, the owning user of queue Support",
    )


def test_no_owner_for_a_queue_without_an_owning_user():
    support = queue(3, SUPPORT_ADDR, "Support", track=TrackOption.ALL)
    res = run(message(to=(SUPPORT_ADDR,)), context(owner=support))
    assert res.owner_user_id is None
    assert owner_step(res).result == "none"


def test_rule_4_the_user_mailbox_owner_when_a_queue_accepts_and_no_user_recipient_syncs():
    support = queue(3, SUPPORT_ADDR, "Support", track=TrackOption.ALL)
    alice = with_mailbox(user(1, ALICE_ADDR, "Alice", track=4), mailbox_enabled=False)
    res = run(message(to=(ALICE_ADDR,), cc=(SUPPORT_ADDR,)), context(owner=alice, entities=[support]))
    assert (res.accepting, res.owner_user_id) == (support, alice.id)
    assert owner_step(res).result == "4: mailbox owner"


def test_manual_tracking_is_owned_by_the_mailbox_owner_unless_the_correlated_owner_is_a_party():
    alice = user(1, ALICE_ADDR, "Alice", track=4)
    bob = user(2, BOB_ADDR, "Bob")
    res = run(message(to=(ALICE_ADDR, BOB_ADDR)), context(owner=alice, entities=[bob]), ManualTracking())
    assert (res.reason, res.owner_user_id, owner_step(res).result) == (Reason.MANUAL, 1, "2: accepting user")
    parent = dataclasses.replace(tracked(7, "<parent@x>"), owner_id=bob.id)
    msg = message(to=(ALICE_ADDR, BOB_ADDR), in_reply_to=("<parent@x>",))
    res = run(msg, context(owner=alice, entities=[bob], refs=[parent]), ManualTracking())
    assert (res.owner_user_id, owner_step(res).result) == (bob.id, "1: correlated")


def test_no_owner_step_unless_tracked():
    res = run(message(), context(owner=user(1, ALICE_ADDR, track=4)))
    assert res.outcome == Outcome.NOT_TRACKED
    assert steps(res, "owner") == []


def test_a_batch_passes_ownership_on_to_a_later_reply():
    support = queue(3, SUPPORT_ADDR, "Support", track=TrackOption.ALL)
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.NONE)
    first = message("<a@x>", to=(SUPPORT_ADDR, BOB_ADDR))
    reply = message("<b@x>", to=(SUPPORT_ADDR,), cc=(BOB_ADDR,), in_reply_to=("<a@x>",))
    a, b = batch([first, reply], context(owner=support, entities=[bob]))
    assert a.owner_user_id == bob.id
    assert (b.owner_user_id, owner_step(b).result) == (bob.id, "1: correlated")


# ---------------------------------------------------------------------------------------------
# §5 smart matching removes every keyword match; conversation index exact before ancestor
# ---------------------------------------------------------------------------------------------


def test_hash_filter_keywords_removes_every_match():
    rules = OrgRules(hash_filter_keywords=r"\[EXT\]\s*")
    assert subject_hashes("[EXT] Q3 [EXT] forecast [EXT]", rules) == subject_hashes("Q3 forecast", rules)


def test_the_default_hash_filter_keywords_removes_every_leading_prefix():
    rules = OrgRules()
    assert subject_hashes("RE: FW: AW: Q3 forecast", rules) == subject_hashes("Q3 forecast", rules)


def test_smart_matching_with_a_tag_anywhere():
    parent = tracked(7, "<p@x>", subject="Q3 forecast", addresses=(ALICE_ADDR, CAROL_ADDR))
    msg = message(subject="[EXT] Q3 [EXT] forecast", to=(ALICE_ADDR,))
    ctx = context(refs=[parent], enable_smart_matching=True, hash_filter_keywords=r"\[EXT\]\s*")
    res = run(msg, ctx)
    assert res.correlation_method == CorrelationMethod.SMART_MATCHING


def test_conversation_index_tries_the_exact_value_first_and_says_so():
    exact = tracked(7, "<same@x>", conversation_index=CHILD_INDEX)
    ancestor = tracked(8, "<root@x>", conversation_index=ROOT_INDEX)
    res = run(message(conversation_index=CHILD_INDEX), context(refs=[ancestor, exact]))
    assert (res.correlation_method, res.correlated) == (CorrelationMethod.CONVERSATION_INDEX, exact)
    assert (
        step(res, "correlation: conversation_index").detail
        == "a tracked email has the same conversation index"
    )


def test_conversation_index_falls_back_to_the_nearest_ancestor_and_says_so():
    ancestor = tracked(8, "<root@x>", conversation_index=ROOT_INDEX)
    res = run(message(conversation_index=GRANDCHILD_INDEX), context(refs=[ancestor]))
    assert res.correlated == ancestor
    assert step(res, "correlation: conversation_index").detail == (
        "no tracked email has the same conversation index; the nearest tracked ancestor is 2 level(s) up "
        "(this project's refinement)"
    )


def test_conversation_index_matches_an_exact_value_of_any_shape():
    odd = tracked(9, "<odd@x>", conversation_index="abc123")
    res = run(message(conversation_index="abc123"), context(refs=[odd]))
    assert (res.correlation_method, res.correlated) == (CorrelationMethod.CONVERSATION_INDEX, odd)


# ---------------------------------------------------------------------------------------------
# §8 language-neutral traces: the engine writes English whoever is signed in
# ---------------------------------------------------------------------------------------------


def decided_in(language: str) -> list[tuple[str, str, str]]:
    contact = record(EntityKind.CONTACT, 60, CAROL_ADDR, "Carol")
    bob = user(2, BOB_ADDR, "Bob", track=TrackOption.ALL)
    ctx: DecisionContext = context(owner=user(1, ALICE_ADDR, "Alice", track=4), entities=[contact, bob])
    with translation.override(language):
        res = run(message(to=(ALICE_ADDR, BOB_ADDR)), ctx)
    return [(s.check, s.result, s.detail) for s in res.trace]


def test_a_trace_does_not_depend_on_the_language_of_who_asked():
    english = decided_in("en")
    assert decided_in("de") == english
    text = " ".join(" ".join(s) for s in english)
    assert "Contact 'Carol'" in text and "User 'Bob'" in text
    assert "option 0 'All email messages'" in text and "option 4 'No email messages'" in text
