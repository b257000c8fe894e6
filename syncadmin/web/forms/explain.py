"""The forms of Explain and What-if."""

from __future__ import annotations

import dataclasses

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.template.defaultfilters import filesizeformat
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from tracking.choices import Folder, TrackOption
from tracking.decisions import OrgRules
from tracking.models import Mailbox
from tracking.orgsettings import ORG_SETTINGS, SettingError, SettingSpec, SettingValue
from tracking.whatif import Change

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
WHAT_IF_DEFAULT = 50
WHAT_IF_MAX = 500

# Settings the engine never reads while deciding (scheduling, approval, the format of new tokens):
# a what-if on them would always answer "nothing changes", so they are not offered.
_NOT_DECIDING = frozenset(
    {
        "poll_interval_minutes",
        "transient_retry_limit",
        "transient_retry_minutes",
        "require_approval_user",
        "require_approval_queue",
        "tracking_token_id_base",
        "tracking_token_id_digits",
        "tracking_token_counter_digits",
    }
)
_RULE_FIELDS = frozenset(f.name for f in dataclasses.fields(OrgRules))
DECIDING_SETTINGS: tuple[SettingSpec, ...] = tuple(
    s for s in ORG_SETTINGS if s.field in _RULE_FIELDS and s.field not in _NOT_DECIDING
)
_DECIDING_BY_NAME = {s.name: s for s in DECIDING_SETTINGS}


class _MailboxForm(forms.Form):
    mailbox = forms.ModelChoiceField(queryset=Mailbox.objects.none(), label=_("Mailbox"))

    def __init__(self, *args: object, mailboxes: QuerySet[Mailbox], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["mailbox"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = mailboxes
        if mailboxes.count() == 1:
            field.initial = mailboxes.first()


class ExplainForm(_MailboxForm):
    folder = forms.ChoiceField(choices=Folder.choices, initial=Folder.INBOX, label=_("Folder"))
    raw = forms.CharField(
        required=False,
        strip=False,
        label=_("Message source"),
        help_text=_("Paste the whole message: header fields, a blank line, then the body."),
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
    )
    eml = forms.FileField(
        required=False,
        label=_("…or upload an .eml file"),
        widget=forms.ClearableFileInput(attrs={"accept": ".eml,message/rfc822"}),
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        raw: str = data.get("raw") or ""
        upload = data.get("eml")
        if upload and raw.strip():
            raise ValidationError(_("Paste a message or upload a file, not both."))
        limit = filesizeformat(MAX_MESSAGE_BYTES)
        if upload:
            if upload.size > MAX_MESSAGE_BYTES:
                raise ValidationError(
                    _("The file is %(size)s; messages up to %(limit)s can be explained.")
                    % {"size": filesizeformat(upload.size), "limit": limit}
                )
            content = upload.read()
        elif raw.strip():
            content = raw.encode("utf-8", errors="replace")
            if len(content) > MAX_MESSAGE_BYTES:
                raise ValidationError(_("The pasted message is larger than %(limit)s.") % {"limit": limit})
        else:
            raise ValidationError(_("Paste a message's source or choose an .eml file."))
        if not content.strip():
            raise ValidationError(_("The message is empty."))
        data["content"] = content
        return data


class WhatIfForm(_MailboxForm):
    TRACK = "track"
    SETTING = "setting"

    n = forms.IntegerField(
        min_value=1,
        max_value=WHAT_IF_MAX,
        initial=WHAT_IF_DEFAULT,
        label=_("Last decisions"),
        help_text=format_lazy(
            _("How many of the mailbox's most recent decisions to replay (at most {max})."), max=WHAT_IF_MAX
        ),
    )
    change = forms.ChoiceField(
        choices=[(TRACK, _("The mailbox owner's Track option")), (SETTING, _("An org setting"))],
        initial=TRACK,
        widget=forms.RadioSelect,
        label=_("Change"),
    )
    track = forms.TypedChoiceField(
        choices=[("", "—"), *TrackOption.choices],
        coerce=int,
        empty_value=None,
        required=False,
        label=_("Track option"),
    )
    setting = forms.ChoiceField(required=False, label=_("Org setting"))
    value = forms.CharField(required=False, strip=False, max_length=500, label=_("New value"))

    def __init__(self, *args: object, rules: OrgRules, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        setting = self.fields["setting"]
        assert isinstance(setting, forms.ChoiceField)
        setting.choices = [
            ("", "—"),
            *(
                (s.name, _("%(name)s (now %(value)s)") % {"name": s.name, "value": _current(s, rules)})
                for s in DECIDING_SETTINGS
            ),
        ]

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("change") == self.TRACK:
            if data.get("track") is None:
                self.add_error("track", _("Choose the Track option to try."))
        elif data.get("change") == self.SETTING:
            spec = _DECIDING_BY_NAME.get(str(data.get("setting") or ""))
            if spec is None:
                self.add_error("setting", _("Choose the org setting to try."))
            else:
                try:
                    data["setting_value"] = spec.parse(str(data.get("value") or ""))
                except SettingError as exc:
                    self.add_error("value", str(exc))
                data["spec"] = spec
        return data

    def tried_change(self) -> Change:
        """What the valid form asks to try."""
        data = self.cleaned_data
        if data["change"] == self.TRACK:
            return Change(track=data["track"])
        return Change(setting=data["spec"], value=data["setting_value"])


def _current(spec: SettingSpec, rules: OrgRules) -> str:
    value: SettingValue = getattr(rules, spec.field)
    return spec.format(value)
