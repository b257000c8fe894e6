"""Tracked emails: the page of one, with what a CRM user reads of it (tracking-rules §2).

The HTML body is its own document (`email_body`), framed by the page with an empty sandbox and served with
a CSP that allows nothing but images from this site (its `cid:` images, `email_inline`) and, only when the
reader asks for them, remote images over HTTPS. The body was sanitized when stored; both layers stand on
their own.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_safe

from syncadmin.web.permissions import AuthenticatedHttpRequest, user_required
from tracking.choices import EntityKind
from tracking.content import frame_html, has_remote_images
from tracking.models import Decision, EmailParty, TrackedAttachment, TrackedEmail

DECISIONS_SHOWN = 50
INLINE_SALT = "syncadmin.email-inline"
INLINE_TOKEN_SECONDS = 3600  # a page left open an hour still shows its images on a reload of the frame
# Raster types only: an SVG is a document that can carry script, so it is never shown inline.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
_FRAME_POLICY = (
    "default-src 'none'; img-src 'self' data:{remote}; style-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; sandbox"
)


def _visible_email(request: AuthenticatedHttpRequest, pk: int) -> TrackedEmail:
    email = (
        TrackedEmail.objects.visible_to(request.user)
        .select_related("regarding", "owner", "receiving_mailbox", "correlated_email")
        .filter(pk=pk)
        .first()
    )
    if email is None:
        raise Http404
    return email


def _remote_asked(request: AuthenticatedHttpRequest) -> bool:
    return request.GET.get("remote_images") == "1"


def party_link(party: EmailParty) -> tuple[str, int, str] | None:
    """(kind, pk, name) of the record page a party resolved to, or None."""
    if party.record is not None:
        return party.record.kind, party.record.pk, party.record.name
    if party.user is not None:
        return EntityKind.USER, party.user.pk, party.user.get_full_name() or party.user.get_username()
    if party.queue is not None:
        return EntityKind.QUEUE, party.queue.pk, party.queue.name
    return None


@user_required
@require_safe
def email_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """One tracked email, for whoever may see it; 404 for anyone else (ids cannot be probed)."""
    email = _visible_email(request, pk)
    parties = [
        (party, party_link(party))
        for party in EmailParty.objects.filter(tracked_email=email).select_related("record", "user", "queue")
    ]
    remote = _remote_asked(request)
    frame_url = reverse("web-email-body", args=[email.pk]) + ("?remote_images=1" if remote else "")
    by_field: dict[str, list[str]] = {"to": [], "cc": [], "bcc": []}
    for pair in email.recipients or []:
        if isinstance(pair, list) and len(pair) == 2 and pair[0] in by_field:
            by_field[pair[0]].append(str(pair[1]))
    context = {
        "email": email,
        "to": by_field["to"],
        "cc": by_field["cc"],
        "bcc": by_field["bcc"],
        "parties": parties,
        # Name, type and size only: the content is sent by tracked_attachment, one at a time.
        "attachments": list(
            TrackedAttachment.objects.filter(tracked_email=email)
            .defer("content")
            .annotate(has_content=ExpressionWrapper(Q(content__isnull=False), output_field=BooleanField()))
        ),
        "queue_items": list(email.queue_items.select_related("queue").order_by("pk")),
        "decisions": list(
            Decision.objects.visible_to(request.user)
            .filter(tracked_email=email)
            .select_related("mailbox")
            .defer("trace", "message_snapshot")
            .order_by("-id")[:DECISIONS_SHOWN]
        ),
        "frame_url": frame_url,
        "remote_images": remote,
        "has_remote_images": has_remote_images(email.body_html),
        "nav_section": "decisions",
    }
    return render(request, "web/email_detail.html", context)


@user_required
@require_safe
@xframe_options_sameorigin
def email_body(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The HTML body as the page's frame shows it: nothing runs, nothing loads but its own images and, when
    asked (?remote_images=1), remote ones over HTTPS."""
    email = _visible_email(request, pk)
    remote = _remote_asked(request)
    images = TrackedAttachment.objects.filter(
        tracked_email=email, content__isnull=False, content_type__in=INLINE_IMAGE_TYPES
    ).exclude(content_id="")
    cid_urls = {
        content_id.lower(): reverse("web-email-inline", args=[attachment_pk])
        + "?t="
        + inline_token(request.user, attachment_pk)
        for attachment_pk, content_id in images.values_list("pk", "content_id")
    }
    body = frame_html(email.body_html, cid_urls, remote_images=remote)
    response = render(request, "web/email_frame.html", {"body": body})
    response["Content-Security-Policy"] = _FRAME_POLICY.format(remote=" https:" if remote else "")
    response["Referrer-Policy"] = "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def inline_token(user: User | AnonymousUser, attachment_pk: int) -> str:
    """What lets the body's frame load one of its images: the frame is sandboxed (an opaque origin), so the
    browser sends it no session cookie; the token names the attachment and the reader, signed and short-lived,
    and the image is still only sent if that reader may see the email."""
    return signing.dumps([attachment_pk, user.pk], salt=INLINE_SALT, compress=False)


def _token_reader(token: str, attachment_pk: int) -> User | None:
    try:
        pk, user_pk = signing.loads(token, salt=INLINE_SALT, max_age=INLINE_TOKEN_SECONDS)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if pk != attachment_pk:
        return None
    return User.objects.filter(pk=user_pk, is_active=True).first()


@require_safe
def email_inline(request: HttpRequest, pk: int) -> HttpResponse:
    """A `cid:` image of a body, from its stored attachment: raster images only, for whoever may see the
    email (the download's rule), signed in or named by the frame's token (`inline_token`); 404 otherwise."""
    token = request.GET.get("t", "")
    reader: User | AnonymousUser | None
    if token:
        reader = _token_reader(token, pk)
    elif request.user.is_authenticated:
        reader = request.user
    else:
        return redirect_to_login(request.get_full_path())
    found = TrackedAttachment.objects.filter(
        pk=pk, content__isnull=False, content_type__in=INLINE_IMAGE_TYPES
    ).first()
    if (
        reader is None
        or found is None
        or not TrackedEmail.objects.visible_to(reader).filter(pk=found.tracked_email_id).exists()
    ):
        raise Http404
    response = HttpResponse(bytes(found.content or b""), content_type=found.content_type)
    response["Content-Disposition"] = content_disposition_header(False, found.name or "image") or "inline"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "no-store, private"
    return response
