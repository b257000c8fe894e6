"""The CRM directory's CSV import form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from tracking.choices import RecordKind

IMPORT_MAX_BYTES = 5 * 1024 * 1024
SAMPLE_HEADER = "name,email,email2,email3,owner,kind,active\r\n"


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
        self.file_name = ""

    def clean_file(self) -> str:
        """The file's text; the import reads text, so decoding errors are reported here."""
        upload = self.cleaned_data["file"]
        self.file_name = str(upload.name or "")
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
