"""CRM directory: every signed-in user browses accounts, contacts, leads and other records.

Admins also import records from CSV: the import runs as a job (tracking/imports.py) and its page shows
the progress, then what was created and updated and every rejected row by line number.
"""

from __future__ import annotations

from urllib.parse import urlencode

import django_rq
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe
from redis.exceptions import RedisError

from syncadmin.web.filters.directory import RecordFilter
from syncadmin.web.forms.directory import SAMPLE_HEADER, ImportForm
from syncadmin.web.htmx import is_htmx
from syncadmin.web.paging import cursor_param, keyset_page, rows_per_page
from syncadmin.web.permissions import AuthenticatedHttpRequest, admin_required, is_admin, user_required
from syncadmin.web.views.mailboxes import queue_problem
from tracking import jobs
from tracking.actions import ActionError
from tracking.choices import RecordKind, ScanStatus
from tracking.imports import check_queue_import, import_records_job
from tracking.models import CrmRecord, ImportRun

FILTER_KEYS = ("q", "kind", "owner", "active")
IMPORT_TIMEOUT = 1800  # seconds; the largest file (5 MB, ~200,000 rows) takes well under a minute
REJECTED_SHOWN = 1000  # rejected rows listed on the result page; the count says how many more


def _query(params: dict[str, str], **changes: str) -> str:
    merged = {**params, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v})


@user_required
@require_safe
def record_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Records by name, filtered; pages by keyset on (name, id) so that no page needs a COUNT or OFFSET."""
    filterset = RecordFilter(
        request.GET, queryset=CrmRecord.objects.select_related("owner"), viewer=request.user
    )
    records = filterset.qs if filterset.is_valid() else CrmRecord.objects.none()
    params = {k: request.GET.get(k, "") for k in FILTER_KEYS}
    page = keyset_page(
        records,
        order=("name", "pk"),
        start_after=cursor_param(request, "after"),
        size=rows_per_page(request.user),
    )
    tabs = [
        ("", _("All")),
        (RecordKind.ACCOUNT, _("Accounts")),
        (RecordKind.CONTACT, _("Contacts")),
        (RecordKind.LEAD, _("Leads")),
        (RecordKind.OTHER, _("Other records")),
    ]
    context = {
        "title": _("CRM directory"),
        "nav_section": "directory",
        "filter": filterset,
        "records": page.rows,
        "next_url": _query(params, after=str(page.next)) if page.next is not None else "",
        "first_url": _query(params) if page.paged else "",
        "kind": params["kind"],
        "kind_tabs": [(value, label, _query(params, kind=value)) for value, label in tabs],
        "can_import": is_admin(request.user),
        "filtered": any(params.values()),
    }
    if is_htmx(request):
        # The filter form asked: the results, and the kind tabs out of band so that they keep the filters.
        return render(request, "web/_directory_table.html", {**context, "htmx": True})
    return render(request, "web/directory.html", context)


@admin_required
@require_http_methods(["GET", "POST"])
def record_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The import form; a checked file is queued as a job and the browser goes to its result page."""
    if request.GET.get("sample") == "csv":
        response = HttpResponse(SAMPLE_HEADER, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="syncadmin-records-sample.csv"'
        return response
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        run = _queue_import(request, form)
        if run is not None:
            return redirect("web-directory-import-result", run.pk)
    context = {
        "title": _("Import records"),
        "nav_section": "directory",
        "form": form,
        "kind_label": dict(RecordKind.choices).get(form.data.get("kind", ""), ""),
    }
    return render(request, "web/directory_import.html", context, status=400 if form.errors else 200)


def _queue_import(request: AuthenticatedHttpRequest, form: ImportForm) -> ImportRun | None:
    """Check the file and queue its import; None with the form's error when either cannot be done."""
    problem = queue_problem()
    if problem:
        form.add_error(
            None, _("The job queue is unavailable (%(error)s); nothing was imported.") % {"error": problem}
        )
        return None
    try:
        run = check_queue_import(
            form.cleaned_data["kind"],
            form.cleaned_data["file"],
            file_name=form.file_name,
            requested_by=request.user,
        )
    except ActionError as exc:
        form.add_error("file", str(exc))
        return None
    try:
        django_rq.get_queue(jobs.QUEUE).enqueue_call(
            import_records_job, args=(run.pk,), timeout=IMPORT_TIMEOUT, description=f"import records {run.pk}"
        )
    except RedisError as exc:
        run.delete()
        form.add_error(
            None, _("The job queue is unavailable (%(error)s); nothing was imported.") % {"error": exc}
        )
        return None
    return run


@admin_required
@require_safe
def record_import_result(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """An import's progress (the page asks again every two seconds while it runs) and its result."""
    run = get_object_or_404(ImportRun.objects.defer("text"), pk=pk)
    finished = run.status in (ScanStatus.SUCCEEDED, ScanStatus.FAILED)
    context = {
        "title": _("Import records"),
        "nav_section": "directory",
        "run": run,
        "finished": finished,
        "percent": 100 if finished else (100 * run.rows_done // run.rows_total if run.rows_total else 0),
        "kind_label": RecordKind(run.kind).label,
        "rejected": run.rejected[:REJECTED_SHOWN],
        "rejected_more": max(len(run.rejected) - REJECTED_SHOWN, 0),
    }
    return render(request, "web/directory_import_result.html", context)
