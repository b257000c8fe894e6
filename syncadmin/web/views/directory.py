"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from syncadmin.web.permissions import admin_required, user_required


@user_required
def record_list(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "CRM directory"})


@admin_required
def record_import(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Import records"})
