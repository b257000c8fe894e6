"""A record page's timeline filters: direction and a date range (on the timeline's own time).

The timeline is read from two indexes (tracking/timeline.py): the emails a record is regarding and the
parties that point at it. The one FilterSet narrows both; a field of the email is reached through the
party's `tracked_email` on the second. The dates are not a filter of rows but the span of the timeline
read (`span()`): `timeline_at` is in both indexes, so a date range bounds each index range read.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import django_filters  # type: ignore[import-untyped]
from django import forms
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from syncadmin.web.filters.decisions import start_of_day
from tracking.choices import Direction
from tracking.dates import validate_date_range
from tracking.models import EmailParty, TrackedEmail
from tracking.timeline import TimeRange

FILTER_KEYS = ("direction", "since", "until")


def _email_field(queryset: QuerySet[Any], name: str) -> str:
    return f"tracked_email__{name}" if queryset.model is EmailParty else name


class TimelineFilterSet(django_filters.FilterSet):
    direction = django_filters.ChoiceFilter(
        choices=Direction.choices,
        method="filter_direction",
        label=_("Direction"),
        empty_label=_("Both directions"),
    )
    since = django_filters.DateFilter(
        method="filter_since",
        label=_("From"),
        validators=[validate_date_range],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    until = django_filters.DateFilter(
        method="filter_until",
        label=_("Until"),
        validators=[validate_date_range],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    class Meta:
        model = TrackedEmail
        fields: list[str] = []

    @property
    def has_filters(self) -> bool:
        return any(self.data.get(k) for k in FILTER_KEYS)

    def narrow(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The filters applied to a queryset of TrackedEmail or of EmailParty (nothing when not valid)."""
        if not self.is_valid():
            return queryset.none()
        return self.filter_queryset(queryset)

    def filter_direction(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return queryset.filter(**{_email_field(queryset, "direction"): value})

    def span(self) -> TimeRange:
        """The dates as the part of the timeline to read (each read's index range and window stay inside
        it); the whole last day, in the user's time zone."""
        if not self.is_valid():
            return TimeRange()
        since, until = self.form.cleaned_data.get("since"), self.form.cleaned_data.get("until")
        return TimeRange(
            since=start_of_day(since) if since else None,
            until=start_of_day(until + timedelta(days=1)) if until and until != date.max else None,
        )

    def filter_since(self, queryset: QuerySet[Any], name: str, value: date) -> QuerySet[Any]:
        return queryset  # the span() of the read

    def filter_until(self, queryset: QuerySet[Any], name: str, value: date) -> QuerySet[Any]:
        return queryset  # the span() of the read


def filter_timeline(request: HttpRequest) -> TimelineFilterSet:
    """The FilterSet bound to the request's query string; the page's cursor is not a filter."""
    params = request.GET.copy()
    params.pop("after", None)
    return TimelineFilterSet(params, queryset=TrackedEmail.objects.none(), request=request)
