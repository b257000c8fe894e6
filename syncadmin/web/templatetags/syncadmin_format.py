"""How the pages write numbers and relative times, in the user's language and time zone (issue 18).

Dates and times themselves go through Django's `date` filter with SHORT_DATETIME_FORMAT, which
syncadmin/formats sets per language; these filters cover what that does not.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from syncadmin.web.alert_words import alert_text
from syncadmin.web.trace_words import ShownStep, shown_trace

register = template.Library()

# Under a minute a count of seconds is noise ("0 minutes ago" is what a user saw before).
JUST_NOW_SECONDS = 60


@register.filter
def number(value: int | float | None) -> str:
    """1,234 in English, 1.234 in German."""
    if value is None:
        return ""
    return formats.number_format(value, force_grouping=True)


@register.filter
def ago(value: datetime | None) -> str:
    """A time relative to now: "3 minutes ago" / "vor 3 Minuten", "in 5 minutes", "just now"."""
    if value is None:
        return ""
    if abs((timezone.now() - value).total_seconds()) < JUST_NOW_SECONDS:
        return _("just now")
    return str(naturaltime(value))


@register.filter
def translated_trace(steps: list[object] | None) -> list[ShownStep]:
    """A stored trace in the reader's language (syncadmin/web/trace_words.py)."""
    return shown_trace(steps or [])


@register.filter
def alert_words(message: str) -> str:
    """A stored alert in the reader's language (syncadmin/web/alert_words.py)."""
    return alert_text(str(message))
