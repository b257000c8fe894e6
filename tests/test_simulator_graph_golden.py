"""Golden tests: the simulator's Graph and identity-platform answers have the keys, nesting, value types
and OData annotations of Microsoft's published samples (tests/data/graph/, see its README).
Volatile values (ids, tokens, dates, hosts) are compared by pattern, not by value."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import msal
import pytest
import requests

from syncadmin.devtools.simulators import graph as graph_sim
from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore

DATA = Path(__file__).resolve().parent / "data" / "graph"
MAILBOX = "meganb@contoso.com"
TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
CLIENT_ID = "0b6a3f4e-1d2c-4e5f-8a9b-7c6d5e4f3a2b"
SECRET = "golden-secret"
EXPAND = "singleValueExtendedProperties($filter=id eq 'String 0x1042' or id eq 'String 0x1039')"
ETAG = re.compile(r'^W/"[^"]+"$')
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def sample(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def assert_same_shape(ours: Any, theirs: Any, path: str = "$") -> None:
    """Same keys at every level, same JSON types; a null in the sample matches anything."""
    if theirs is None:
        return
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: expected an object, got {ours!r}"
        assert set(ours) == set(theirs), f"{path}: keys {sorted(ours)} != {sorted(theirs)}"
        for key, value in theirs.items():
            assert_same_shape(ours[key], value, f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), f"{path}: expected an array, got {ours!r}"
        if theirs:
            for n, item in enumerate(ours):
                assert_same_shape(item, theirs[0], f"{path}[{n}]")
    else:
        assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} != {type(theirs).__name__}"


def raw_message(n: int, *, in_reply_to: str = "", references: str = "") -> bytes:
    lines = [
        f"Message-ID: <m{n}@contoso.com>",
        f"Date: Mon, 0{n} Oct 2026 09:00:00 +0000",
        "From: Lee Gu <leeg@contoso.com>",
        f"To: Megan Bowen <{MAILBOX}>",
        f"Subject: Message {n}",
    ]
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    return "\r\n".join(
        [*lines, "MIME-Version: 1.0", "Content-Type: text/plain", "", f"Body {n}.", ""]
    ).encode()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    store = MailStore()
    store.folder(MAILBOX, "sentitems")
    for n in range(1, 6):
        store.add_message(MAILBOX, "inbox", raw_message(n))
    store.add_message(
        MAILBOX,
        "inbox",
        raw_message(6, in_reply_to="<m5@contoso.com>", references="<m4@contoso.com> <m5@contoso.com>"),
    )
    store.add_message("other@contoso.com", "inbox", raw_message(7))
    with Simulator(store, credentials={CLIENT_ID: SECRET}) as server:
        yield server


@pytest.fixture(scope="module")
def token(sim: Simulator) -> str:
    response = post_token(sim)
    assert response.status_code == 200
    return str(response.json()["access_token"])


def post_token(sim: Simulator, secret: str = SECRET) -> requests.Response:
    return requests.post(
        f"{sim.url}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=str(sim.ca_file),
        timeout=10,
    )


def get(
    sim: Simulator,
    token: str,
    url: str,
    *,
    page_size: int | None = None,
    params: dict[str, str] | None = None,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if page_size:
        headers["Prefer"] = f"odata.maxpagesize={page_size}"
    full = url if url.startswith("https://") else f"{sim.url}{url}"
    return requests.get(full, params=params or None, headers=headers, verify=str(sim.ca_file), timeout=10)


def first_delta(sim: Simulator, token: str, mailbox: str = MAILBOX) -> requests.Response:
    return get(
        sim,
        token,
        f"/v1.0/users/{mailbox}/mailFolders/inbox/messages/delta",
        page_size=2,
        params={"$select": "subject,sender,isRead"},
    )


def assert_delta_annotations(body: dict[str, Any], sim: Simulator, link: str) -> None:
    assert body["@odata.context"] == f"{sim.url}/v1.0/$metadata#Collection(message)"
    token_name = "skiptoken" if link == "@odata.nextLink" else "deltatoken"
    folder = r"/v1\.0/users/[^/]+/mailFolders\('[^']+'\)"
    pattern = rf"^{re.escape(sim.url)}{folder}/messages/delta\?\${token_name}=[^&]+$"
    assert re.match(pattern, body[link]), body[link]
    for item in body["value"]:
        assert item["@odata.type"] == "#microsoft.graph.message"
        if "@removed" not in item:
            assert ETAG.match(item["@odata.etag"])


class TestDelta:
    def test_a_page_with_a_next_link_matches_the_sample(self, sim, token):
        response = first_delta(sim, token)

        body = response.json()
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=2"
        assert_same_shape(body, sample("delta-initial-response.json"))
        assert len(body["value"]) == 2
        assert_delta_annotations(body, sim, "@odata.nextLink")

    def test_the_final_page_with_a_delta_link_matches_the_sample(self, sim, token):
        body = first_delta(sim, token).json()
        while "@odata.nextLink" in body:
            body = get(sim, token, body["@odata.nextLink"], page_size=2).json()

        # 6 messages by 2: the third page is the last; the sample's is the only one with a deltaLink.
        theirs = sample("delta-final-response.json")
        assert_same_shape({**body, "value": body["value"][:1]}, theirs)
        assert_delta_annotations(body, sim, "@odata.deltaLink")

    def test_a_next_round_reports_a_deletion_like_the_sample(self, sim, token):
        other = "other@contoso.com"
        body = first_delta(sim, token, other).json()
        delta_link = body["@odata.deltaLink"]
        victim = next(iter(sim.store.all_messages(other, "inbox")))
        sim.store.delete_message(other, "inbox", victim.item_id)
        sim.store.add_message(other, "inbox", raw_message(8))

        body = get(sim, token, delta_link, page_size=2).json()

        assert_same_shape(body, {**sample("delta-next-round-response.json"), "value": []})
        removed, created = body["value"]
        theirs_removed, theirs_created = sample("delta-next-round-response.json")["value"]
        assert_same_shape(removed, theirs_removed)
        assert removed["@removed"] == {"reason": "deleted"}
        assert_same_shape(created, theirs_created)
        assert_delta_annotations(body, sim, "@odata.deltaLink")

    def test_a_refused_delta_link_matches_the_410_sample(self, sim, token):
        delta_link = first_delta(sim, token).json()["@odata.nextLink"]
        sim.faults.add(Fault("invalid_sync_state", protocol="graph", operation="delta", mailbox=MAILBOX))

        response = get(sim, token, delta_link, page_size=2)

        assert response.status_code == 410
        body = response.json()
        assert_same_shape(body, sample("error-sync-state-not-found.json"))
        assert body["error"]["code"] == "SyncStateNotFound"

    def test_throttling_matches_the_429_sample(self, sim, token):
        sim.faults.add(
            Fault("server_busy", protocol="graph", operation="delta", mailbox=MAILBOX, retry_after=12)
        )

        response = first_delta(sim, token)

        assert response.status_code == 429
        assert response.headers["Retry-After"] == "12"
        assert_same_shape(response.json(), sample("error-throttled.json"))

    def test_an_unknown_user_matches_the_404_sample(self, sim, token):
        response = first_delta(sim, token, "nobody@contoso.com")

        assert response.status_code == 404
        assert_same_shape(response.json(), sample("error-invalid-user.json"))
        assert response.json()["error"]["code"] == "ErrorInvalidUser"

    def test_a_missing_token_is_refused_in_the_graph_error_format(self, sim):
        response = requests.get(
            f"{sim.url}/v1.0/users/{MAILBOX}/mailFolders/inbox/messages/delta",
            verify=str(sim.ca_file),
            timeout=10,
        )

        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
        assert_same_shape(response.json(), sample("error-invalid-user.json"))
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


class TestMessage:
    def message_id(self, sim: Simulator, token: str, n: int) -> str:
        body = get(sim, token, f"/v1.0/users/{MAILBOX}/mailFolders/inbox/messages/delta", page_size=10).json()
        return str(body["value"][n - 1]["id"])

    def test_get_message_matches_the_default_property_sample(self, sim, token):
        response = get(sim, token, f"/v1.0/users/{MAILBOX}/messages/{self.message_id(sim, token, 1)}")

        body = response.json()
        assert_same_shape(body, sample("message-get-response.json"))
        assert body["@odata.context"] == f"{sim.url}/v1.0/$metadata#users('{MAILBOX}')/messages/$entity"
        assert ETAG.match(body["@odata.etag"])
        assert all(ISO_UTC.match(body[k]) for k in ("createdDateTime", "receivedDateTime", "sentDateTime"))
        assert body["body"]["contentType"] in ("text", "html")

    def test_a_missing_message_is_a_404_in_the_graph_error_format(self, sim, token):
        message = self.message_id(sim, token, 1)
        sim.faults.add(Fault("item_not_found", protocol="graph", operation="message", mailbox=MAILBOX))

        injected = get(sim, token, f"/v1.0/users/{MAILBOX}/messages/{message}")
        unknown = get(sim, token, f"/v1.0/users/{MAILBOX}/messages/AAMkADnope=")
        again = get(sim, token, f"/v1.0/users/{MAILBOX}/messages/{message}")

        for response in (injected, unknown):
            assert response.status_code == 404
            assert_same_shape(response.json(), sample("error-invalid-user.json"))
            assert response.json()["error"]["code"] == "ErrorItemNotFound"
        assert again.status_code == 200

    def test_selected_internet_message_headers_match_the_sample(self, sim, token):
        response = get(
            sim,
            token,
            f"/v1.0/users/{MAILBOX}/messages/{self.message_id(sim, token, 6)}",
            params={"$select": "internetMessageHeaders"},
        )

        body = response.json()
        assert_same_shape(body, sample("message-headers-response.json"))
        assert body["@odata.context"].endswith("/messages(internetMessageHeaders)/$entity")
        headers = {h["name"]: h["value"] for h in body["internetMessageHeaders"]}
        assert headers["In-Reply-To"] == "<m5@contoso.com>"

    def test_expanded_extended_properties_match_the_sample(self, sim, token):
        response = get(
            sim,
            token,
            f"/v1.0/users/{MAILBOX}/messages/{self.message_id(sim, token, 6)}",
            params={
                "$select": "subject",
                "$expand": EXPAND,
            },
        )

        body = response.json()
        assert_same_shape(body, sample("message-extended-properties-response.json"))
        assert body["singleValueExtendedProperties"] == [
            {"id": "String 0x1042", "value": "<m5@contoso.com>"},
            {"id": "String 0x1039", "value": "<m4@contoso.com> <m5@contoso.com>"},
        ]
        assert body["singleValueExtendedProperties@odata.context"].startswith(f"{sim.url}/v1.0/$metadata#")


class VerifyingClient:
    """An http_client for MSAL passing verify per request (REQUESTS_CA_BUNDLE beats Session.verify)."""

    def __init__(self, ca_file: str) -> None:
        self.ca_file = ca_file

    def get(self, url, params=None, headers=None, **kwargs):
        return requests.get(url, params=params, headers=headers, verify=self.ca_file, timeout=10)

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        return requests.post(url, params=params, data=data, headers=headers, verify=self.ca_file, timeout=10)


class TestIdentityPlatform:
    def test_the_token_response_matches_the_sample(self, sim):
        response = post_token(sim)

        body = response.json()
        assert response.status_code == 200
        assert_same_shape(body, sample("token-response.json"))
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert response.headers["Cache-Control"].startswith("no-store")

    def test_a_bad_secret_matches_the_invalid_client_sample(self, sim):
        response = post_token(sim, secret="wrong")

        body = response.json()
        assert response.status_code == 401
        assert_same_shape(body, sample("token-error-invalid-client.json"))
        assert body["error"] == "invalid_client"
        assert body["error_codes"] == [7000215]

    def test_it_takes_the_secret_by_http_basic_as_is_or_form_encoded(self, sim):
        secret = "a+b%2F~c"
        with Simulator(MailStore(), credentials={CLIENT_ID: secret}) as other:
            answers = [
                requests.post(
                    f"{other.url}/{TENANT}/oauth2/v2.0/token",
                    data={
                        "grant_type": "client_credentials",
                        "scope": "https://outlook.office365.com/.default",
                    },
                    auth=(CLIENT_ID, sent),
                    verify=str(other.ca_file),
                    timeout=10,
                ).status_code
                for sent in (secret, quote_plus(secret), "wrong")
            ]

        assert answers == [200, 200, 401]

    def test_verify_token_knows_its_own_live_tokens(self, sim):
        live = post_token(sim).json()["access_token"]
        head, body, mac = live.split(".")
        expired = graph_sim.issue_token(
            CLIENT_ID, TENANT, "https://graph.microsoft.com", now=time.time() - 7200
        )

        assert graph_sim.verify_token(sim, live) == CLIENT_ID
        assert graph_sim.verify_token(sim, live, audience="https://graph.microsoft.com") == CLIENT_ID
        assert graph_sim.verify_token(sim, live, audience="https://outlook.office365.com") is None
        assert graph_sim.verify_token(sim, f"{head}.{body}x.{mac}") is None
        assert graph_sim.verify_token(sim, expired) is None
        assert graph_sim.verify_token(sim, "not a token") is None

    def test_the_openid_configuration_matches_the_sample_and_points_back_here(self, sim):
        response = requests.get(
            f"{sim.url}/{TENANT}/v2.0/.well-known/openid-configuration", verify=str(sim.ca_file), timeout=10
        )

        body = response.json()
        assert_same_shape(body, sample("openid-configuration.json"))
        assert body["token_endpoint"] == f"{sim.url}/{TENANT}/oauth2/v2.0/token"
        assert body["authorization_endpoint"] == f"{sim.url}/{TENANT}/oauth2/v2.0/authorize"
        assert body["issuer"] == f"{sim.url}/{TENANT}/v2.0"
        assert body["claims_supported"] == sample("openid-configuration.json")["claims_supported"]

    def test_the_instance_discovery_answer_matches_the_sample_and_satisfies_msal(self, sim):
        authorize = f"{sim.url}/{TENANT}/oauth2/v2.0/authorize"
        response = requests.get(
            f"{sim.url}/common/discovery/instance",
            params={"authorization_endpoint": authorize, "api-version": "1.0"},
            verify=str(sim.ca_file),
            timeout=10,
        )
        session = VerifyingClient(str(sim.ca_file))

        app = msal.ConfidentialClientApplication(
            CLIENT_ID,
            client_credential=SECRET,
            authority=f"{sim.url}/{TENANT}",
            http_client=session,
            instance_discovery=f"{sim.url}/common/discovery/instance",
        )
        result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])

        assert_same_shape(response.json(), sample("instance-discovery.json"))
        expected = f"{sim.url}/{TENANT}/v2.0/.well-known/openid-configuration"
        assert response.json()["tenant_discovery_endpoint"] == expected
        assert "access_token" in result


def test_new_mail_through_the_control_api_answers_when_it_was_stored() -> None:
    # B10 (bench/b10_latency.py) measures latency from this moment, not from when the client sent the mail
    store = MailStore()
    with Simulator(store) as server:
        before = time.time()
        response = requests.post(
            f"{server.url}/_simulator/messages",
            params={"mailbox": "latency@contoso.com", "folder": "inbox"},
            data=raw_message(1),
            verify=str(server.ca_file),
            timeout=10,
        )
        after = time.time()
    assert response.status_code == 201
    body = response.json()
    assert before <= body["stored_at"] <= after
    assert [m.item_id for m in store.folder("latency@contoso.com", "inbox").messages.values()] == [body["id"]]
