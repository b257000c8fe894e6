"""Dates, numbers, durations and relative times on the pages (issue 18): one format per language, in the
reader's time zone, which every page names once. Django test client (nothing here runs in the browser)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from syncadmin.web.templatetags.syncadmin_format import ago, number
from tests.conftest import make_decisions, user_of
from tracking.actions import do_set_personal_options, do_start_scan_run
from tracking.choices import ScanStatus
from tracking.models import Mailbox, ScanRun

WHEN = datetime(2026, 12, 3, 19, 54, tzinfo=UTC)  # 20:54 in Berlin


def test_dates_have_one_format_per_language_in_the_readers_zone(client: Client, alice: Mailbox) -> None:
    make_decisions(alice, 1, decided_at=WHEN, received_at=WHEN - timedelta(days=1))
    user = user_of(alice)
    client.force_login(user)
    utc = client.get(reverse("web-decisions")).content.decode()
    assert 'id="time-zone-note">Times in UTC</p>' in utc  # no "UTC (UTC)"
    do_set_personal_options(user, time_zone="Europe/Berlin")
    body = client.get(reverse("web-decisions")).content.decode()
    assert "3 Dec 2026, 20:54" in body and "2 Dec 2026, 20:54" in body
    assert body.count('id="time-zone-note"') == 1 and "Times in Europe/Berlin (CET)" in body
    do_set_personal_options(user, language="de")
    body = client.get(reverse("web-decisions")).content.decode()
    assert "03.12.2026 20:54" in body and "02.12.2026 20:54" in body
    assert "Zeiten in Europe/Berlin (CET)" in body


def test_scan_durations_and_counts_are_localised(client: Client, alice: Mailbox) -> None:
    run = do_start_scan_run(alice, "inbox", now=WHEN)
    ScanRun.objects.filter(pk=run.pk).update(
        status=ScanStatus.SUCCEEDED, finished_at=WHEN + timedelta(milliseconds=100), tracked=12345
    )
    user = user_of(alice)
    client.force_login(user)
    body = client.get(reverse("web-mailbox", args=[alice.pk])).content.decode()
    assert "0.1 s" in body and "12,345" in body
    do_set_personal_options(user, language="de")
    body = client.get(reverse("web-mailbox", args=[alice.pk])).content.decode()
    assert "0,1 s" in body and "12.345" in body


def test_relative_times_say_just_now_under_a_minute_and_read_naturally_in_german() -> None:
    now = timezone.now()
    with translation.override("de"):
        assert ago(now - timedelta(seconds=20)) == "gerade eben"
        assert ago(now - timedelta(minutes=3, seconds=5)).replace("\xa0", " ") == "vor 3 Minuten"
        assert ago(now + timedelta(minutes=5, seconds=5)).startswith("in 5")
        assert "0" not in ago(now - timedelta(seconds=59))
        assert number(1234567) == "1.234.567"
    with translation.override("en"):
        assert ago(now - timedelta(seconds=20)) == "just now"
        assert ago(now - timedelta(minutes=3, seconds=5)).replace("\xa0", " ") == "3 minutes ago"
        assert number(1234567) == "1,234,567"


def test_the_time_zone_picker_groups_regions_with_offsets_and_no_duplicates() -> None:
    from syncadmin.web.forms.personal import GeneralForm, time_zone_choices

    with translation.override("en"):
        choices = time_zone_choices()
    assert choices[0] == ("UTC", "UTC")
    groups = dict(choices[1:])
    assert "Europe" in groups and "US" not in groups and "Etc" not in groups
    values = [v for zones in groups.values() for v, _label in zones]
    assert "localtime" not in values and "US/Eastern" not in values and "Europe/Berlin" in values
    for zones in groups.values():
        labels = [label for _v, label in zones]
        assert len(labels) == len(set(labels))
        assert all(re.search(r"\(UTC[+\u2212]\d\d:\d\d\)$", label) for label in labels)
    berlin = dict(groups["Europe"])["Europe/Berlin"]
    assert berlin in ("Berlin (UTC+01:00)", "Berlin (UTC+02:00)")
    assert dict(groups["America"])["America/Argentina/Buenos_Aires"].startswith("Argentina – Buenos Aires")
    # "localtime" is the server's, not a place: refused; a legacy link stored before stays acceptable
    data = {"time_zone": "localtime", "rows_per_page": "50", "language": "en"}
    assert not GeneralForm(data).is_valid()
    legacy = {**data, "time_zone": "US/Eastern"}
    assert not GeneralForm(legacy).is_valid()
    assert GeneralForm(legacy, initial={"time_zone": "US/Eastern"}).is_valid()
