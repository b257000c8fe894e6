"""The decision log's filters: one FilterSet, shared by the page, its htmx fragment and the CSV export."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import django_filters  # type: ignore[import-untyped]
from django import forms
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from tracking.choices import CorrelationMethod, Direction, EntityKind, Folder, Outcome, Reason
from tracking.dates import validate_date_range
from tracking.models import Decision, FolderTrackingRule, Mailbox

NO_CORRELATION = "none"
# The log shows each message's current decision unless asked for every evaluation (tracking-rules §3.6).
CURRENT, ALL_EVALUATIONS = "current", "all"
NO_ACCEPTING = "none"
MANUAL_ONLY, SCANS_ONLY = "yes", "no"


def _mailboxes(request: HttpRequest | None) -> QuerySet[Mailbox]:
    if request is None:
        return Mailbox.objects.none()
    return (
        Mailbox.objects.visible_to(request.user)
        .select_related("user", "queue", "profile")
        .order_by("email_address")
    )


def _folders(request: HttpRequest | None) -> list[tuple[str, StrOrPromise]]:
    """Inbox and Sent Items, then every folder a folder tracking rule of a visible mailbox maps.

    Folder names are the user's own words, so another user's must not show up in the list.
    """
    rules = FolderTrackingRule.objects.filter(mailbox__in=_mailboxes(request))
    mapped = rules.order_by("folder").values_list("folder", flat=True).distinct()
    return [*Folder.choices, *((f, f) for f in mapped if f not in Folder.values)]


def start_of_day(day: date) -> datetime:
    """Midnight of `day` in the active time zone (the user's), as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class DecisionFilterSet(django_filters.FilterSet):
    mailbox = django_filters.ModelChoiceFilter(
        queryset=_mailboxes, label=_("Mailbox"), empty_label=_("All mailboxes")
    )
    folder = django_filters.ChoiceFilter(label=_("Folder"), empty_label=_("All folders"))
    outcome = django_filters.ChoiceFilter(
        choices=Outcome.choices, label=_("Outcome"), empty_label=_("All outcomes")
    )
    reason = django_filters.ChoiceFilter(
        choices=Reason.choices, label=_("Reason"), empty_label=_("All reasons")
    )
    correlation = django_filters.ChoiceFilter(
        choices=[*CorrelationMethod.choices, (NO_CORRELATION, _("No correlation"))],
        method="filter_correlation",
        label=_("Correlation"),
        empty_label=_("Any correlation"),
    )
    q = django_filters.CharFilter(
        method="filter_text",
        label=_("Sender or subject"),
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("contains…")}),
    )
    received_from = django_filters.DateFilter(
        method="filter_received_from",
        label=_("Received from"),
        validators=[validate_date_range],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    received_to = django_filters.DateFilter(
        method="filter_received_to",
        label=_("Received until"),
        validators=[validate_date_range],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    # issue 18: who accepted it, what it is regarding, manual or scan, direction, when it was decided
    direction = django_filters.ChoiceFilter(
        choices=Direction.choices, label=_("Direction"), empty_label=_("Both directions")
    )
    accepting_kind = django_filters.ChoiceFilter(
        choices=[*EntityKind.choices, (NO_ACCEPTING, _("Nobody accepted"))],
        method="filter_accepting_kind",
        label=_("Accepted by"),
        empty_label=_("Anyone or nobody"),
    )
    accepting = django_filters.CharFilter(
        method="filter_accepting",
        label=_("Accepting entity"),
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("name or address…")}),
    )
    regarding = django_filters.CharFilter(
        method="filter_regarding",
        label=_("Regarding"),
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("record name…")}),
    )
    manual = django_filters.ChoiceFilter(
        choices=[(MANUAL_ONLY, _("Manual (Track / Set regarding)")), (SCANS_ONLY, _("Made by scans"))],
        method="filter_manual",
        label=_("Made by"),
        empty_label=_("Scans and manual"),
    )
    decided_from = django_filters.DateFilter(
        method="filter_decided_from",
        label=_("Decided from"),
        validators=[validate_date_range],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    decided_to = django_filters.DateFilter(
        method="filter_decided_to",
        label=_("Decided until"),
        validators=[validate_date_range],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    evaluations = django_filters.ChoiceFilter(
        choices=[(CURRENT, _("Current decision per message")), (ALL_EVALUATIONS, _("All evaluations"))],
        method="filter_evaluations",
        label=_("Evaluations"),
        empty_label=None,
    )

    class Meta:
        model = Decision
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters["folder"].extra["choices"] = _folders(self.request)

    @property
    def has_filters(self) -> bool:
        """Whether the person narrowed the log (the default "current decisions" is no filter)."""
        return any(v for k, v in self.data.items() if k != "evaluations") or (
            self.data.get("evaluations") == ALL_EVALUATIONS
        )

    def filter_queryset(self, queryset: QuerySet[Decision]) -> QuerySet[Decision]:
        queryset = super().filter_queryset(queryset)
        if self.form.cleaned_data.get("evaluations") != ALL_EVALUATIONS:
            # NOT IN the few superseded ids (read on the supersedes index), not an anti-join on the reverse
            # one-to-one: PostgreSQL hashes the whole table for that, 3 s a page at 1,000,000 decisions (B5).
            superseded = Decision.objects.filter(supersedes__isnull=False).values("supersedes_id")
            queryset = queryset.exclude(pk__in=superseded)
        return queryset

    def filter_evaluations(self, queryset: QuerySet[Decision], name: str, value: str) -> QuerySet[Decision]:
        return queryset  # applied in filter_queryset, also when the parameter is absent

    def filter_correlation(self, queryset: QuerySet[Decision], name: str, value: str) -> QuerySet[Decision]:
        return queryset.filter(correlation_method="" if value == NO_CORRELATION else value)

    def filter_text(self, queryset: QuerySet[Decision], name: str, value: str) -> QuerySet[Decision]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(sender__icontains=value) | Q(subject__icontains=value))

    def filter_received_from(
        self, queryset: QuerySet[Decision], name: str, value: date
    ) -> QuerySet[Decision]:
        return queryset.filter(received_at__gte=start_of_day(value))

    def filter_received_to(self, queryset: QuerySet[Decision], name: str, value: date) -> QuerySet[Decision]:
        if value == date.max:
            return queryset
        # the whole last day, in the user's time zone
        return queryset.filter(received_at__lt=start_of_day(value + timedelta(days=1)))

    def filter_accepting_kind(
        self, queryset: QuerySet[Decision], name: str, value: str
    ) -> QuerySet[Decision]:
        return queryset.filter(accepting_kind="" if value == NO_ACCEPTING else value)

    def filter_accepting(self, queryset: QuerySet[Decision], name: str, value: str) -> QuerySet[Decision]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(accepting_name__icontains=value) | Q(accepting_email__icontains=value))

    def filter_regarding(self, queryset: QuerySet[Decision], name: str, value: str) -> QuerySet[Decision]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(regarding__name__icontains=value)

    def filter_manual(self, queryset: QuerySet[Decision], name: str, value: str) -> QuerySet[Decision]:
        return queryset.filter(manual=value == MANUAL_ONLY)

    def filter_decided_from(self, queryset: QuerySet[Decision], name: str, value: date) -> QuerySet[Decision]:
        return queryset.filter(decided_at__gte=start_of_day(value))

    def filter_decided_to(self, queryset: QuerySet[Decision], name: str, value: date) -> QuerySet[Decision]:
        if value == date.max:
            return queryset
        return queryset.filter(decided_at__lt=start_of_day(value + timedelta(days=1)))


def filter_decisions(request: HttpRequest, queryset: QuerySet[Decision]) -> DecisionFilterSet:
    """The FilterSet bound to the request's query string (bound also when it is empty: current decisions)."""
    params = request.GET.copy()
    for key in ("before", "after", "sort"):  # paging and order, not filters
        params.pop(key, None)
    return DecisionFilterSet(params, queryset=queryset, request=request)
