"""The form of a reprocessing round (tracking-rules §3.6): from when, which folders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from syncadmin.web.forms.mailboxes import DateTimeLocalInput
from tracking.dates import validate_date_range


class ReprocessForm(forms.Form):
    since = forms.DateTimeField(
        label=_("Reprocess mail received after"),
        validators=[validate_date_range],
        widget=DateTimeLocalInput(),
        help_text=_("In your time zone."),
    )
    folders = forms.MultipleChoiceField(
        label=_("Folders"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every folder the mailbox's scans read."),
    )

    def __init__(self, *args: Any, folders: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["folders"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(f, f) for f in folders]
