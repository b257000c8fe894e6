"""The decision page's form: Track / Set regarding."""

from __future__ import annotations

from collections.abc import Sequence

from django import forms
from django.utils.translation import gettext_lazy as _

from tracking.models import CrmRecord


class TrackForm(forms.Form):
    """Track / Set regarding: an optional regarding record; the choices offered are a short list."""

    regarding = forms.ModelChoiceField(
        queryset=CrmRecord.objects.all(),
        required=False,
        label=_("Regarding"),
        empty_label=_("(no regarding record)"),
    )

    def __init__(self, *args: object, offered: Sequence[CrmRecord] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Validation accepts any record; the select lists only the suggestions and search hits.
        field = self.fields["regarding"]
        assert isinstance(field, forms.ModelChoiceField)
        field.widget.choices = [("", field.empty_label), *((r.pk, _record_label(r)) for r in offered)]


def _record_label(record: CrmRecord) -> str:
    label = f"{record} ({record.email1})" if record.email1 else str(record)
    return label if record.active else f"{label} — {_('inactive')}"
