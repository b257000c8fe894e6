"""System checks of SyncAdmin's own settings (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from tracking.crypto import key_problem


@register(Tags.security, deploy=True)
def encryption_key_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A production key must be set and valid; DEBUG's derived development key does not count."""
    problem = key_problem(settings.SYNCADMIN_ENCRYPTION_KEY)
    if problem is None:
        return []
    return [Error(problem, hint="Server-profile secrets cannot be stored or read.", id="syncadmin.E001")]
