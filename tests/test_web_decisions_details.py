"""The decision log's details a new user trips on (issue 18): sortable columns on keyset pages, a total
count (estimated above paging.COUNT_CAP), and filters by direction, accepting entity, regarding,
manual and decided date. Django test client; what runs in the browser is in test_browser_details.py."""

from __future__ import annotations

import random
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from syncadmin.web.paging import COUNT_CAP
from tests.conftest import T0, make_decisions
from tracking.actions import do_set_personal_options
from tracking.models import CrmRecord, Decision

URL = reverse("web-decisions")


def ids_in(response) -> list[int]:
    return [d.pk for d in response.context["page"].rows]


def walk(client, params: dict[str, object]) -> list[list[int]]:
    """Every page of the list from the top, following Next; then back up with Previous, checked equal."""
    pages: list[list[int]] = []
    query = dict(params)
    while True:
        r = client.get(URL, query)
        assert r.status_code == 200
        pages.append(ids_in(r))
        nxt = r.context["page"].next
        if nxt is None:
            break
        query = {**params, "before": nxt}
    # and back up: each ?after= page is the one before it
    previous = r.context["page"].previous
    for expected in reversed(pages[:-1]):
        r = client.get(URL, {**params, "after": previous})
        assert ids_in(r) == expected
        previous = r.context["page"].previous
    assert previous is None
    return pages


def test_sorting_by_received_time_keeps_keyset_paging_and_puts_unknown_times_above_all(client, alice, admin):
    do_set_personal_options(admin, rows_per_page=10)
    minutes = list(range(35))
    random.Random(18).shuffle(minutes)
    rows = make_decisions(alice, 35)
    for row, minute in zip(rows, minutes, strict=True):
        Decision.objects.filter(pk=row.pk).update(received_at=T0 + timedelta(minutes=minute))
    # messages with no readable Date count as newer than any (NULL above every value, as in the index);
    # eleven of them, so that pages start and end on one
    Decision.objects.filter(pk__in=[r.pk for r in rows[:11]]).update(received_at=None)
    client.force_login(admin)

    def key(d: Decision) -> tuple[object, ...]:
        return (d.received_at is None, d.received_at or T0, d.pk)

    newest_first = [d.pk for d in sorted(Decision.objects.all(), key=key, reverse=True)]
    pages = walk(client, {"sort": "-received"})
    assert [len(p) for p in pages] == [10, 10, 10, 5]
    assert [pk for p in pages for pk in p] == newest_first
    pages = walk(client, {"sort": "received"})
    assert [pk for p in pages for pk in p] == newest_first[::-1]


def test_sorting_by_sender_and_outcome_within_a_filter(client, alice, admin):
    do_set_personal_options(admin, rows_per_page=10)
    senders = [f"{name}@example.net" for name in ("zoe", "ann", "max", "bea", "ann")]
    for i, sender in enumerate(senders * 5):
        make_decisions(alice, 1, start=i, sender=sender, outcome="tracked" if i % 3 else "not_tracked")
    client.force_login(admin)
    pages = walk(client, {"sort": "sender", "outcome": "tracked"})
    shown = Decision.objects.filter(pk__in=[pk for p in pages for pk in p])
    expected = [d.pk for d in sorted(shown, key=lambda d: (d.sender, d.pk))]
    assert [pk for p in pages for pk in p] == expected
    assert shown.count() == Decision.objects.filter(outcome="tracked").count()
    pages = walk(client, {"sort": "-outcome"})
    expected = [d.pk for d in sorted(Decision.objects.all(), key=lambda d: (d.outcome, d.pk), reverse=True)]
    assert [pk for p in pages for pk in p] == expected


def test_the_default_order_is_the_decided_order_shown_in_the_first_column(client, alice, admin):
    rows = make_decisions(alice, 3)
    client.force_login(admin)
    r = client.get(URL)
    assert ids_in(r) == [d.pk for d in reversed(rows)]
    body = r.content.decode()
    head = body.split("<thead>")[1].split("</thead>")[0]
    assert head.index("Decided") < head.index("Received")
    assert 'aria-sort="descending"' in head.split("Received")[0]  # the Decided header
    # each sortable header links to its order, without the page cursor
    assert "?sort=-received" in head and "?sort=sender" in head and "?sort=decided" in head
    # on a later page too the headers start the list again from the top
    r = client.get(URL, {"sort": "-decided", "before": rows[2].pk, "outcome": "not_tracked"})
    head = r.content.decode().split("<thead>")[1].split("</thead>")[0].replace("&amp;", "&")
    assert "before=" not in head and "sort=decided&outcome=not_tracked" in head


def test_an_unknown_sort_is_the_default(client, alice, admin):
    rows = make_decisions(alice, 3)
    client.force_login(admin)
    r = client.get(URL, {"sort": "trace; DROP TABLE"})
    assert r.status_code == 200 and ids_in(r) == [d.pk for d in reversed(rows)]
    assert not r.context["filter"].has_filters


def test_the_total_counts_every_matching_decision_not_only_the_page(client, alice, bob, admin):
    make_decisions(alice, 73)
    make_decisions(bob, 5, outcome="tracked", reason="tracked")
    client.force_login(admin)
    r = client.get(URL)
    assert r.context["total"].exact and r.context["total"].value == 78
    assert "78 decisions" in r.content.decode()
    r = client.get(URL, {"outcome": "tracked"})
    assert r.context["total"].value == 5
    # a user counts their own mailbox only
    client.force_login(alice.user)
    r = client.get(URL)
    assert r.context["total"].value == 73


def test_above_the_cap_the_total_is_estimated_and_the_count_stays_bounded(client, alice, admin, settings):
    Decision.objects.bulk_create(
        Decision(
            mailbox=alice,
            message_id=f"<many-{i}@example.net>",
            folder="inbox",
            direction="incoming",
            outcome="not_tracked",
            reason="no_correlation",
            decided_at=T0,
        )
        for i in range(COUNT_CAP + 1)
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE tracking_decision")
    do_set_personal_options(admin, language="de")
    client.force_login(admin)
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(URL)
    total = r.context["total"]
    assert not total.exact
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all(f"LIMIT {COUNT_CAP + 1}" in sql for sql in counts)
    body = r.content.decode()
    if connection.vendor == "postgresql":
        assert total.estimated and total.value > COUNT_CAP
        assert "etwa" in body and "(geschätzt)" in body
    else:
        assert "mehr als 1.000 Entscheidungen" in body


def test_filters_direction_accepting_regarding_manual_and_decided_date(client, alice, admin):
    record = CrmRecord.objects.create(kind="account", name="Fabrikam Ltd", email1="info@fabrikam.com")
    (incoming,) = make_decisions(alice, 1, start=0)
    (outgoing,) = make_decisions(alice, 1, start=1, direction="outgoing", folder="sentitems")
    (accepted,) = make_decisions(
        alice,
        1,
        start=2,
        outcome="tracked",
        reason="tracked",
        accepting_kind="user",
        accepting_name="alice",
        accepting_email="alice@contoso.com",
        regarding=record,
    )
    (manual,) = make_decisions(alice, 1, start=3, manual=True, decided_at=T0 + timedelta(days=3))
    client.force_login(admin)

    def shown(**params: str) -> set[int]:
        r = client.get(URL, params)
        assert r.status_code == 200 and not r.context["filter"].errors, r.context["filter"].errors
        return set(ids_in(r))

    everything = {incoming.pk, outgoing.pk, accepted.pk, manual.pk}
    assert shown(direction="outgoing") == {outgoing.pk}
    assert shown(direction="incoming") == everything - {outgoing.pk}
    assert shown(accepting_kind="user") == {accepted.pk}
    assert shown(accepting_kind="none") == everything - {accepted.pk}
    assert shown(accepting="ALICE@contoso") == {accepted.pk}
    assert shown(regarding="fabrikam") == {accepted.pk}
    assert shown(manual="yes") == {manual.pk}
    assert shown(manual="no") == everything - {manual.pk}
    day = T0.date()
    assert shown(decided_from=str(day + timedelta(days=1))) == {manual.pk}
    assert shown(decided_to=str(day)) == everything - {manual.pk}
    # filters combine, and the new fields are in the form
    assert shown(direction="incoming", manual="no", accepting_kind="none") == {incoming.pk}
    form = client.get(URL).content.decode()
    new = ("direction", "accepting_kind", "accepting", "regarding", "manual", "decided_from", "decided_to")
    for name in new:
        assert f'name="{name}"' in form


def test_a_decided_date_out_of_range_is_refused_by_the_export(client, alice, admin):
    make_decisions(alice, 1)
    client.force_login(admin)
    r = client.get(reverse("web-decisions-export"), {"decided_from": "0001-01-01"})
    assert r.status_code == 400 and b"decided_from" in r.content
