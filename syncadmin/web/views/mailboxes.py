"""Mailboxes: the filtered list, one mailbox's page, and the admin actions on it (tracking-rules §9).

Everyone signed in reads the mailboxes they may see (admins and auditors all, a user their own);
only admins act. Test & Enable and Scan now are RQ jobs: when Redis is down the pages still work
and say that the queue is unavailable instead of offering what cannot be done.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import django_rq
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format, number_format
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_stubs_ext import StrOrPromise
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from syncadmin.web.filters.mailboxes import MailboxFilter
from syncadmin.web.forms.mailboxes import ResetSyncStateForm, StartDateForm
from syncadmin.web.htmx import is_htmx
from syncadmin.web.paging import numbered_page, rows_per_page
from syncadmin.web.permissions import (
    AuthenticatedHttpRequest,
    admin_required,
    get_visible_mailbox,
    is_admin,
    reads_everything,
    user_required,
)
from tracking import jobs
from tracking.actions import (
    do_approve_mailbox,
    do_disable_mailbox,
    do_note_mailbox_job,
    do_reset_mailbox_sync_state,
    do_set_mailbox_start_date,
)
from tracking.choices import Approval, BulkAction, ErrorKind, Folder, IncomingMethod
from tracking.context import load_rules
from tracking.decisions import OrgRules
from tracking.folders import folder_tracking_on, mapped_folders, rule_rows
from tracking.models import (
    Alert,
    Decision,
    FolderSyncState,
    GraphSubscription,
    Mailbox,
    OrgSettings,
    ScanRun,
)
from tracking.pushjobs import enqueue_push_maintenance
from tracking.pushstate import push_state
from tracking.scanning import folders_to_scan, sent_items_refusal

TEST_PREFIX = "Test & Enable"  # how do_record_test_result's alerts begin
TEST_SESSION_KEY = "syncadmin-test-enable-{pk}"
TEST_JOB_TIMEOUT = 300  # seconds
TEST_RESULT_KEPT = timedelta(hours=1)  # how long the page keeps showing the result of a test it queued


# -- reading --------------------------------------------------------------------------------------------


@user_required
@require_safe
def mailbox_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Admins and auditors filter every mailbox; a user sees their own, without filters."""
    mailboxes = (
        Mailbox.objects.visible_to(request.user)
        .select_related("user", "queue", "profile")
        .order_by("email_address")
    )
    reader = reads_everything(request.user)
    filters = MailboxFilter(request.GET or None, queryset=mailboxes) if reader else None
    found = filters.qs if filters is not None else mailboxes
    page = numbered_page(found, request, rows_per_page(request.user))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "title": _("Mailboxes") if reader else _("My mailbox"),
        "nav_section": "mailboxes",
        "filters": filters,
        "page": page,
        "query": query.urlencode(),
        "admin": is_admin(request.user),
        "reader": reader,
        "bulk_actions": BulkAction.choices,
    }
    if is_htmx(request):
        return render(request, "web/_mailbox_table.html", context)
    return render(request, "web/mailbox_list.html", context)


# What an admin should do about an error of each kind (tracking-rules §9); the kind is set where the error is
# raised.
ERROR_WORDS: dict[str, StrOrPromise] = {
    ErrorKind.CREDENTIALS: gettext_lazy(
        "The server refused to sign SyncAdmin in, or the stored secret cannot be used. Check the user "
        "name and secret of the server profile (for OAuth 2.0 also the tenant and client ID), and enter "
        "the secret again if it cannot be decrypted."
    ),
    ErrorKind.PERMISSION: gettext_lazy(
        "The service account may not read this mailbox. Grant it access (EWS impersonation, "
        "or Mail.Read for the Graph app)."
    ),
    ErrorKind.NOT_FOUND: gettext_lazy(
        "The mailbox, folder or service was not found on the server. Check the mailbox's address and "
        "the server profile's endpoint."
    ),
    ErrorKind.TLS: gettext_lazy(
        "The server's certificate could not be verified, or TLS could not be set up. Set the server "
        "profile's CA bundle or fix the server's certificate."
    ),
    ErrorKind.UNREACHABLE: gettext_lazy(
        "SyncAdmin could not reach the server. Check the endpoint and the network; the scan is retried "
        "by itself."
    ),
    ErrorKind.THROTTLED: gettext_lazy(
        "The server asked SyncAdmin to slow down. The scan is retried later by itself."
    ),
    ErrorKind.SERVER_ERROR: gettext_lazy(
        "The server failed or answered with something SyncAdmin cannot use. Transient failures are "
        "retried by themselves; if it persists, check the server."
    ),
    ErrorKind.TOO_LARGE: gettext_lazy(
        "The server sent a response larger than SyncAdmin accepts (SOURCE_MAX_RESPONSE_MB). The scan is "
        "retried; raise the limit if the server is right."
    ),
    ErrorKind.SYNC_STATE: gettext_lazy(
        "The server refused the saved sync state even after a full resync. The scan is retried; reset "
        "the sync state if it persists."
    ),
    ErrorKind.INTERNAL: gettext_lazy(
        "An error inside SyncAdmin (not the mail server) stopped the scan. It is retried; the worker's "
        "log has the details."
    ),
    ErrorKind.NOT_APPROVED: gettext_lazy(
        "An admin must approve the mailbox's email address before it can be enabled."
    ),
}


def error_in_words(error: str, kind: str) -> str:
    """What an admin should do about a mailbox's last error of this kind ("" when there is none)."""
    if not error:
        return ""
    words = ERROR_WORDS.get(kind)
    # an error recorded before errors had kinds has none: it is not guessed from its words
    return str(words) if words is not None else _("The last scan failed; the error as recorded is below.")


@dataclass
class FolderState:
    folder: str
    label: str
    has_state: bool
    start_date: datetime | None
    updated_at: datetime


def folder_states(mailbox: Mailbox) -> list[FolderState]:
    """Each folder's sync state and the start date a scan of it evaluates mail after (tracking-rules §3.5)."""
    labels = dict(Folder.choices)
    out = []
    start_date = mailbox.configured_start_date()
    for state in FolderSyncState.objects.filter(mailbox=mailbox).order_by("folder"):
        out.append(
            FolderState(
                folder=state.folder,
                label=str(labels.get(state.folder, state.folder)),
                has_state=bool(state.state),
                start_date=start_date,
                updated_at=state.updated_at,
            )
        )
    return out


def duration_words(run: ScanRun) -> str:
    if run.started_at is None or run.finished_at is None:
        return ""
    seconds = (run.finished_at - run.started_at).total_seconds()
    if seconds < 10:
        return f"{number_format(seconds, 1)} s"  # 0.1 s, in German 0,1 s
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def scan_refusal(mailbox: Mailbox, rules: OrgRules) -> str:
    """Why Scan now would not scan this mailbox (tracking-rules §3.1), or ""."""
    if mailbox.incoming_method != IncomingMethod.SERVER_SIDE_SYNC:
        return _("its incoming method is not server-side synchronization.")
    if mailbox.needs_approval(rules):
        return _("its email address is not approved.")
    if not mailbox.enabled:
        return _("it is disabled; run Test & Enable first.")
    return ""


def test_refusal(mailbox: Mailbox, rules: OrgRules) -> str:
    """Why Test & Enable would certainly fail for this mailbox (scanning.run_test_and_enable), or ""."""
    if mailbox.needs_approval(rules):
        return _("its email address is not approved; approve it first.")
    return ""


def queue_problem() -> str:
    """ "" when the job queue answers, else what is wrong, for the page."""
    try:
        django_rq.get_connection(jobs.QUEUE).ping()
    except RedisError as exc:
        return str(exc)
    return ""


@dataclass
class TestState:
    queued_at: datetime
    done: bool
    alert: Alert | None = None
    job_failed: bool = False


def _job_status(job_id: str) -> str | None:
    try:
        job = Job.fetch(job_id, connection=django_rq.get_connection(jobs.QUEUE))
        status = job.get_status()
    except (RedisError, NoSuchJobError):
        return None
    return str(status.value if isinstance(status, JobStatus) else status)


def test_state(request: AuthenticatedHttpRequest, mailbox: Mailbox) -> TestState | None:
    """The Test & Enable this session queued for the mailbox: still waiting, or its result."""
    info = request.session.get(TEST_SESSION_KEY.format(pk=mailbox.pk))
    if not isinstance(info, dict):
        return None
    queued_at = parse_datetime(str(info.get("queued_at", "")))
    if queued_at is None:
        return None
    alert = (
        mailbox.alerts.filter(created_at__gte=queued_at, message__startswith=TEST_PREFIX)
        .order_by("-created_at", "-id")
        .first()
    )
    if alert is not None:
        if timezone.now() - alert.created_at > TEST_RESULT_KEPT:
            return None
        return TestState(queued_at=queued_at, done=True, alert=alert)
    if _job_status(str(info.get("job_id", ""))) in (JobStatus.FAILED.value, JobStatus.STOPPED.value):
        return TestState(queued_at=queued_at, done=True, job_failed=True)
    return TestState(queued_at=queued_at, done=False)


def _status_context(request: AuthenticatedHttpRequest, mailbox: Mailbox) -> dict[str, object]:
    return {
        "mailbox": mailbox,
        "push": push_state(mailbox, load_rules(), timezone.now()),
        "error_words": error_in_words(mailbox.last_error, mailbox.last_error_kind),
        "test": test_state(request, mailbox),
    }


def _detail_context(request: AuthenticatedHttpRequest, mailbox: Mailbox) -> dict[str, object]:
    rules = load_rules()
    admin = is_admin(request.user)
    refusal = sent_items_refusal(mailbox, rules)
    folder_labels = {value: str(label) for value, label in Folder.choices}
    context: dict[str, object] = {
        "title": mailbox.email_address,
        "nav_section": "mailboxes",
        "admin": admin,
        "reader": reads_everything(request.user),
        "folders": [folder_labels[f] for f in folders_to_scan(mailbox, rules)]
        + ([r.folder for r in mapped_folders(mailbox)] if folder_tracking_on(mailbox, rules) else []),
        "folder_rules": rule_rows(
            list(mailbox.folder_rules.select_related("regarding").order_by("folder", "pk")),
            OrgSettings.load(),
        ),
        "sent_items_refusal": refusal.label if refusal is not None else "",
        "states": folder_states(mailbox),
        "runs": [
            (run, duration_words(run), folder_labels.get(run.folder, run.folder))
            for run in mailbox.scan_runs.order_by("-queued_at", "-id")[:20]
        ],
        "alerts": mailbox.alerts.order_by("-created_at", "-id")[:20],
        "poll_minutes": rules.poll_interval_minutes,
        **_status_context(request, mailbox),
    }
    if admin:
        context["queue_problem"] = queue_problem()
        context["scan_refusal"] = scan_refusal(mailbox, rules)
        context["test_refusal"] = test_refusal(mailbox, rules)
        context["start_date_form"] = StartDateForm(
            initial={"process_emails_received_after": mailbox.process_emails_received_after}
        )
    return context


@user_required
@require_safe
def mailbox_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    return render(request, "web/mailbox_detail.html", _detail_context(request, mailbox))


@user_required
@require_safe
def mailbox_status(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The status panel, polled by htmx while a Test & Enable is queued; a page of its own without JS."""
    mailbox = get_visible_mailbox(request, pk)
    context = {
        "title": mailbox.email_address,
        "nav_section": "mailboxes",
        **_status_context(request, mailbox),
    }
    if not is_htmx(request):
        return render(request, "web/mailbox_status.html", context)
    response = render(request, "web/_mailbox_status.html", context)
    test = context["test"]
    if request.GET.get("waiting") and isinstance(test, TestState) and test.done:
        # The test the page was waiting for has finished: reload it, so that its actions, alerts
        # and scans match the mailbox's new state too.
        response["HX-Refresh"] = "true"
    return response


# -- admin actions --------------------------------------------------------------------------------------


def _back(mailbox: Mailbox) -> HttpResponse:
    return redirect("web-mailbox", mailbox.pk)


def _queue_unavailable(request: AuthenticatedHttpRequest, what: str, error: str) -> None:
    messages.error(
        request,
        _("The job queue is unavailable (%(error)s): %(what)s was not queued. Try again when Redis answers.")
        % {"error": error, "what": what},
    )


@admin_required
@require_POST
def mailbox_approve(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    if mailbox.approval == Approval.APPROVED:
        messages.info(
            request, _("The email address of %(mailbox)s is already approved.") % {"mailbox": mailbox}
        )
    else:
        do_approve_mailbox(mailbox, acting_user=request.user)
        messages.success(request, _("Approved the email address of %(mailbox)s.") % {"mailbox": mailbox})
    return _back(mailbox)


@admin_required
@require_POST
def mailbox_test(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    if "process_emails_received_after" in request.POST:
        # The start-date prompt of Test & Enable, as in Dynamics (tracking-rules §3.5)
        form = StartDateForm(request.POST)
        if not form.is_valid():
            context = _detail_context(request, mailbox)
            context["start_date_form"] = form
            return render(request, "web/mailbox_detail.html", context, status=400)
        _set_start_date(request, mailbox, form.cleaned_data["process_emails_received_after"])
    what = _("Test & Enable")
    problem = queue_problem()
    if problem:
        _queue_unavailable(request, what, problem)
        return _back(mailbox)
    job_id = f"syncadmin-test-{mailbox.pk}-{uuid.uuid4().hex[:12]}"
    queued_at = timezone.now()
    try:
        django_rq.get_queue(jobs.QUEUE).enqueue_call(
            jobs.test_and_enable_job,
            args=(mailbox.pk,),
            job_id=job_id,
            timeout=TEST_JOB_TIMEOUT,
            description=f"test and enable mailbox {mailbox.pk}",
        )
    except RedisError as exc:
        _queue_unavailable(request, what, str(exc))
        return _back(mailbox)
    do_note_mailbox_job(mailbox, "test", acting_user=request.user)
    request.session[TEST_SESSION_KEY.format(pk=mailbox.pk)] = {
        "job_id": job_id,
        "queued_at": queued_at.isoformat(),
    }
    messages.success(request, _("Test & Enable queued for %(mailbox)s.") % {"mailbox": mailbox})
    return _back(mailbox)


@admin_required
@require_POST
def mailbox_scan(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    refusal = scan_refusal(mailbox, load_rules())
    if refusal:
        messages.error(
            request, _("%(mailbox)s cannot be scanned: %(why)s") % {"mailbox": mailbox, "why": refusal}
        )
        return _back(mailbox)
    what = _("Scan now")
    problem = queue_problem()
    if problem:
        _queue_unavailable(request, what, problem)
        return _back(mailbox)
    try:
        jobs.enqueue_scan(mailbox.pk)
    except RedisError as exc:
        _queue_unavailable(request, what, str(exc))
        return _back(mailbox)
    do_note_mailbox_job(mailbox, "scan", acting_user=request.user)
    messages.success(
        request,
        _("Scan of %(mailbox)s queued; it starts when a worker is free (one scan of a mailbox at a time).")
        % {"mailbox": mailbox},
    )
    return _back(mailbox)


@admin_required
@require_POST
def mailbox_disable(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    if do_disable_mailbox(mailbox, acting_user=request.user):
        messages.success(
            request, _("%(mailbox)s is disabled and will not be scanned.") % {"mailbox": mailbox}
        )
        if GraphSubscription.objects.filter(mailbox=mailbox).exists():
            # Delete its Graph subscriptions now; with Redis down the scheduler's upkeep does it later.
            with contextlib.suppress(RedisError):
                enqueue_push_maintenance(mailbox.pk)
    else:
        messages.info(request, _("%(mailbox)s was already disabled.") % {"mailbox": mailbox})
    return _back(mailbox)


@admin_required
@require_http_methods(["GET", "POST"])
def mailbox_reset_sync(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET asks "are you sure?"; POST with the box ticked forgets the sync state."""
    mailbox = get_visible_mailbox(request, pk)
    states = folder_states(mailbox)
    choices = [(s.folder, s.label) for s in states]
    if request.method == "POST":
        form = ResetSyncStateForm(request.POST, folders=choices)
        if form.is_valid():
            folder = form.cleaned_data["folder"] or None
            reset = do_reset_mailbox_sync_state(mailbox, folder, acting_user=request.user)
            if reset:
                messages.success(
                    request,
                    _("Sync state reset for %(folders)s; the next scan reads from the start.")
                    % {"folders": ", ".join(reset)},
                )
            else:
                messages.info(request, _("There was no sync state to reset."))
            return _back(mailbox)
    else:
        form = ResetSyncStateForm(initial={"folder": request.GET.get("folder", "")}, folders=choices)
    return render(
        request,
        "web/mailbox_reset_sync.html",
        {
            "title": _("Reset sync state"),
            "nav_section": "mailboxes",
            "mailbox": mailbox,
            "states": states,
            "form": form,
        },
        status=400 if form.errors else 200,
    )


@admin_required
@require_POST
def mailbox_start_date(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_visible_mailbox(request, pk)
    form = StartDateForm(request.POST)
    if not form.is_valid():
        context = _detail_context(request, mailbox)
        context["start_date_form"] = form
        return render(request, "web/mailbox_detail.html", context, status=400)
    _set_start_date(request, mailbox, form.cleaned_data["process_emails_received_after"])
    return _back(mailbox)


def _set_start_date(request: AuthenticatedHttpRequest, mailbox: Mailbox, value: datetime | None) -> None:
    """Set the mailbox's start date and say so; a lowered one offers a round from it (tracking-rules §3.6):
    mail already decided keeps its decision until a round decides it again."""
    before = mailbox.configured_start_date()
    if value == mailbox.process_emails_received_after:
        return
    do_set_mailbox_start_date(mailbox, value, acting_user=request.user)
    mailbox.process_emails_received_after = value
    if value is None:
        messages.success(request, _("Cleared “process emails received after”."))
    else:
        messages.success(
            request,
            _("Messages received before %(when)s will not be evaluated.")
            % {"when": date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT")},
        )
    after = mailbox.configured_start_date()
    lowered = before is not None and (after is None or after < before)
    if lowered and Decision.objects.filter(mailbox=mailbox).exists():
        since = timezone.localtime(after) if after is not None else None
        query = f"?mailbox={mailbox.pk}" + (f"&since={since:%Y-%m-%dT%H:%M}" if since else "")
        messages.info(
            request,
            format_html(
                '{} <a href="{}{}">{}</a>',
                _("Mail already decided keeps its decision."),
                reverse("web-reprocess"),
                query,
                _("Reprocess from this date…"),
            ),
        )
