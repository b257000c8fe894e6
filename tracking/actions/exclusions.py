"""The exclusion list: addresses and @domains never tracked, org-wide or for one user."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from tracking.actions.audit import audit
from tracking.actions.errors import ActionError
from tracking.choices import AuditAction
from tracking.models import ExclusionEntry


@transaction.atomic
def do_add_exclusion(
    pattern: str, *, user: User | None = None, acting_user: User | None = None, actor_label: str = "cli"
) -> ExclusionEntry:
    """Add a validated, lower-case address or @domain, org-wide (user None) or for one user.

    Raises ActionError if the list already holds it (the unique constraints decide, so a race
    between two requests still ends with one row).
    """
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
