"""The exclusion list's form: one address or @domain, org-wide or personal."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tracking.actions.exclusions import PATTERN_MAX, normalize_exclusion
from tracking.models import ExclusionEntry

ORG, PERSONAL = "org", "personal"
# The rule lives with the action, so the form and every other caller refuse alike.
normalize_pattern = normalize_exclusion


class ExclusionForm(forms.Form):
    scope = forms.ChoiceField(choices=[(ORG, ORG), (PERSONAL, PERSONAL)], widget=forms.HiddenInput)
    pattern = forms.CharField(
        label=gettext_lazy("Email address or @domain"),
        max_length=PATTERN_MAX,
        help_text=gettext_lazy(
            "For example name@example.com, or @example.com for every address of a domain."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_pattern(self) -> str:
        pattern = normalize_pattern(self.cleaned_data["pattern"])
        if pattern is None:
            raise forms.ValidationError(
                _("Enter an email address (name@example.com) or a domain starting with @ (@example.com).")
            )
        return pattern

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        pattern, scope = data.get("pattern"), data.get("scope")
        if pattern and scope:
            owner = None if scope == ORG else self.user
            if ExclusionEntry.objects.filter(pattern__iexact=pattern, user=owner).exists():
                message = (
                    _("%(pattern)s is already on the organisation's exclusion list.")
                    if owner is None
                    else _("%(pattern)s is already on your exclusion list.")
                )
                self.add_error("pattern", message % {"pattern": pattern})
        return data
