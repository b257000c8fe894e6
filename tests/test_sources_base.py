"""The helpers every HTTP source shares (tracking/sources/base.py)."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tracking.sources.base import retry_after_seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("  ", None), ("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None)],
)
def test_retry_after_seconds_reads_numbers_and_refuses_garbage(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_seconds_reads_an_http_date():
    later = datetime.now(UTC) + timedelta(hours=1)
    seconds = retry_after_seconds(format_datetime(later, usegmt=True))
    assert seconds is not None
    assert 3500 < seconds <= 3600


def test_retry_after_seconds_of_a_past_date_is_zero():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
