"""The CRM directory's filters: kind, owner, active and a search box."""

from __future__ import annotations

from typing import Any

import django_filters  # type: ignore[import-untyped]
from django import forms
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from syncadmin.web.permissions import reads_everything
from tracking.choices import RecordKind
from tracking.models import CrmRecord


class RecordFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label=_("Search"))
    kind = django_filters.ChoiceFilter(
        choices=RecordKind.choices, label=_("Kind"), empty_label=_("All kinds")
    )
    owner = django_filters.ModelChoiceFilter(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        label=_("Owner"),
        empty_label=_("Any owner"),
    )
    active = django_filters.ChoiceFilter(
        choices=[("yes", _("Active")), ("no", _("Inactive"))],
        method="filter_active",
        label=_("Status"),
        empty_label=_("Active and inactive"),
    )

    class Meta:
        model = CrmRecord
        fields = ["q", "kind", "owner", "active"]

    def search(self, queryset: QuerySet[CrmRecord], name: str, value: str) -> QuerySet[CrmRecord]:
        """Name contains the words, or an address contains them (addresses are stored lower-case)."""
        value = value.strip()
        if not value:
            return queryset
        lower = value.lower()
        return queryset.filter(
            Q(name__icontains=value)
            | Q(email1__contains=lower)
            | Q(email2__contains=lower)
            | Q(email3__contains=lower)
        )

    def filter_active(self, queryset: QuerySet[CrmRecord], name: str, value: str) -> QuerySet[CrmRecord]:
        if value == "yes":
            return queryset.filter(active=True)
        if value == "no":
            return queryset.filter(active=False)
        return queryset

    def __init__(self, *args: Any, viewer: User | AnonymousUser | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if viewer is None or not reads_everything(viewer):
            # A user needs the owners of the records they can see, not every user name (admins and
            # auditors among them); admins and auditors read every user anyway.
            owner = self.filters["owner"]
            owner.queryset = owner.queryset.filter(crm_records__isnull=False).distinct()
            self.form.fields["owner"].queryset = owner.queryset
        self.form.fields["q"].widget = forms.TextInput(
            attrs={"type": "search", "placeholder": _("Name or email address"), "autocomplete": "off"}
        )
