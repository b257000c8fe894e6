"""The audit trail's filters: one FilterSet, shared by the page, its htmx fragment and the CSV export."""

from __future__ import annotations

from datetime import date, timedelta

import django_filters  # type: ignore[import-untyped]
from django import forms
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from syncadmin.web.filters.decisions import start_of_day
from tracking.choices import AuditAction
from tracking.models import AuditEvent


class AuditFilterSet(django_filters.FilterSet):
    actor = django_filters.CharFilter(
        method="filter_actor",
        label=_("Who"),
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("user name, cli:…, system")}),
    )
    action = django_filters.ChoiceFilter(
        choices=AuditAction.choices, label=_("Action"), empty_label=_("All actions")
    )
    target = django_filters.CharFilter(
        method="filter_target",
        label=_("Object"),
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("contains…")}),
    )
    since = django_filters.DateFilter(
        method="filter_since",
        label=_("From"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    until = django_filters.DateFilter(
        method="filter_until",
        label=_("Until"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_actor(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        # PostgreSQL refuses NUL in a text parameter; no actor holds one.
        value = value.strip().replace("\x00", "")
        return queryset.filter(actor_label__iexact=value) if value else queryset

    def filter_target(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        value = value.strip().replace("\x00", "")
        return queryset.filter(target__icontains=value) if value else queryset

    def filter_since(self, queryset: QuerySet[AuditEvent], name: str, value: date) -> QuerySet[AuditEvent]:
        return queryset.filter(created_at__gte=start_of_day(value))

    def filter_until(self, queryset: QuerySet[AuditEvent], name: str, value: date) -> QuerySet[AuditEvent]:
        if value == date.max:
            return queryset
        # the whole last day, in the user's time zone
        return queryset.filter(created_at__lt=start_of_day(value + timedelta(days=1)))


def filter_audit(request: HttpRequest, queryset: QuerySet[AuditEvent]) -> AuditFilterSet:
    """The FilterSet bound to the request's query string (unbound when there is none)."""
    params = request.GET.copy()
    for key in ("before", "after"):
        params.pop(key, None)
    return AuditFilterSet(params or None, queryset=queryset, request=request)
