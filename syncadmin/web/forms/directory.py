"""The CRM directory: its list filters and the CSV import form."""

from __future__ import annotations

from typing import Any

import django_filters  # type: ignore[import-untyped]
from django import forms
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from tracking.choices import RecordKind
from tracking.models import CrmRecord

IMPORT_MAX_BYTES = 5 * 1024 * 1024
SAMPLE_HEADER = "name,email,email2,email3,owner,kind,active\r\n"


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.form.fields["q"].widget = forms.TextInput(
            attrs={"type": "search", "placeholder": _("Name or email address"), "autocomplete": "off"}
        )


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        label=_("Record type"),
        choices=RecordKind.choices,
        help_text=_("Every row of the file becomes a record of this type."),
    )
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_("UTF-8 text with a header line; at most 5 MB."),
        error_messages={"required": _("Choose a CSV file to import."), "empty": _("The file is empty.")},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def clean_file(self) -> str:
        """The file's text; the import reads text, so decoding errors are reported here."""
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise forms.ValidationError(_("The file is larger than 5 MB; split it into smaller files."))
        data = upload.read()
        try:
            text: str = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                _("The file is not UTF-8 text; save it as CSV UTF-8 and try again.")
            ) from None
        if "\x00" in text:
            raise forms.ValidationError(_("The file is not a CSV text file."))
        return text
