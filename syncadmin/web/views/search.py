"""Search across the tracked emails a user may see (tracking/search.py), from the box in the navigation."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from syncadmin.web.htmx import is_htmx
from syncadmin.web.permissions import AuthenticatedHttpRequest, user_required
from tracking.search import MORE_RESULTS, RESULTS, headlines, parse, search

SHOWN = ("subject", "sender", "sender_name", "direction", "timeline_at")


@user_required
@require_safe
def search_emails(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The best matches first: RESULTS of them, MORE_RESULTS with ?more=1 (ranked lists have no pages)."""
    text = request.GET.get("q", "").strip()
    more = request.GET.get("more") == "1"
    limit = MORE_RESULTS if more else RESULTS
    found = list(search(request.user, text).only(*SHOWN)[: limit + 1]) if text else []
    shown = found[:limit]
    marks = headlines(shown, text)
    context = {
        "title": _("Search") if not text else _("Search: %(text)s") % {"text": text},
        "nav_section": "search",
        "q": text,
        "searched": bool(text),
        "understood": bool(parse(text)),
        "results": [(email, marks.get(email.pk, "")) for email in shown],
        "more_url": "?" + urlencode({"q": text, "more": "1"}) if len(found) > limit and not more else "",
        "limit": limit,
        "more_limit": MORE_RESULTS,
        "capped": more and len(found) > limit,
    }
    if is_htmx(request, target="search-results"):
        return render(request, "web/_search_results.html", context)
    return render(request, "web/search.html", context)
