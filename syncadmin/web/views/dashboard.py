"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from syncadmin.web.permissions import reader_required


@reader_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Dashboard"})


@reader_required
def scans_in_progress(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Scans in progress"})
