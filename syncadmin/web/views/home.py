from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_safe

from syncadmin.web.permissions import AuthenticatedHttpRequest, reads_everything, user_required


@user_required
@require_safe
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Admins and auditors start on the dashboard; users on their own options."""
    if reads_everything(request.user):
        return redirect("web-dashboard")
    return redirect("web-personal-options")
