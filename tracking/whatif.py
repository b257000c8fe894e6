"""What-if (tracking-rules §10): a mailbox's recent decisions decided again under one change; writes nothing.

The web page (syncadmin/web/views/explain.py) asks `replay` and shows its report; everything that
decides what would change is here.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.translation import gettext as _

from tracking.choices import Outcome, Reason, TrackOption
from tracking.context import Scope, load_context, load_rules
from tracking.decisions import DecisionContext, DecisionResult, OrgRules, decide_batch
from tracking.messages import ParsedMessage
from tracking.models import Decision, Mailbox
from tracking.orgsettings import SettingSpec, SettingValue
from tracking.pipeline import message_of, scoped

# Which rows of a report a page lists: those whose outcome changes, whose outcome or reason does, or all.
SHOW_OUTCOMES, SHOW_DIFFERENCES, SHOW_ALL = "outcomes", "differences", "all"
SHOW_CHOICES = (SHOW_OUTCOMES, SHOW_DIFFERENCES, SHOW_ALL)


@dataclass(frozen=True)
class Change:
    """The one thing a what-if changes: the owner's Track option, or one org setting."""

    track: int | None = None
    setting: SettingSpec | None = None
    value: SettingValue = False

    def label(self) -> str:
        if self.setting is not None:
            return _("%(name)s = %(value)s") % {
                "name": self.setting.name,
                "value": self.setting.format(self.value),
            }
        assert self.track is not None
        return _("Track option %(n)s “%(label)s”") % {"n": self.track, "label": TrackOption(self.track).label}

    def rules(self, current: OrgRules) -> OrgRules:
        if self.setting is None:
            return current
        return OrgRules.from_values({**dataclasses.asdict(current), self.setting.field: self.value})


@dataclass(frozen=True)
class ReplayRow:
    decision: Decision
    before: DecisionResult  # under the current settings
    after: DecisionResult  # with the change

    @property
    def changed(self) -> bool:
        """The outcome would change."""
        return self.before.outcome != self.after.outcome

    @property
    def differs(self) -> bool:
        """The outcome or only its reason would change."""
        return (self.before.outcome, self.before.reason) != (self.after.outcome, self.after.reason)

    @property
    def drifted(self) -> bool:
        """The current settings and data no longer give what was recorded (not caused by the change)."""
        return (self.before.outcome, self.before.reason) != (self.decision.outcome, self.decision.reason)

    @property
    def before_reason(self) -> str:
        return str(Reason(self.before.reason).label)

    @property
    def after_reason(self) -> str:
        return str(Reason(self.after.reason).label)


@dataclass(frozen=True)
class Transition:
    before: str
    after: str
    count: int

    @property
    def before_label(self) -> str:
        return str(Outcome(self.before).label)

    @property
    def after_label(self) -> str:
        return str(Outcome(self.after).label)


@dataclass(frozen=True)
class WhatIfReport:
    mailbox: Mailbox
    change: Change
    rows: list[ReplayRow]
    skipped_failed: int
    without_snapshot: int
    folders: list[tuple[str, int]]
    scope: Scope | None = None  # what the replay considered, when limited to one user's view

    @property
    def changed_rows(self) -> list[ReplayRow]:
        return [r for r in self.rows if r.changed]

    @property
    def differing_rows(self) -> list[ReplayRow]:
        return [r for r in self.rows if r.differs]

    @property
    def reason_only(self) -> int:
        return sum(1 for r in self.rows if r.differs and not r.changed)

    @property
    def drifted(self) -> int:
        return sum(1 for r in self.rows if r.drifted)

    def shown(self, show: str) -> list[ReplayRow]:
        """The rows listed for one of SHOW_CHOICES."""
        if show == SHOW_ALL:
            return self.rows
        if show == SHOW_DIFFERENCES:
            return self.differing_rows
        return self.changed_rows

    @property
    def transitions(self) -> list[Transition]:
        counts = Counter((r.before.outcome.value, r.after.outcome.value) for r in self.changed_rows)
        return [Transition(b, a, n) for (b, a), n in counts.most_common()]


def without_tracked(ctx: DecisionContext, keys: Collection[int]) -> DecisionContext:
    """The context minus these TrackedEmails, wherever correlation or dedup would find them."""
    if not keys:
        return ctx
    out = ctx.copy()
    out.tracked_by_message_id = {
        message_id: kept
        for message_id, refs in ctx.tracked_by_message_id.items()
        if (kept := [r for r in refs if r.key not in keys])
    }
    out.tracked_by_token = {t: r for t, r in ctx.tracked_by_token.items() if r.key not in keys}
    out.tracked_by_conversation_index = {
        c: r for c, r in ctx.tracked_by_conversation_index.items() if r.key not in keys
    }
    out.smart_candidates = [r for r in ctx.smart_candidates if r.key not in keys]
    return out


def with_owner_track(ctx: DecisionContext, track: int) -> DecisionContext:
    """The context with the mailbox owner's Track option replaced (wherever the owner appears)."""
    owner = dataclasses.replace(ctx.mailbox.owner, track=track)
    same = (owner.kind, owner.id)
    return dataclasses.replace(
        ctx,
        mailbox=dataclasses.replace(ctx.mailbox, owner=owner),
        entities_by_address={
            address: [owner if (e.kind, e.id) == same else e for e in entities]
            for address, entities in ctx.entities_by_address.items()
        },
    )


def _own_tracked_emails(mailbox: Mailbox, decisions: Sequence[Decision]) -> dict[str, set[int]]:
    """Per folder, the TrackedEmails that this mailbox's own decisions (scan or manual) created."""
    own: dict[str, set[int]] = {}
    rows = Decision.objects.filter(
        mailbox=mailbox,
        outcome=Outcome.TRACKED,
        message_id__in=sorted({d.message_id for d in decisions}),
        tracked_email__isnull=False,
    ).values_list("folder", "tracked_email_id")
    for folder, tracked_email_id in rows:
        own.setdefault(folder, set()).add(tracked_email_id)
    return own


def _decide(
    mailbox: Mailbox,
    folder: str,
    messages: Sequence[ParsedMessage],
    *,
    rules: OrgRules,
    exclude: Collection[int],
    track: int | None,
    scope: Scope | None,
    start_date: datetime | None = None,
) -> list[DecisionResult]:
    ctx = load_context(mailbox, folder, messages, rules=rules, scope=scope, start_date=start_date)
    ctx = without_tracked(ctx, exclude)
    if track is not None:
        ctx = with_owner_track(ctx, track)
    return [scoped(r, scope) for r in decide_batch(messages, ctx)]


def replay(
    mailbox: Mailbox, n: int, change: Change, *, rules: OrgRules | None = None, scope: Scope | None = None
) -> WhatIfReport:
    """Decide the mailbox's last `n` scan decisions again, now and with the change; writes nothing.

    Each message is decided as if it had not been tracked yet: the TrackedEmail this mailbox's own
    decision created for it is left out of the context (else every tracked message would come back
    already_tracked). Messages are replayed oldest first in one batch per folder, so that one the
    replay tracks counts for correlation of later ones, as in a scan.
    """
    rules = rules or load_rules()
    changed_rules = change.rules(rules)
    recent = list(Decision.objects.filter(mailbox=mailbox, manual=False).order_by("-id")[:n])
    recent.reverse()
    replayable = [d for d in recent if d.outcome != Outcome.FAILED]
    own = _own_tracked_emails(mailbox, replayable) if replayable else {}
    by_folder: dict[str, list[Decision]] = {}
    for d in replayable:
        by_folder.setdefault(d.folder, []).append(d)
    results: dict[int, ReplayRow] = {}
    for folder, decisions in by_folder.items():
        messages = [message_of(d) for d in decisions]
        exclude = own.get(folder, set())
        before = _decide(mailbox, folder, messages, rules=rules, exclude=exclude, track=None, scope=scope)
        after = _decide(
            mailbox, folder, messages, rules=changed_rules, exclude=exclude, track=change.track, scope=scope
        )
        for d, b, a in zip(decisions, before, after, strict=True):
            results[d.pk] = ReplayRow(d, b, a)
    return WhatIfReport(
        mailbox=mailbox,
        change=change,
        rows=[results[d.pk] for d in reversed(replayable)],  # newest first, like the decision log
        skipped_failed=len(recent) - len(replayable),
        without_snapshot=sum(1 for d in replayable if not d.message_snapshot),
        folders=[(f, len(ds)) for f, ds in by_folder.items()],
        scope=scope,
    )


# How many of a mailbox's current decisions the preview of a round decides again (the newest).
ROUND_PREVIEW_LIMIT = 2000


@dataclass(frozen=True)
class RoundPreview:
    """What a reprocessing round would change, from the decisions on record (tracking-rules §3.6)."""

    mailbox: Mailbox
    transitions: list[Transition]  # current outcome → outcome now, with counts; unchanged ones included
    considered: int
    total: int

    @property
    def changing(self) -> int:
        return sum(t.count for t in self.transitions if t.before != t.after)


def preview_round(
    mailbox: Mailbox, since: datetime, folders: Collection[str], *, limit: int = ROUND_PREVIEW_LIMIT
) -> RoundPreview:
    """Decide the current decisions of these folders after `since` again under today's settings; writes
    nothing. Unlike What-if, a tracked message stays tracked (a round never untracks): it comes back
    already_tracked, as the round will decide it."""
    current = (
        Decision.objects.filter(mailbox=mailbox, folder__in=list(folders), received_at__gt=since)
        .filter(superseded_by__isnull=True)
        .exclude(outcome=Outcome.FAILED)
    )
    total = current.count()
    decisions = list(current.order_by("-id")[:limit])
    decisions.reverse()
    rules = load_rules()
    counts: Counter[tuple[str, str]] = Counter()
    by_folder: dict[str, list[Decision]] = {}
    for d in decisions:
        by_folder.setdefault(d.folder, []).append(d)
    for folder, group in by_folder.items():
        results = _decide(
            mailbox,
            folder,
            [message_of(d) for d in group],
            rules=rules,
            exclude=(),
            track=None,
            scope=None,
            start_date=since,
        )
        for d, res in zip(group, results, strict=True):
            counts[(d.outcome, res.outcome.value)] += 1
    transitions = [Transition(before, after, n) for (before, after), n in sorted(counts.items())]
    return RoundPreview(mailbox=mailbox, transitions=transitions, considered=len(decisions), total=total)
