"""The dashboard: mailbox health, scans in progress (htmx), 30 days of outcomes, alerts, the queue."""

from __future__ import annotations

import html
import re
import zoneinfo
from datetime import date, datetime, time, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from syncadmin.web.views.dashboard import build_chart, daily_outcomes, nice_step
from tests.conftest import login
from tracking.actions import check_add_mailbox, do_record_test_result, do_start_scan_run
from tracking.choices import AlertLevel, MailboxStatus, Outcome, Reason
from tracking.jobqueues import rq_queues
from tracking.models import Alert, Decision, EmailServerProfile, Mailbox, PersonalOptions, ScanRun

DASHBOARD = reverse("web-dashboard")
SCANS = reverse("web-dashboard-scans")
REDIS_DOWN = rq_queues("redis://127.0.0.1:1/0", 60)
HTMX = {"HX-Request": "true"}
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def text(r) -> str:
    return html.unescape(r.content.decode())


def decide(mailbox: Mailbox, when: datetime, outcome: str, n: int = 1) -> None:
    reason = {
        Outcome.TRACKED: Reason.ACCEPTED_ALL,
        Outcome.ALREADY_TRACKED: Reason.DUPLICATE_MESSAGE_ID,
        Outcome.NOT_TRACKED: Reason.NO_CORRELATION,
        Outcome.FAILED: Reason.UNPARSEABLE,
    }[Outcome(outcome)]
    start = Decision.objects.count()
    Decision.objects.bulk_create(
        Decision(
            mailbox=mailbox,
            folder="inbox",
            message_id=f"<m{start + i}@example.com>",
            direction="incoming",
            outcome=outcome,
            reason=reason,
            decided_at=when,
        )
        for i in range(n)
    )


# --- who may see it ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [DASHBOARD, SCANS])
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, db: None, target: str) -> None:
    r = client.get(target)
    assert r.status_code == 302
    assert r["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("target", [DASHBOARD, SCANS])
def test_it_refuses_users(client: Client, alice: Mailbox, target: str) -> None:
    assert alice.user is not None
    assert login(client, alice.user).get(target).status_code == 403
    assert login(client, alice.user).get(target, headers=HTMX).status_code == 403


@pytest.mark.parametrize("target", [DASHBOARD, SCANS])
def test_it_shows_admins_and_auditors(client: Client, admin: User, auditor: User, target: str) -> None:
    for user in (admin, auditor):
        assert login(client, user).get(target).status_code == 200


def test_it_has_no_edit_controls_for_auditors(client: Client, auditor: User, alice: Mailbox) -> None:
    body = text(login(client, auditor).get(DASHBOARD))
    assert body.count('method="post"') == 1  # sign out


# --- mailbox health ------------------------------------------------------------------------------------


@pytest.fixture
def fleet(exchange_profile: EmailServerProfile, alice: Mailbox, bob: Mailbox) -> dict[str, Mailbox]:
    """alice: enabled and fine; bob: enabled and failing; support: pending, never run; late: overdue."""
    now = timezone.now()
    do_record_test_result(alice, ok=True, message="connected", now=now)
    do_record_test_result(bob, ok=True, message="connected", now=now)
    Mailbox.objects.filter(pk=bob.pk).update(
        incoming_status=MailboxStatus.FAILURE, last_error="the server refused the credentials"
    )
    support = check_add_mailbox(
        "support@contoso.com", profile_name=exchange_profile.name, queue_name="Support"
    )
    late = check_add_mailbox(
        "late@contoso.com",
        profile_name=exchange_profile.name,
        username="late",
        create_user=True,
        approve=True,
    )
    do_record_test_result(late, ok=True, message="connected", now=now)
    # due 20 minutes ago with a poll interval of 5: more than two intervals late
    Mailbox.objects.filter(pk=late.pk).update(next_run_at=now - timedelta(minutes=20))
    Mailbox.objects.filter(pk=alice.pk).update(next_run_at=now + timedelta(minutes=3))
    Mailbox.objects.filter(pk=bob.pk).update(next_run_at=now + timedelta(minutes=3))
    return {"alice": alice, "bob": bob, "support": support, "late": late}


def stat(body: str, href_query: str) -> int:
    match = re.search(rf'\?{re.escape(href_query)}"><span class="badge[^"]*">[^<]*</span> (\d+)</a>', body)
    assert match, href_query
    return int(match.group(1))


def test_it_counts_mailboxes_by_status_enablement_and_approval(
    client: Client, admin: User, fleet: dict[str, Mailbox]
) -> None:
    body = text(login(client, admin).get(DASHBOARD))
    assert stat(body, "status=success") == 2
    assert stat(body, "status=failure") == 1
    assert stat(body, "status=not_run") == 1
    assert stat(body, "enabled=yes") == 3
    assert stat(body, "enabled=no") == 1
    assert stat(body, "approval=pending") == 1
    assert stat(body, "approval=approved") == 3
    assert stat(body, "approval=rejected") == 0


def test_it_lists_failing_then_overdue_mailboxes(
    client: Client, admin: User, fleet: dict[str, Mailbox]
) -> None:
    body = text(login(client, admin).get(DASHBOARD))
    table = body.split("Failing and overdue mailboxes")[1].split("</table>")[0]
    assert table.index("bob@contoso.com") < table.index("late@contoso.com")
    assert reverse("web-mailbox", args=[fleet["bob"].pk]) in table
    assert "the server refused the credentials" in table
    assert "Overdue" in table and "Failing" in table
    assert "alice@contoso.com" not in table and "support@contoso.com" not in table
    assert "1 mailbox is overdue by more than two poll intervals." in body


def test_it_says_when_no_mailbox_needs_attention(client: Client, admin: User, db: None) -> None:
    assert "No mailbox is failing or overdue." in text(login(client, admin).get(DASHBOARD))


# --- scans in progress ----------------------------------------------------------------------------------


def test_it_shows_running_scans_with_their_progress(client: Client, auditor: User, alice: Mailbox) -> None:
    done = do_start_scan_run(alice, "inbox", now=timezone.now() - timedelta(hours=1))
    ScanRun.objects.filter(pk=done.pk).update(status="succeeded")
    run = do_start_scan_run(alice, "inbox", now=timezone.now())
    ScanRun.objects.filter(pk=run.pk).update(items_done=30, items_total=120, tracked=4, not_tracked=26)
    unknown = do_start_scan_run(alice, "sentitems", now=timezone.now())
    ScanRun.objects.filter(pk=unknown.pk).update(items_done=7)
    login(client, auditor)
    page = text(client.get(DASHBOARD))
    assert '<progress value="30" max="120"' in page
    assert "30 of 120 messages" in page
    assert "7 messages so far" in page
    assert 'hx-get="/dashboard/scans/"' in page and 'hx-trigger="every 3s"' in page

    fragment = text(client.get(SCANS, headers=HTMX))
    assert fragment.startswith('<section id="dashboard-scans"')
    assert "<html" not in fragment
    assert '<progress value="30" max="120"' in fragment
    assert 'hx-trigger="every 3s"' in fragment  # keeps polling

    ScanRun.objects.filter(pk=run.pk).update(items_done=90)
    assert '<progress value="90" max="120"' in text(client.get(SCANS, headers=HTMX))


def test_it_serves_the_scans_panel_as_a_page_without_javascript(
    client: Client, admin: User, db: None
) -> None:
    body = text(login(client, admin).get(SCANS))
    assert "<html" in body
    assert "No scan is running." in body


# --- the chart -----------------------------------------------------------------------------------------


@pytest.fixture
def history(alice: Mailbox, auditor: User) -> date:
    """A known month of decisions for an auditor in Berlin; returns the auditor's today."""
    PersonalOptions.objects.update_or_create(user=auditor, defaults={"time_zone": "Europe/Berlin"})
    today = timezone.localdate(timezone.now(), BERLIN)

    def at(days_ago: int, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(today - timedelta(days=days_ago), time(hour, minute), tzinfo=BERLIN)

    decide(alice, at(0, 0, 10), Outcome.TRACKED, 2)
    decide(alice, at(0, 0, 20), Outcome.FAILED)
    # 00:30 in Berlin is the previous day in UTC: it counts on the Berlin day
    decide(alice, at(2, 0, 30), Outcome.TRACKED, 3)
    decide(alice, at(2, 23, 30), Outcome.NOT_TRACKED, 5)
    decide(alice, at(2, 12), Outcome.ALREADY_TRACKED)
    decide(alice, at(29, 1), Outcome.NOT_TRACKED, 4)  # the first day shown
    decide(alice, at(30, 23), Outcome.TRACKED, 9)  # one day too old
    return today


def test_it_counts_outcomes_per_day_in_the_users_time_zone(history: date) -> None:
    days = daily_outcomes(history - timedelta(days=29), 30, BERLIN)
    assert len(days) == 30
    by_day = {d.day: d.counts for d in days}
    assert by_day[history] == {"tracked": 2, "already_tracked": 0, "not_tracked": 0, "failed": 1}
    assert by_day[history - timedelta(days=2)] == {
        "tracked": 3,
        "already_tracked": 1,
        "not_tracked": 5,
        "failed": 0,
    }
    assert by_day[history - timedelta(days=29)]["not_tracked"] == 4
    assert sum(d.total for d in days) == 16  # the 9 of day 30 are outside
    assert by_day[history - timedelta(days=1)] == {
        "tracked": 0,
        "already_tracked": 0,
        "not_tracked": 0,
        "failed": 0,
    }


def test_it_counts_with_one_query(history: date, django_assert_num_queries) -> None:
    with django_assert_num_queries(1):
        daily_outcomes(history - timedelta(days=29), 30, BERLIN)


def test_it_draws_the_chart_with_a_table_fallback(client: Client, auditor: User, history: date) -> None:
    body = text(login(client, auditor).get(DASHBOARD))
    rows = dict(re.findall(r'<tr data-day="([\d-]+)">(.*?)</tr>', body, re.S))
    assert len(rows) == 30

    def cells(day: date) -> list[int]:
        return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', rows[day.isoformat()])]

    # tracked, already tracked, not tracked, failed, total
    assert cells(history) == [2, 0, 0, 1, 3]
    assert cells(history - timedelta(days=2)) == [3, 1, 5, 0, 9]
    assert cells(history - timedelta(days=1)) == [0, 0, 0, 0, 0]
    assert cells(history - timedelta(days=29)) == [0, 0, 4, 0, 4]
    assert (history - timedelta(days=30)).isoformat() not in rows

    svg = body.split("<svg")[1].split("</svg>")[0]
    assert 'role="img"' in svg and 'aria-labelledby="chart-title chart-desc"' in svg
    assert '<title id="chart-title">' in svg and '<desc id="chart-desc">' in svg
    assert "Tracked 5, Already tracked 1, Not tracked 9, Failed 1." in svg
    assert svg.count('<rect class="c-tracked"') == 2
    assert svg.count('<rect class="c-not_tracked"') == 2
    assert svg.count('<rect class="c-failed"') == 1
    assert f"{(history - timedelta(days=2)).day} " in svg  # axis labels are day numbers and months
    assert "Tracked (5)" in body  # the legend


def test_it_keeps_svg_numbers_unlocalized_in_german(client: Client, auditor: User, history: date) -> None:
    PersonalOptions.objects.filter(user=auditor).update(language="de")
    svg = text(login(client, auditor).get(DASHBOARD)).split("<svg")[1].split("</svg>")[0]
    assert not re.search(r'(x|y|width|height)="\d+,\d+"', svg)


def test_it_stacks_bars_to_scale() -> None:
    from syncadmin.web.views.dashboard import ChartDay

    zero = {"tracked": 0, "already_tracked": 0, "not_tracked": 0, "failed": 0}
    days = [
        ChartDay(day=date(2024, 1, 1), counts={**zero, "tracked": 6, "failed": 2}, total=8),
        ChartDay(day=date(2024, 1, 2), counts=dict(zero), total=0),
    ]
    chart = build_chart(days)
    assert [t.value for t in chart.ticks] == [0, 2, 4, 6, 8]
    tracked, failed = days[0].segments
    assert tracked.y + tracked.height == chart.plot_bottom
    assert failed.y + failed.height == pytest.approx(tracked.y)
    assert failed.y == pytest.approx(chart.top)  # the tallest bar reaches the top tick
    assert tracked.height == pytest.approx(3 * failed.height)
    assert days[1].segments == ()


@pytest.mark.parametrize(("peak", "step"), [(0, 1), (3, 1), (8, 2), (9, 5), (40, 10), (1234, 500)])
def test_it_picks_round_axis_steps(peak: int, step: int) -> None:
    assert nice_step(peak) == step


def test_it_says_when_there_is_nothing_to_chart(client: Client, admin: User, db: None) -> None:
    assert "No decisions in this period." in text(login(client, admin).get(DASHBOARD))


# --- alerts and the queue ------------------------------------------------------------------------------


def test_it_lists_recent_alerts_newest_first(
    client: Client, admin: User, alice: Mailbox, bob: Mailbox
) -> None:
    old = Alert.objects.create(mailbox=alice, level=AlertLevel.WARNING, message="older warning")
    Alert.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    Alert.objects.create(mailbox=bob, level=AlertLevel.ERROR, message="newest error")
    body = text(login(client, admin).get(DASHBOARD))
    alerts = body.split("Recent alerts")[1]
    assert alerts.index("newest error") < alerts.index("older warning")
    assert reverse("web-mailbox", args=[bob.pk]) in alerts
    assert '<span class="badge error">Error</span>' in alerts


def test_it_shows_the_queue_health(client: Client, admin: User, db: None) -> None:
    body = text(login(client, admin).get(DASHBOARD))
    assert "Workers" in body and "Queued jobs" in body
    assert "The job queue is unavailable" not in body


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_it_keeps_working_when_redis_is_down(client: Client, admin: User, fleet: dict[str, Mailbox]) -> None:
    login(client, admin)
    r = client.get(DASHBOARD)
    body = text(r)
    assert r.status_code == 200
    assert "The job queue is unavailable" in body
    assert "Connection refused" in body
    assert "bob@contoso.com" in body  # everything stored is still shown
    assert client.get(SCANS, headers=HTMX).status_code == 200
