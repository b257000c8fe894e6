"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from syncadmin.web.permissions import admin_required, reader_required


@reader_required
def profile_list(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Server profiles"})


@admin_required
def profile_create(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "New server profile"})


@reader_required
def profile_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Server profile"})
