"""Mailbox alerts in the reader's language (issue 18).

Alerts are stored in English words (the same text for the alert mail, the CLI and every reader); the
pages translate the sentences SyncAdmin itself writes (tracking/actions/mailboxes.py, schedule.py) on
display. What a mail server said inside them stays as it was said; an alert no pattern knows is shown
as stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from tracking.choices import Folder

FOLDER_WORDS = {value: label for value, label in Folder.choices}


def _folders(text: str) -> str:
    return _(" and ").join(str(FOLDER_WORDS.get(f, f)) for f in text.split(" and "))


def _test_detail(text: str) -> str:
    if text == "the mailbox's email address is not approved; an admin must approve it first":
        return _("the mailbox's email address is not approved; an admin must approve it first")
    if match := re.fullmatch(r"connected; (?P<folders>.+) can be read", text):
        return _("connected; %(folders)s can be read") % {"folders": _folders(match["folders"])}
    return text


def _when(text: str) -> str:
    """A "YYYY-MM-DD HH:MM" UTC time of an alert, in the reader's time zone and format."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")


def _why(text: str) -> str:
    if text == "a permanent error":
        return _("a permanent error")
    retries = re.fullmatch(r"(\d+) retries", text)
    return _("%(n)s retries") % {"n": retries[1]} if retries else text


RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(r"Test & Enable succeeded: (?P<detail>.*)", re.S),
        lambda m: _("Test & Enable succeeded: %(detail)s") % {"detail": _test_detail(m["detail"])},
    ),
    (
        re.compile(r"Test & Enable failed: (?P<detail>.*)", re.S),
        lambda m: _("Test & Enable failed: %(detail)s") % {"detail": _test_detail(m["detail"])},
    ),
    (
        re.compile(r"Mailbox disabled by (?P<who>.+)\. Run Test & Enable to scan it again\.", re.S),
        lambda m: _("Mailbox disabled by %(who)s. Run Test & Enable to scan it again.") % {"who": m["who"]},
    ),
    (
        re.compile(
            r"Mailbox disabled after (?P<why>a permanent error|\d+ retries): (?P<error>.*)\. "
            r"Fix the cause, then run Test & Enable\.",
            re.S,
        ),
        lambda m: (
            _("Mailbox disabled after %(why)s: %(error)s. Fix the cause, then run Test & Enable.")
            % {"why": _why(m["why"]), "error": m["error"]}
        ),
    ),
    (
        re.compile(
            r"Scan failed \(retry (?P<n>\d+) of (?P<of>\d+)\): (?P<error>.*)\. "
            r"Next try at (?P<when>\d{4}-\d\d-\d\d \d\d:\d\d) UTC\.",
            re.S,
        ),
        lambda m: (
            _("Scan failed (retry %(n)s of %(of)s): %(error)s. Next try at %(when)s.")
            % {"n": m["n"], "of": m["of"], "error": m["error"], "when": _when(m["when"])}
        ),
    ),
)


def alert_text(message: str) -> str:
    for pattern, words in RULES:
        match = pattern.fullmatch(message)
        if match:
            return words(match)
    return message
