"""Golden tests for the simulator's attachment operations: EWS GetItem `Attachments` and GetAttachment
against XML modelled on Microsoft's samples (tests/data/ews/), read by exchangelib's own parsers from
both; Graph's attachment collection, fileAttachment and JSON batching against Microsoft's samples
(tests/data/graph/), compared by shape."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from exchangelib import Account
from exchangelib.attachments import AttachmentId, FileAttachment, ItemAttachment
from exchangelib.errors import ErrorInvalidIdMalformed, ErrorItemNotFound
from exchangelib.folders import Inbox, Root
from exchangelib.items import ID_ONLY
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.services import GetAttachment, GetItem

from syncadmin.devtools.simulators.attachments import attachments_of
from syncadmin.devtools.simulators.graph import rest_id
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore, SimMessage
from tests.ews_golden import MAILBOX, ews_sample, golden_account, post, skeleton
from tests.test_simulator_graph_golden import assert_same_shape

GRAPH_DATA = Path(__file__).parent / "data" / "graph"
CLIENT_ID = "0b6a3f4e-1d2c-4e5f-8a9b-7c6d5e4f3a2b"
SECRET = "golden-secret"
RAW = (
    b"From: Alice <alice@customer.example>\r\nTo: Sales <sales@vendor.example>\r\nSubject: Order\r\n"
    b"Date: Thu, 01 Oct 2026 09:00:00 +0000\r\nMessage-ID: <att@customer.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
    b"--B\r\nContent-Type: text/plain\r\n\r\nThe order.\r\n"
    b'--B\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="order.txt"\r\n\r\n'
    b"12 widgets\r\n"
    b"--B\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: bob@customer.example\r\nSubject: Earlier\r\n\r\nEarlier.\r\n"
    b"--B--\r\n"
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    store = MailStore()
    store.add_message(MAILBOX, "inbox", RAW, datetime(2026, 10, 1, 9, 0, 3, tzinfo=UTC))
    with Simulator(store, credentials={"svc-golden": "pw", CLIENT_ID: SECRET}) as server:
        yield server


@pytest.fixture
def message(sim: Simulator) -> SimMessage:
    (msg,) = sim.store.all_messages(MAILBOX, "inbox")
    return msg


# -- EWS ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def account(sim: Simulator) -> Account:
    return golden_account(sim)


def fields_of(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in obj.FIELDS if f.name not in ("_item", "parent_item")}


def test_getitem_lists_attachments_without_content_like_the_sample(sim, account, message):
    inbox = Inbox(
        root=Root(account=account, _distinguished_id=DistinguishedFolderId(id="root")),
        _distinguished_id=DistinguishedFolderId(id="inbox", mailbox=Mailbox(email_address=MAILBOX)),
    )
    fields = {f for f in inbox.normalize_fields(fields=["attachments"]) if not f.field.is_attribute}
    service = GetItem(account=account)
    payload = service.get_payload(
        items=[(message.item_id, message.change_key)], additional_fields=fields, shape=ID_ONLY
    )

    response = post(sim, service, payload)

    assert response.status_code == 200
    assert skeleton(ET.fromstring(response.content)) == skeleton(
        ET.fromstring(ews_sample("getitem-attachments.xml"))
    )
    (got,) = GetItem(account=account).parse(response.content)
    (expected,) = GetItem(account=account).parse(ews_sample("getitem-attachments.xml"))
    assert [fields_of(a) for a in got.attachments] == [fields_of(a) for a in expected.attachments]
    (file,) = [a for a in got.attachments if isinstance(a, FileAttachment)]
    (item,) = [a for a in got.attachments if isinstance(a, ItemAttachment)]
    assert item.name == "Earlier"
    assert (file.name, file.content_type, file.size, file._content) == ("order.txt", "text/plain", 10, None)


def test_getattachment_answers_content_per_id_like_the_sample(sim, account, message):
    file_id, item_id = (a.attachment_id for a in attachments_of(message))
    service = GetAttachment(account=account)
    payload = service.get_payload(
        items=[AttachmentId(id=file_id), AttachmentId(id=item_id), AttachmentId(id="bm90IG91cnM=")],
        include_mime_content=True,
        body_type=None,
        filter_html_content=None,
        additional_fields=None,
    )

    response = post(sim, service, payload)

    assert response.status_code == 200
    sample = ews_sample("getattachment-file-item-and-malformed.xml")
    assert skeleton(ET.fromstring(response.content)) == skeleton(ET.fromstring(sample))
    got = list(GetAttachment(account=account).parse(response.content))
    expected = list(GetAttachment(account=account).parse(sample))
    assert fields_of(got[0]) == fields_of(expected[0])
    assert got[0]._content == b"12 widgets"
    assert got[1]._item.mime_content == expected[1]._item.mime_content
    assert b"Subject: Earlier" in got[1]._item.mime_content
    assert isinstance(got[2], ErrorInvalidIdMalformed) and isinstance(expected[2], ErrorInvalidIdMalformed)


def test_getattachment_of_a_deleted_message_is_item_not_found(sim, account):
    gone = sim.store.add_message(MAILBOX, "inbox", RAW.replace(b"<att@", b"<gone@"))
    (first, _) = attachments_of(gone)
    sim.store.delete_message(MAILBOX, "inbox", gone.item_id)
    service = GetAttachment(account=account)
    payload = service.get_payload(
        items=[AttachmentId(id=first.attachment_id)],
        include_mime_content=False,
        body_type=None,
        filter_html_content=None,
        additional_fields=None,
    )
    (result,) = GetAttachment(account=account).parse(post(sim, service, payload).content)
    assert isinstance(result, ErrorItemNotFound)


# -- Graph -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token(sim: Simulator) -> str:
    response = requests.post(
        f"{sim.url}/contoso.example/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=str(sim.ca_file),
        timeout=10,
    )
    return str(response.json()["access_token"])


def graph_sample(name: str) -> dict[str, Any]:
    return json.loads((GRAPH_DATA / name).read_text())


def graph(sim: Simulator, token: str, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method,
        f"{sim.url}/v1.0{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=str(sim.ca_file),
        timeout=10,
    )


def test_graph_lists_a_messages_attachments_like_the_sample(sim, token, message):
    response = graph(sim, token, "GET", f"/users/{MAILBOX}/messages/{rest_id(message.item_id)}/attachments")

    assert response.status_code == 200
    body = response.json()
    theirs = graph_sample("attachments-list-response.json")
    file, item = body["value"]
    assert_same_shape({**body, "value": []}, {**theirs, "value": []})
    assert_same_shape(file, theirs["value"][0])
    assert_same_shape(item, theirs["value"][1])
    assert (file["@odata.type"], item["@odata.type"]) == (
        "#microsoft.graph.fileAttachment",
        "#microsoft.graph.itemAttachment",
    )
    assert base64.b64decode(file["contentBytes"]) == b"12 widgets"


def test_graph_select_leaves_the_content_out(sim, token, message):
    select = "$select=id,name,contentType,size,isInline"
    path = f"/users/{MAILBOX}/messages/{rest_id(message.item_id)}/attachments?{select}"
    file, _ = graph(sim, token, "GET", path).json()["value"]
    assert set(file) == {
        "@odata.type",
        "@odata.mediaContentType",
        "id",
        "name",
        "contentType",
        "size",
        "isInline",
    }


def test_graph_gets_one_file_attachment_like_the_sample(sim, token, message):
    first = attachments_of(message)[0]
    path = f"/users/{MAILBOX}/messages/{rest_id(message.item_id)}/attachments/{rest_id(first.attachment_id)}"

    response = graph(sim, token, "GET", path)

    assert response.status_code == 200
    assert_same_shape(response.json(), graph_sample("attachment-get-file-response.json"))


def test_graph_answers_a_batch_like_the_sample(sim, token, message):
    listing = f"/users/{MAILBOX}/messages/{rest_id(message.item_id)}/attachments?$select=id,name"
    body = {
        "requests": [
            {"id": "1", "method": "GET", "url": listing},
            {"id": "2", "method": "GET", "url": f"/users/{MAILBOX}/messages/AAMkADgone/attachments"},
        ]
    }

    response = graph(sim, token, "POST", "/$batch", body)

    assert response.status_code == 200
    answer = response.json()
    theirs = graph_sample("batch-response.json")
    assert_same_shape({"responses": []}, {**theirs, "responses": []})
    ok, missing = sorted(answer["responses"], key=lambda r: r["id"])
    # the sample lists one fileAttachment; the itemAttachment has no @odata.mediaContentType
    assert_same_shape(
        {**ok, "body": {**ok["body"], "value": ok["body"]["value"][:1]}}, theirs["responses"][0]
    )
    assert_same_shape(missing, theirs["responses"][1])
    assert (ok["status"], missing["status"]) == (200, 404)
    assert [a["name"] for a in ok["body"]["value"]] == ["order.txt", "Earlier"]
    assert missing["body"]["error"]["code"] == "ErrorItemNotFound"


def test_graph_refuses_a_batch_of_more_than_twenty(sim, token):
    body = {"requests": [{"id": str(n), "method": "GET", "url": f"/users/{MAILBOX}"} for n in range(21)]}
    response = graph(sim, token, "POST", "/$batch", body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "BadRequest"


def test_graph_batch_hands_a_body_that_is_not_json_over_in_base64(sim, token, message):
    item = attachments_of(message)[1]
    messages = f"/users/{MAILBOX}/messages/{rest_id(message.item_id)}"
    url = f"{messages}/attachments/{rest_id(item.attachment_id)}/$value"
    alone = graph(sim, token, "GET", url)
    assert alone.headers["Content-Type"] == "message/rfc822" and b"Subject: Earlier" in alone.content

    answer = graph(sim, token, "POST", "/$batch", {"requests": [{"id": "1", "method": "GET", "url": url}]})

    (step,) = answer.json()["responses"]
    assert step["status"] == 200 and step["headers"]["Content-Type"] == "message/rfc822"
    assert base64.b64decode(step["body"]) == alone.content
