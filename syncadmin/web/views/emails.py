"""Tracked emails: the page of one, with what a CRM user reads of it (tracking-rules §2)."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from syncadmin.web.permissions import AuthenticatedHttpRequest, user_required
from tracking.models import TrackedEmail


@user_required
@require_safe
def email_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """One tracked email, for whoever may see it; 404 for anyone else (ids cannot be probed)."""
    email = TrackedEmail.objects.visible_to(request.user).filter(pk=pk).first()
    if email is None:
        raise Http404
    return render(request, "web/email_detail.html", {"email": email})
