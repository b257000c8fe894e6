"""The dashboard (admins, auditors): mailbox health, scans in progress, 30 days of outcomes, alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from syncadmin.web.htmx import is_htmx
from syncadmin.web.permissions import AuthenticatedHttpRequest, reader_required
from tracking.choices import (
    Approval,
    ErrorKind,
    Folder,
    IncomingMethod,
    MailboxStatus,
    Outcome,
    ScanStatus,
    SubscriptionStatus,
)
from tracking.health import check_health
from tracking.models import Alert, Decision, GraphSubscription, Mailbox, ScanRun
from tracking.pushstate import healthy_mailbox_ids, push_base_url
from tracking.runs import do_close_interrupted_runs

CHART_DAYS = 30
# Bottom to top in each day's stacked bar, and left to right in the legend and the table.
SERIES = (Outcome.TRACKED, Outcome.ALREADY_TRACKED, Outcome.NOT_TRACKED, Outcome.FAILED)
ATTENTION_ROWS = 20


# -- the chart ------------------------------------------------------------------------------------------


@dataclass
class Segment:
    outcome: str
    label: str
    count: int
    y: float
    height: float


@dataclass
class ChartDay:
    day: date
    counts: dict[str, int]
    total: int
    x: float = 0
    segments: tuple[Segment, ...] = ()
    labelled: bool = False
    label_x: float = 0

    @property
    def series(self) -> list[int]:
        return [self.counts[o.value] for o in SERIES]

    def center(self, bar_width: float) -> float:
        return round(self.x + bar_width / 2, 2)


@dataclass
class Tick:
    value: int
    y: float


@dataclass
class Chart:
    days: list[ChartDay]
    totals: dict[str, int]
    ticks: list[Tick]
    width: int = 760
    height: int = 260
    left: int = 48
    right: int = 12
    top: int = 14
    bottom: int = 34
    bar_width: float = 0

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def legend(self) -> list[tuple[str, str, int]]:
        return [(o.value, str(o.label), self.totals[o.value]) for o in SERIES]

    @property
    def empty(self) -> bool:
        return not any(self.totals.values())


def daily_outcomes(first_day: date, days: int, tz: tzinfo) -> list[ChartDay]:
    """Decisions per local day and outcome from first_day on, in one grouped query."""
    start = timezone.make_aware(datetime.combine(first_day, time.min), tz)
    end = timezone.make_aware(datetime.combine(first_day + timedelta(days=days), time.min), tz)
    rows = (
        Decision.objects.filter(decided_at__gte=start, decided_at__lt=end)
        .annotate(day=TruncDate("decided_at", tzinfo=tz))
        .values("day", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    found: dict[tuple[date, str], int] = {(row["day"], row["outcome"]): row["n"] for row in rows}
    out = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        counts = {o.value: found.get((day, o.value), 0) for o in SERIES}
        out.append(ChartDay(day=day, counts=counts, total=sum(counts.values())))
    return out


def nice_step(peak: int, ticks: int = 4) -> int:
    """A step of 1, 2 or 5 × 10^k so that about `ticks` steps reach the peak."""
    raw = max(peak, 1) / ticks
    magnitude = 1
    while magnitude * 10 <= raw:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover  (the loop always returns)


def build_chart(days: list[ChartDay]) -> Chart:
    """Lay out a stacked bar per day; every coordinate is computed here, the template only draws."""
    totals = {o.value: sum(d.counts[o.value] for d in days) for o in SERIES}
    chart = Chart(days=days, totals=totals, ticks=[])
    step = nice_step(max((d.total for d in days), default=0))
    peak = step * -(-max(max((d.total for d in days), default=0), 1) // step)
    plot_height = chart.plot_bottom - chart.top
    band = (chart.plot_right - chart.left) / max(len(days), 1)
    chart.bar_width = round(band * 0.7, 2)
    chart.ticks = [
        Tick(value=v, y=round(chart.plot_bottom - plot_height * v / peak, 2))
        for v in range(0, peak + 1, step)
    ]
    labels = set(range(len(days) - 1, -1, -7))  # the last day, then every week back
    for i, day in enumerate(days):
        day.x = round(chart.left + band * i + (band - chart.bar_width) / 2, 2)
        day.labelled = i in labels
        day.label_x = day.center(chart.bar_width)
        y = float(chart.plot_bottom)
        segments = []
        for outcome in SERIES:
            count = day.counts[outcome.value]
            if not count:
                continue
            height = plot_height * count / peak
            y -= height
            segments.append(Segment(outcome.value, str(outcome.label), count, round(y, 2), round(height, 2)))
        day.segments = tuple(segments)
    return chart


# -- mailbox health -------------------------------------------------------------------------------------


def error_kind_counts() -> list[tuple[str, str, int]]:
    """(kind, label, mailboxes) for each kind of last error some failing mailbox has, most first."""
    rows = (
        Mailbox.objects.filter(incoming_status=MailboxStatus.FAILURE)
        .exclude(last_error_kind="")
        .values("last_error_kind")
        .annotate(n=Count("id"))
        .order_by("-n", "last_error_kind")
    )
    labels = dict(ErrorKind.choices)
    return [(row["last_error_kind"], str(labels.get(row["last_error_kind"], "")), row["n"]) for row in rows]


def mailbox_counts() -> dict[str, int]:
    def count(**kwargs: object) -> Count:
        return Count("id", filter=Q(**kwargs))

    return Mailbox.objects.aggregate(
        total=Count("id"),
        status_success=count(incoming_status=MailboxStatus.SUCCESS),
        status_failure=count(incoming_status=MailboxStatus.FAILURE),
        status_not_run=count(incoming_status=MailboxStatus.NOT_RUN),
        enabled_yes=count(enabled=True),
        enabled_no=count(enabled=False),
        approval_pending=count(approval=Approval.PENDING),
        approval_approved=count(approval=Approval.APPROVED),
        approval_rejected=count(approval=Approval.REJECTED),
        approval_empty=count(approval=Approval.EMPTY),
    )


@dataclass
class AttentionRow:
    mailbox: Mailbox
    failing: bool
    overdue: bool


def needing_attention(failing: list[str], overdue: list[str]) -> list[AttentionRow]:
    """Failing mailboxes first, then the overdue ones, as check_health found them."""
    wanted = list(dict.fromkeys([*failing, *overdue]))[:ATTENTION_ROWS]
    by_address = {
        m.email_address: m
        for m in Mailbox.objects.select_related("user", "queue").filter(email_address__in=wanted)
    }
    failing_set, overdue_set = set(failing), set(overdue)
    return [
        AttentionRow(by_address[a], a in failing_set, a in overdue_set) for a in wanted if a in by_address
    ]


def running_scans() -> list[ScanRun]:
    do_close_interrupted_runs(now=timezone.now())  # an ingest killed mid-run is not "in progress"
    return list(
        ScanRun.objects.filter(status=ScanStatus.RUNNING)
        .select_related("mailbox")
        .order_by("started_at", "id")[:50]
    )


def push_summary(now: datetime) -> dict[str, object]:
    """How new mail is found (tracking-rules §9): mailboxes on push, on polling, and failing subscriptions."""
    scanned = Mailbox.objects.filter(enabled=True, incoming_method=IncomingMethod.SERVER_SIDE_SYNC).count()
    on_push = (
        GraphSubscription.objects.filter(
            folder=Folder.INBOX, status=SubscriptionStatus.ACTIVE, expires_at__gt=now, mailbox__enabled=True
        )
        .exclude(subscription_id="")
        .count()
    ) + Mailbox.objects.filter(pk__in=healthy_mailbox_ids(now), enabled=True).count()
    problems = (
        GraphSubscription.objects.exclude(status=SubscriptionStatus.ACTIVE)
        .select_related("mailbox")
        .order_by("mailbox__email_address", "folder")
    )
    return {
        "configured": push_base_url() is not None,
        "push": on_push,
        "polling": max(scanned - on_push, 0),
        "problems": list(problems[:ATTENTION_ROWS]),
    }


# -- views ----------------------------------------------------------------------------------------------


@reader_required
@require_safe
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    now = timezone.now()
    tz = timezone.get_current_timezone()
    today = timezone.localdate(now, tz)
    health = check_health(now)
    chart = build_chart(daily_outcomes(today - timedelta(days=CHART_DAYS - 1), CHART_DAYS, tz))
    context = {
        "title": _("Dashboard"),
        "nav_section": "dashboard",
        "health": health,
        "counts": mailbox_counts(),
        "error_kinds": error_kind_counts(),
        "attention": needing_attention(health.mailboxes_failing, health.mailboxes_overdue),
        "attention_more": len(set(health.mailboxes_failing) | set(health.mailboxes_overdue)) - ATTENTION_ROWS,
        "scans": running_scans(),
        "push": push_summary(now),
        "chart": chart,
        "chart_days": CHART_DAYS,
        "alerts": Alert.objects.select_related("mailbox").order_by("-created_at", "-id")[:10],
    }
    return render(request, "web/dashboard.html", context)


@reader_required
@require_safe
def scans_in_progress(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The scans-in-progress panel: a fragment for htmx polling, a page of its own without JavaScript."""
    template = "web/_dashboard_scans.html" if is_htmx(request) else "web/dashboard_scans.html"
    return render(
        request,
        template,
        {"title": _("Scans in progress"), "nav_section": "dashboard", "scans": running_scans()},
    )
