"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from syncadmin.web.permissions import user_required


@user_required
def personal_options(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Personal Options"})


@user_required
@require_POST
def folder_rules(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Folder tracking rules"})


@user_required
@require_POST
def folder_rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Delete folder rule"})
