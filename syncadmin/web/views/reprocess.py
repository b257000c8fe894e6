"""Reprocessing rounds in the product (tracking-rules §3.6): ask for one with a preview, watch it, cancel it.

Admins reprocess any mailboxes; a user reprocesses only their own, and only as far back as
UserReprocessMaxDays; auditors see rounds and start none.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from redis.exceptions import RedisError

from syncadmin.web.forms.reprocess import ReprocessForm
from syncadmin.web.htmx import is_htmx
from syncadmin.web.ids import parse_id
from syncadmin.web.permissions import (
    AuthenticatedHttpRequest,
    is_admin,
    is_auditor,
    reads_everything,
    user_required,
)
from tracking.actions import ActionError, do_cancel_round, do_start_round, round_status
from tracking.context import load_rules
from tracking.jobs import enqueue_round
from tracking.models import Mailbox, ReprocessRound, ScanRun
from tracking.reprocessing import check_round, round_folders
from tracking.whatif import preview_round


def _chosen_mailboxes(request: AuthenticatedHttpRequest) -> list[Mailbox]:
    """The mailboxes named by ?mailbox= (repeatable) that this person may reprocess; others are 404."""
    data = request.POST if request.method == "POST" else request.GET
    ids = [parse_id(v) for v in data.getlist("mailbox")]
    if any(i is None for i in ids):
        raise Http404
    wanted = sorted({i for i in ids if i is not None})
    mailboxes = Mailbox.objects.select_related("profile", "user", "queue").filter(pk__in=wanted)
    if not is_admin(request.user):
        mailboxes = mailboxes.filter(user_id=request.user.pk)
    found = list(mailboxes.order_by("email_address"))
    if len(found) != len(wanted):
        raise Http404
    return found


@user_required
@require_http_methods(["GET", "POST"])
def reprocess_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    if is_auditor(request.user) and not is_admin(request.user):
        raise PermissionDenied
    mailboxes = _chosen_mailboxes(request)
    if not mailboxes and not is_admin(request.user):
        own = (
            Mailbox.objects.select_related("profile", "user", "queue").filter(user_id=request.user.pk).first()
        )
        if own is None:
            raise Http404
        mailboxes = [own]
    rules = load_rules()
    folders = list(dict.fromkeys(f for m in mailboxes for f in round_folders(m, rules)))
    limit = None if is_admin(request.user) else rules.user_reprocess_max_days
    now = timezone.now()
    default = timezone.localtime(now - timedelta(days=min(limit or 30, 30))).replace(second=0, microsecond=0)
    try:
        # "Reprocess from this date…" after a start date was lowered names the date
        asked = parse_datetime(request.GET.get("since", ""))
    except ValueError:
        asked = None
    initial = {"since": asked or default}
    # The mailbox list's "Reprocess selected…" posts only the selection: that opens the form.
    data = request.POST if request.method == "POST" and "since" in request.POST else None
    form = ReprocessForm(data, folders=folders, initial=initial)
    context: dict[str, object] = {
        "form": form,
        "mailboxes": mailboxes,
        "limit_days": limit,
        "title": _("Reprocess mail"),
        "nav_section": "mailboxes",
    }
    if form.is_bound and form.is_valid():
        since = form.cleaned_data["since"]
        chosen = form.cleaned_data["folders"]
        try:
            plan = check_round(mailboxes, since, chosen, now=now, max_days_back=limit)
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            if "confirm" not in request.POST:
                context["previews"] = [preview_round(m, since, fs) for m, fs in plan.folders_by_mailbox]
                context["confirmable"] = True
            else:
                try:
                    with transaction.atomic():
                        round = do_start_round(plan, acting_user=request.user, via="web")
                        enqueue_round(round)
                except RedisError:
                    form.add_error(None, _("The job queue (Redis) is not reachable; nothing was started."))
                else:
                    messages.success(request, _("Reprocessing round started."))
                    return redirect("web-round", round.pk)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "web/reprocess_new.html", context, status=status)


def _get_round(request: AuthenticatedHttpRequest, pk: int) -> ReprocessRound:
    round = get_object_or_404(ReprocessRound.objects.select_related("requested_by"), pk=pk)
    if reads_everything(request.user):
        return round
    if ScanRun.objects.filter(round=round).exclude(mailbox__user_id=request.user.pk).exists():
        raise Http404
    return round


@user_required
@require_safe
def round_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    round = _get_round(request, pk)
    runs = (
        ScanRun.objects.filter(round=round)
        .select_related("mailbox")
        .order_by("mailbox__email_address", "folder")
    )
    context = {
        "round": round,
        "runs": runs,
        "status": round_status(round),
        "may_cancel": is_admin(request.user) or round.requested_by_id == request.user.pk,
        "title": _("Reprocessing round #%(id)s") % {"id": round.pk},
        "nav_section": "mailboxes",
    }
    if is_htmx(request, target="round-progress"):
        return render(request, "web/_round_progress.html", context)
    return render(request, "web/round_detail.html", context)


@user_required
@require_POST
def round_cancel(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    round = _get_round(request, pk)
    if not (is_admin(request.user) or round.requested_by_id == request.user.pk):
        raise PermissionDenied
    if do_cancel_round(round, now=timezone.now(), acting_user=request.user):
        messages.success(
            request, _("The round is cancelled: the folder being read stops after its current page.")
        )
    else:
        messages.info(request, _("The round had already finished."))
    return redirect("web-round", round.pk)
