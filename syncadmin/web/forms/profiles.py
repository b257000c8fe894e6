"""The server profile form by kind: only the fields a kind of server uses, and, at save, everything
Test & Enable would otherwise find missing (tracking-rules §2, §9)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from syncadmin.web.forms.mailboxes import ProfileForm
from tracking.choices import AuthMethod, ProfileKind
from tracking.models import EmailServerProfile

COMMON = ("name", "kind")
SECRET = ("secret", "clear_secret")
# Per kind, the fields it uses in the order the form shows them (besides name and kind).
SERVER_FIELDS: dict[str, tuple[str, ...]] = {
    ProfileKind.EXCHANGE_GRAPH: ("endpoint", "ca_bundle"),
    ProfileKind.EXCHANGE_EWS: ("endpoint", "ca_bundle"),
    ProfileKind.IMAP: ("endpoint", "ca_bundle"),
    ProfileKind.LOCAL: ("endpoint",),
}
SIGN_IN_FIELDS: dict[str, tuple[str, ...]] = {
    ProfileKind.EXCHANGE_GRAPH: ("auth_method", "tenant_id", "client_id", *SECRET, "authority"),
    ProfileKind.EXCHANGE_EWS: (
        "auth_method",
        "username",
        *SECRET,
        "tenant_id",
        "client_id",
        "authority",
        "use_impersonation",
    ),
    ProfileKind.IMAP: ("auth_method", "username", *SECRET),
    ProfileKind.LOCAL: (),
}
MAIL_FIELDS = ("process_emails_received_after", "max_concurrent_connections", "minimum_poll_interval_minutes")
# The sign-in methods each kind can use, the first one the default.
AUTH_METHODS: dict[str, tuple[str, ...]] = {
    ProfileKind.EXCHANGE_GRAPH: (AuthMethod.OAUTH2_CLIENT_CREDENTIALS,),
    ProfileKind.EXCHANGE_EWS: (AuthMethod.BASIC, AuthMethod.NTLM, AuthMethod.OAUTH2_CLIENT_CREDENTIALS),
    ProfileKind.IMAP: (AuthMethod.PASSWORD, AuthMethod.BASIC),
    ProfileKind.LOCAL: (AuthMethod.NONE,),
}
DEFAULT_KIND = ProfileKind.EXCHANGE_GRAPH


def kind_of(value: object, fallback: str = DEFAULT_KIND) -> str:
    return str(value) if value in ProfileKind.values else fallback


class KindProfileForm(ProfileForm):
    """ProfileForm with only the chosen kind's fields and the checks Test & Enable would make."""

    minimum_poll_interval_minutes = forms.IntegerField(
        label=_("Minimum poll interval (minutes)"),
        min_value=1,
        max_value=1440,
        required=False,
        help_text=_(
            "Scan this profile's mailboxes at most this often; empty: the organisation's "
            "MailboxPollIntervalMinutes."
        ),
    )

    def __init__(
        self, *args: Any, kind: str | None = None, profile: EmailServerProfile | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, profile=profile, **kwargs)
        data = args[0] if args else kwargs.get("data")
        self.profile_kind = kind_of(
            kind or (data.get("kind") if data else None), profile.kind if profile else DEFAULT_KIND
        )
        keep = {*COMMON, *SERVER_FIELDS[self.profile_kind], *SIGN_IN_FIELDS[self.profile_kind], *MAIL_FIELDS}
        for name in list(self.fields):
            if name not in keep:
                del self.fields[name]
        self.fields["kind"].initial = self.profile_kind
        if "auth_method" in self.fields:
            methods = AUTH_METHODS[self.profile_kind]
            field = self.fields["auth_method"]
            assert isinstance(field, forms.ChoiceField)
            field.choices = [(m, AuthMethod(m).label) for m in methods]
            if profile is None or profile.kind != self.profile_kind or profile.auth_method not in methods:
                field.initial = methods[0]
                self.initial["auth_method"] = methods[0]
        if self.profile_kind == ProfileKind.EXCHANGE_GRAPH:
            self.fields["endpoint"].help_text = _("Empty means https://graph.microsoft.com.")

    def fieldsets(self) -> list[tuple[StrOrPromise, list[forms.BoundField]]]:
        """The kind's fields, grouped as the page shows them (name and kind come before)."""
        groups = [
            (_("Server"), SERVER_FIELDS[self.profile_kind]),
            (_("Sign-in"), SIGN_IN_FIELDS[self.profile_kind]),
            (_("Mail"), MAIL_FIELDS),
        ]
        return [
            (legend, [self[name] for name in names if name in self.fields])
            for legend, names in groups
            if any(name in self.fields for name in names)
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        if kind != self.profile_kind:
            return data  # a kind that the form was not built for: the kind field says why
        method = data.get("auth_method") or AUTH_METHODS[kind][0]
        data["auth_method"] = method
        has_secret = bool(data.get("secret")) or (
            self.profile is not None and self.profile.has_secret and not data.get("clear_secret")
        )
        needed: list[str] = []
        if method == AuthMethod.OAUTH2_CLIENT_CREDENTIALS:
            needed = ["tenant_id", "client_id"]
        elif method in (AuthMethod.BASIC, AuthMethod.NTLM) and kind == ProfileKind.EXCHANGE_EWS:
            needed = ["username"]
        for name in needed:
            if not str(data.get(name) or "").strip() and name not in self.errors:
                self.add_error(
                    name, _("Test & Enable needs this for %(method)s.") % {"method": AuthMethod(method).label}
                )
        if method != AuthMethod.NONE and not has_secret and "secret" not in self.errors:
            self.add_error(
                "secret",
                _("Test & Enable needs a secret for %(method)s.") % {"method": AuthMethod(method).label},
            )
        return data
