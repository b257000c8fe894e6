"""The exclusion list: addresses and @domains never tracked, org-wide or for one user."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from tracking.actions.audit import audit
from tracking.actions.errors import ActionError
from tracking.choices import AuditAction
from tracking.models import ExclusionEntry
from tracking.orgsettings import has_control_characters

PATTERN_MAX = 320
_DOMAIN = re.compile(r"^(?=.{1,253}$)[^\s@.]+(?:\.[^\s@.]+)*$")
# Never part of an address or a domain name as messages carry them: quoting, lists, routes, paths.
_REFUSED = frozenset('<>()[]\\,;:"/')


def normalize_exclusion(raw: str) -> str | None:
    """name@example.com or @example.com, lower-cased; None when it is neither (the web form asks it too)."""
    value = raw.strip().lower()
    if (
        not value
        or len(value) > PATTERN_MAX
        or any(c.isspace() or c in _REFUSED for c in value)
        or has_control_characters(value)
    ):
        return None
    local, at, domain = value.rpartition("@")
    if not at or "@" in local or not _DOMAIN.match(domain):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return value


@transaction.atomic
def do_add_exclusion(
    pattern: str, *, user: User | None = None, acting_user: User | None = None, actor_label: str = "cli"
) -> ExclusionEntry:
    """Add an address or @domain (normalize_exclusion), org-wide (user None) or for one user.

    Raises ActionError when it is neither, or if the list already holds it (the unique constraints
    decide, so a race between two requests still ends with one row).
    """
    normalized = normalize_exclusion(pattern)
    if normalized is None:
        raise ActionError(
            gettext("Enter an email address (name@example.com) or a domain starting with @ (@example.com).")
        )
    pattern = normalized
    scope = "organisation" if user is None else f"user {user.get_username()}"
    try:
        with transaction.atomic():
            entry = ExclusionEntry.objects.create(pattern=pattern, user=user)
    except IntegrityError:
        raise ActionError(
            gettext("%(pattern)s is already on the exclusion list.") % {"pattern": pattern}
        ) from None
    audit(AuditAction.EXCLUSION_ADDED, pattern, None, scope, acting_user=acting_user, actor_label=actor_label)
    return entry


@transaction.atomic
def do_delete_exclusion(
    entry: ExclusionEntry, *, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    scope = "organisation" if entry.user is None else f"user {entry.user.get_username()}"
    audit(
        AuditAction.EXCLUSION_DELETED,
        entry.pattern,
        scope,
        None,
        acting_user=acting_user,
        actor_label=actor_label,
    )
    entry.delete()
