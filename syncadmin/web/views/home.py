from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from syncadmin.web.permissions import reads_everything, user_required


@user_required
def home(request: HttpRequest) -> HttpResponse:
    """Admins and auditors start on the dashboard; users on their own options."""
    if reads_everything(request.user):
        return redirect("web-dashboard")
    return redirect("web-personal-options")
