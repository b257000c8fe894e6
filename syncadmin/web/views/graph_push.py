"""Microsoft Graph change notifications (tracking-rules §9): public endpoints Graph posts to.

No sign-in and no CSRF token: Graph has neither. What makes a notification count is the clientState of
the subscription it names (tracking.push); what it makes happen is only a delta scan of that folder,
queued after the answer's commit. Graph wants 202 within three seconds, so nothing slow happens here.
"""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tracking.push import accept_notifications
from tracking.pushjobs import queue_accepted

log = logging.getLogger(__name__)

# Graph batches a few notifications per POST, each well under a kilobyte without resource data.
MAX_BODY = 1024 * 1024
MAX_TOKEN = 1024


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def _receive(request: HttpRequest, *, lifecycle: bool) -> HttpResponse:
    if "validationToken" in request.GET:
        # The handshake of a new subscription: the token, decoded, as plain text within 10 seconds. Never
        # HTML: text/plain with nosniff (SecurityMiddleware), so a crafted token is only ever text.
        token = request.GET["validationToken"]
        if len(token) > MAX_TOKEN:
            return _plain("validationToken too long", 400)
        return _plain(token, 200)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return _plain("too large", 413)
    body = request.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return _plain("too large", 413)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        log.warning("graph notification that is not JSON ignored")
        return _plain("", 202)
    accepted = accept_notifications(payload, lifecycle=lifecycle, now=timezone.now())
    transaction.on_commit(lambda: queue_accepted(accepted))
    return HttpResponse(status=202)


@csrf_exempt
@require_POST
def notifications(request: HttpRequest) -> HttpResponse:
    """notificationUrl: created/updated messages of a subscribed folder."""
    return _receive(request, lifecycle=False)


@csrf_exempt
@require_POST
def lifecycle(request: HttpRequest) -> HttpResponse:
    """lifecycleNotificationUrl: reauthorizationRequired, subscriptionRemoved, missed."""
    return _receive(request, lifecycle=True)
