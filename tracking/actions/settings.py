"""Organisation settings; their names, ranges and defaults live in tracking.orgsettings."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext

from tracking.actions.audit import audit
from tracking.actions.errors import ActionError
from tracking.choices import AuditAction
from tracking.models import OrgSettings
from tracking.orgsettings import SettingError, SettingValue, spec_for


@transaction.atomic
def check_set_org_setting(
    name: str, raw_value: str, *, acting_user: User | None = None, actor_label: str = "cli"
) -> tuple[SettingValue, SettingValue]:
    """Validate and store one org setting; returns (old, new). Raises ActionError, changing nothing."""
    try:
        spec = spec_for(name)
        value = spec.parse(raw_value)
    except SettingError as exc:
        raise ActionError(str(exc)) from None
    if "\x00" in raw_value:  # PostgreSQL cannot store it; SQLite would, and the two must agree
        raise ActionError(
            gettext("%(setting)s: a value must not contain NUL characters") % {"setting": spec.name}
        )
    org = OrgSettings.objects.select_for_update().get_or_create(pk=1)[0]
    old: SettingValue = getattr(org, spec.field)
    if old != value:
        setattr(org, spec.field, value)
        org.save(update_fields=[spec.field])
        audit(
            AuditAction.ORGSETTING_CHANGED,
            spec.name,
            spec.format(old),
            spec.format(value),
            acting_user=acting_user,
            actor_label=actor_label,
        )
    return old, value
