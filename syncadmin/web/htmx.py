"""When a view answers with a fragment instead of the whole page."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


def is_htmx(request: HttpRequest, *, target: str | None = None) -> bool:
    """An htmx request for a fragment (optionally aimed at `target`); a history restore wants the page."""
    details = getattr(request, "htmx", None)
    if not isinstance(details, HtmxDetails) or not details or details.history_restore_request:
        return False
    return target is None or details.target == target
