"""Golden tests: the simulator's EWS answers against XML modelled on Microsoft's published samples.

Each simulator response is compared with its sample in tests/data/ews/ twice: structurally (namespace
URIs, element names and order, attribute names; prefixes and whitespace may differ) and through
exchangelib's own service parsers, which must read the same objects (or raise the same error) from both.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from exchangelib import BASIC, DELEGATE, Account, Build, Configuration, Credentials
from exchangelib.errors import (
    ErrorFolderNotFound,
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
    ErrorServerBusy,
)
from exchangelib.folders import Inbox, Root, SentItems
from exchangelib.items import ID_ONLY
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.services import GetFolder, GetItem, SyncFolderItems

from syncadmin.devtools.simulators.ews import encode_state
from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests.ews_golden import MAILBOX, assert_same_structure, ews_sample, golden_account, post
from tracking.messages import ParsedMessage, parse_message
from tracking.sources.ews import FETCH_FIELDS, message_from_item

THREAD_INDEX = base64.b64encode(bytes(range(22)) + bytes(range(5))).decode()
REPLY = f"""From: Sales <sales@vendor.example>
Sender: Assistant <assistant@vendor.example>
To: Alice <alice@customer.example>
Cc: Bob <bob@customer.example>
Bcc: audit@vendor.example
Subject: RE: Quote request
Date: Thu, 01 Oct 2026 09:00:00 +0000
Message-ID: <b2@vendor.example>
In-Reply-To: <a1@customer.example>
References: <a1@customer.example>
Thread-Index: {THREAD_INDEX}
MIME-Version: 1.0
Content-Type: text/plain

Thanks for asking.
""".encode()
DRAFT = b"From: x@vendor.example\nSubject: draft\nMessage-ID: <x@vendor.example>\n\nx\n"


def golden_store() -> MailStore:
    """Sent Items: a draft (change 1), the reply (2), the draft deleted (3), another message (4)."""
    store = MailStore()
    draft = store.add_message(MAILBOX, "sentitems", DRAFT, datetime(2026, 9, 30, 8, 0, tzinfo=UTC))
    store.add_message(MAILBOX, "sentitems", REPLY, datetime(2026, 10, 1, 9, 0, 3, tzinfo=UTC))
    store.delete_message(MAILBOX, "sentitems", draft.item_id)
    store.add_message(
        MAILBOX, "sentitems", DRAFT.replace(b"<x@", b"<y@"), datetime(2026, 10, 2, 8, 0, tzinfo=UTC)
    )
    return store


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(golden_store()) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def no_faults(sim: Simulator) -> None:
    sim.faults.clear()


@pytest.fixture(scope="module")
def account(sim: Simulator) -> Account:
    return golden_account(sim)


def sent_items(account: Account) -> SentItems:
    mailbox = Mailbox(email_address=MAILBOX)
    root = Root(account=account, _distinguished_id=DistinguishedFolderId(id="root", mailbox=mailbox))
    return SentItems(root=root, _distinguished_id=DistinguishedFolderId(id="sentitems", mailbox=mailbox))


def fields_of(item: Any) -> dict[str, Any]:
    return {f.name: getattr(item, f.name) for f in item.FIELDS}


def additional(folder: Any, names: list[str]) -> set[Any]:
    return {f for f in folder.normalize_fields(fields=names) if not f.field.is_attribute}


def test_it_answers_a_syncfolderitems_page_like_the_sample(sim, account):
    folder = sent_items(account)
    service = SyncFolderItems(account=account)
    payload = service.get_payload(
        folder=folder,
        shape=ID_ONLY,
        additional_fields=additional(
            folder, ["subject", "datetime_received", "datetime_sent", "sender", "author", "message_id"]
        ),
        sync_state=encode_state("sentitems", 1, 1),
        ignore=None,
        max_changes_returned=2,
        sync_scope="NormalItems",
    )

    response = post(sim, service, payload)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    # the prefixes exchangelib and the samples use: s (envelope), m (messages), t (types)
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http')
    assert (
        b'<m:SyncFolderItemsResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
        in (response.content)
    )
    assert b"<t:InternetMessageId>&lt;b2@vendor.example&gt;</t:InternetMessageId>" in response.content
    assert_same_structure(response.content, "syncfolderitems-create-delete.xml")

    ours, theirs = SyncFolderItems(account=account), SyncFolderItems(account=account)
    got, expected = (
        list(ours.parse(response.content)),
        list(theirs.parse(ews_sample("syncfolderitems-create-delete.xml"))),
    )
    assert [kind for kind, _ in got] == [kind for kind, _ in expected] == ["create", "delete"]
    assert fields_of(got[0][1]) == fields_of(expected[0][1])
    assert got[0][1].message_id == "<b2@vendor.example>"
    assert got[1][1].id == expected[1][1].id
    assert (ours.sync_state, ours.includes_last_item_in_range) == (theirs.sync_state, False)


def test_it_answers_an_invalid_sync_state_like_the_sample(sim, account):
    service = SyncFolderItems(account=account)
    payload = service.get_payload(
        folder=sent_items(account),
        shape=ID_ONLY,
        additional_fields=None,
        sync_state="H4sIAAAAAAAEAO29B2AcSZ",
        ignore=None,
        max_changes_returned=100,
        sync_scope="NormalItems",
    )

    response = post(sim, service, payload)

    assert response.status_code == 200
    assert_same_structure(response.content, "syncfolderitems-invalid-sync-state.xml")
    errors = []
    for body in (response.content, ews_sample("syncfolderitems-invalid-sync-state.xml")):
        with pytest.raises(ErrorInvalidSyncStateData) as caught:
            list(SyncFolderItems(account=account).parse(body))
        errors.append(str(caught.value))
    assert errors[0] == errors[1] == "Synchronization state data is corrupt or otherwise invalid."


def test_it_answers_an_old_generation_state_with_the_same_error(sim, account):
    sim.store.invalidate_sync_states(MAILBOX, "sentitems")
    try:
        service = SyncFolderItems(account=account)
        payload = service.get_payload(
            folder=sent_items(account),
            shape=ID_ONLY,
            additional_fields=None,
            sync_state=encode_state("sentitems", 1, 1),
            ignore=None,
            max_changes_returned=100,
            sync_scope=None,
        )
        response = post(sim, service, payload)
        assert_same_structure(response.content, "syncfolderitems-invalid-sync-state.xml")
    finally:
        sim.store.folder(MAILBOX, "sentitems").generation = 1


def test_it_answers_getitem_per_id_with_item_not_found_like_the_sample(sim, account):
    folder = sent_items(account)
    reply_id = next(m.item_id for m in sim.store.all_messages(MAILBOX, "sentitems") if m.raw == REPLY)
    service = GetItem(account=account)
    payload = service.get_payload(
        items=[(reply_id, "CQAAAB"), ("AAMkADgone", "CQAAAB")],
        additional_fields=additional(folder, list(FETCH_FIELDS)),
        shape=ID_ONLY,
    )

    response = post(sim, service, payload)

    assert response.status_code == 200
    assert_same_structure(response.content, "getitem-found-and-not-found.xml")
    got = list(GetItem(account=account).parse(response.content))
    expected = list(GetItem(account=account).parse(ews_sample("getitem-found-and-not-found.xml")))
    assert fields_of(got[0]) == fields_of(expected[0])
    assert isinstance(got[1], ErrorItemNotFound) and isinstance(expected[1], ErrorItemNotFound)
    assert str(got[1]) == str(expected[1]) == "The specified object was not found in the store."
    # and what the connector makes of it reads exactly as the MIME parser reads the message itself
    message = message_from_item(got[0])
    mime = parse_message(
        REPLY, provider_item_id=reply_id, received_at=datetime(2026, 10, 1, 9, 0, 3, tzinfo=UTC)
    )
    assert isinstance(message, ParsedMessage)
    assert message == mime
    assert message.conversation_index == (bytes(range(22)) + bytes(range(5))).hex()


def test_it_answers_server_busy_with_the_fault_exchangelib_expects(sim, account):
    sim.faults.add(Fault("server_busy", protocol="ews", back_off_ms=297749))
    service = GetItem(account=account)
    payload = service.get_payload(items=[("AAMkADany", "CQAAAB")], additional_fields=None, shape=ID_ONLY)

    response = post(sim, service, payload)

    assert response.status_code == 500
    assert_same_structure(response.content, "server-busy.xml")
    for body in (response.content, ews_sample("server-busy.xml")):
        with pytest.raises(ErrorServerBusy) as caught:
            list(GetItem(account=account).parse(body))
        assert caught.value.back_off == pytest.approx(297.749)


def test_it_answers_getfolder_and_refuses_an_unknown_folder(sim, account):
    mailbox = Mailbox(email_address=MAILBOX)
    root = Root(account=account, _distinguished_id=DistinguishedFolderId(id="root", mailbox=mailbox))
    inbox = Inbox(root=root, _distinguished_id=DistinguishedFolderId(id="inbox", mailbox=mailbox))
    junk = Inbox(root=root, _distinguished_id=DistinguishedFolderId(id="junkemail", mailbox=mailbox))
    service = GetFolder(account=account)
    service.folders = [inbox, junk]
    fields = additional_folder_fields(inbox)
    payload = service.get_payload(folders=[inbox, junk], additional_fields=fields, shape=ID_ONLY)

    response = post(sim, service, payload)

    found, missing = list(service.parse(response.content))
    assert found.name == "Inbox" and found.total_count == 0
    assert isinstance(missing, ErrorFolderNotFound)


def additional_folder_fields(folder: Any) -> list[Any]:
    from exchangelib.fields import FieldPath

    return [FieldPath(field=folder.get_field_by_fieldname(name)) for name in ("name", "total_count")]


def test_exchangelib_pages_finditem_with_an_indexed_view(sim, account):
    query = sent_items(account).all().only("subject", "datetime_received")
    query.page_size = 1

    subjects = [item.subject for item in query]

    assert subjects == ["draft", "RE: Quote request"]  # newest first


def test_exchangelib_learns_auth_type_and_version_from_the_simulator(sim, account):
    """Without pinning: an unauthenticated probe gets 401 + WWW-Authenticate, then ConvertId carries the
    ServerVersionInfo header. (EwsSource pins both so that neither request is ever made.)"""
    config = Configuration(
        service_endpoint=f"{sim.url}/EWS/Exchange.asmx", credentials=Credentials("svc-probe", "pw")
    )
    sim.clear_requests()

    account = Account(MAILBOX, config=config, autodiscover=False, access_type=DELEGATE)
    assert account.protocol.auth_type == BASIC
    assert account.version.build == Build(15, 1, 2507, 6)
    assert account.version.api_version == "Exchange2016"
    assert [r.status for r in sim.requests] == [401, 200]


def test_it_challenges_for_basic_and_bearer_without_credentials(sim):
    response = requests.post(
        f"{sim.url}/EWS/Exchange.asmx", data=b"<x/>", verify=str(sim.ca_file), timeout=10
    )

    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Basic realm="')
    assert "Bearer" in challenge


def test_it_refuses_a_request_with_a_dtd(sim):
    body = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>&lol2;</s:Body></s:Envelope>"""

    response = requests.post(
        f"{sim.url}/EWS/Exchange.asmx",
        data=body,
        auth=("svc-golden", "pw"),
        verify=str(sim.ca_file),
        timeout=10,
    )

    assert response.status_code == 500
    assert b"ErrorSchemaValidation" in response.content
    assert b"DTD is prohibited" in response.content
    assert b"lollol" not in response.content
