"""Queue items (tracking-rules §2, issue 14 item 7): made when a queue accepts a message and, with
CreateQueueItemForSynchronizingMailbox, for every email tracked from a queue's own mailbox; one per queue
and email, whatever is scanned, ingested or reprocessed again; listed on the queue's page, marked done
there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import login, make_mailbox
from tests.test_ingest import ingest, message, one, write_eml, write_mbox
from tracking.actions import (
    ProfileValues,
    check_add_mailbox,
    check_add_profile,
    check_set_org_setting,
    do_set_personal_options,
    do_start_round,
)
from tracking.choices import QueueItemState, TrackOption
from tracking.models import AuditEvent, Decision, FolderSyncState, Mailbox, Queue, QueueItem, TrackedEmail
from tracking.reprocessing import check_round, run_round_folder
from tracking.scanning import scan_folder

LONG_AGO = datetime(1990, 1, 1, tzinfo=UTC)


def syncing(*mailboxes: Mailbox) -> None:
    """As after Test & Enable: only mailboxes that sync make candidates (tracking-rules §4)."""
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes]).update(enabled=True)


def queue_mailbox(address: str, name: str, profile_name: str) -> Mailbox:
    return check_add_mailbox(address, profile_name=profile_name, queue_name=name, approve=True)


def set_queue_track(mailbox: Mailbox, track: int) -> None:
    assert mailbox.queue_id is not None
    Queue.objects.filter(pk=mailbox.queue_id).update(track=track)


def items_of(name: str) -> list[QueueItem]:
    return list(QueueItem.objects.filter(queue__name=name).select_related("tracked_email"))


@pytest.fixture
def support(exchange_profile) -> Mailbox:
    """support@contoso.com, the mailbox of queue Support (Track option 0), syncing."""
    mailbox = queue_mailbox("support@contoso.com", "Support", exchange_profile.name)
    syncing(mailbox)
    return mailbox


@pytest.fixture
def carol(exchange_profile) -> Mailbox:
    """carol@contoso.com, a syncing user mailbox with Track option 0 (all)."""
    mailbox = make_mailbox("carol@contoso.com", "carol", exchange_profile, track=0)
    syncing(mailbox)
    return mailbox


# ---------------------------------------------------------------------------------------------
# Creation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["true", "false"])
def test_a_queue_that_accepts_a_message_gets_an_item_whatever_the_setting(
    alice, support, cmd, tmp_path, setting
):
    # Alice (option 1) declines an unknown sender's first message; the queue, a syncing recipient, takes it.
    check_set_org_setting("CreateQueueItemForSynchronizingMailbox", setting)
    syncing(alice)
    path = write_eml(tmp_path, "a.eml", to="alice@contoso.com, support@contoso.com")

    row = one(ingest(cmd, "alice@contoso.com", "inbox", path))

    assert (row["outcome"], row["reason"]) == ("tracked", "accepted_all")
    assert row["accepting_entity"]["kind"] == "queue"
    assert row["queue_items"] == ["Support"]
    assert row["owner"] == {"kind": "user", "name": "alice"}  # rule 3: the first syncing user recipient
    [item] = items_of("Support")
    assert item.tracked_email_id == Decision.objects.get(pk=row["decision_id"]).tracked_email_id
    assert item.state == QueueItemState.ACTIVE and item.done_at is None and item.done_by is None


def test_every_email_tracked_from_a_queues_own_mailbox_gets_an_item_while_the_setting_is_on(
    support, carol, cmd, tmp_path
):
    # The queue takes nothing itself (option 4); Carol, a syncing recipient, accepts.
    set_queue_track(support, TrackOption.NONE)
    first = write_eml(tmp_path, "1.eml", to="support@contoso.com, carol@contoso.com", message_id="<q1@x>")

    row = one(ingest(cmd, "support@contoso.com", "inbox", first))

    assert row["outcome"] == "tracked"
    assert row["accepting_entity"]["name"] == "carol"
    assert row["queue_items"] == ["Support"]
    assert row["owner"] == {"kind": "user", "name": "carol"}
    assert len(items_of("Support")) == 1


def test_with_the_setting_off_the_queues_own_mailbox_makes_no_item(support, carol, cmd, tmp_path):
    check_set_org_setting("CreateQueueItemForSynchronizingMailbox", "false")
    set_queue_track(support, TrackOption.NONE)
    path = write_eml(tmp_path, "1.eml", to="support@contoso.com, carol@contoso.com")

    row = one(ingest(cmd, "support@contoso.com", "inbox", path))

    assert row["outcome"] == "tracked"
    assert row["queue_items"] == []
    assert not QueueItem.objects.exists()


def test_a_queue_accepting_in_its_own_mailbox_gets_one_item_not_two(support, cmd, tmp_path):
    row = one(
        ingest(cmd, "support@contoso.com", "inbox", write_eml(tmp_path, "a.eml", to="support@contoso.com"))
    )

    assert row["accepting_entity"]["kind"] == "queue"
    assert row["queue_items"] == ["Support"]
    assert QueueItem.objects.count() == 1


def test_the_accepting_queue_and_the_syncing_mailboxs_queue_each_get_one(
    exchange_profile, carol, cmd, tmp_path
):
    # Sales' mailbox syncs a message Support accepts (Sales takes nothing itself): one item for each queue.
    support = queue_mailbox("support@contoso.com", "Support", exchange_profile.name)
    sales = queue_mailbox("sales@contoso.com", "Sales", exchange_profile.name)
    syncing(support, sales)
    set_queue_track(sales, TrackOption.NONE)
    path = write_eml(tmp_path, "a.eml", to="sales@contoso.com, support@contoso.com")

    row = one(ingest(cmd, "sales@contoso.com", "inbox", path))

    assert row["accepting_entity"]["name"] == "Support"
    assert row["queue_items"] == ["Sales", "Support"]  # by name
    assert QueueItem.objects.count() == 2


def test_mail_nobody_tracks_and_user_mailboxes_make_no_items(alice, carol, cmd, tmp_path):
    rows = ingest(
        cmd,
        "alice@contoso.com",
        "inbox",
        write_eml(tmp_path, "a.eml", message_id="<a@x>"),  # not tracked (option 1)
    )
    rows += ingest(cmd, "carol@contoso.com", "inbox", write_eml(tmp_path, "b.eml", to="carol@contoso.com"))

    assert [r["outcome"] for r in rows] == ["not_tracked", "tracked"]
    assert all(r["queue_items"] == [] for r in rows)
    assert not QueueItem.objects.exists()


def test_ingesting_again_and_tracking_elsewhere_add_no_second_item(support, alice, cmd, tmp_path):
    syncing(alice)
    path = write_eml(tmp_path, "a.eml", to="support@contoso.com, alice@contoso.com", message_id="<dup@x>")
    first = one(ingest(cmd, "support@contoso.com", "inbox", path))
    again = one(ingest(cmd, "support@contoso.com", "inbox", path))
    # the same message in Alice's mailbox: already tracked, nothing new for the queue
    elsewhere = one(ingest(cmd, "alice@contoso.com", "inbox", path))

    assert first["new"] and not again["new"]
    assert again["queue_items"] == ["Support"]
    assert (elsewhere["outcome"], elsewhere["queue_items"]) == ("already_tracked", ["Support"])
    assert QueueItem.objects.count() == 1


def test_the_json_of_many_decisions_costs_no_query_per_row(support, cmd, tmp_path):
    # ingest --json loads owners and queue items per page: 30 messages print with the queries of 3.
    def run(n: int, tag: str) -> int:
        paths = [
            write_eml(tmp_path, f"{tag}{i}.eml", to="support@contoso.com", message_id=f"<{tag}{i}@x>")
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as ctx:
            rows = ingest(cmd, "support@contoso.com", "inbox", *paths)
        assert all(r["queue_items"] == ["Support"] for r in rows)
        return len(ctx.captured_queries)

    run(2, "warm")  # the first run pays for what is loaded once (the org settings row, …)
    assert run(3, "few") == run(30, "many")


# ---------------------------------------------------------------------------------------------
# Scans and reprocessing rounds (a local profile: the folder is read again from the "server")
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def help_desk(db, tmp_path: Path) -> Mailbox:
    """helpdesk@contoso.com, queue Help Desk's mailbox on a local profile, with three messages."""
    root = tmp_path / "mail"
    (root / "helpdesk@contoso.com").mkdir(parents=True)
    write_mbox(
        root / "helpdesk@contoso.com" / "inbox.mbox",
        *(
            message(
                to="helpdesk@contoso.com",
                message_id=f"<hd{i}@example.net>",
                subject=f"Printer {i}",
                date=datetime(2026, 3, 2, 9, i, tzinfo=UTC),
            )
            for i in range(3)
        ),
    )
    check_add_profile(ProfileValues("files", "local", endpoint=str(root)))
    mailbox = queue_mailbox("helpdesk@contoso.com", "Help Desk", "files")
    syncing(mailbox)
    return Mailbox.objects.get(pk=mailbox.pk)


def run_round(mailbox: Mailbox) -> None:
    request = check_round([mailbox], LONG_AGO, (), now=timezone.now())
    round = do_start_round(request, acting_user=None, via="test")
    for run in round.runs.order_by("pk"):
        run_round_folder(run.pk)


def test_rescans_and_reprocessing_rounds_make_no_second_item(help_desk):
    scan_folder(help_desk.pk, "inbox")
    assert QueueItem.objects.count() == 3
    FolderSyncState.objects.filter(mailbox=help_desk).update(state="")  # a full resync
    scan_folder(help_desk.pk, "inbox")
    run_round(help_desk)
    run_round(help_desk)

    assert TrackedEmail.objects.count() == 3
    assert QueueItem.objects.count() == 3
    assert Decision.objects.filter(mailbox=help_desk, round__isnull=False).count() == 6


def test_a_round_that_tracks_makes_the_items_and_prints_them(help_desk, cmd):
    set_queue_track(help_desk, TrackOption.NONE)
    scan_folder(help_desk.pk, "inbox")
    assert not TrackedEmail.objects.exists()
    set_queue_track(help_desk, TrackOption.ALL)

    rows = cmd("reprocess", "helpdesk@contoso.com", "--since", "1990-01-01T00:00:00Z", "--json").json_lines()

    assert [(r["outcome"], r["queue_items"]) for r in rows] == [("tracked", ["Help Desk"])] * 3
    assert QueueItem.objects.count() == 3
    again = cmd("reprocess", "helpdesk@contoso.com", "--since", "1990-01-01T00:00:00Z", "--json").json_lines()
    assert [(r["outcome"], r["queue_items"]) for r in again] == [("already_tracked", ["Help Desk"])] * 3
    assert QueueItem.objects.count() == 3


# ---------------------------------------------------------------------------------------------
# The queue page: the list, its filter and pages; Mark done
# ---------------------------------------------------------------------------------------------


def make_items(queue: Queue, n: int, *, done: int = 0) -> list[QueueItem]:
    """`n` items, the first `done` of them done; item i was added i minutes after the first."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    emails = TrackedEmail.objects.bulk_create(
        TrackedEmail(message_id=f"<item-{queue.pk}-{i}@x>", direction="incoming", subject=f"Item {i}")
        for i in range(n)
    )
    return QueueItem.objects.bulk_create(
        QueueItem(
            queue=queue,
            tracked_email=e,
            created_at=start + timedelta(minutes=i),
            state=QueueItemState.DONE if i < done else QueueItemState.ACTIVE,
            done_at=start + timedelta(hours=1) if i < done else None,
        )
        for i, e in enumerate(emails)
    )


def subjects(response) -> list[str]:
    page = response.context["page"]
    return [item.tracked_email.subject for item in page.rows]


@pytest.fixture
def queue(db) -> Queue:
    return Queue.objects.create(name="Support", email="support@contoso.com")


def test_the_queue_page_lists_its_items_newest_first_linking_to_their_decision(
    admin, alice, support, cmd, tmp_path, client
):
    syncing(alice)
    for i in range(2):
        path = write_eml(
            tmp_path, f"{i}.eml", to="support@contoso.com", message_id=f"<page{i}@x>", subject=f"S{i}"
        )
        ingest(cmd, "support@contoso.com", "inbox", path)
    queue = Queue.objects.get(name="Support")
    make_items(Queue.objects.create(name="Other"), 1)  # another queue's item is not listed

    response = login(client, admin).get(reverse("web-queue", args=[queue.pk]))

    assert response.status_code == 200
    assert subjects(response) == ["S1", "S0"]
    decision = Decision.objects.get(message_id="<page1@x>")
    assert reverse("web-decision", args=[decision.pk]) in response.content.decode()
    assert b"Mark done" in response.content


def test_auditors_read_the_list_without_the_done_button(auditor, queue, client):
    make_items(queue, 2)
    response = login(client, auditor).get(reverse("web-queue", args=[queue.pk]))
    assert response.status_code == 200
    assert subjects(response) == ["Item 1", "Item 0"]
    assert b"Mark done" not in response.content


def test_the_list_filters_by_state(admin, queue, client):
    make_items(queue, 5, done=2)
    login(client, admin)
    url = reverse("web-queue", args=[queue.pk])

    assert subjects(client.get(url, {"state": "active"})) == ["Item 4", "Item 3", "Item 2"]
    assert subjects(client.get(url, {"state": "done"})) == ["Item 1", "Item 0"]
    assert len(subjects(client.get(url, {"state": ""}))) == 5
    # a state that is none: said so above the list, which stays unfiltered (as every list's filters do)
    refused = client.get(url, {"state": "lost"})
    assert refused.status_code == 200 and "state" in refused.context["filter"].errors
    assert b'role="alert"' in refused.content


def test_the_list_pages_by_keyset_both_ways(admin, queue, client):
    make_items(queue, 25, done=10)
    do_set_personal_options(admin, rows_per_page=10)
    login(client, admin)
    url = reverse("web-queue", args=[queue.pk])

    first = client.get(url)
    assert subjects(first) == [f"Item {i}" for i in range(24, 14, -1)]
    page = first.context["page"]
    assert page.previous is None and page.next is not None
    second = client.get(url, {"before": page.next})
    assert subjects(second) == [f"Item {i}" for i in range(14, 4, -1)]
    third = client.get(url, {"before": second.context["page"].next})
    assert subjects(third) == [f"Item {i}" for i in range(4, -1, -1)]
    assert third.context["page"].next is None
    back = client.get(url, {"after": third.context["page"].previous})
    assert subjects(back) == subjects(second)
    # with the filter: the active ones only, paged the same way
    active = client.get(url, {"state": "active"})
    assert subjects(active) == [f"Item {i}" for i in range(24, 14, -1)]
    rest = client.get(url, {"state": "active", "before": active.context["page"].next})
    assert subjects(rest) == [f"Item {i}" for i in range(14, 9, -1)]


def test_the_htmx_request_gets_the_table_alone(admin, queue, client):
    make_items(queue, 3, done=1)
    response = login(client, admin).get(
        reverse("web-queue", args=[queue.pk]), {"state": "done"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert b"<h1" not in response.content
    assert subjects(response) == ["Item 0"]


def test_an_admin_marks_an_item_done_audited_once(admin, queue, client):
    [item] = make_items(queue, 1)
    login(client, admin)

    response = client.post(reverse("web-queue-item-done", args=[item.pk]), {"back": "?state=active&evil=1"})

    assert response.status_code == 302
    assert response["Location"] == reverse("web-queue", args=[queue.pk]) + "?state=active"
    item.refresh_from_db()
    assert item.state == QueueItemState.DONE and item.done_by == admin and item.done_at is not None
    [event] = AuditEvent.objects.filter(action="queue_item_done")
    assert (event.actor, event.old_value) == (admin, "active")
    assert event.target.startswith("Support: queue item")
    assert event.new_value.startswith("done at ")
    # a second press changes nothing and audits nothing
    client.post(reverse("web-queue-item-done", args=[item.pk]))
    assert AuditEvent.objects.filter(action="queue_item_done").count() == 1
    page = client.get(reverse("web-queue", args=[queue.pk]))
    assert "ada" in page.content.decode()


@pytest.mark.parametrize("role", ["auditor", "user"])
def test_only_admins_mark_items_done(role, auditor, alice, queue, client):
    [item] = make_items(queue, 1)
    person: User = auditor if role == "auditor" else alice.user
    response = login(client, person).post(reverse("web-queue-item-done", args=[item.pk]))
    assert response.status_code == 403
    item.refresh_from_db()
    assert item.state == QueueItemState.ACTIVE
    assert not AuditEvent.objects.filter(action="queue_item_done").exists()


def test_an_unknown_item_is_404(admin, client):
    assert login(client, admin).post(reverse("web-queue-item-done", args=[999999])).status_code == 404


def test_the_item_state_is_translated(admin, queue, client):
    make_items(queue, 1, done=1)
    do_set_personal_options(admin, language="de")
    content = login(client, admin).get(reverse("web-queue", args=[queue.pk])).content.decode()
    assert "Warteschlangenelemente" in content
    assert "Erledigt" in content
