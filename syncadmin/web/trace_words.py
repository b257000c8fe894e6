"""A decision's trace in the reader's language (issue 18).

The engine writes its trace in English words and stores it that way (language-neutral: the same trace
for every reader, the CLI and the CSV). The pages translate it on display: the checks and results are a
small vocabulary; the details are translated part by part ("; " separates the parts), each by the
first pattern it matches. A part no pattern knows is shown as stored — a sentence the engine gains
later stays readable, only untranslated, until a pattern is added here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django_stubs_ext import StrOrPromise

from tracking.choices import EntityKind, TrackOption

CHECKS: dict[str, StrOrPromise] = {
    "fetch": pgettext_lazy("trace check", "fetch"),
    "parse": pgettext_lazy("trace check", "parse"),
    "folder": pgettext_lazy("trace check", "folder"),
    "watermark": pgettext_lazy("trace check", "watermark"),  # decisions made before the start date (§3.5)
    "start_date": pgettext_lazy("trace check", "start_date"),
    "candidates": pgettext_lazy("trace check", "candidates"),
    "owner": pgettext_lazy("trace check", "owner"),
    "manual": pgettext_lazy("trace check", "manual"),
    "sender": pgettext_lazy("trace check", "sender"),
    "recipients": pgettext_lazy("trace check", "recipients"),
    "duplicate": pgettext_lazy("trace check", "duplicate"),
    "exclusion": pgettext_lazy("trace check", "exclusion"),
    "correlation: in_reply_to": pgettext_lazy("trace check", "correlation: in_reply_to"),
    "correlation: tracking_token": pgettext_lazy("trace check", "correlation: tracking_token"),
    "correlation: conversation_index": pgettext_lazy("trace check", "correlation: conversation_index"),
    "correlation: smart_matching": pgettext_lazy("trace check", "correlation: smart_matching"),
    "auto-create": pgettext_lazy("trace check", "auto-create"),
    "outcome": pgettext_lazy("trace check", "outcome"),
}

# "candidate: user alice": the kind as the engine writes it (EntityKind's values)
CANDIDATE_KINDS: dict[str, StrOrPromise] = {
    "user": pgettext_lazy("trace candidate", "user"),
    "queue": pgettext_lazy("trace candidate", "queue"),
    "contact": pgettext_lazy("trace candidate", "contact"),
    "account": pgettext_lazy("trace candidate", "account"),
    "lead": pgettext_lazy("trace candidate", "lead"),
    "other": pgettext_lazy("trace candidate", "other"),
}

RESULTS: dict[str, StrOrPromise] = {
    "ok": pgettext_lazy("trace result", "ok"),
    "failed": pgettext_lazy("trace result", "failed"),
    "skipped": pgettext_lazy("trace result", "skipped"),
    "match": pgettext_lazy("trace result", "match"),
    "no match": pgettext_lazy("trace result", "no match"),
    "not scanned": pgettext_lazy("trace result", "not scanned"),
    "inbox": pgettext_lazy("trace result", "inbox"),
    "sentitems": pgettext_lazy("trace result", "sentitems"),
    "after": pgettext_lazy("trace result", "after"),
    "before": pgettext_lazy("trace result", "before"),
    "requested": pgettext_lazy("trace result", "requested"),
    "missing": pgettext_lazy("trace result", "missing"),
    "resolved": pgettext_lazy("trace result", "resolved"),
    "unresolved": pgettext_lazy("trace result", "unresolved"),
    "found": pgettext_lazy("trace result", "found"),
    "none": pgettext_lazy("trace result", "none"),
    "other direction": pgettext_lazy("trace result", "other direction"),
    "excluded": pgettext_lazy("trace result", "excluded"),
    "accepts": pgettext_lazy("trace result", "accepts"),
    "declines": pgettext_lazy("trace result", "declines"),
    "not needed": pgettext_lazy("trace result", "not needed"),
    "off": pgettext_lazy("trace result", "off"),
    "not asked": pgettext_lazy("trace result", "not asked"),
    "contact": pgettext_lazy("trace result", "contact"),
    "lead": pgettext_lazy("trace result", "lead"),
}

# Parts of details said in the same words every time.
FIXED: dict[str, StrOrPromise] = {
    "off (UseTrackingTokens is false)": gettext_lazy("off (UseTrackingTokens is false)"),
    "off (EnableSmartMatching is false)": gettext_lazy("off (EnableSmartMatching is false)"),
    "the subject has no words to match on": gettext_lazy("the subject has no words to match on"),
    "tracked by a person: filter options, watermark and exclusions do not apply": gettext_lazy(
        "tracked by a person: filter options, watermark and exclusions do not apply"
    ),
    "the message has no readable From address": gettext_lazy("the message has no readable From address"),
    "no tracked email has this Message-ID": gettext_lazy("no tracked email has this Message-ID"),
    "no address of the message is on the exclusion list": gettext_lazy(
        "no address of the message is on the exclusion list"
    ),
    "the message has no In-Reply-To header": gettext_lazy("the message has no In-Reply-To header"),
    "the subject carries no tracking token": gettext_lazy("the subject carries no tracking token"),
    "the message has no conversation index": gettext_lazy("the message has no conversation index"),
    "no tracked email shares this conversation": gettext_lazy("no tracked email shares this conversation"),
    "Sent Items of an Exchange mailbox, AutoTrackSentFolderItems on": gettext_lazy(
        "Sent Items of an Exchange mailbox, AutoTrackSentFolderItems on"
    ),
    "tracked in the other direction": gettext_lazy("tracked in the other direction"),
    "internal mail may be tracked once per direction (TrackEmailsBetweenUsersAsTwoActivities)": gettext_lazy(
        "internal mail may be tracked once per direction (TrackEmailsBetweenUsersAsTwoActivities)"
    ),
    "the sender's address is already in the directory": gettext_lazy(
        "the sender's address is already in the directory"
    ),
    "subject starts with a forward prefix (DoNotCorrelateForwardedEmailsAsReplies)": gettext_lazy(
        "subject starts with a forward prefix (DoNotCorrelateForwardedEmailsAsReplies)"
    ),
    "Sent Items are tracked only with AutoTrackSentFolderItems on": gettext_lazy(
        "Sent Items are tracked only with AutoTrackSentFolderItems on"
    ),
    "Sent Items are tracked only for Exchange mailboxes": gettext_lazy(
        "Sent Items are tracked only for Exchange mailboxes"
    ),
    "a folder tracking rule maps this folder": gettext_lazy("a folder tracking rule maps this folder"),
    "the root Inbox is always scanned": gettext_lazy("the root Inbox is always scanned"),
    "internal mail already tracked in the other direction": gettext_lazy(
        "internal mail already tracked in the other direction"
    ),
    "already tracked in the other direction": gettext_lazy("already tracked in the other direction"),
    "unresolved sender": gettext_lazy("unresolved sender"),
    "AutoCreateContactOnPromote is false": gettext_lazy("AutoCreateContactOnPromote is false"),
    "the accepting entity does not create records automatically": gettext_lazy(
        "the accepting entity does not create records automatically"
    ),
    "no watermark set": gettext_lazy("no watermark set"),
    "no start date set": gettext_lazy("no start date set"),
    "tracked by a person: filter options, start date and exclusions do not apply": gettext_lazy(
        "tracked by a person: filter options, start date and exclusions do not apply"
    ),
    "none resolved": gettext_lazy("none resolved"),
    "accepts every message": gettext_lazy("accepts every message"),
    "accepts no message": gettext_lazy("accepts no message"),
    "the message correlates to a tracked email": gettext_lazy("the message correlates to a tracked email"),
    "the message does not correlate to a tracked email": gettext_lazy(
        "the message does not correlate to a tracked email"
    ),
    "the sender is a lead, contact or account": gettext_lazy("the sender is a lead, contact or account"),
    "the sender is not a lead, contact or account": gettext_lazy(
        "the sender is not a lead, contact or account"
    ),
    "the sender is an email-enabled record": gettext_lazy("the sender is an email-enabled record"),
    "the sender is not an email-enabled record": gettext_lazy("the sender is not an email-enabled record"),
    "no recipient is a lead, contact or account": gettext_lazy("no recipient is a lead, contact or account"),
    "no recipient is an email-enabled record": gettext_lazy("no recipient is an email-enabled record"),
    "mailbox owner": gettext_lazy("mailbox owner"),
    "recipient with a mailbox": gettext_lazy("recipient with a mailbox"),
    "tracked manually": gettext_lazy("tracked manually"),
    "the message could not be parsed": gettext_lazy("the message could not be parsed"),
    "the message could not be fetched": gettext_lazy("the message could not be fetched"),
    "nothing was tracked": gettext_lazy("nothing was tracked"),
    "linked to the existing tracked email": gettext_lazy("linked to the existing tracked email"),
    "no candidate accepts the message": gettext_lazy("no candidate accepts the message"),
    "the reason is the mailbox owner's": gettext_lazy("the reason is the mailbox owner's"),
    "an address on the exclusion list": gettext_lazy("an address on the exclusion list"),
    "Sent Items tracking is off": gettext_lazy("Sent Items tracking is off"),
    "this mailbox's server is not Exchange": gettext_lazy("this mailbox's server is not Exchange"),
    "TrackEmailsBetweenUsersAsTwoActivities is off: one activity per internal message": gettext_lazy(
        "TrackEmailsBetweenUsersAsTwoActivities is off: one activity per internal message"
    ),
    "a incoming email with this Message-ID is already tracked": gettext_lazy(
        "a incoming email with this Message-ID is already tracked"
    ),
    "a outgoing email with this Message-ID is already tracked": gettext_lazy(
        "a outgoing email with this Message-ID is already tracked"
    ),
}


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    words: Callable[[Mapping[str, str]], str]


def _simple(regex: str, template: StrOrPromise) -> Pattern:
    return Pattern(re.compile(regex), lambda groups: str(template) % groups)


def _option(groups: Mapping[str, str]) -> str:
    number = int(groups["n"])
    label = TrackOption(number).label if number in TrackOption.values else groups["label"]
    forced = _(" (forced by SSSForceFilteringMethodForUserMailboxes)") if groups["forced"] else ""
    return _("option %(n)s '%(label)s'%(forced)s: %(why)s") % {
        "n": number,
        "label": label,
        "forced": forced,
        "why": translate_detail(groups["why"]),
    }


# An entity as the engine's Entity.label() writes it: "Contact 'Ann' <ann@example.net> (#4)".
KIND_WORDS = {str(kind.label): kind for kind in EntityKind}
ENTITY_KIND = re.compile(r"(^|, )(" + "|".join(re.escape(k) for k in KIND_WORDS) + r") (?=')")


def _entities(text: str) -> str:
    return ENTITY_KIND.sub(lambda m: m.group(1) + str(KIND_WORDS[m.group(2)].label) + " ", text)


def _resolved(groups: Mapping[str, str]) -> str:
    why = groups["why"]
    if why == "only match":
        why = _("only match")
    elif groups["best"]:
        why = _("best of %(n)s: owner's records, then kind, then oldest") % {"n": groups["best"]}
    shown = f"{groups['address']} → {_entities(groups['who'])}"
    return f"{shown} ({why})" if why else shown


PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        re.compile(
            r"^(?P<address>\S+) → (?P<who>.+?)"
            r"(?: \((?P<why>only match|best of (?P<best>\d+): owner's records, then kind, then oldest)\))?$"
        ),
        _resolved,
    ),
    Pattern(
        re.compile(
            r"^option (?P<n>\d+) '(?P<label>.*)'"
            r"(?P<forced> \(forced by SSSForceFilteringMethodForUserMailboxes\))?: (?P<why>.*)$"
        ),
        _option,
    ),
    _simple(r"^(?P<n>\d+) recipient\(s\)$", gettext_lazy("%(n)s recipient(s)")),
    _simple(r"^defects: (?P<list>.*)$", gettext_lazy("defects: %(list)s")),
    _simple(
        r"^(?P<address>\S+) is on the exclusion list$", gettext_lazy("%(address)s is on the exclusion list")
    ),
    _simple(
        r"^token (?P<token>.+) belongs to a tracked email$",
        gettext_lazy("token %(token)s belongs to a tracked email"),
    ),
    _simple(
        r"^token (?P<token>.+) is not on a tracked email$",
        gettext_lazy("token %(token)s is not on a tracked email"),
    ),
    _simple(
        r"^In-Reply-To (?P<id>.+) is a tracked email$", gettext_lazy("In-Reply-To %(id)s is a tracked email")
    ),
    _simple(r"^In-Reply-To (?P<id>.+) is not tracked$", gettext_lazy("In-Reply-To %(id)s is not tracked")),
    _simple(
        r"^a tracked email is this message's ancestor (?P<n>\d+) level\(s\) up$",
        gettext_lazy("a tracked email is this message's ancestor %(n)s level(s) up"),
    ),
    _simple(
        r"^same subject words and shared addresses as (?P<id>.+)$",
        gettext_lazy("same subject words and shared addresses as %(id)s"),
    ),
    _simple(
        r"^(?P<address>\S+) matches no user, queue or record$",
        gettext_lazy("%(address)s matches no user, queue or record"),
    ),
    _simple(
        r"^recipient (?P<address>\S+) is a lead, contact or account$",
        gettext_lazy("recipient %(address)s is a lead, contact or account"),
    ),
    _simple(
        r"^recipient (?P<address>\S+) is an email-enabled record$",
        gettext_lazy("recipient %(address)s is an email-enabled record"),
    ),
    _simple(
        r"^everything in folder (?P<folder>.+) is tracked$",
        gettext_lazy("everything in folder %(folder)s is tracked"),
    ),
    _simple(
        r"^tracked manually, regarding (?P<name>.+)$", gettext_lazy("tracked manually, regarding %(name)s")
    ),
    _simple(r"^(?P<done>\d+) of (?P<all>\d+) resolved$", gettext_lazy("%(done)s of %(all)s resolved")),
)


def _part(text: str) -> str:
    fixed = FIXED.get(text)
    if fixed is not None:
        return str(fixed)
    for pattern in PATTERNS:
        match = pattern.regex.match(text)
        if match:
            return pattern.words({k: v or "" for k, v in match.groupdict().items()})
    return text


def translate_detail(detail: str) -> str:
    return "; ".join(_part(part) for part in detail.split("; "))


def translate_result(result: str) -> str:
    known = RESULTS.get(result)
    if known is not None:
        return str(known)
    return _part(result)


def translate_check(check: str) -> str:
    known = CHECKS.get(check)
    if known is not None:
        return str(known)
    kind, _sep, name = check.removeprefix("candidate: ").partition(" ")
    if check.startswith("candidate: ") and kind in CANDIDATE_KINDS:
        return _("candidate: %(kind)s %(name)s") % {"kind": CANDIDATE_KINDS[kind], "name": name}
    return check


@dataclass(frozen=True)
class ShownStep:
    key: str  # the check as stored: what the template compares ("outcome")
    check: str
    result: str
    detail: str


def shown_trace(steps: Iterable[object]) -> list[ShownStep]:
    """Stored steps (dicts from the JSON column, or the engine's TraceStep) in the active language."""
    shown = []
    for step in steps:
        values = step if isinstance(step, dict) else vars(step)
        check, result, detail = (str(values.get(name) or "") for name in ("check", "result", "detail"))
        shown.append(
            ShownStep(check, translate_check(check), translate_result(result), translate_detail(detail))
        )
    return shown
