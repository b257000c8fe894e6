"""Explain and What-if (tracking-rules §10): the engine's answer without writing anything.

Explain decides one pasted or uploaded message for a chosen mailbox and folder. What-if replays a
mailbox's recent decisions under another Track option or org setting value and lists what would
change. Admins may use any mailbox; everyone else only their own (another mailbox is a 404), and
for them only what they may see is considered (tracking.context.Scope): no other user's data leaks
through an answer.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe
from django_stubs_ext import StrOrPromise

from syncadmin.web.forms.explain import WHAT_IF_DEFAULT, ExplainForm, WhatIfForm
from syncadmin.web.ids import parse_id
from syncadmin.web.permissions import AuthenticatedHttpRequest, is_admin, user_required
from tracking.choices import Folder, Reason
from tracking.context import Scope, load_rules, mailbox_for_scan, scope_of
from tracking.decisions import DecisionResult
from tracking.messages import RawItem
from tracking.models import Mailbox
from tracking.pipeline import explain_message
from tracking.whatif import SHOW_CHOICES, SHOW_OUTCOMES, WhatIfReport, replay

FOLDER_LABELS: dict[str, StrOrPromise] = dict(Folder.choices)
INITIAL = {"n": WHAT_IF_DEFAULT, "change": WhatIfForm.TRACK}


def explainable_mailboxes(user: User) -> QuerySet[Mailbox]:
    return (
        Mailbox.objects.explainable_by(user)
        .select_related("user", "queue", "profile")
        .order_by("email_address")
    )


def _scope(user: User) -> Scope | None:
    """Everything for an admin; what the user may see for anyone else (an auditor too: not a log)."""
    return None if is_admin(user) else scope_of(user)


def _refuse_other_mailboxes(data: QueryDict, mailboxes: QuerySet[Mailbox]) -> None:
    """Asking for a mailbox one may not use is a 404, like opening another user's object."""
    raw = data.get("mailbox", "")
    if raw and not ((pk := parse_id(raw)) is not None and mailboxes.filter(pk=pk).exists()):
        raise Http404


# ---------------------------------------------------------------------------------------------
# Explain
# ---------------------------------------------------------------------------------------------


@user_required
@require_http_methods(["GET", "POST"])
def explain(request: AuthenticatedHttpRequest) -> HttpResponse:
    mailboxes = explainable_mailboxes(request.user)
    result: DecisionResult | None = None
    explained: Mailbox | None = None
    if request.method == "POST":
        _refuse_other_mailboxes(request.POST, mailboxes)
        form = ExplainForm(request.POST, request.FILES, mailboxes=mailboxes)
        if form.is_valid():
            explained = mailbox_for_scan(form.cleaned_data["mailbox"].pk)
            item = RawItem(provider_item_id="explain", data=form.cleaned_data["content"])
            result = explain_message(explained, form.cleaned_data["folder"], item, scope=_scope(request.user))
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


@user_required
@require_safe
def what_if(request: AuthenticatedHttpRequest) -> HttpResponse:
    mailboxes = explainable_mailboxes(request.user)
    rules = load_rules()
    bound = "mailbox" in request.GET
    if bound:
        _refuse_other_mailboxes(request.GET, mailboxes)
    form = WhatIfForm(request.GET if bound else None, mailboxes=mailboxes, rules=rules, initial=INITIAL)
    report: WhatIfReport | None = None
    if bound and form.is_valid():
        data = form.cleaned_data
        mailbox = mailbox_for_scan(data["mailbox"].pk)
        report = replay(mailbox, data["n"], form.tried_change(), rules=rules, scope=_scope(request.user))
    show = request.GET.get("show", "")
    if show not in SHOW_CHOICES:
        show = SHOW_OUTCOMES
    context = {
        "form": form,
        "has_mailboxes": mailboxes.exists(),
        "report": report,
        "rows": report.shown(show) if report else [],
        "show": show,
        "forced": rules.force_filtering_method >= 0,
        "is_admin": is_admin(request.user),
        "own_mailbox": report is not None and report.mailbox.user_id == request.user.pk,
        "folders": [(FOLDER_LABELS.get(f, f), n) for f, n in report.folders] if report else [],
        "nav_section": "explain",
        "title": _("What if"),
    }
    return render(request, "web/whatif.html", context, status=400 if form.errors else 200)
