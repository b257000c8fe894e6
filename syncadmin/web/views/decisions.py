"""The decision log (tracking-rules §8): filtered list paged by keyset, detail with the trace, CSV export,
Track.

Decisions are append-only: nothing here edits or deletes one. "Track" / "Set regarding" adds a
manual decision beside a not-tracked one (tracking-rules §3.3) through tracking.pipeline.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import push_url

from syncadmin.web.filters.decisions import filter_decisions
from syncadmin.web.forms.decisions import TrackForm
from syncadmin.web.htmx import is_htmx
from syncadmin.web.paging import counted, cursor_param, keyset_page, rows_per_page
from syncadmin.web.permissions import AuthenticatedHttpRequest, may_track, user_required
from syncadmin.web.views.decisions_export import csv_chunks
from tracking.actions import current_decision, do_set_regarding_by_hand, do_untrack
from tracking.choices import Outcome
from tracking.decisions import RecordRef
from tracking.models import CrmRecord, Decision, TrackedAttachment, TrackedEmail
from tracking.pipeline import track_decision_manually, tracked_email_of

RELATED_LIMIT = 20
DATE_FILTERS = ("received_from", "received_to", "decided_from", "decided_to")
RECORD_CHOICES_LIMIT = 50
# Big JSON columns the list never shows.
LIST_DEFERRED = ("trace", "message_snapshot")


# ---------------------------------------------------------------------------------------------
# List: keyset pages (paging.keyset_page), never OFFSET; a count capped at paging.COUNT_CAP
# ---------------------------------------------------------------------------------------------


def _nonempty_query(request: AuthenticatedHttpRequest) -> str:
    params = request.GET.copy()
    for key in list(params):
        params.setlist(key, [v for v in params.getlist(key) if v])
        if not params.getlist(key):
            del params[key]
    return f"?{params.urlencode()}" if params else ""


# ?sort=: the columns the list can be ordered by, each a keyset order ending in the id (unique).
# Decisions are numbered as they are decided, so the id order is the decided order, and "-decided"
# (the default) uses the (filter, -id) indexes. The received order uses the received_at index; a
# decision without a received time (a message with no readable Date) counts as newer than any
# (paging.keyset_page puts NULL above every value, as PostgreSQL's index does).
SORTS: dict[str, tuple[str, ...]] = {
    "-decided": ("-id",),
    "decided": ("id",),
    "-received": ("-received_at", "-id"),
    "received": ("received_at", "id"),
    "sender": ("sender", "id"),
    "-sender": ("-sender", "-id"),
    "outcome": ("outcome", "id"),
    "-outcome": ("-outcome", "-id"),
}
DEFAULT_SORT = "-decided"
# The columns whose header sorts, and the way a first click sorts them (times newest first).
SORTABLE_FIRST = {"decided": "-decided", "received": "-received", "sender": "sender", "outcome": "outcome"}


def sort_param(request: AuthenticatedHttpRequest) -> str:
    value = request.GET.get("sort", "")
    return value if value in SORTS else DEFAULT_SORT


def sort_headers(current: str) -> dict[str, dict[str, str]]:
    """For each sortable column: the ?sort= its header link asks for, and its aria-sort state."""
    headers = {}
    for column, first in SORTABLE_FIRST.items():
        if current.lstrip("-") == column:
            state = "descending" if current.startswith("-") else "ascending"
            link = column if current.startswith("-") else f"-{column}"
        else:
            state, link = "none", first
        headers[column] = {"sort": link, "state": state}
    return headers


@user_required
@require_safe
def decision_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    filterset = filter_decisions(request, Decision.objects.visible_to(request.user))
    sort = sort_param(request)
    queryset = filterset.qs.select_related("mailbox").defer(*LIST_DEFERRED)
    # ?before= an id pages on down the list, ?after= back up it.
    page = keyset_page(
        queryset,
        order=SORTS[sort],
        start_after=cursor_param(request, "before"),
        end_before=cursor_param(request, "after"),
        size=rows_per_page(request.user),
    )
    context = {
        "filter": filterset,
        "page": page,
        "total": counted(filterset.qs),
        "sort": sort,
        "sorted_default": sort == DEFAULT_SORT,
        "headers": sort_headers(sort),
        "nav_section": "decisions",
        "title": _("Decision log"),
    }
    if is_htmx(request):
        # the address bar shows the filter without the form's empty fields
        response = render(request, "web/_decision_table.html", {**context, "fragment": True})
        return push_url(response, request.path + _nonempty_query(request))
    return render(request, "web/decision_list.html", context)


# ---------------------------------------------------------------------------------------------
# CSV export of the current filter, streamed
# ---------------------------------------------------------------------------------------------


@user_required
@require_safe
def decision_export(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    filterset = filter_decisions(request, Decision.objects.visible_to(request.user))
    # A date out of range is refused before the first byte (a stream cannot turn into an error half-way);
    # other invalid filter values are left out, as on the list (another user's mailbox widens nothing).
    bad_dates = {k: v for k, v in filterset.errors.items() if k in DATE_FILTERS}
    if bad_dates:
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in bad_dates.items())
        return HttpResponse(problems, status=400, content_type="text/plain; charset=utf-8")
    # The generator runs after the view returns, when the middleware has reset the time zone.
    tz = timezone.get_current_timezone()
    response = StreamingHttpResponse(csv_chunks(filterset.qs, tz), content_type="text/csv; charset=utf-8")
    filename = f"decisions-{timezone.localdate():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# ---------------------------------------------------------------------------------------------
# Detail and Track / Set regarding
# ---------------------------------------------------------------------------------------------


def _get_decision(request: AuthenticatedHttpRequest, pk: int) -> Decision:
    """The decision with everything the detail page shows; 404 unless the user may see it."""
    decision = (
        Decision.objects.visible_to(request.user)
        .select_related(
            "mailbox__user",
            "mailbox__queue",
            "scan_run",
            "regarding",
            "tracked_email__regarding",
            "tracked_email__owner",
            "tracked_email__receiving_mailbox",
            "tracked_email__correlated_email",
        )
        .filter(pk=pk)
        .first()
    )
    if decision is None:
        raise Http404
    return decision


def is_trackable(decision: Decision) -> bool:
    """Any decided message can be tracked by hand (§7a) but a failed one, which has no message to track."""
    return decision.outcome != Outcome.FAILED


def _message_addresses(decision: Decision) -> list[str]:
    snapshot = decision.message_snapshot if isinstance(decision.message_snapshot, dict) else {}
    found = {decision.sender.lower()} if decision.sender else set()
    for key in ("to", "cc", "bcc"):
        values = snapshot.get(key) or []
        if isinstance(values, list):
            found.update(str(v).lower() for v in values)
    return sorted(found)


def offered_records(decision: Decision, search: str) -> list[CrmRecord]:
    """Records to offer as regarding: those with one of the message's addresses, then name matches."""
    addresses = _message_addresses(decision)
    offered: list[CrmRecord] = []
    if addresses:
        offered += CrmRecord.objects.filter(
            Q(email1__in=addresses) | Q(email2__in=addresses) | Q(email3__in=addresses)
        ).order_by("name", "pk")[:RECORD_CHOICES_LIMIT]
    if search:
        seen = {r.pk for r in offered}
        hits = CrmRecord.objects.filter(name__icontains=search).order_by("-active", "name", "pk")
        offered += [r for r in hits[:RECORD_CHOICES_LIMIT] if r.pk not in seen]
    return offered


def _detail_context(
    request: AuthenticatedHttpRequest, decision: Decision, form: TrackForm | None = None
) -> dict[str, object]:
    related = list(
        Decision.objects.visible_to(request.user)
        .filter(message_id=decision.message_id)
        .exclude(pk=decision.pk)
        .select_related("mailbox")
        .defer(*LIST_DEFERRED)
        .order_by("-id")[:RELATED_LIMIT]
    )
    manual_sibling = next(
        (
            d
            for d in related
            if d.manual and d.mailbox_id == decision.mailbox_id and d.folder == decision.folder
        ),
        None,
    )
    email = tracked_email_of(decision)
    tracked_now = email is not None and email.untracked_at is None
    allowed = may_track(request.user, decision)
    can_track = allowed and is_trackable(decision) and not tracked_now
    can_manage = allowed and tracked_now  # set or clear regarding, untrack (tracking-rules §7a)
    search = request.GET.get("record_q", "").replace("\x00", "").strip()[:100]
    if (can_track or can_manage) and form is None:
        form = TrackForm(offered=offered_records(decision, search))
    steps = decision.trace if isinstance(decision.trace, list) else []
    return {
        "decision": decision,
        "trace": steps,
        "related": related,
        "manual_sibling": manual_sibling,
        "can_track": can_track,
        "can_manage": can_manage,
        "tracked_email": email,
        "track_form": form if can_track or can_manage else None,
        "record_q": search,
        "nav_section": "decisions",
        "title": _("Decision #%(id)s") % {"id": decision.pk},
    }


@user_required
@require_safe
def decision_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    decision = _get_decision(request, pk)
    context = _detail_context(request, decision)
    if is_htmx(request, target="track-form") and context["track_form"] is not None:
        return render(request, "web/_decision_track.html", context)
    return render(request, "web/decision_detail.html", context)


# Types a browser may be told as they are; anything else (HTML, SVG, scripts: what could run on this
# site's origin if opened) is sent as application/octet-stream. It is a download either way.
SAFE_ATTACHMENT_TYPES = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "image/png",
        "image/jpeg",
        "image/gif",
        "text/plain",
        "text/csv",
        "text/calendar",
        "message/rfc822",
    }
)


@user_required
@require_safe
def tracked_attachment(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """An attachment's stored content, as a download, for whoever may see its email (the email page's
    rule); 404 for anyone else (ids cannot be probed) and for an attachment kept without content."""
    attachment = TrackedAttachment.objects.filter(pk=pk, content__isnull=False).first()
    if (
        attachment is None
        or not TrackedEmail.objects.visible_to(request.user).filter(pk=attachment.tracked_email_id).exists()
    ):
        raise Http404
    content_type = attachment.content_type.lower()
    response = HttpResponse(
        bytes(attachment.content or b""),
        content_type=content_type if content_type in SAFE_ATTACHMENT_TYPES else "application/octet-stream",
    )
    response["Content-Disposition"] = content_disposition_header(True, attachment.name or "attachment")
    response["X-Content-Type-Options"] = "nosniff"
    # Opened anyway (a browser that ignores the disposition): nothing in it may run or load.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@user_required
@require_POST
def decision_track(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    decision = _get_decision(request, pk)
    user = request.user
    if not may_track(user, decision):
        raise PermissionDenied
    if not is_trackable(decision):
        messages.error(request, _("A message that could not be read cannot be tracked."))
        return redirect("web-decision", decision.pk)
    email = tracked_email_of(decision)
    if email is not None and email.untracked_at is None:
        messages.info(request, _("This message is tracked already; you can change its regarding."))
        return redirect("web-decision", current_decision(decision).pk)
    form = TrackForm(request.POST, offered=offered_records(decision, ""))
    if not form.is_valid():
        return render(
            request, "web/decision_detail.html", _detail_context(request, decision, form), status=400
        )
    regarding = form.cleaned_data["regarding"]
    ref = RecordRef(regarding.pk, regarding.kind, regarding.name) if regarding is not None else None
    processed = track_decision_manually(decision, ref, now=timezone.now(), acting_user=user)
    made = processed.decision
    if made.outcome == Outcome.TRACKED:
        messages.success(request, _("The message is tracked. This is the manual decision."))
    else:
        messages.warning(
            request,
            _("The message was not tracked again: %(reason)s. This is the manual decision.")
            % {"reason": made.get_reason_display()},
        )
    return redirect("web-decision", made.pk)


def _tracked_email_to_manage(request: AuthenticatedHttpRequest, pk: int) -> tuple[Decision, TrackedEmail]:
    decision = _get_decision(request, pk)
    if not may_track(request.user, decision):
        raise PermissionDenied
    email = tracked_email_of(decision)
    if email is None or email.untracked_at is not None:
        raise Http404  # nothing tracked to change: the page no longer offers it
    return decision, email


@user_required
@require_POST
def decision_regarding(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Set, change or clear (the "clear" button) the regarding of the message's tracked email."""
    decision, email = _tracked_email_to_manage(request, pk)
    record: CrmRecord | None = None
    if "clear" not in request.POST:
        form = TrackForm(request.POST, offered=offered_records(decision, ""))
        if not form.is_valid() or form.cleaned_data["regarding"] is None:
            if form.is_valid():
                form.add_error("regarding", _("Choose a record, or clear the regarding."))
            context = _detail_context(request, decision, form)
            return render(request, "web/decision_detail.html", context, status=400)
        record = form.cleaned_data["regarding"]
    made = do_set_regarding_by_hand(decision, email, record, now=timezone.now(), acting_user=request.user)
    if record is None:
        messages.success(request, _("The regarding is cleared; the email stays tracked."))
    else:
        messages.success(request, _("The email is now regarding %(record)s.") % {"record": record})
    return redirect("web-decision", made.pk)


@user_required
@require_POST
def decision_untrack(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    decision, email = _tracked_email_to_manage(request, pk)
    made = do_untrack(decision, email, now=timezone.now(), acting_user=request.user)
    messages.success(request, _("The email is untracked; scans will not track it again."))
    return redirect("web-decision", made.pk)
