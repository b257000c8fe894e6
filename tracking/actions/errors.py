"""The one error an action raises, and the checks that several areas share."""

from __future__ import annotations

from django.db.models import Model
from django.utils.translation import gettext


class ActionError(Exception):
    """A request that cannot be carried out; the message says why, in words for the requester."""


def too_long(model: type[Model], field: str, value: str, *, label: str | None = None) -> str | None:
    """Why a value cannot be stored in model.field, or None (SQLite would store it anyway)."""
    limit = getattr(model._meta.get_field(field), "max_length", None)
    if limit is not None and len(value) > limit:
        return gettext("%(field)s is longer than %(max)d characters") % {
            "field": label or field.replace("_", " "),
            "max": limit,
        }
    return None


def check_lengths(model: type[Model], values: dict[str, str]) -> None:
    for name, value in values.items():
        problem = too_long(model, name, value)
        if problem:
            raise ActionError(problem)
