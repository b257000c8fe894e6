"""The audit trail (admins and auditors): every audit event, filtered, in keyset pages, exported as CSV.

Audit events are append-only: nothing here, nor anywhere else, edits or deletes one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import tzinfo

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe
from django_htmx.http import push_url

from syncadmin.web.filters.audit import filter_audit
from syncadmin.web.htmx import is_htmx
from syncadmin.web.paging import cursor_param, keyset_page, rows_per_page
from syncadmin.web.permissions import AuthenticatedHttpRequest, reader_required
from syncadmin.web.views.decisions_export import EXPORT_CHUNK, safe_cell
from tracking.models import AuditEvent

EXPORT_COLUMNS = ("created_at", "actor", "action", "target", "old_value", "new_value")


@reader_required
@require_safe
def audit_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    filterset = filter_audit(request, AuditEvent.objects.all())
    # Newest first: ?before= an id pages on to older events, ?after= back to newer ones.
    page = keyset_page(
        filterset.qs,
        order=("-id",),
        start_after=cursor_param(request, "before"),
        end_before=cursor_param(request, "after"),
        size=rows_per_page(request.user),
    )
    context = {"filter": filterset, "page": page, "nav_section": "audit", "title": _("Audit trail")}
    if is_htmx(request):
        response = render(request, "web/_audit_table.html", context)
        query = request.GET.urlencode()
        return push_url(response, request.path + (f"?{query}" if query else ""))
    return render(request, "web/audit_list.html", context)


@reader_required
@require_safe
def audit_export(request: AuthenticatedHttpRequest) -> StreamingHttpResponse:
    filterset = filter_audit(request, AuditEvent.objects.all())
    # The generator runs after the view returns, when the middleware has reset the time zone.
    tz = timezone.get_current_timezone()
    response = StreamingHttpResponse(csv_rows(filterset.qs, tz), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{timezone.localdate():%Y-%m-%d}.csv"'
    return response


class _Line:
    """A file-like object whose write() hands back the line, for csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_rows(queryset: QuerySet[AuditEvent], tz: tzinfo) -> Iterator[bytes]:
    """The events, newest first, as UTF-8 CSV in chunks of EXPORT_CHUNK rows, in constant memory."""
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_COLUMNS).encode()
    rows = queryset.order_by("-id").values_list(
        "created_at", "actor_label", "action", "target", "old_value", "new_value"
    )
    chunk: list[str] = []
    for row in rows.iterator(chunk_size=EXPORT_CHUNK):
        chunk.append(writer.writerow([safe_cell(v, tz) for v in row]))
        if len(chunk) >= EXPORT_CHUNK:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()
