"""Mailbox administration in the product (admins; auditors read): New mailbox, a mailbox's setup,
Reject, a queue's page, bulk actions from the list and their progress, and a server profile's
Test connection, Test & Enable of its mailboxes and Make default (tracking-rules §9).

Bulk actions are one RQ job per request (tracking.bulkjobs); each mailbox's change is its own
audited action, and the progress page shows the job's results as they come.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from smtplib import SMTPException

import django_rq
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import push_url
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from syncadmin.web.filters.mailboxes import MailboxFilter
from syncadmin.web.filters.queues import filter_queue_items
from syncadmin.web.forms.mailbox_admin import (
    BulkForm,
    MailboxCreateForm,
    MailboxSetupForm,
    ProfileTestForm,
    QueueForm,
)
from syncadmin.web.htmx import is_htmx
from syncadmin.web.paging import cursor_param, keyset_page, rows_per_page
from syncadmin.web.permissions import (
    AuthenticatedHttpRequest,
    admin_required,
    get_visible_mailbox,
    is_admin,
    reader_required,
)
from syncadmin.web.views.mailboxes import TEST_JOB_TIMEOUT, queue_problem
from tracking import bulkjobs, jobs
from tracking.actions import (
    ActionError,
    check_add_mailbox,
    check_add_mailbox_for_new_user,
    check_start_bulk,
    check_update_mailbox,
    check_update_queue,
    do_approve_mailbox,
    do_mark_queue_item_done,
    do_set_default_profile,
)
from tracking.choices import Approval, BulkAction
from tracking.invitations import send_invitation, set_password_link, site_url
from tracking.models import BulkOperation, Decision, EmailServerProfile, Mailbox, Queue, QueueItem

PROFILE_TEST_SESSION_KEY = "syncadmin-profile-test-{pk}"
PROFILE_TEST_RESULT_TTL = 3600  # seconds Redis keeps a Test connection's result for the page


@admin_required
@require_http_methods(["GET", "POST"])
def mailbox_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    """New mailbox: for an existing user, for a new user invited by email, or for a queue."""
    form = MailboxCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        owner_kind = data["owner_kind"]
        try:
            with transaction.atomic():
                if owner_kind == "invite":
                    mailbox = check_add_mailbox_for_new_user(
                        data["email_address"],
                        profile_name=data["profile"].name,
                        approve=data["approve"],
                        acting_user=request.user,
                    )
                else:
                    mailbox = check_add_mailbox(
                        data["email_address"],
                        profile_name=data["profile"].name,
                        username=data["user"].get_username() if owner_kind == "user" else None,
                        queue_name=data["queue_name"] if owner_kind == "queue" else None,
                        approve=data["approve"],
                        acting_user=request.user,
                    )
                check_update_mailbox(
                    mailbox,
                    profile=data["profile"],
                    incoming_method=data["incoming_method"],
                    start_date=data["process_emails_received_after"],
                    acting_user=request.user,
                )
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Mailbox %(mailbox)s created.") % {"mailbox": mailbox})
            if owner_kind == "invite" and mailbox.user is not None:
                _invite(request, mailbox.user)
            return redirect("web-mailbox", mailbox.pk)
    return render(
        request,
        "web/mailbox_form.html",
        {"title": _("New mailbox"), "nav_section": "mailboxes", "form": form, "mailbox": None},
        status=400 if form.is_bound and form.errors else 200,
    )


def _invite(request: AuthenticatedHttpRequest, user: User) -> None:
    """Send the new owner's invitation (after the commit: its link names a user that exists), or show its
    link to the admin when email is not configured, as Users & roles does."""
    base = site_url(request.build_absolute_uri("/"))
    try:
        link, mailed = send_invitation(user, base)
    except (OSError, SMTPException) as exc:
        # The user and the mailbox exist: a mail server that is down must not hide the link from the admin.
        messages.warning(
            request,
            _(
                "The invitation to %(email)s could not be mailed (%(error)s): give them this link, "
                "which works once within 72 hours: %(link)s"
            )
            % {"email": user.email, "error": exc, "link": set_password_link(user, base)},
        )
        return
    if mailed:
        messages.success(
            request, _("Invited %(email)s: the set-password link is on its way.") % {"email": user.email}
        )
    else:
        messages.warning(
            request,
            _(
                "Invited %(email)s. Email is not configured: give them this link, "
                "which works once within 72 hours: %(link)s"
            )
            % {"email": user.email, "link": link},
        )


@admin_required
@require_http_methods(["GET", "POST"])
def mailbox_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    initial = {
        "profile": mailbox.profile_id,
        "incoming_method": mailbox.incoming_method,
        "process_emails_received_after": mailbox.process_emails_received_after,
    }
    form = MailboxSetupForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        profile_changed = data["profile"].pk != mailbox.profile_id
        try:
            changed = check_update_mailbox(
                mailbox,
                profile=data["profile"],
                incoming_method=data["incoming_method"],
                start_date=data["process_emails_received_after"],
                acting_user=request.user,
            )
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            if not changed:
                messages.info(request, _("Nothing changed."))
            elif profile_changed:
                messages.success(
                    request, _("Saved. Run Test & Enable to scan the mailbox through its new server profile.")
                )
            else:
                messages.success(request, _("Saved."))
            return redirect("web-mailbox", mailbox.pk)
    return render(
        request,
        "web/mailbox_form.html",
        {"title": mailbox.email_address, "nav_section": "mailboxes", "form": form, "mailbox": mailbox},
        status=400 if form.is_bound and form.errors else 200,
    )


@admin_required
@require_POST
def mailbox_reject(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    if mailbox.approval == Approval.REJECTED:
        messages.info(
            request, _("The email address of %(mailbox)s is already rejected.") % {"mailbox": mailbox}
        )
    else:
        do_approve_mailbox(mailbox, approve=False, acting_user=request.user)
        messages.success(request, _("Rejected the email address of %(mailbox)s.") % {"mailbox": mailbox})
    return redirect("web-mailbox", mailbox.pk)


def _queue_items(queue: Queue) -> QuerySet[QueueItem]:
    """A queue's items with what a row shows: its email, who marked it done, and the decision to open (the
    first one linked to the email: the one that tracked it)."""
    first_decision = Decision.objects.filter(tracked_email=OuterRef("tracked_email")).order_by("pk")
    return (
        QueueItem.objects.filter(queue=queue)
        .select_related("tracked_email", "done_by")
        .annotate(decision_id=Subquery(first_decision.values("pk")[:1]))
    )


@reader_required
@require_http_methods(["GET", "POST"])
def queue_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """A queue's Track option and owner (admins edit, auditors read) and its work list: the queue items,
    newest first, in keyset pages, filtered by state (tracking-rules §2)."""
    queue = get_object_or_404(Queue.objects.select_related("owner"), pk=pk)
    admin = is_admin(request.user)
    if request.method == "POST" and not admin:
        raise PermissionDenied
    filterset = filter_queue_items(request, _queue_items(queue))
    # Newest first: ?before= an id pages on to older items, ?after= back to newer ones.
    page = keyset_page(
        filterset.qs,
        order=("-id",),
        start_after=cursor_param(request, "before"),
        end_before=cursor_param(request, "after"),
        size=rows_per_page(request.user),
    )
    items = {"queue": queue, "filter": filterset, "page": page, "admin": admin}
    if request.method == "GET" and is_htmx(request):
        response = render(request, "web/_queue_items.html", items)
        query = request.GET.urlencode()
        return push_url(response, request.path + (f"?{query}" if query else ""))
    form = QueueForm.for_queue(queue, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        changed = check_update_queue(
            queue,
            track=form.cleaned_data["track"],
            owner=form.cleaned_data["owner"],
            acting_user=request.user,
        )
        messages.success(request, _("Saved.") if changed else _("Nothing changed."))
        return redirect("web-queue", queue.pk)
    return render(
        request,
        "web/queue_detail.html",
        {
            **items,
            "title": queue.name,
            "nav_section": "mailboxes",
            "mailbox": Mailbox.objects.filter(queue=queue).first(),
            "form": form,
        },
        status=400 if form.is_bound and form.errors else 200,
    )


@admin_required
@require_POST
def queue_item_done(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Mark a queue item done (audited); back to the queue's page, as it was filtered and paged."""
    item = get_object_or_404(QueueItem.objects.select_related("queue"), pk=pk)
    if do_mark_queue_item_done(item, now=timezone.now(), acting_user=request.user):
        messages.success(request, _("Marked the item done."))
    else:
        messages.info(request, _("The item was done already."))
    # Back to the list as it was: only its own parameters are kept, re-encoded.
    back = QueryDict(str(request.POST.get("back", "")).lstrip("?"))
    kept = QueryDict(mutable=True)
    for key in ("state", "before", "after"):
        value = back.get(key)
        if value:
            kept[key] = value
    query = kept.urlencode()
    return redirect(reverse("web-queue", args=[item.queue_id]) + (f"?{query}" if query else ""))


def _queue_bulk(request: AuthenticatedHttpRequest, action: str, ids: list[int]) -> HttpResponse | None:
    """Record and queue a bulk operation; its progress page, or None after saying why not."""
    problem = queue_problem()
    if problem:
        messages.error(
            request,
            _("The job queue is unavailable (%(error)s): nothing was queued. Try again when Redis answers.")
            % {"error": problem},
        )
        return None
    try:
        with transaction.atomic():
            operation = check_start_bulk(action, ids, acting_user=request.user)
            operation.job_id = getattr(bulkjobs.enqueue_bulk(operation), "id", "") or ""
    except ActionError as exc:
        messages.error(request, str(exc))
        return None
    except RedisError as exc:
        messages.error(
            request, _("The job queue is unavailable (%(error)s): nothing was queued.") % {"error": exc}
        )
        return None
    messages.success(
        request,
        _("%(action)s queued for %(count)d mailbox(es).")
        % {"action": BulkAction(action).label, "count": operation.total},
    )
    return redirect("web-bulk-operation", operation.pk)


@admin_required
@require_POST
def mailbox_bulk(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A bulk action on the ticked mailboxes, or on all that the list's filters (sent along) match."""
    mailboxes = Mailbox.objects.visible_to(request.user)
    form = BulkForm(request.POST, mailbox_ids=list(mailboxes.values_list("pk", flat=True)))
    if not form.is_valid():
        return render(
            request,
            "web/bulk_refused.html",
            {
                "title": _("Bulk action"),
                "nav_section": "mailboxes",
                "errors": [str(e) for errors in form.errors.values() for e in errors],
                "back": _list_url(request.POST.get("query", "")),
            },
            status=400,
        )
    data = form.cleaned_data
    if data["scope"] == "all":
        ids = list(
            MailboxFilter(QueryDict(data["query"]), queryset=mailboxes).qs.values_list("pk", flat=True)
        )
    else:
        ids = list(data["mailbox"])
    return _queue_bulk(request, data["action"], ids) or redirect(_list_url(data["query"]))


def _list_url(query: str) -> str:
    url = reverse("web-mailboxes")
    return f"{url}?{QueryDict(query).urlencode()}" if query else url


@reader_required
@require_safe
def bulk_operation(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """A bulk operation's progress; htmx polls the panel until the job has finished."""
    operation = get_object_or_404(BulkOperation.objects.select_related("created_by"), pk=pk)
    context = {
        "title": _("Bulk action"),
        "nav_section": "mailboxes",
        "operation": operation,
        "percent": round(100 * operation.done / operation.total) if operation.total else 100,
    }
    if is_htmx(request, target="bulk-progress"):
        return render(request, "web/_bulk_progress.html", context)
    return render(request, "web/bulk_operation.html", context)


@dataclass
class ConnectionTest:
    """The Test connection this session queued for a profile: still waiting, or its result."""

    address: str
    queued_at: datetime
    done: bool
    ok: bool = False
    message: str = ""
    job_failed: bool = False


def connection_test_state(
    request: AuthenticatedHttpRequest, profile: EmailServerProfile
) -> ConnectionTest | None:
    """What the profile page shows of the Test connection this session queued (None: nothing queued, or
    the result is older than the job's result_ttl and gone)."""
    info = request.session.get(PROFILE_TEST_SESSION_KEY.format(pk=profile.pk))
    if not isinstance(info, dict):
        return None
    queued_at = parse_datetime(str(info.get("queued_at", "")))
    if queued_at is None:
        return None
    state = ConnectionTest(address=str(info.get("address", "")), queued_at=queued_at, done=False)
    try:
        job = Job.fetch(str(info.get("job_id", "")), connection=django_rq.get_connection(jobs.QUEUE))
        status = job.get_status()
        result = job.return_value() if status == JobStatus.FINISHED else None
    except (RedisError, NoSuchJobError):
        return None
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        state.done = state.job_failed = True
    elif isinstance(result, dict):
        state.done, state.ok, state.message = True, bool(result.get("ok")), str(result.get("message", ""))
    return state


@admin_required
@require_POST
def profile_test(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Test connection: queue a job that signs in through the profile and reads one inbox (nothing is
    stored, no mailbox is needed); the profile page shows the result when the job has it."""
    profile = get_object_or_404(EmailServerProfile, pk=pk)
    form = ProfileTestForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for e in form.errors.get("address", [])))
        return redirect("web-profile-edit", profile.pk)
    address = form.cleaned_data["address"]
    problem = queue_problem()
    if problem:
        messages.error(
            request,
            _("The job queue is unavailable (%(error)s): nothing was queued. Try again when Redis answers.")
            % {"error": problem},
        )
        return redirect("web-profile-edit", profile.pk)
    job_id = f"syncadmin-profile-test-{profile.pk}-{uuid.uuid4().hex[:12]}"
    queued_at = timezone.now()
    try:
        django_rq.get_queue(jobs.QUEUE).enqueue_call(
            jobs.test_connection_job,
            args=(profile.pk, address),
            job_id=job_id,
            timeout=TEST_JOB_TIMEOUT,
            result_ttl=PROFILE_TEST_RESULT_TTL,
            failure_ttl=PROFILE_TEST_RESULT_TTL,
            description=f"test connection of profile {profile.pk}",
        )
    except RedisError as exc:
        messages.error(
            request, _("The job queue is unavailable (%(error)s): nothing was queued.") % {"error": exc}
        )
        return redirect("web-profile-edit", profile.pk)
    request.session[PROFILE_TEST_SESSION_KEY.format(pk=profile.pk)] = {
        "job_id": job_id,
        "address": address,
        "queued_at": queued_at.isoformat(),
    }
    messages.success(request, _("Test connection with %(address)s queued.") % {"address": address})
    return redirect("web-profile-edit", profile.pk)


@admin_required
@require_POST
def profile_test_mailboxes(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Test & Enable every mailbox of the profile, as one bulk operation."""
    profile = get_object_or_404(EmailServerProfile, pk=pk)
    ids = list(profile.mailboxes.values_list("pk", flat=True))
    return _queue_bulk(request, BulkAction.TEST, ids) or redirect("web-profile-edit", profile.pk)


@admin_required
@require_POST
def profile_default(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    profile = get_object_or_404(EmailServerProfile, pk=pk)
    if do_set_default_profile(profile, acting_user=request.user):
        messages.success(request, _("New mailboxes now get %(name)s.") % {"name": profile.name})
    else:
        messages.info(request, _("%(name)s is already the default profile.") % {"name": profile.name})
    return redirect("web-profile-edit", profile.pk)
