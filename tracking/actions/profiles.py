"""Email server profiles: how SyncAdmin reaches a mail server.

`ProfileValues` is the one list of a profile's settings that the command, the web form, the admin and
the audit share; `endpoint_problem` is the one rule for what each kind of profile may connect to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from urllib.parse import urlsplit

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext, pgettext_lazy
from django.views.decorators.debug import sensitive_variables

from tracking.actions.audit import audit, utc_text
from tracking.actions.errors import ActionError, check_lengths
from tracking.choices import AuditAction, AuthMethod, ProfileKind
from tracking.models import EmailServerProfile

MAX_CONNECTIONS = 300


@dataclass(frozen=True)
class ProfileValues:
    """A server profile's settings, in the order the audit lists their changes; the secret is apart
    because it is write-only."""

    name: str
    kind: str
    endpoint: str = ""
    auth_method: str = AuthMethod.NONE
    username: str = ""
    tenant_id: str = ""
    client_id: str = ""
    authority: str = ""
    ca_bundle: str = ""
    use_impersonation: bool = False
    process_emails_received_after: datetime | None = None
    max_concurrent_connections: int = 10

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, profile: EmailServerProfile) -> ProfileValues:
        """The values a stored profile has."""
        return cls(**{name: getattr(profile, name) for name in cls.names()})

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> ProfileValues:
        """The values among a form's cleaned data (which holds the secret fields as well)."""
        return cls(**{name: data[name] for name in cls.names() if name in data})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _is_url(endpoint: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(endpoint)
        return parts.scheme.lower() in schemes and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # an unclosed IPv6 bracket ("https://[::1/EWS"), a port that is no number
        return False


def endpoint_problem(kind: str, endpoint: str, *, required: bool = False) -> str | None:
    """Why a profile of this kind cannot connect to this endpoint, or None.

    An empty endpoint passes unless `required`: the command may add a profile whose endpoint comes
    later (Test & Enable says it is missing), while the web form makes a profile ready to test.
    Graph's endpoint is never required (empty means graph.microsoft.com). Whether a local folder's
    directory exists is checked where the profile is entered or tested, not here.
    """
    if not endpoint and (not required or kind == ProfileKind.EXCHANGE_GRAPH):
        return None
    if kind == ProfileKind.EXCHANGE_EWS and not _is_url(endpoint, ("https",)):
        return gettext("Enter the EWS URL as the endpoint, e.g. https://mail.example.com/EWS/Exchange.asmx.")
    if kind == ProfileKind.EXCHANGE_GRAPH and not _is_url(endpoint, ("https",)):
        return gettext("Enter an https:// URL as the endpoint, or leave it empty for Microsoft Graph.")
    if kind == ProfileKind.IMAP and not _is_url(endpoint, ("imaps", "imap")):
        return gettext("Enter imaps://host:993 or imap://host:143 as the endpoint.")
    return None


# Where a profile's secret is sent and for whom: a change to any of these would send the stored secret to
# another host or account, so the secret must be entered again with it (or cleared).
SECRET_BOUND_FIELDS = ("endpoint", "authority", "tenant_id", "username", "auth_method", "ca_bundle")
_SECRET_BOUND_WORDS = {
    "endpoint": pgettext_lazy("secret-bound profile field", "endpoint"),
    "authority": pgettext_lazy("secret-bound profile field", "authority"),
    "tenant_id": pgettext_lazy("secret-bound profile field", "tenant"),
    "username": pgettext_lazy("secret-bound profile field", "user name"),
    "auth_method": pgettext_lazy("secret-bound profile field", "authentication"),
    "ca_bundle": pgettext_lazy("secret-bound profile field", "CA bundle"),
}


class SecretRequired(ActionError):
    """A change that would send the stored secret elsewhere, asked for without the secret."""


def secret_bound_changes(profile: EmailServerProfile, values: Mapping[str, object]) -> list[str]:
    """The SECRET_BOUND_FIELDS that `values` changes while the profile keeps a secret."""
    if not profile.has_secret:
        return []
    return [f for f in SECRET_BOUND_FIELDS if f in values and values[f] != getattr(profile, f)]


def secret_required_message(fields: Sequence[str]) -> str:
    return gettext(
        "changing the %(fields)s of a server profile sends its secret to another place: enter the "
        "password or client secret again, or clear it"
    ) % {"fields": ", ".join(str(_SECRET_BOUND_WORDS[f]) for f in fields)}


def _check_profile_values(values: ProfileValues) -> None:
    """What every server profile must satisfy, new or edited; raises ActionError."""
    if values.kind not in ProfileKind.values:
        raise ActionError(
            gettext("unknown profile kind %(kind)s; use one of %(kinds)s")
            % {"kind": repr(values.kind), "kinds": ", ".join(ProfileKind.values)}
        )
    if values.auth_method not in AuthMethod.values:
        raise ActionError(
            gettext("unknown auth method %(method)s; use one of %(methods)s")
            % {"method": repr(values.auth_method), "methods": ", ".join(AuthMethod.values)}
        )
    if not 1 <= values.max_concurrent_connections <= MAX_CONNECTIONS:
        raise ActionError(
            gettext("max concurrent connections must be from 1 to %(max)d") % {"max": MAX_CONNECTIONS}
        )
    if not values.name.strip():
        raise ActionError(gettext("a server profile needs a name"))
    check_lengths(
        EmailServerProfile,
        {name: value for name, value in values.as_dict().items() if isinstance(value, str)},
    )
    problem = endpoint_problem(values.kind, values.endpoint.strip())
    if problem:
        raise ActionError(problem)
    authority = values.authority.strip()
    if authority and not _is_url(authority, ("https",)):
        # The identity platform's address (national clouds), as the web form requires it.
        raise ActionError(
            gettext("the authority %(url)s is not a https://host URL") % {"url": repr(authority)}
        )


def _name_taken(name: str) -> ActionError:
    return ActionError(gettext("a server profile named %(name)s already exists") % {"name": repr(name)})


@transaction.atomic
@sensitive_variables("secret")  # innermost: it hides the variables of the frame right below it
def check_add_profile(
    values: ProfileValues,
    *,
    secret: str = "",
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> EmailServerProfile:
    _check_profile_values(values)
    if EmailServerProfile.objects.filter(name=values.name).exists():
        raise _name_taken(values.name)
    profile = EmailServerProfile(**values.as_dict())
    profile.set_secret(secret)
    profile.save()
    audit(
        AuditAction.PROFILE_ADDED,
        values.name,
        None,
        values.kind,
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return profile


@transaction.atomic
@sensitive_variables("secret")  # innermost: it hides the variables of the frame right below it
def check_update_profile(
    profile: EmailServerProfile,
    values: ProfileValues,
    *,
    secret: str | None = None,
    clear_secret: bool = False,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> list[str]:
    """Change a server profile; returns the names of the fields that changed ("secret" among them).

    The secret is write-only: None (or "") keeps it, a new value replaces it, clear_secret removes
    it. A change of a SECRET_BOUND_FIELDS field needs the secret again (or clear_secret): without it,
    SecretRequired. Each changed field is audited with its old and new value, except the secret, whose
    audit row only says that it changed (or was re-entered with which fields). Raises ActionError,
    changing nothing.
    """
    if secret and clear_secret:
        raise ActionError(gettext("enter a new secret or clear it, not both"))
    _check_profile_values(values)
    profile = EmailServerProfile.objects.select_for_update().get(pk=profile.pk)
    if values.name != profile.name and EmailServerProfile.objects.filter(name=values.name).exists():
        raise _name_taken(values.name)
    if values.kind != profile.kind and profile.mailboxes.exists():
        # A mailbox's sync state is a token of one kind of server; it means nothing to another.
        raise ActionError(gettext("the kind of a server profile cannot change while mailboxes use it"))
    bound = secret_bound_changes(profile, values.as_dict())
    if bound and not secret and not clear_secret:
        raise SecretRequired(secret_required_message(bound))
    old_name = profile.name
    changed = []
    for attr, new in values.as_dict().items():
        old = getattr(profile, attr)
        if old == new:
            continue
        audit(
            AuditAction.PROFILE_CHANGED,
            f"{old_name}.{attr}",
            utc_text(old) if isinstance(old, datetime) else old,
            utc_text(new) if isinstance(new, datetime) else new,
            acting_user=acting_user,
            actor_label=actor_label,
        )
        setattr(profile, attr, new)
        changed.append(attr)
    if secret or (clear_secret and profile.has_secret):
        had_secret = profile.has_secret
        profile.set_secret("" if clear_secret else (secret or ""))
        audit(
            AuditAction.PROFILE_CHANGED,
            f"{old_name}.secret",
            "set" if had_secret else "not set",
            "secret cleared"
            if clear_secret
            else f"secret re-entered ({', '.join(bound)} changed)"
            if bound
            else "secret changed",
            acting_user=acting_user,
            actor_label=actor_label,
        )
        changed.append("secret_encrypted")
    if changed:
        profile.save(update_fields=changed)
    return ["secret" if f == "secret_encrypted" else f for f in changed]
