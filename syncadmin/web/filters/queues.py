"""A queue page's work list filter (tracking-rules §2): by state, active or done."""

from __future__ import annotations

import django_filters  # type: ignore[import-untyped]
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from tracking.choices import QueueItemState
from tracking.models import QueueItem


class QueueItemFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=QueueItemState.choices, label=_("State"), empty_label=_("All states")
    )

    class Meta:
        model = QueueItem
        fields: list[str] = []


def filter_queue_items(request: HttpRequest, queryset: QuerySet[QueueItem]) -> QueueItemFilterSet:
    """The FilterSet bound to the request's query string (unbound when there is none); the page's cursors
    are not filters."""
    params = request.GET.copy()
    for key in ("before", "after"):
        params.pop(key, None)
    return QueueItemFilterSet(params or None, queryset=queryset, request=request)
