"""Record pages (issue 18): a record's details and its timeline of tracked emails, scoped by role, in
keyset pages with filters; the links that lead to them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.conftest import login, make_decisions, user_of
from tracking.actions import do_set_personal_options
from tracking.models import CrmRecord, EmailParty, Mailbox, Queue, TrackedEmail
from tracking.timeline import WINDOW

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
_numbers = iter(range(1, 1_000_000))


def email(
    *,
    at: datetime = T0,
    regarding: CrmRecord | None = None,
    owner: User | None = None,
    mailbox: Mailbox | None = None,
    direction: str = "incoming",
    subject: str = "",
) -> TrackedEmail:
    n = next(_numbers)
    return TrackedEmail.objects.create(
        message_id=f"<m{n}@example.net>",
        direction=direction,
        subject=subject or f"Email {n}",
        sender="ann@example.net",
        regarding=regarding,
        owner=owner,
        receiving_mailbox=mailbox,
        timeline_at=at,
    )


def party(tracked: TrackedEmail, role: str, **to: object) -> EmailParty:
    return EmailParty.objects.create(
        tracked_email=tracked, role=role, address="x@example.net", timeline_at=tracked.timeline_at, **to
    )


def url(record: CrmRecord | User | Queue, kind: str | None = None, **params: str) -> str:
    if kind is None:
        kind = (
            record.kind if isinstance(record, CrmRecord) else "queue" if isinstance(record, Queue) else "user"
        )
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("web-record", args=[kind, record.pk]) + (f"?{query}" if query else "")


def rows(body: str) -> list[int]:
    """The timeline's email ids, in page order."""
    return [int(pk) for pk in re.findall(r'<tr id="email-(\d+)"', body)]


def standings(body: str, pk: int) -> list[str]:
    row = body.split(f'<tr id="email-{pk}"')[1].split("</tr>")[0]
    return re.findall(r'<span class="badge">([^<]+)</span>', row)


def next_link(body: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next"', body)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def dana(db: None) -> CrmRecord:
    return CrmRecord.objects.create(kind="contact", name="Dana Smith", email1="dana@fabrikam.com")


def set_rows(user: User, n: int) -> None:
    do_set_personal_options(user, rows_per_page=n)


# --- the page ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["account", "contact", "lead", "other"])
def test_a_crm_record_shows_its_details(client: Client, admin: User, alice_user: User, kind: str) -> None:
    record = CrmRecord.objects.create(
        kind=kind,
        other_kind="Competitor" if kind == "other" else "",
        name="Rival Corp",
        email1="sales@rival.example",
        email2="info@rival.example",
        owner=alice_user,
        active=False,
    )
    body = login(client, admin).get(url(record)).content.decode()
    assert "<h1>Rival Corp</h1>" in body
    assert "sales@rival.example" in body and "info@rival.example" in body
    assert reverse("web-record", args=["user", alice_user.pk]) in body  # the owner, linked
    assert "Inactive" in body
    if kind == "other":
        assert "Competitor" in body


def test_a_wrong_kind_or_unknown_record_is_not_found(client: Client, admin: User, dana: CrmRecord) -> None:
    login(client, admin)
    assert client.get(url(dana, "lead")).status_code == 404
    assert client.get(url(dana, "planet")).status_code == 404
    assert client.get(reverse("web-record", args=["contact", dana.pk + 100])).status_code == 404


def test_anonymous_visitors_sign_in_first(client: Client, dana: CrmRecord) -> None:
    r = client.get(url(dana))
    assert r.status_code == 302 and r["Location"].startswith(reverse("login"))


def test_users_and_queues_have_pages_with_their_mailbox(
    client: Client, admin: User, alice: Mailbox, alice_user: User
) -> None:
    login(client, admin)
    body = client.get(url(alice_user)).content.decode()
    assert "alice@contoso.com" in body and reverse("web-mailbox", args=[alice.pk]) in body
    queue = Queue.objects.create(name="Support", email="support@contoso.com", owner=alice_user)
    tracked = email()
    party(tracked, "to", queue=queue)
    body = client.get(url(queue)).content.decode()
    assert "<h1>Support</h1>" in body and "support@contoso.com" in body
    assert rows(body) == [tracked.pk] and standings(body, tracked.pk) == ["to"]


def test_a_user_sees_no_link_to_a_mailbox_not_theirs(
    client: Client, alice: Mailbox, bob: Mailbox, alice_user: User
) -> None:
    body = login(client, user_of(bob)).get(url(alice_user)).content.decode()
    assert reverse("web-mailbox", args=[alice.pk]) not in body


# --- the timeline -----------------------------------------------------------------------------


def test_newest_first_each_email_once_with_how_the_record_stands(
    client: Client, admin: User, dana: CrmRecord
) -> None:
    regarding_only = email(at=T0, regarding=dana)
    both = email(at=T0 + timedelta(hours=1), regarding=dana, subject="Both ways")
    party(both, "from", record=dana)
    twice = email(at=T0 + timedelta(hours=2))
    party(twice, "cc", record=dana)
    party(twice, "to", record=dana)
    party(email(at=T0 + timedelta(hours=3)), "to", record=CrmRecord.objects.create(kind="contact", name="X"))
    body = login(client, admin).get(url(dana)).content.decode()
    assert rows(body) == [twice.pk, both.pk, regarding_only.pk]
    assert standings(body, twice.pk) == ["to", "cc"]
    assert standings(body, both.pk) == ["regarding", "from"]
    assert standings(body, regarding_only.pk) == ["regarding"]
    assert reverse("web-email", args=[both.pk]) in body and "Both ways" in body


def test_a_user_sees_only_the_emails_visible_to_them_and_an_auditor_all(
    client: Client, alice: Mailbox, bob: Mailbox, auditor: User, dana: CrmRecord
) -> None:
    alice_user, bob_user = user_of(alice), user_of(bob)
    owned = email(at=T0, regarding=dana, owner=alice_user)
    received = email(at=T0 + timedelta(minutes=1), mailbox=alice)
    party(received, "from", record=dana)
    decided = email(at=T0 + timedelta(minutes=2), regarding=dana)
    make_decisions(alice, 1, outcome="tracked", reason="accepted_all", tracked_email=decided)
    bobs = email(at=T0 + timedelta(minutes=3), regarding=dana, owner=bob_user, mailbox=bob)
    party(bobs, "to", record=dana)
    assert rows(login(client, alice_user).get(url(dana)).content.decode()) == [
        decided.pk,
        received.pk,
        owned.pk,
    ]
    assert rows(login(client, bob_user).get(url(dana)).content.decode()) == [bobs.pk]
    everything = [bobs.pk, decided.pk, received.pk, owned.pk]
    assert rows(login(client, auditor).get(url(dana)).content.decode()) == everything


def test_keyset_pages_across_equal_times(client: Client, admin: User, dana: CrmRecord) -> None:
    set_rows(admin, 10)
    made = []
    for i in range(25):
        # groups of five at the same time; every other one through the party index
        tracked = email(at=T0 + timedelta(hours=i // 5), regarding=dana if i % 2 else None)
        if i % 2 == 0 or i % 3 == 0:
            party(tracked, "to", record=dana)
            party(tracked, "cc", record=dana)
        made.append(tracked)
    expected = [t.pk for t in sorted(made, key=lambda t: (t.timeline_at, t.pk), reverse=True)]
    login(client, admin)
    seen: list[int] = []
    link: str | None = url(dana)
    pages = 0
    while link:
        body = client.get(link).content.decode()
        seen += rows(body)
        link = next_link(body)
        pages += 1
        if link:
            assert "First page" in client.get(link).content.decode()
    assert seen == expected and pages == 3


def test_a_page_of_many_parties_of_one_email_still_fills(
    client: Client, admin: User, dana: CrmRecord
) -> None:
    """An email holding the record as to, cc and bcc takes three party rows: a page still holds `size`."""
    set_rows(admin, 10)
    made = []
    for i in range(12):
        tracked = email(at=T0 + timedelta(minutes=i))
        for role in ("to", "cc", "bcc"):
            party(tracked, role, record=dana)
        made.append(tracked.pk)
    body = login(client, admin).get(url(dana)).content.decode()
    assert rows(body) == made[::-1][:10] and next_link(body)


def test_filters_by_direction_and_dates_on_both_sources(client: Client, admin: User, dana: CrmRecord) -> None:
    out_regarding = email(at=T0, regarding=dana, direction="outgoing")
    in_party = email(at=T0 + timedelta(days=1))
    party(in_party, "to", record=dana)
    out_party = email(at=T0 + timedelta(days=2), direction="outgoing")
    party(out_party, "from", record=dana)
    login(client, admin)
    assert rows(client.get(url(dana, direction="outgoing")).content.decode()) == [
        out_party.pk,
        out_regarding.pk,
    ]
    assert rows(client.get(url(dana, direction="incoming")).content.decode()) == [in_party.pk]
    assert rows(client.get(url(dana, since="2026-05-05")).content.decode()) == [out_party.pk, in_party.pk]
    assert rows(client.get(url(dana, until="2026-05-05")).content.decode()) == [in_party.pk, out_regarding.pk]
    body = client.get(
        url(dana, since="2026-05-05", until="2026-05-05", direction="incoming")
    ).content.decode()
    assert rows(body) == [in_party.pk]


def test_a_filter_that_is_not_valid_says_so(client: Client, admin: User, dana: CrmRecord) -> None:
    email(regarding=dana)
    body = login(client, admin).get(url(dana, direction="sideways")).content.decode()
    assert "Some filters are not valid" in body and rows(body) == []


def test_pages_keep_the_filters(client: Client, admin: User, dana: CrmRecord) -> None:
    set_rows(admin, 10)
    for i in range(12):
        email(at=T0 + timedelta(minutes=i), regarding=dana, direction="outgoing")
        email(at=T0 + timedelta(minutes=i), regarding=dana, direction="incoming")
    login(client, admin)
    first = client.get(url(dana, direction="outgoing")).content.decode()
    link = next_link(first)
    assert link and "direction=outgoing" in link
    second = client.get(link).content.decode()
    shown = TrackedEmail.objects.filter(pk__in=rows(first) + rows(second))
    assert shown.count() == 12 and set(shown.values_list("direction", flat=True)) == {"outgoing"}


def test_the_htmx_fragment_is_the_timeline_only(client: Client, admin: User, dana: CrmRecord) -> None:
    tracked = email(regarding=dana)
    r = login(client, admin).get(url(dana), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="timeline")
    body = r.content.decode()
    assert body.lstrip().startswith('<div id="timeline">') and "<h1>" not in body
    assert rows(body) == [tracked.pk]


def test_a_gone_cursor_starts_again_at_the_top(client: Client, admin: User, dana: CrmRecord) -> None:
    tracked = email(regarding=dana)
    body = login(client, admin).get(url(dana, after="999999")).content.decode()
    assert rows(body) == [tracked.pk]


def test_a_page_is_a_handful_of_queries_however_long_the_timeline(
    client: Client, alice: Mailbox, dana: CrmRecord
) -> None:
    alice_user = user_of(alice)
    set_rows(alice_user, 10)
    for i in range(30):
        tracked = email(at=T0 + timedelta(minutes=i), regarding=dana if i % 2 else None, owner=alice_user)
        party(tracked, "to", record=dana)
    login(client, alice_user)
    client.get(url(dana))
    with CaptureQueriesContext(connection) as first:
        body = client.get(url(dana)).content.decode()
    with CaptureQueriesContext(connection) as later:
        client.get(next_link(body) or "")
    assert len(later.captured_queries) <= len(first.captured_queries) + 1 <= 16


# --- links to the pages ----------------------------------------------------------------------


def test_the_directory_links_each_record_to_its_page(client: Client, admin: User, dana: CrmRecord) -> None:
    body = login(client, admin).get(reverse("web-directory")).content.decode()
    assert f'href="{url(dana)}"' in body


def test_users_queue_and_mailbox_pages_link_to_the_timelines(
    client: Client, admin: User, alice: Mailbox, alice_user: User
) -> None:
    login(client, admin)
    assert url(alice_user) in client.get(reverse("web-users")).content.decode()
    assert url(alice_user) in client.get(reverse("web-mailbox", args=[alice.pk])).content.decode()
    queue = Queue.objects.create(name="Support", email="support@contoso.com")
    assert url(queue) in client.get(reverse("web-queue", args=[queue.pk])).content.decode()


def test_the_decision_page_links_the_regarding_record(
    client: Client, alice: Mailbox, dana: CrmRecord
) -> None:
    (decision,) = make_decisions(alice, 1, outcome="tracked", reason="accepted_all", regarding=dana)
    body = login(client, user_of(alice)).get(reverse("web-decision", args=[decision.pk])).content.decode()
    assert f'href="{url(dana)}"' in body


def test_in_german_with_the_users_date_format(client: Client, admin: User, dana: CrmRecord) -> None:
    do_set_personal_options(admin, language="de")
    tracked = email(at=T0, regarding=dana)
    body = login(client, admin).get(url(dana)).content.decode()
    assert "Zeitachse" in body and "betreffend" in body and "In dieser E-Mail" in body
    assert "04.05.2026 12:00" in body and rows(body) == [tracked.pk]


def test_a_page_that_checked_its_whole_window_says_so_and_goes_on(
    client: Client, alice: Mailbox, bob: Mailbox, dana: CrmRecord
) -> None:
    """alice may see one email of Dana's 2,006, the oldest: the first page checks 2,000 (WINDOW) in vain."""
    alices = email(at=T0 - timedelta(days=1), regarding=dana, owner=user_of(alice))
    TrackedEmail.objects.bulk_create(
        TrackedEmail(
            message_id=f"<bob{i}@example.net>",
            direction="incoming",
            regarding=dana,
            owner=user_of(bob),
            timeline_at=T0 + timedelta(minutes=i),
        )
        for i in range(WINDOW + 5)
    )
    login(client, user_of(alice))
    first = client.get(url(dana)).content.decode()
    assert rows(first) == [] and 'id="timeline-partial"' in first
    link = next_link(first)
    assert link
    second = client.get(link).content.decode()
    assert rows(second) == [alices.pk] and next_link(second) is None
