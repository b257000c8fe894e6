"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from syncadmin.web.permissions import reader_required


@reader_required
def org_settings(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Organisation settings"})


@reader_required
def org_settings_changes(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Changes to organisation settings"})
