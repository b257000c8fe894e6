"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from syncadmin.web.permissions import user_required


@user_required
def decision_list(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Decision log"})


@user_required
def decision_export(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Export"})


@user_required
def decision_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Decision"})


@user_required
@require_POST
def decision_track(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Track"})
