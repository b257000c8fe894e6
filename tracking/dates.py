"""The range of dates SyncAdmin accepts from people (filters, "process emails received after").

Python's datetime ends at year 1 and 9999: a date at either edge, in a time zone away from UTC, cannot
even be converted to UTC (OverflowError), and nothing in mail needs such dates. Anything outside
EARLIEST–LATEST is refused where it is typed, with a form error, a 400 or one line from a command.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.core.exceptions import ValidationError

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
RANGE_TEXT = "dates must lie between 1900-01-01 and 2999-12-31"


def date_range_problem(value: date | datetime) -> str | None:
    """Why `value` is outside the accepted range, or None."""
    if isinstance(value, datetime):
        try:
            inside = EARLIEST <= (value if value.tzinfo else value.replace(tzinfo=UTC)) <= LATEST
        except OverflowError:
            inside = False
    else:
        inside = EARLIEST.date() <= value <= LATEST.date()
    return None if inside else RANGE_TEXT


def validate_date_range(value: date | datetime | None) -> None:
    """A form field validator."""
    if value is not None and (problem := date_range_problem(value)):
        raise ValidationError(problem, code="date_range")
