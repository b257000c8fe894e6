"""The mailbox list's filters: status, error kind, enabled, profile, approval, owner kind and a search box."""

from __future__ import annotations

import django_filters  # type: ignore[import-untyped]
from django import forms
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from tracking.choices import Approval, ErrorKind, MailboxStatus
from tracking.models import EmailServerProfile, Mailbox

YES_NO = [("yes", _("Enabled")), ("no", _("Disabled"))]
OWNER_KINDS = [("user", _("User")), ("queue", _("Queue"))]
ANY = _("Any")


class MailboxFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        label=_("Search"),
        method="filter_search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Address or owner"), "autocomplete": "off"}
        ),
    )
    status = django_filters.ChoiceFilter(
        label=_("Incoming status"),
        field_name="incoming_status",
        choices=MailboxStatus.choices,
        empty_label=ANY,
    )
    error_kind = django_filters.ChoiceFilter(
        label=_("Last error"),
        field_name="last_error_kind",
        choices=ErrorKind.choices,
        empty_label=ANY,
    )
    enabled = django_filters.ChoiceFilter(
        label=_("Enabled"), choices=YES_NO, method="filter_enabled", empty_label=ANY
    )
    approval = django_filters.ChoiceFilter(label=_("Approval"), choices=Approval.choices, empty_label=ANY)
    profile = django_filters.ModelChoiceFilter(
        label=_("Server profile"), queryset=EmailServerProfile.objects.order_by("name"), empty_label=ANY
    )
    owner = django_filters.ChoiceFilter(
        label=_("Owner"), choices=OWNER_KINDS, method="filter_owner", empty_label=ANY
    )

    class Meta:
        model = Mailbox
        fields: list[str] = []

    def filter_search(self, queryset: QuerySet[Mailbox], name: str, value: str) -> QuerySet[Mailbox]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(email_address__icontains=value)
            | Q(user__username__icontains=value)
            | Q(user__first_name__icontains=value)
            | Q(user__last_name__icontains=value)
            | Q(queue__name__icontains=value)
        )

    def filter_enabled(self, queryset: QuerySet[Mailbox], name: str, value: str) -> QuerySet[Mailbox]:
        return queryset.filter(enabled=value == "yes")

    def filter_owner(self, queryset: QuerySet[Mailbox], name: str, value: str) -> QuerySet[Mailbox]:
        if value == "queue":
            return queryset.filter(queue__isnull=False)
        return queryset.filter(user__isnull=False)
