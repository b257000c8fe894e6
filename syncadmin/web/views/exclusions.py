"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from syncadmin.web.permissions import user_required


@user_required
def exclusion_list(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Exclusion list"})


@user_required
@require_POST
def exclusion_delete(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Delete exclusion"})
