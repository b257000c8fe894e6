"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from syncadmin.web.permissions import admin_required, user_required


@user_required
def mailbox_list(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Mailboxes"})


@user_required
def mailbox_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Mailbox"})


@user_required
def mailbox_status(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Mailbox status"})


@admin_required
@require_POST
def mailbox_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Approve"})


@admin_required
@require_POST
def mailbox_test(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Test & Enable"})


@admin_required
@require_POST
def mailbox_scan(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Scan now"})


@admin_required
@require_POST
def mailbox_disable(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Disable"})


@admin_required
@require_POST
def mailbox_reset_sync(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Reset sync state"})


@admin_required
@require_POST
def mailbox_watermark(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Process emails received after"})
