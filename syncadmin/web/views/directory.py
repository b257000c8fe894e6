"""CRM directory: every signed-in user browses accounts, contacts, leads and other records.

Admins also import records from CSV, with every rejected row reported by line number.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from syncadmin.web.filters.directory import RecordFilter
from syncadmin.web.forms.directory import SAMPLE_HEADER, ImportForm
from syncadmin.web.htmx import is_htmx
from syncadmin.web.paging import cursor_param, keyset_page, rows_per_page
from syncadmin.web.permissions import AuthenticatedHttpRequest, admin_required, is_admin, user_required
from tracking.actions import ActionError, check_import_records
from tracking.choices import RecordKind
from tracking.models import CrmRecord

FILTER_KEYS = ("q", "kind", "owner", "active")


def _query(params: dict[str, str], **changes: str) -> str:
    merged = {**params, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v})


@user_required
@require_safe
def record_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Records by name, filtered; pages by keyset on (name, id) so that no page needs a COUNT or OFFSET."""
    filterset = RecordFilter(request.GET, queryset=CrmRecord.objects.select_related("owner"))
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
    if request.GET.get("sample") == "csv":
        response = HttpResponse(SAMPLE_HEADER, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="syncadmin-records-sample.csv"'
        return response
    report = None
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            report = check_import_records(
                form.cleaned_data["kind"],
                form.cleaned_data["file"],
                file_name=form.cleaned_data["file_name"],
                acting_user=request.user,
            )
        except ActionError as exc:
            form.add_error("file", str(exc))
    context = {
        "title": _("Import records"),
        "nav_section": "directory",
        "form": form,
        "report": report,
        "kind_label": dict(RecordKind.choices).get(form.data.get("kind", ""), ""),
    }
    return render(request, "web/directory_import.html", context, status=400 if form.errors else 200)
