"""Record pages: a CRM record, user or queue, and its timeline of tracked emails (tracking-rules §2)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from django_stubs_ext import StrOrPromise

from syncadmin.web.filters.timeline import FILTER_KEYS, filter_timeline
from syncadmin.web.htmx import is_htmx
from syncadmin.web.paging import cursor_param, rows_per_page
from syncadmin.web.permissions import AuthenticatedHttpRequest, user_required
from tracking.choices import EntityKind
from tracking.models import CrmRecord, Mailbox, Queue, TrackedEmail
from tracking.timeline import Subject, timeline_page


@dataclass(frozen=True)
class RecordFacts:
    """What the page's head shows of any kind of record."""

    name: str
    kind_label: StrOrPromise
    addresses: list[str]
    owner: User | None
    active: bool
    mailbox: Mailbox | None  # of a user or queue, when the viewer may open it


def _subject(kind: str, pk: int) -> Subject:
    found: Subject | None
    if kind == EntityKind.USER:
        found = User.objects.filter(pk=pk).first()
    elif kind == EntityKind.QUEUE:
        found = Queue.objects.select_related("owner").filter(pk=pk).first()
    elif kind in EntityKind.values:
        found = CrmRecord.objects.select_related("owner").filter(pk=pk, kind=kind).first()
    else:
        found = None
    if found is None:
        raise Http404
    return found


def _facts(subject: Subject, request: AuthenticatedHttpRequest) -> RecordFacts:
    if isinstance(subject, CrmRecord):
        label = subject.other_kind or subject.get_kind_display()
        return RecordFacts(subject.name, label, subject.addresses, subject.owner, subject.active, None)
    visible = Mailbox.objects.visible_to(request.user)
    if isinstance(subject, Queue):
        mailbox = visible.filter(queue_id=subject.pk).first()
        addresses = [subject.email] if subject.email else []
        return RecordFacts(
            subject.name, EntityKind.QUEUE.label, addresses, subject.owner, subject.active, mailbox
        )
    mailbox = visible.filter(user_id=subject.pk).first()
    name = subject.get_full_name() or subject.get_username()
    addresses = [subject.email] if subject.email else []
    if mailbox is not None and mailbox.email_address not in addresses:
        addresses.append(mailbox.email_address)
    return RecordFacts(name, EntityKind.USER.label, addresses, None, subject.is_active, mailbox)


def _query(params: dict[str, str], **changes: str) -> str:
    merged = {**params, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v})


@user_required
@require_safe
def record_detail(request: AuthenticatedHttpRequest, kind: str, pk: int) -> HttpResponse:
    """A record's details and its timeline: the tracked emails it is regarding or a party of that the viewer
    may see, newest first, in keyset pages. Every signed-in user browses the directory; the timeline is
    scoped by role (TrackedEmail.visible_to)."""
    subject = _subject(kind, pk)
    filterset = filter_timeline(request)
    page = timeline_page(
        subject,
        visible=TrackedEmail.objects.visible_to(request.user),
        size=rows_per_page(request.user),
        start_after=cursor_param(request, "after"),
        narrow=filterset.narrow,
        span=filterset.span(),
    )
    params = {k: request.GET.get(k, "") for k in FILTER_KEYS}
    facts = _facts(subject, request)
    context = {
        "title": facts.name,
        "nav_section": "directory",
        "kind": kind,
        "record": subject,
        "facts": facts,
        "filter": filterset,
        "page": page,
        "next_url": _query(params, after=str(page.next)) if page.next is not None else "",
        "first_url": _query(params) if page.paged else "",
        "filtered": filterset.has_filters,
    }
    if is_htmx(request, target="timeline"):
        return render(request, "web/_record_timeline.html", context)
    return render(request, "web/record_detail.html", context)
