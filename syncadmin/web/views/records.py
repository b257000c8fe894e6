"""Record pages: a CRM record, user or queue, and its timeline of tracked emails (tracking-rules §2)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Model
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from syncadmin.web.permissions import AuthenticatedHttpRequest, user_required
from tracking.choices import EntityKind
from tracking.models import CrmRecord, Queue


def _record(kind: str, pk: int) -> Model:
    found: Model | None
    if kind == EntityKind.USER:
        found = User.objects.filter(pk=pk).first()
    elif kind == EntityKind.QUEUE:
        found = Queue.objects.filter(pk=pk).first()
    elif kind in EntityKind.values:
        found = CrmRecord.objects.filter(pk=pk, kind=kind).first()
    else:
        found = None
    if found is None:
        raise Http404
    return found


@user_required
@require_safe
def record_detail(request: AuthenticatedHttpRequest, kind: str, pk: int) -> HttpResponse:
    """A record's details and its timeline; every signed-in user browses the directory."""
    record = _record(kind, pk)
    return render(request, "web/record_detail.html", {"record": record, "kind": kind})
