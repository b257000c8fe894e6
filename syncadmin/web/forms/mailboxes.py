"""Forms of the mailbox and server profile pages; clean_* converts, the actions store."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.utils.translation import gettext_lazy as _

from tracking.actions import ProfileValues, endpoint_problem
from tracking.choices import AuthMethod, ProfileKind
from tracking.dates import validate_date_range
from tracking.models import EmailServerProfile

# What <input type="datetime-local"> sends and shows; Django also parses the ISO form with seconds.
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs=attrs, format=DATETIME_LOCAL)


class StartDateForm(forms.Form):
    """A mailbox's start date, "process emails received after", in the user's time zone; empty clears it."""

    process_emails_received_after = forms.DateTimeField(
        validators=[validate_date_range],
        label=_("Process emails received after"),
        required=False,
        widget=DateTimeLocalInput(),
        help_text=_("In your time zone. Leave empty to evaluate every message the server returns."),
    )


class ResetSyncStateForm(forms.Form):
    folder = forms.ChoiceField(label=_("Folder"), required=False)
    confirm = forms.BooleanField(
        label=_("Yes, forget the sync state"),
        required=True,
        error_messages={"required": _("Tick the box to confirm.")},
    )

    def __init__(self, *args: Any, folders: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["folder"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", _("Every folder")), *folders]


def _https_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme == "https" and bool(parts.hostname)
    except ValueError:  # e.g. "https://[::1/EWS": an unclosed IPv6 bracket
        return False


class ProfileForm(forms.Form):
    """A server profile. The secret is write-only: it is never rendered, and empty keeps the stored one."""

    name = forms.CharField(label=_("Name"), max_length=100)
    kind = forms.ChoiceField(label=_("Kind"), choices=ProfileKind.choices)
    endpoint = forms.CharField(
        label=_("Endpoint"),
        max_length=500,
        required=False,
        help_text=_(
            "Exchange Server (EWS): https://mail.example.com/EWS/Exchange.asmx. Exchange Online (Graph): "
            "https://graph.microsoft.com (empty means that). IMAP: imaps://host:993 or imap://host:143. "
            "Local folder: a directory on this server."
        ),
    )
    auth_method = forms.ChoiceField(label=_("Authentication"), choices=AuthMethod.choices)
    username = forms.CharField(
        label=_("User name"),
        max_length=320,
        required=False,
        help_text=_("The service account (EWS, IMAP)."),
    )
    secret = forms.CharField(
        label=_("Password or client secret"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_secret = forms.BooleanField(label=_("Clear the stored secret"), required=False)
    tenant_id = forms.CharField(
        label=_("Tenant ID"), max_length=100, required=False, help_text=_("OAuth 2.0 only.")
    )
    client_id = forms.CharField(
        label=_("Client ID"), max_length=100, required=False, help_text=_("OAuth 2.0 only.")
    )
    authority = forms.CharField(
        label=_("Authority"),
        max_length=300,
        required=False,
        help_text=_("OAuth 2.0 only; empty means https://login.microsoftonline.com."),
    )
    ca_bundle = forms.CharField(
        label=_("CA bundle"),
        max_length=500,
        required=False,
        help_text=_("A PEM file on this server, for servers whose certificate an internal CA issued."),
    )
    use_impersonation = forms.BooleanField(label=_("Use impersonation (EWS)"), required=False)
    process_emails_received_after = forms.DateTimeField(
        validators=[validate_date_range],
        label=_("Process emails received after"),
        required=False,
        widget=DateTimeLocalInput(),
        help_text=_("In your time zone; applies to every mailbox of this profile."),
    )
    max_concurrent_connections = forms.IntegerField(
        label=_("Maximum concurrent connections"), min_value=1, max_value=300, initial=10
    )

    def __init__(self, *args: Any, profile: EmailServerProfile | None = None, **kwargs: Any) -> None:
        self.profile = profile
        if profile is not None:
            kwargs.setdefault("initial", ProfileValues.of(profile).as_dict())  # never the secret
        super().__init__(*args, **kwargs)
        secret = self.fields["secret"]
        if profile is None:
            del self.fields["clear_secret"]
            secret.help_text = _("Stored encrypted and never shown again.")
        elif profile.has_secret:
            secret.help_text = _(
                "A secret is set. Leave empty to keep it; type a new one to replace it. Changing the "
                "endpoint, authority, tenant, user name, authentication or CA bundle requires it again."
            )
        else:
            secret.help_text = _("No secret is set. Leave empty to go on without one.")

    def clean_endpoint(self) -> str:
        return str(self.cleaned_data.get("endpoint", "")).strip()

    def clean_ca_bundle(self) -> str:
        value = str(self.cleaned_data.get("ca_bundle", "")).strip()
        if value and not Path(value).is_file():
            raise forms.ValidationError(
                _("There is no file %(path)s on this server."), params={"path": value}
            )
        return value

    def clean_authority(self) -> str:
        value = str(self.cleaned_data.get("authority", "")).strip()
        if value and not _https_url(value):
            raise forms.ValidationError(_("Enter an https:// URL, or leave it empty."))
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, endpoint = data.get("kind"), data.get("endpoint", "")
        problem = endpoint_problem(kind, endpoint, required=True) if kind else None
        if problem:
            self.add_error("endpoint", problem)
        # The form is filled in on the server that will read the folder, so it can check it is there.
        elif kind == ProfileKind.LOCAL and not (endpoint and Path(endpoint).is_dir()):
            self.add_error("endpoint", _("Enter a directory that exists on this server."))
        if data.get("secret") and data.get("clear_secret"):
            self.add_error("clear_secret", _("Type a new secret or clear it, not both."))
        return data
