"""Golden tests of the simulator's EWS streaming notifications against Microsoft's published samples
(tests/data/ews/README.md): structurally (names, order, attributes) and through exchangelib's own parsers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from exchangelib import Account
from exchangelib.errors import ErrorSubscriptionNotFound
from exchangelib.folders import Inbox, Root
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.services import GetStreamingEvents, SubscribeToStreaming, Unsubscribe

from syncadmin.devtools.simulators.ews import folder_id
from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests.ews_golden import MAILBOX, assert_same_structure, ews_sample, golden_account, post

MESSAGE = (
    b"From: a@customer.example\nTo: sales@vendor.example\nSubject: hi\n"
    b"Message-ID: <n1@customer.example>\n\nx\n"
)
EVENTS = ["CreatedEvent", "NewMailEvent", "ModifiedEvent"]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    store = MailStore()
    store.folder(MAILBOX, "inbox")
    with Simulator(store) as simulator:
        simulator.ews_streaming.connection_timeout = 1.0
        simulator.ews_streaming.heartbeat = 60.0
        yield simulator


@pytest.fixture
def account(sim: Simulator) -> Account:
    return golden_account(sim)


def inbox(account: Account) -> Inbox:
    mailbox = Mailbox(email_address=MAILBOX)
    root = Root(account=account, _distinguished_id=DistinguishedFolderId(id="root", mailbox=mailbox))
    return Inbox(root=root, _distinguished_id=DistinguishedFolderId(id="inbox", mailbox=mailbox))


def subscribe(sim: Simulator, account: Account, events: list[str] = EVENTS) -> requests.Response:
    service = SubscribeToStreaming(account=account)
    return post(sim, service, service.get_payload(folders=[inbox(account)], event_types=events))


def subscription(sim: Simulator, account: Account, events: list[str] = EVENTS) -> str:
    (found,) = SubscribeToStreaming(account=account).parse(subscribe(sim, account, events).content)
    return str(found)


def documents(body: bytes) -> list[bytes]:
    return [b"<?xml" + part for part in body.split(b"<?xml")[1:]]


def stream(sim: Simulator, account: Account, subscription_id: str, *, during: Any = None) -> list[bytes]:
    """A GetStreamingEvents connection read to its end, chunk by chunk; `during` runs once it is open."""
    service = GetStreamingEvents(account=account)
    payload = service.get_payload(subscription_ids=[subscription_id], connection_timeout=1)
    response = post(sim, service, payload, stream=True)
    assert response.status_code == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    chunks: list[bytes] = []
    helper = threading.Thread(target=during or (lambda: None))
    for chunk in response.iter_content(chunk_size=None):
        if not chunks:
            helper.start()
        chunks.append(chunk)
    helper.join(10)
    return documents(b"".join(chunks))


def test_it_answers_a_streaming_subscribe_like_the_sample(sim, account):
    response = subscribe(sim, account)

    assert response.status_code == 200
    assert_same_structure(response.content, "subscribe-streaming.xml")
    ours = list(SubscribeToStreaming(account=account).parse(response.content))
    theirs = list(SubscribeToStreaming(account=account).parse(ews_sample("subscribe-streaming.xml")))
    assert len(ours) == len(theirs) == 1
    assert ours[0] == sim.ews_streaming.subscriptions(MAILBOX)[0].id
    assert theirs[0] == "f6bc657d-dde1-4f94-952d-143b95d6483d"


def test_it_streams_new_mail_as_the_sample_shows_and_closes_at_the_timeout(sim, account):
    subscription_id = subscription(sim, account)
    started = time.monotonic()

    docs = stream(
        sim, account, subscription_id, during=lambda: sim.store.add_message(MAILBOX, "inbox", MESSAGE)
    )

    assert 0.9 < time.monotonic() - started < 5  # the connection timeout, in seconds for the tests
    assert len(docs) == 3  # the first status at once, the new mail, then Closed
    assert_same_structure(docs[1], "getstreamingevents-notification.xml")
    assert_same_structure(docs[2], "getstreamingevents-closed.xml")
    ours = list(GetStreamingEvents(account=account).parse(b"".join(docs)))
    theirs = list(
        GetStreamingEvents(account=account).parse(ews_sample("getstreamingevents-notification.xml"))
    )
    assert [type(e).__name__ for e in ours[0].events] == ["StatusEvent"]
    assert (
        [type(e).__name__ for e in ours[1].events] == [type(e).__name__ for e in theirs[0].events] == EVENTS
    )
    created, new_mail, modified = ours[1].events
    item = sim.store.all_messages(MAILBOX, "inbox")[0]
    assert created.item_id.id == new_mail.item_id.id == item.item_id
    assert created.parent_folder_id.id == modified.folder_id.id == folder_id(MAILBOX, "inbox")
    assert modified.unread_count == 1


def test_it_answers_an_unknown_subscription_like_the_sample(sim, account):
    docs = stream(sim, account, "f6bc657d-dde1-4f94-952d-143b95d6483d")

    assert len(docs) == 1
    assert_same_structure(docs[0], "getstreamingevents-subscription-not-found.xml")
    for body in (docs[0], ews_sample("getstreamingevents-subscription-not-found.xml")):
        with pytest.raises(ErrorSubscriptionNotFound) as caught:
            list(GetStreamingEvents(account=account).parse(body))
        assert "f6bc657d-dde1-4f94-952d-143b95d6483d" in str(caught.value)


def test_an_subscription_expired_is_not_found_and_its_events_are_lost(sim, account):
    subscription_id = subscription(sim, account)
    sim.faults.add(Fault("subscription_expired", protocol="ews", mailbox=MAILBOX))

    docs = stream(sim, account, subscription_id)

    assert_same_structure(docs[0], "getstreamingevents-subscription-not-found.xml")
    assert sim.ews_streaming.subscriptions(MAILBOX) == []


def test_a_notification_dropped_loses_one_change_only(sim, account):
    subscription_id = subscription(sim, account)
    sim.faults.add(Fault("notification_dropped", protocol="ews", mailbox=MAILBOX))

    def two_messages() -> None:
        sim.store.add_message(MAILBOX, "inbox", MESSAGE)
        sim.store.add_message(MAILBOX, "inbox", MESSAGE.replace(b"<n1@", b"<n2@"))

    docs = stream(sim, account, subscription_id, during=two_messages)

    events = [e for n in GetStreamingEvents(account=account).parse(b"".join(docs)) for e in n.events]
    second = sim.store.all_messages(MAILBOX, "inbox")[1].item_id
    assert [(type(e).__name__, e.item_id.id if e.item_id else None) for e in events[1:]] == [
        ("CreatedEvent", second),
        ("NewMailEvent", second),
        ("ModifiedEvent", None),
    ]


def test_a_move_into_the_subscribed_folder_is_a_moved_event(sim, account):
    subscription_id = subscription(sim, account, ["MovedEvent"])
    elsewhere = sim.store.add_message(MAILBOX, "deleteditems", MESSAGE)

    docs = stream(
        sim,
        account,
        subscription_id,
        during=lambda: sim.store.move_message(MAILBOX, elsewhere.item_id, "inbox"),
    )

    moved = [e for n in GetStreamingEvents(account=account).parse(b"".join(docs)) for e in n.events][1:]
    assert [type(e).__name__ for e in moved] == ["MovedEvent"]
    assert moved[0].old_item_id.id == elsewhere.item_id
    assert moved[0].item_id.id == sim.store.all_messages(MAILBOX, "inbox")[0].item_id


def test_it_unsubscribes_like_the_sample_and_ends_the_open_stream(sim, account):
    subscription_id = subscription(sim, account)
    sim.ews_streaming.connection_timeout = 30.0
    service = Unsubscribe(account=account)
    answers: list[requests.Response] = []
    started = time.monotonic()

    docs = stream(
        sim,
        account,
        subscription_id,
        during=lambda: answers.append(
            post(sim, service, service.get_payload(subscription_id=subscription_id))
        ),
    )

    assert time.monotonic() - started < 5
    assert_same_structure(answers[0].content, "unsubscribe.xml")
    assert_same_structure(docs[-1], "getstreamingevents-closed.xml")
    assert sim.ews_streaming.subscriptions() == []
