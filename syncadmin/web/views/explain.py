"""Explain and What-if (DOMAIN §10): the engine's answer without writing anything.

Explain decides one pasted or uploaded message for a chosen mailbox and folder. What-if replays a
mailbox's recent decisions under another Track option or org setting value and lists what would
change. Admins may use any mailbox; everyone else only their own (another mailbox is a 404).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils.translation import gettext as _
from django_stubs_ext import StrOrPromise

from syncadmin.web.forms_decisions import WHAT_IF_DEFAULT, ExplainForm, WhatIfForm
from syncadmin.web.permissions import is_admin, user_required
from tracking.choices import Folder, Outcome, Reason, TrackOption
from tracking.context import load_context, load_rules, mailbox_for_scan
from tracking.decisions import DecisionContext, DecisionResult, OrgRules, decide_batch
from tracking.messages import ParsedMessage
from tracking.models import Decision, Mailbox
from tracking.orgsettings import SettingSpec, SettingValue
from tracking.pipeline import RawItem, explain_message, message_of

FOLDER_LABELS: dict[str, StrOrPromise] = dict(Folder.choices)
INITIAL = {"n": WHAT_IF_DEFAULT, "change": WhatIfForm.TRACK}


def explainable_mailboxes(user: User | AnonymousUser) -> QuerySet[Mailbox]:
    """Every mailbox for an admin; otherwise the user's own (auditors too: explain is not reading logs)."""
    mailboxes = Mailbox.objects.select_related("user", "queue", "profile").order_by("email_address")
    if is_admin(user):
        return mailboxes
    if not user.is_authenticated:
        return mailboxes.none()
    return mailboxes.filter(user_id=user.pk)


def _refuse_other_mailboxes(data: QueryDict, mailboxes: QuerySet[Mailbox]) -> None:
    """Asking for a mailbox one may not use is a 404, like opening another user's object."""
    raw = data.get("mailbox", "")
    if raw and not (raw.isdigit() and mailboxes.filter(pk=int(raw)).exists()):
        raise Http404


# ---------------------------------------------------------------------------------------------
# Explain
# ---------------------------------------------------------------------------------------------


@user_required
def explain(request: HttpRequest) -> HttpResponse:
    mailboxes = explainable_mailboxes(request.user)
    result: DecisionResult | None = None
    explained: Mailbox | None = None
    if request.method == "POST":
        _refuse_other_mailboxes(request.POST, mailboxes)
        form = ExplainForm(request.POST, request.FILES, mailboxes=mailboxes)
        if form.is_valid():
            explained = mailbox_for_scan(form.cleaned_data["mailbox"].pk)
            item = RawItem(provider_item_id="explain", data=form.cleaned_data["content"])
            result = explain_message(explained, form.cleaned_data["folder"], item)
    else:
        form = ExplainForm(mailboxes=mailboxes)
    context = {
        "form": form,
        "has_mailboxes": mailboxes.exists(),
        "result": result,
        "explained": explained,
        "reason_label": Reason(result.reason).label if result else "",
        "nav_section": "explain",
        "title": _("Explain a message"),
    }
    return render(request, "web/explain.html", context, status=400 if form.errors else 200)


# ---------------------------------------------------------------------------------------------
# What-if
# ---------------------------------------------------------------------------------------------


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
) -> list[DecisionResult]:
    ctx = load_context(
        mailbox,
        folder,
        messages,
        rules=rules,
        # Not the folders' scan progress: it moved past the replayed messages when they were scanned,
        # and would turn every one of them away as before_watermark.
        watermark=mailbox.configured_start_date(),
        use_watermark_override=True,
    )
    ctx = without_tracked(ctx, exclude)
    if track is not None:
        ctx = with_owner_track(ctx, track)
    return decide_batch(messages, ctx)


def replay(mailbox: Mailbox, n: int, change: Change, *, rules: OrgRules | None = None) -> WhatIfReport:
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
        before = _decide(mailbox, folder, messages, rules=rules, exclude=exclude, track=None)
        after = _decide(mailbox, folder, messages, rules=changed_rules, exclude=exclude, track=change.track)
        for d, b, a in zip(decisions, before, after, strict=True):
            results[d.pk] = ReplayRow(d, b, a)
    return WhatIfReport(
        mailbox=mailbox,
        change=change,
        rows=[results[d.pk] for d in reversed(replayable)],  # newest first, like the decision log
        skipped_failed=len(recent) - len(replayable),
        without_snapshot=sum(1 for d in replayable if not d.message_snapshot),
        folders=[(f, len(ds)) for f, ds in by_folder.items()],
    )


SHOW_OUTCOMES, SHOW_DIFFERENCES, SHOW_ALL = "outcomes", "differences", "all"
SHOW_CHOICES = (SHOW_OUTCOMES, SHOW_DIFFERENCES, SHOW_ALL)


def _shown_rows(report: WhatIfReport, show: str) -> list[ReplayRow]:
    if show == SHOW_ALL:
        return report.rows
    if show == SHOW_DIFFERENCES:
        return report.differing_rows
    return report.changed_rows


@user_required
def what_if(request: HttpRequest) -> HttpResponse:
    mailboxes = explainable_mailboxes(request.user)
    rules = load_rules()
    bound = "mailbox" in request.GET
    if bound:
        _refuse_other_mailboxes(request.GET, mailboxes)
    form = WhatIfForm(request.GET if bound else None, mailboxes=mailboxes, rules=rules, initial=INITIAL)
    report: WhatIfReport | None = None
    if bound and form.is_valid():
        data = form.cleaned_data
        if data["change"] == WhatIfForm.TRACK:
            change = Change(track=data["track"])
        else:
            change = Change(setting=data["spec"], value=data["setting_value"])
        mailbox = mailbox_for_scan(data["mailbox"].pk)
        report = replay(mailbox, data["n"], change, rules=rules)
    show = request.GET.get("show", "")
    if show not in SHOW_CHOICES:
        show = SHOW_OUTCOMES
    context = {
        "form": form,
        "has_mailboxes": mailboxes.exists(),
        "report": report,
        "rows": _shown_rows(report, show) if report else [],
        "show": show,
        "forced": rules.force_filtering_method >= 0,
        "is_admin": is_admin(request.user),
        "own_mailbox": report is not None and report.mailbox.user_id == request.user.pk,
        "folders": [(FOLDER_LABELS.get(f, f), n) for f, n in report.folders] if report else [],
        "nav_section": "explain",
        "title": _("What if"),
    }
    return render(request, "web/whatif.html", context, status=400 if form.errors else 200)
