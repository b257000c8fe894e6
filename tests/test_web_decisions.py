"""The decision log pages: list with filters and keyset pages, detail with the trace, CSV export, Track."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syncadmin.web.paging import COUNT_CAP
from tests.conftest import T0, make_decisions, raw, scan, user_of
from tracking.actions import do_set_personal_options
from tracking.models import AuditEvent, CrmRecord, Decision, TrackedEmail

LOGIN = reverse("login")


@pytest.fixture
def alices(alice):
    """alice's decisions: one not tracked (a stranger writes), one failed (an unreadable message)."""
    [not_tracked] = scan(alice, raw("<n1@example.net>", subject="Price list", to="alice@contoso.com"))
    [failed] = scan(alice, b"just some text without any header\n", received=T0 + timedelta(hours=1))
    assert (not_tracked.outcome, failed.outcome) == ("not_tracked", "failed")
    return {"not_tracked": not_tracked, "failed": failed}


@pytest.fixture
def bobs(bob):
    [decision] = scan(bob, raw("<b1@example.net>", subject="Bob's only", to="bob@contoso.com"))
    return decision


def ids_in(response) -> list[int]:
    return [d.pk for d in response.context["page"].rows]


# ---------------------------------------------------------------------------------------------
# Permissions: every view × anonymous / user / other user / auditor / admin
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,args",
    [("web-decisions", False), ("web-decisions-export", False), ("web-decision", True)],
)
def test_it_sends_anonymous_visitors_to_sign_in(client, alices, name, args):
    url = reverse(name, args=[alices["not_tracked"].pk]) if args else reverse(name)
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith(LOGIN)


def test_it_refuses_anonymous_track_and_changes_nothing(client, alices):
    r = client.post(reverse("web-decision-track", args=[alices["not_tracked"].pk]))
    assert r.status_code == 302 and r["Location"].startswith(LOGIN)
    assert Decision.objects.count() == 2 and not TrackedEmail.objects.exists()


def test_it_lists_only_the_users_own_decisions(client, alices, bobs, alice):
    client.force_login(user_of(alice))
    r = client.get(reverse("web-decisions"))
    assert r.status_code == 200
    assert set(ids_in(r)) == {alices["not_tracked"].pk, alices["failed"].pk}
    assert b"Bob&#x27;s only" not in r.content
    # the mailbox filter offers only their own mailbox
    assert list(r.context["filter"].form.fields["mailbox"].queryset) == [alice]


def test_it_lists_the_other_users_own_decisions_only(client, alices, bobs, bob):
    client.force_login(user_of(bob))
    r = client.get(reverse("web-decisions"))
    assert ids_in(r) == [bobs.pk]


@pytest.mark.parametrize("who", ["auditor", "admin"])
def test_it_lists_every_decision_to_readers(client, alices, bobs, who, request):
    client.force_login(request.getfixturevalue(who))
    r = client.get(reverse("web-decisions"))
    assert r.status_code == 200
    assert set(ids_in(r)) == {alices["not_tracked"].pk, alices["failed"].pk, bobs.pk}


def test_it_shows_the_owner_their_decision_with_track(client, alices, alice):
    client.force_login(user_of(alice))
    r = client.get(reverse("web-decision", args=[alices["not_tracked"].pk]))
    assert r.status_code == 200
    assert r.context["can_track"] is True
    assert reverse("web-decision-track", args=[alices["not_tracked"].pk]).encode() in r.content


def test_it_hides_another_users_decision(client, alices, bob):
    client.force_login(user_of(bob))
    assert client.get(reverse("web-decision", args=[alices["not_tracked"].pk])).status_code == 404


def test_it_shows_auditors_a_decision_without_any_control(client, alices, auditor):
    client.force_login(auditor)
    r = client.get(reverse("web-decision", args=[alices["not_tracked"].pk]))
    assert r.status_code == 200
    assert r.context["can_track"] is False
    assert b"/track/" not in r.content
    # the only form that posts is the sign-out in the header: no edit or delete control anywhere
    assert r.content.count(b'method="post"') == 1
    assert b"Delete" not in r.content and b"Edit" not in r.content


def test_it_shows_admins_any_decision_with_track(client, alices, admin):
    client.force_login(admin)
    r = client.get(reverse("web-decision", args=[alices["not_tracked"].pk]))
    assert r.status_code == 200 and r.context["can_track"] is True


def test_it_404s_for_a_missing_decision(client, admin):
    client.force_login(admin)
    assert client.get(reverse("web-decision", args=[999999])).status_code == 404


def test_the_list_has_no_edit_controls(client, alices, auditor):
    client.force_login(auditor)
    r = client.get(reverse("web-decisions"))
    assert r.content.count(b'method="post"') == 1  # sign out
    assert b"Delete" not in r.content and b"Edit" not in r.content


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def variety(alice, bob):
    """Decisions that differ in one field each, in two mailboxes."""
    rows = {
        "plain": make_decisions(alice, 1, start=0)[0],
        "tracked": make_decisions(alice, 1, start=1, outcome="tracked", reason="accepted_all")[0],
        "correlated": make_decisions(
            alice,
            1,
            start=2,
            outcome="tracked",
            reason="accepted_correlated",
            correlation_method="in_reply_to",
        )[0],
        "token": make_decisions(
            alice,
            1,
            start=3,
            outcome="tracked",
            reason="accepted_correlated",
            correlation_method="tracking_token",
        )[0],
        "sent": make_decisions(
            alice, 1, start=4, folder="sentitems", direction="outgoing", reason="sent_items_disabled"
        )[0],
        "sender": make_decisions(alice, 1, start=5, sender="boss@fabrikam.example")[0],
        "bob": make_decisions(bob, 1, start=6)[0],
    }
    Decision.objects.filter(pk=rows["plain"].pk).update(subject="Quarterly INVOICE")
    return rows


def listed(client, **params) -> set[int]:
    r = client.get(reverse("web-decisions"), params)
    assert r.status_code == 200
    return set(ids_in(r))


def test_it_filters_by_mailbox(client, variety, admin, bob):
    client.force_login(admin)
    assert listed(client, mailbox=bob.pk) == {variety["bob"].pk}


def test_it_filters_by_folder(client, variety, admin):
    client.force_login(admin)
    assert listed(client, folder="sentitems") == {variety["sent"].pk}


def test_it_filters_by_outcome_and_reason(client, variety, admin):
    client.force_login(admin)
    assert listed(client, outcome="tracked") == {
        variety["tracked"].pk,
        variety["correlated"].pk,
        variety["token"].pk,
    }
    assert listed(client, outcome="tracked", reason="accepted_all") == {variety["tracked"].pk}
    assert listed(client, reason="sent_items_disabled") == {variety["sent"].pk}


def test_it_filters_by_correlation_method_or_none(client, variety, admin):
    client.force_login(admin)
    assert listed(client, correlation="in_reply_to") == {variety["correlated"].pk}
    uncorrelated = listed(client, correlation="none")
    assert variety["correlated"].pk not in uncorrelated and variety["token"].pk not in uncorrelated
    assert variety["plain"].pk in uncorrelated


def test_it_searches_sender_and_subject_ignoring_case(client, variety, admin):
    client.force_login(admin)
    assert listed(client, q="FABRIKAM") == {variety["sender"].pk}
    assert listed(client, q="invoice") == {variety["plain"].pk}


def test_it_filters_by_received_date_in_the_users_time_zone(client, alice, admin):
    late = make_decisions(alice, 1, start=0, received_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))[0]
    client.force_login(admin)
    # UTC: 1 March
    assert listed(client, received_from="2026-03-01", received_to="2026-03-01") == {late.pk}
    assert listed(client, received_from="2026-03-02") == set()
    # Berlin: 00:30 on 2 March
    do_set_personal_options(admin, time_zone="Europe/Berlin")
    assert listed(client, received_from="2026-03-02", received_to="2026-03-02") == {late.pk}
    assert listed(client, received_to="2026-03-01") == set()


def test_the_date_filter_round_trips_in_german(client, alice, admin):
    late = make_decisions(alice, 1, received_at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC))[0]
    do_set_personal_options(admin, language="de")
    client.force_login(admin)
    r = client.get(reverse("web-decisions"), {"received_from": "2026-03-02"})
    assert set(ids_in(r)) == {late.pk}
    assert b'type="date" name="received_from" value="2026-03-02"' in r.content


def test_it_reports_an_invalid_filter_value(client, variety, admin):
    client.force_login(admin)
    r = client.get(reverse("web-decisions"), {"received_from": "not a date", "outcome": "banana"})
    assert r.status_code == 200
    assert r.context["filter"].form.errors
    assert b'class="errorlist"' in r.content


def test_it_answers_htmx_with_the_table_only(client, variety, admin):
    client.force_login(admin)
    r = client.get(reverse("web-decisions"), {"outcome": "tracked"}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    assert next(t.name for t in r.templates) == "web/_decision_table.html"
    assert b"<html" not in r.content and b"<table" in r.content
    assert b'id="decision-status" class="visually-hidden" role="status" hx-swap-oob="true"' in r.content
    full = client.get(reverse("web-decisions"), {"outcome": "tracked"})
    assert b"<html" in full.content and b'id="decision-table"' in full.content


def test_a_history_restore_gets_the_whole_page(client, variety, admin):
    client.force_login(admin)
    r = client.get(reverse("web-decisions"), HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert b"<html" in r.content


def test_it_shows_the_table_columns_in_the_users_time_zone(client, alice):
    row = make_decisions(alice, 1, subject="Zone check")[0]
    Decision.objects.filter(pk=row.pk).update(received_at=datetime(2026, 7, 1, 22, 15, tzinfo=UTC))
    user = user_of(alice)
    do_set_personal_options(user, time_zone="Asia/Tokyo")
    client.force_login(user)
    r = client.get(reverse("web-decisions"))
    assert b"2 Jul 2026, 07:15" in r.content
    assert b"Zone check" in r.content and b"Not tracked" in r.content and b"alice@contoso.com" in r.content


def test_it_shows_an_empty_state(client, alice):
    client.force_login(user_of(alice))
    assert b"No decisions yet" in client.get(reverse("web-decisions")).content
    assert b"No decisions match" in client.get(reverse("web-decisions"), {"outcome": "tracked"}).content


# ---------------------------------------------------------------------------------------------
# Keyset pages
# ---------------------------------------------------------------------------------------------


def _assert_no_offset_or_bare_count(queries) -> None:
    for q in queries:
        sql = q["sql"].upper()
        assert " OFFSET " not in sql, sql
        if "COUNT(" in sql and "TRACKING_DECISION" in sql:
            # the total (issue 18) counts at most COUNT_CAP + 1 rows, never the whole table
            assert " WHERE " in sql or f"LIMIT {COUNT_CAP + 1}" in sql, sql


def test_it_pages_by_keyset_without_offset_or_an_unbounded_count(client, alice, admin):
    rows = make_decisions(alice, 123)
    all_ids = sorted((d.pk for d in rows), reverse=True)
    client.force_login(admin)
    seen: list[int] = []
    pages = []
    params: dict[str, object] = {}
    with CaptureQueriesContext(connection) as ctx:
        while True:
            r = client.get(reverse("web-decisions"), params)
            page = r.context["page"]
            ids = ids_in(r)
            assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
            assert not set(ids) & set(seen)
            seen += ids
            pages.append(page)
            if page.next is None:
                break
            params = {"before": page.next}
    _assert_no_offset_or_bare_count(ctx.captured_queries)
    assert seen == all_ids
    assert [len(p.rows) for p in pages] == [50, 50, 23]
    assert pages[0].previous is None and pages[1].previous == pages[1].rows[0].pk
    # and back up again with ?after=
    r = client.get(reverse("web-decisions"), {"after": pages[2].previous})
    assert ids_in(r) == [d.pk for d in pages[1].rows]
    r = client.get(reverse("web-decisions"), {"after": r.context["page"].previous})
    assert ids_in(r) == [d.pk for d in pages[0].rows] and r.context["page"].previous is None


def test_it_pages_within_a_filter_and_keeps_it_in_the_links(client, alice, admin):
    make_decisions(alice, 30, start=0)
    tracked = make_decisions(alice, 30, start=30, outcome="tracked", reason="accepted_all")
    do_set_personal_options(admin, rows_per_page=10)
    client.force_login(admin)
    r = client.get(reverse("web-decisions"), {"outcome": "tracked"})
    page = r.context["page"]
    assert len(page.rows) == 10 and all(d.outcome == "tracked" for d in page.rows)
    assert f"outcome=tracked&amp;before={page.next}".encode() in r.content
    export = reverse("web-decisions-export") + "?outcome=tracked"
    assert export.encode() in r.content
    walked = []
    params: dict[str, object] = {"outcome": "tracked"}
    while True:
        r = client.get(reverse("web-decisions"), params)
        walked += ids_in(r)
        if r.context["page"].next is None:
            break
        params["before"] = r.context["page"].next
    assert walked == sorted((d.pk for d in tracked), reverse=True)


def test_it_uses_the_users_rows_per_page(client, alice):
    make_decisions(alice, 15)
    user = user_of(alice)
    do_set_personal_options(user, rows_per_page=10)
    client.force_login(user)
    r = client.get(reverse("web-decisions"))
    assert len(ids_in(r)) == 10 and b"Older" in r.content and b"Newer" not in r.content


def test_it_ignores_a_nonsense_page_key(client, alice, admin):
    make_decisions(alice, 3)
    client.force_login(admin)
    r = client.get(reverse("web-decisions"), {"before": "x; DROP"})
    assert r.status_code == 200 and len(ids_in(r)) == 3


def test_a_page_past_the_end_offers_the_newest(client, alice, admin):
    rows = make_decisions(alice, 3)
    client.force_login(admin)
    r = client.get(reverse("web-decisions"), {"before": min(d.pk for d in rows)})
    assert ids_in(r) == [] and b"Newest" in r.content and b"No decisions match" in r.content
    assert f'href="{reverse("web-decisions")}"'.encode() in r.content  # not "", which would keep ?before=


# ---------------------------------------------------------------------------------------------
# CSV export
# ---------------------------------------------------------------------------------------------


def export(client, **params) -> tuple[StreamingHttpResponse, list[dict[str, str]]]:
    r = client.get(reverse("web-decisions-export"), params)
    assert r.status_code == 200
    assert isinstance(r, StreamingHttpResponse)
    text = b"".join(r.getvalue().splitlines(keepends=True)).decode("utf-8")
    return r, list(csv.DictReader(io.StringIO(text)))


def test_it_streams_the_filtered_decisions_as_csv(client, alice, admin):
    record = CrmRecord.objects.create(kind="account", name="Northwind", email1="orders@northwind.example")
    [row] = make_decisions(alice, 1, outcome="tracked", reason="manual", manual=True, accepting_kind="user")
    Decision.objects.filter(pk=row.pk).update(
        regarding=record,
        accepting_name="Alice",
        correlation_method="in_reply_to",
        correlated_message_id="<p@x>",
    )
    make_decisions(alice, 2, start=1)
    client.force_login(admin)
    r, rows = export(client, outcome="tracked")
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    today = timezone.localdate().isoformat()
    assert r["Content-Disposition"] == f'attachment; filename="decisions-{today}.csv"'
    assert len(rows) == 1
    got = rows[0]
    assert list(got) == [
        "decided_at",
        "received_at",
        "mailbox",
        "folder",
        "message_id",
        "sender",
        "subject",
        "outcome",
        "reason",
        "correlation_method",
        "correlated_message_id",
        "accepting_kind",
        "accepting_name",
        "regarding",
        "manual",
    ]
    assert got["mailbox"] == "alice@contoso.com" and got["message_id"] == row.message_id
    assert (got["outcome"], got["reason"], got["correlation_method"]) == ("tracked", "manual", "in_reply_to")
    assert (got["accepting_kind"], got["accepting_name"]) == ("user", "Alice")
    assert got["regarding"] == "account:Northwind" and got["manual"] == "true"
    assert row.received_at is not None
    assert got["received_at"] == row.received_at.isoformat() and got["decided_at"] == T0.isoformat()
    _, everything = export(client)
    assert len(everything) == 3 and [r["regarding"] for r in everything[:2]] == ["", ""]


def test_it_writes_times_in_the_users_time_zone(client, alice, admin):
    make_decisions(alice, 1)
    do_set_personal_options(admin, time_zone="Europe/Berlin")
    client.force_login(admin)
    _, rows = export(client)
    assert rows[0]["received_at"] == "2026-03-02T10:00:00+01:00"


def test_it_defuses_spreadsheet_formulas(client, alice, admin):
    [row] = make_decisions(alice, 1)
    Decision.objects.filter(pk=row.pk).update(
        subject='=HYPERLINK("http://evil")', sender="@evil.example", accepting_name="+1", folder="-x"
    )
    client.force_login(admin)
    _, [got] = export(client)
    assert got["subject"] == '\'=HYPERLINK("http://evil")'
    assert got["sender"] == "'@evil.example"
    assert got["accepting_name"] == "'+1" and got["folder"] == "'-x"


def test_it_exports_only_what_the_user_may_see(client, alices, bobs, alice, bob, auditor):
    client.force_login(user_of(alice))
    _, rows = export(client)
    assert {r["mailbox"] for r in rows} == {"alice@contoso.com"} and len(rows) == 2
    # a filter on someone else's mailbox widens nothing
    _, rows = export(client, mailbox=bob.pk)
    assert {r["mailbox"] for r in rows} == {"alice@contoso.com"}
    client.force_login(auditor)
    _, rows = export(client)
    assert {r["mailbox"] for r in rows} == {"alice@contoso.com", "bob@contoso.com"}


def test_the_export_pages_through_the_table_in_chunks(client, alice, admin):
    make_decisions(alice, 4100)
    client.force_login(admin)
    with CaptureQueriesContext(connection) as ctx:
        _, rows = export(client)
    assert len(rows) == 4100
    _assert_no_offset_or_bare_count(ctx.captured_queries)


# ---------------------------------------------------------------------------------------------
# Detail
# ---------------------------------------------------------------------------------------------


def test_it_shows_every_field_and_the_numbered_trace(client, alices, alice):
    decision = alices["not_tracked"]
    client.force_login(user_of(alice))
    r = client.get(reverse("web-decision", args=[decision.pk]))
    body = r.content.decode()
    assert "Price list" in body and "&lt;n1@example.net&gt;" in body and "ann@example.net" in body
    assert "Not in response to a tracked email" in body  # reason label
    assert 'class="trace decision-trace"' in body
    assert body.count("<li") >= len(decision.trace)
    assert '<li class="outcome">' in body and '<span class="badge not_tracked">Not tracked</span>' in body
    for step in decision.trace:
        assert step["check"] in body or step["check"] == "outcome"
    assert "No tracked email" in body
    assert reverse("web-mailbox", args=[alice.pk]) in body


def test_it_shows_the_tracked_email_and_links_the_regarding_record(client, alice, admin):
    record = CrmRecord.objects.create(
        kind="account", name="Northwind Traders", email1="orders@northwind.example"
    )
    [decision] = scan(alice, raw("<t1@example.net>", subject="Order", frm="orders@northwind.example"))
    client.force_login(admin)
    manual = client.post(reverse("web-decision-track", args=[decision.pk]), {"regarding": record.pk})
    made = Decision.objects.get(manual=True)
    r = client.get(manual["Location"])
    body = r.content.decode()
    assert r.status_code == 200 and made.tracked_email is not None
    assert "The CRM email activity this decision created." in body
    assert f'href="{reverse("web-record", args=["account", record.pk])}"' in body  # the record's page
    assert f"{admin.get_username()}, by hand" in body
    assert f'href="{reverse("web-decision", args=[decision.pk])}"' in body  # the scan's decision, related


# ---------------------------------------------------------------------------------------------
# Track / Set regarding
# ---------------------------------------------------------------------------------------------


def test_the_owner_tracks_a_not_tracked_message_regarding_a_record(client, alices, alice):
    record = CrmRecord.objects.create(kind="contact", name="Ann Example", email1="ann@example.net")
    decision = alices["not_tracked"]
    user = user_of(alice)
    client.force_login(user)
    r = client.post(reverse("web-decision-track", args=[decision.pk]), {"regarding": record.pk})
    made = Decision.objects.get(manual=True)
    assert r.status_code == 302 and r["Location"] == reverse("web-decision", args=[made.pk])
    assert (made.outcome, made.reason, made.regarding) == ("tracked", "manual", record)
    email = TrackedEmail.objects.get()
    assert email.regarding == record and email.message_id == decision.message_id
    event = AuditEvent.objects.get(action="manual_tracking")
    assert event.actor == user and event.actor_label == "alice"
    assert decision.message_id in event.target and "not_tracked/no_correlation" in event.old_value
    assert "contact:Ann Example" in event.new_value
    decision.refresh_from_db()
    assert decision.outcome == "not_tracked"  # the scan's decision is never changed
    follow = client.get(r["Location"])
    assert b"The message is tracked." in follow.content
    # the scan's decision now links to the manual one and offers no second Track, but regarding and untrack
    again = client.get(reverse("web-decision", args=[decision.pk]))
    assert again.context["manual_sibling"] == made and again.context["can_track"] is False
    assert again.context["can_manage"] is True


def test_the_owner_changes_clears_the_regarding_and_untracks_then_tracks_again(client, alices, alice):
    record = CrmRecord.objects.create(kind="contact", name="Ann Example", email1="ann@example.net")
    other = CrmRecord.objects.create(kind="account", name="Example Ltd", email1="info@example.net")
    decision = alices["not_tracked"]
    client.force_login(user_of(alice))
    client.post(reverse("web-decision-track", args=[decision.pk]), {"regarding": record.pk})
    email = TrackedEmail.objects.get()

    changed = client.post(
        reverse("web-decision-regarding", args=[decision.pk]), {"regarding": other.pk}, follow=True
    )
    assert "The email is now regarding" in changed.content.decode()
    email.refresh_from_db()
    assert email.regarding == other
    nothing = client.post(reverse("web-decision-regarding", args=[decision.pk]), {"regarding": ""})
    assert (
        nothing.status_code == 400 and "Choose a record, or clear the regarding." in nothing.content.decode()
    )
    client.post(reverse("web-decision-regarding", args=[decision.pk]), {"clear": "1"})
    email.refresh_from_db()
    assert email.regarding is None

    untracked = client.post(reverse("web-decision-untrack", args=[decision.pk]), follow=True)
    assert "scans will not track it again" in untracked.content.decode()
    email.refresh_from_db()
    assert email.untracked_at is not None
    last = Decision.objects.order_by("-pk").first()
    assert last is not None and (last.outcome, last.reason, last.made_by) == (
        "not_tracked",
        "untracked",
        alice.user,
    )
    assert "alice, by hand" in untracked.content.decode()
    # nothing tracked to change any more; Track is offered again and tracks the same email
    assert client.post(reverse("web-decision-untrack", args=[decision.pk])).status_code == 404
    page = client.get(reverse("web-decision", args=[decision.pk]))
    assert page.context["can_track"] is True and page.context["can_manage"] is False
    client.post(reverse("web-decision-track", args=[decision.pk]), {"regarding": ""})
    email.refresh_from_db()
    assert email.untracked_at is None and TrackedEmail.objects.count() == 1
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="manual_").order_by("pk")] == [
        "manual_tracking",
        "manual_regarding",
        "manual_regarding",
        "manual_untracked",
        "manual_tracking",
    ]


def test_another_user_and_an_auditor_cannot_change_a_tracked_email(client, alices, alice, bob, auditor):
    client.force_login(user_of(alice))
    client.post(reverse("web-decision-track", args=[alices["not_tracked"].pk]), {"regarding": ""})
    pk = alices["not_tracked"].pk
    client.force_login(user_of(bob))
    assert client.post(reverse("web-decision-untrack", args=[pk])).status_code == 404
    client.force_login(auditor)
    assert client.post(reverse("web-decision-untrack", args=[pk])).status_code == 403
    assert client.post(reverse("web-decision-regarding", args=[pk]), {"clear": "1"}).status_code == 403
    assert TrackedEmail.objects.get().untracked_at is None


def test_an_admin_tracks_without_a_regarding_record(client, alices, admin):
    client.force_login(admin)
    r = client.post(reverse("web-decision-track", args=[alices["not_tracked"].pk]), {"regarding": ""})
    made = Decision.objects.get(manual=True)
    assert r["Location"] == reverse("web-decision", args=[made.pk])
    assert made.regarding is None and TrackedEmail.objects.get().regarding is None
    assert AuditEvent.objects.get(action="manual_tracking").actor == admin


def test_tracking_twice_goes_to_the_existing_manual_decision(client, alices, alice):
    client.force_login(user_of(alice))
    url = reverse("web-decision-track", args=[alices["not_tracked"].pk])
    client.post(url)
    made = Decision.objects.get(manual=True)
    r = client.post(url)
    assert r["Location"] == reverse("web-decision", args=[made.pk])
    assert Decision.objects.filter(manual=True).count() == 1 and TrackedEmail.objects.count() == 1
    assert AuditEvent.objects.filter(action="manual_tracking").count() == 1


def test_another_user_cannot_track(client, alices, bob):
    client.force_login(user_of(bob))
    r = client.post(reverse("web-decision-track", args=[alices["not_tracked"].pk]))
    assert r.status_code == 404
    assert (
        not Decision.objects.filter(manual=True).exists()
        and not AuditEvent.objects.filter(action="manual_tracking").exists()
    )


def test_an_auditor_cannot_track(client, alices, auditor):
    client.force_login(auditor)
    r = client.post(reverse("web-decision-track", args=[alices["not_tracked"].pk]))
    assert r.status_code == 403
    assert not Decision.objects.filter(manual=True).exists() and not TrackedEmail.objects.exists()


def test_track_refuses_get(client, alices, alice):
    client.force_login(user_of(alice))
    assert client.get(reverse("web-decision-track", args=[alices["not_tracked"].pk])).status_code == 405


def test_a_failed_message_cannot_be_tracked(client, alices, alice):
    client.force_login(user_of(alice))
    failed = alices["failed"]
    assert client.get(reverse("web-decision", args=[failed.pk])).context["can_track"] is False
    r = client.post(reverse("web-decision-track", args=[failed.pk]))
    assert r["Location"] == reverse("web-decision", args=[failed.pk])
    assert Decision.objects.count() == 2 and not TrackedEmail.objects.exists()


def test_a_tracked_message_cannot_be_tracked_again(client, alice, admin):
    do_set_personal_options(user_of(alice), track=0)
    [tracked] = scan(alice, raw("<all@example.net>"))
    assert tracked.outcome == "tracked"
    client.force_login(admin)
    assert client.get(reverse("web-decision", args=[tracked.pk])).context["can_track"] is False
    client.post(reverse("web-decision-track", args=[tracked.pk]))
    assert not Decision.objects.filter(manual=True).exists()


def test_a_manual_decision_is_not_trackable(client, alices, admin):
    client.force_login(admin)
    client.post(reverse("web-decision-track", args=[alices["not_tracked"].pk]))
    made = Decision.objects.get(manual=True)
    r = client.post(reverse("web-decision-track", args=[made.pk]))
    assert r["Location"] == reverse("web-decision", args=[made.pk])
    assert Decision.objects.filter(manual=True).count() == 1


def test_track_refuses_an_unknown_record(client, alices, alice):
    client.force_login(user_of(alice))
    r = client.post(reverse("web-decision-track", args=[alices["not_tracked"].pk]), {"regarding": "987654"})
    assert r.status_code == 400
    assert r.context["track_form"].errors["regarding"]
    assert (
        not Decision.objects.filter(manual=True).exists()
        and not AuditEvent.objects.filter(action="manual_tracking").exists()
    )


def test_it_offers_the_messages_records_and_finds_others_by_name(client, alices, alice):
    ann = CrmRecord.objects.create(kind="contact", name="Ann Example", email1="ann@example.net")
    other = CrmRecord.objects.create(kind="account", name="Contoso Pharma", email1="info@pharma.example")
    client.force_login(user_of(alice))
    url = reverse("web-decision", args=[alices["not_tracked"].pk])
    offered = client.get(url).context["track_form"].fields["regarding"].widget.choices
    assert [c[0] for c in offered] == ["", ann.pk]
    r = client.get(url, {"record_q": "pharma"})
    assert [c[0] for c in r.context["track_form"].fields["regarding"].widget.choices] == [
        "",
        ann.pk,
        other.pk,
    ]
    fragment = client.get(url, {"record_q": "pharma"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="track-form")
    assert next(t.name for t in fragment.templates) == "web/_decision_track.html"
    assert b"Contoso Pharma" in fragment.content and b"<html" not in fragment.content


def test_a_user_without_a_mailbox_sees_an_empty_log(client, alice) -> None:
    """Their scope matches nothing, so Django sends no query at all; the count must not need one either."""
    make_decisions(alice, 3)
    nobody = User.objects.create_user("nomailbox", "nomailbox@contoso.com", "x")
    client.force_login(nobody)
    response = client.get(reverse("web-decisions"))
    assert response.status_code == 200
    assert response.context["total"].value == 0
