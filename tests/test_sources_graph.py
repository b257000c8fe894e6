"""GraphSource (requests + msal, unmocked) against the in-process simulator over HTTPS on loopback."""

from __future__ import annotations

import email
import mailbox
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cache

import pytest
import trustme

from syncadmin.devtools.simulators import graph as graph_sim
from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests.conftest import CORPORA
from tests.rq_helpers import free_port
from tracking.choices import ErrorKind
from tracking.messages import ParsedMessage, parse_message
from tracking.sources.base import ConnectionSettings, SourceError, SyncPage, SyncStateInvalid
from tracking.sources.graph import GraphSource, message_from_graph

ALLEN = CORPORA / "enron-mbox" / "allen-p"
MAILBOX = "phillip.allen@enron.com"
TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "0b6a3f4e-1d2c-4e5f-8a9b-7c6d5e4f3a2b"
SECRET = "Xy7~graph-client-secret"


@cache
def mbox_bytes(name: str) -> tuple[bytes, ...]:
    box = mailbox.mbox(ALLEN / f"{name}.mbox", create=False)
    try:
        return tuple(box.get_bytes(key) for key in box.iterkeys())
    finally:
        box.close()


def mbox_message_ids(name: str) -> set[str]:
    """Message-IDs as the standard library reads them, independently of the code under test."""
    return {str(email.message_from_bytes(raw)["Message-ID"]).strip() for raw in mbox_bytes(name)}


def make_raw(
    message_id: str,
    subject: str,
    *,
    sender: str = "Customer <buyer@customer.example>",
    to: str = f"Phillip Allen <{MAILBOX}>",
    in_reply_to: str = "",
    references: str = "",
    date: str = "Mon, 05 Oct 2026 09:00:00 +0000",
) -> bytes:
    lines = [
        f"Message-ID: {message_id}",
        f"Date: {date}",
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
    ]
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    return ("\r\n".join([*lines, "MIME-Version: 1.0", "Content-Type: text/plain", "", "Hello.", ""])).encode()


@pytest.fixture(scope="module")
def stoppers() -> Iterator[list[threading.Thread]]:
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(timeout=10)


@pytest.fixture
def make_sim(stoppers: list[threading.Thread]) -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def make(inbox: bool = True, sent: bool = False, credentials: dict[str, str] | None = None) -> Simulator:
        store = MailStore()
        store.folder(MAILBOX, "inbox")
        store.folder(MAILBOX, "sentitems")
        if inbox:
            for raw in mbox_bytes("inbox"):
                store.add_message(MAILBOX, "inbox", raw)
        if sent:
            for raw in mbox_bytes("sent_items"):
                store.add_message(MAILBOX, "sentitems", raw)
        sim = Simulator(store, credentials=credentials or {CLIENT_ID: SECRET}).start()
        started.append(sim)
        return sim

    yield make
    # Stopping waits out the server's poll interval; do it in the background and join once per module.
    for sim in started:
        thread = threading.Thread(target=sim.stop, daemon=True)
        thread.start()
        stoppers.append(thread)


def settings_for(sim: Simulator, **changes: object) -> ConnectionSettings:
    settings = ConnectionSettings(
        kind="exchange_graph",
        mailbox=MAILBOX,
        endpoint=sim.url,
        auth_method="oauth2",
        secret=SECRET,
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        authority=sim.url,
        ca_bundle=str(sim.ca_file),
        page_size=100,
        timeout=10,
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


def pages_of(sim: Simulator, folder: str, state: str = "", **changes: object) -> list[SyncPage]:
    return list(GraphSource(settings_for(sim, **changes)).sync(folder, state))


def messages_in(pages: list[SyncPage]) -> list[ParsedMessage]:
    out = []
    for page in pages:
        for item in page.items:
            assert isinstance(item, ParsedMessage)
            out.append(item)
    return out


def projection(msg: ParsedMessage) -> tuple[object, ...]:
    return (
        msg.message_id,
        msg.subject,
        msg.sender.address if msg.sender else None,
        tuple(a.address for a in msg.to),
        tuple(a.address for a in msg.cc),
        tuple(a.address for a in msg.bcc),
        msg.sent_at,
    )


class TestFullSync:
    def test_it_reads_inbox_and_sent_items_of_an_enron_mailbox(self, make_sim):
        sim = make_sim(inbox=True, sent=True)
        source = GraphSource(settings_for(sim))

        inbox_pages = list(source.sync("inbox", ""))
        sent_pages = list(source.sync("sentitems", ""))

        inbox, sent = messages_in(inbox_pages), messages_in(sent_pages)
        assert len(inbox) == 66 and len(sent) == 345
        assert {m.message_id for m in inbox} == mbox_message_ids("inbox")
        assert {m.message_id for m in sent} == mbox_message_ids("sent_items")
        # A page of at most 100 (the default page size), the state saved on each, the last one final.
        assert [len(p.items) for p in sent_pages] == [100, 100, 100, 45]
        assert [p.more for p in sent_pages] == [True, True, True, False]
        assert all("$skiptoken=" in p.state for p in sent_pages[:-1])
        assert "$deltatoken=" in sent_pages[-1].state
        assert {p.estimated_total for p in inbox_pages} == {66}
        # One folder read (for the estimate) and one delta request per page; one token for both folders.
        assert sim.count("graph", "folder") == 2
        assert sim.count("graph", "delta") == 1 + 4
        assert sim.count("token", "token") == 1

    def test_it_reads_the_same_fields_as_the_mime_parser(self, make_sim):
        sim = make_sim(inbox=True)
        by_id = {}
        for raw in mbox_bytes("inbox"):
            parsed = parse_message(raw)
            assert isinstance(parsed, ParsedMessage)
            by_id[parsed.message_id] = parsed

        got = messages_in(pages_of(sim, "inbox"))

        assert sorted(projection(m) for m in got) == sorted(projection(m) for m in by_id.values())
        assert all(m.received_at is not None for m in got)
        assert all(len(m.conversation_index) >= 44 for m in got)  # Exchange gives every message one


class TestPaging:
    def test_it_follows_next_links_and_saves_the_state_after_each_page(self, make_sim):
        sim = make_sim(inbox=True)

        pages = pages_of(sim, "inbox", page_size=25)

        assert [len(p.items) for p in pages] == [25, 25, 16]
        assert [p.more for p in pages] == [True, True, False]
        assert ["$skiptoken=" in p.state for p in pages] == [True, True, False]
        assert "$deltatoken=" in pages[-1].state
        assert sim.count("graph", "delta") == 3
        assert {m.message_id for m in messages_in(pages)} == mbox_message_ids("inbox")

    def test_it_resumes_from_a_saved_next_link_without_duplicates(self, make_sim):
        sim = make_sim(inbox=True)
        first = next(iter(GraphSource(settings_for(sim, page_size=25)).sync("inbox", "")))
        sim.clear_requests()

        rest = pages_of(sim, "inbox", first.state, page_size=25)

        before = {m.message_id for m in messages_in([first])}
        after = [m.message_id for m in messages_in(rest)]
        assert len(after) == len(set(after)) == 41
        assert not before & set(after)
        assert before | set(after) == mbox_message_ids("inbox")
        assert sim.count("graph", "delta") == 2
        assert sim.count("graph", "folder") == 0  # a saved link needs no folder lookup


class TestIncrementalSync:
    def test_it_returns_only_messages_added_since_the_delta_link(self, make_sim):
        sim = make_sim(inbox=True)
        delta_link = pages_of(sim, "inbox")[-1].state
        new_ids = [f"<new-{n}@customer.example>" for n in range(3)]
        for n, message_id in enumerate(new_ids):
            sim.store.add_message(MAILBOX, "inbox", make_raw(message_id, f"Order {n}"))
        sim.clear_requests()

        pages = pages_of(sim, "inbox", delta_link)

        assert [m.message_id for m in messages_in(pages)] == new_ids
        assert len(pages) == 1 and not pages[0].more and "$deltatoken=" in pages[0].state
        assert pages[0].estimated_total is None
        assert sim.count("graph") == 1  # just the delta request: no folder read, the token is cached
        assert sim.count("token") == 0

    def test_it_costs_exactly_one_request_for_an_unchanged_folder(self, make_sim):
        sim = make_sim(inbox=True)
        delta_link = pages_of(sim, "inbox")[-1].state
        sim.clear_requests()

        pages = pages_of(sim, "inbox", delta_link)

        assert [(len(p.items), p.more) for p in pages] == [(0, False)]
        assert len(sim.requests) == 1
        assert pages[0].state.startswith(f"{sim.url}/v1.0/")

    def test_it_passes_over_deleted_messages(self, make_sim):
        sim = make_sim(inbox=True)
        delta_link = pages_of(sim, "inbox")[-1].state
        victim = next(iter(sim.store.all_messages(MAILBOX, "inbox")))
        sim.store.delete_message(MAILBOX, "inbox", victim.item_id)
        sim.store.add_message(MAILBOX, "inbox", make_raw("<after-delete@customer.example>", "Hi"))

        pages = pages_of(sim, "inbox", delta_link)

        assert [m.message_id for m in messages_in(pages)] == ["<after-delete@customer.example>"]


class TestSyncStateInvalid:
    def test_it_raises_on_410_and_a_full_resync_reads_each_message_once(self, make_sim):
        sim = make_sim(inbox=True)
        delta_link = pages_of(sim, "inbox", page_size=25)[-1].state
        sim.store.invalidate_sync_states(MAILBOX, "inbox")

        with pytest.raises(SyncStateInvalid) as caught:
            pages_of(sim, "inbox", delta_link)
        again = [m.message_id for m in messages_in(pages_of(sim, "inbox", page_size=25))]

        assert not caught.value.permanent
        assert "full resync" in str(caught.value) and "SyncStateNotFound" in str(caught.value)
        assert len(again) == len(set(again)) == 66
        assert set(again) == mbox_message_ids("inbox")

    def test_it_raises_on_an_injected_410_on_a_next_link(self, make_sim):
        sim = make_sim(inbox=True)
        sim.faults.add(Fault("invalid_sync_state", protocol="graph", operation="delta"))
        source = GraphSource(settings_for(sim, page_size=25))
        pages = source.sync("inbox", "")

        first = next(pages)  # the initial request carries no state token, so the fault waits for the next
        with pytest.raises(SyncStateInvalid):
            next(pages)

        assert len(first.items) == 25

    @pytest.mark.parametrize(
        "fault",
        ["sync_state_not_found", "resync_required"],
        ids=["400-syncStateNotFound", "400-resyncRequired"],
    )
    def test_it_acts_on_a_sync_state_error_code_whatever_the_status(self, make_sim, fault):
        sim = make_sim(inbox=True)
        delta_link = pages_of(sim, "inbox", page_size=25)[-1].state
        sim.faults.add(Fault(fault, protocol="graph", operation="delta"))

        with pytest.raises(SyncStateInvalid) as caught:
            pages_of(sim, "inbox", delta_link)

        assert caught.value.kind == ErrorKind.SYNC_STATE and not caught.value.permanent
        assert "HTTP 400" in str(caught.value) and "full resync" in str(caught.value)

    @pytest.mark.parametrize("status", [403, 404, 409])
    def test_a_sync_state_code_decides_over_any_40x_status(self, make_sim, status):
        sim = make_sim(inbox=True)
        delta_link = pages_of(sim, "inbox", page_size=25)[-1].state
        body = '{"error": {"code": "resyncRequired", "message": "Resync required."}}'
        sim.faults.add(
            Fault(
                "raw_body",
                protocol="graph",
                operation="delta",
                status=status,
                body=body,
                content_type="application/json",
            )
        )

        with pytest.raises(SyncStateInvalid):
            pages_of(sim, "inbox", delta_link)

    def test_it_refuses_a_state_saved_from_another_server(self, make_sim):
        sim = make_sim(inbox=True)
        foreign = (
            "https://graph.microsoft.com/v1.0/users/x@y/mailFolders('inbox')/messages/delta?$deltatoken=a"
        )

        with pytest.raises(SyncStateInvalid):
            pages_of(sim, "inbox", foreign)

        assert sim.count("graph") == 0


class TestTransientErrors:
    def test_it_reports_429_with_the_servers_retry_after(self, make_sim):
        sim = make_sim(inbox=True)
        sim.faults.add(Fault("server_busy", protocol="graph", operation="delta", retry_after=7))

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox")

        assert not caught.value.permanent
        assert caught.value.retry_after == 7
        assert "429" in str(caught.value) and "ApplicationThrottled" in str(caught.value)
        assert len(messages_in(pages_of(sim, "inbox"))) == 66  # the next attempt goes through

    def test_it_reports_503_with_retry_after_as_transient(self, make_sim):
        sim = make_sim(inbox=True)
        sim.faults.add(Fault("http_status", protocol="graph", operation="delta", status=503, retry_after=3))

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox")

        assert (caught.value.permanent, caught.value.retry_after) == (False, 3)

    def test_it_reports_a_closed_port_as_transient(self, make_sim):
        sim = make_sim(inbox=True)
        port = free_port()

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox", endpoint=f"https://127.0.0.1:{port}")

        assert not caught.value.permanent
        assert str(caught.value) == f"cannot reach https://127.0.0.1:{port}: connection refused"

    def test_it_reports_an_unreachable_identity_platform_as_transient(self, make_sim):
        sim = make_sim(inbox=True)
        port = free_port()

        with pytest.raises(SourceError) as caught:
            GraphSource(settings_for(sim, authority=f"https://127.0.0.1:{port}")).test_connection(["inbox"])

        assert not caught.value.permanent
        assert f"cannot reach https://127.0.0.1:{port}: connection refused" in str(caught.value)

    @pytest.mark.parametrize("kind", ["malformed", "truncated"])
    def test_it_reports_malformed_json_as_transient(self, make_sim, kind):
        sim = make_sim(inbox=True)
        sim.faults.add(Fault(kind, protocol="graph", operation="delta"))

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox")

        assert not caught.value.permanent
        assert "malformed" in str(caught.value)

    def test_it_reports_a_dropped_connection_as_transient(self, make_sim):
        sim = make_sim(inbox=True)
        sim.faults.add(Fault("drop", protocol="graph", operation="delta"))

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox")

        assert not caught.value.permanent
        assert str(caught.value).startswith(f"cannot reach {sim.url}: ")

    def test_it_reports_a_throttled_token_request_with_retry_after(self, make_sim):
        sim = make_sim(inbox=True)
        sim.faults.add(Fault("server_busy", protocol="token", operation="token", retry_after=5))

        with pytest.raises(SourceError) as caught:
            GraphSource(settings_for(sim)).test_connection(["inbox"])

        assert (caught.value.permanent, caught.value.retry_after) == (False, 5)


class TestPermanentErrors:
    def test_it_reports_a_bad_client_secret_as_permanent(self, make_sim):
        sim = make_sim(inbox=False)

        with pytest.raises(SourceError) as caught:
            GraphSource(settings_for(sim, secret="not-the-secret")).test_connection(["inbox"])

        assert caught.value.permanent
        assert str(caught.value).startswith("the server refused the credentials")
        assert "invalid_client" in str(caught.value)
        assert "not-the-secret" not in str(caught.value)
        assert sim.count("graph") == 0

    def test_it_reports_an_unknown_user_as_permanent(self, make_sim):
        sim = make_sim(inbox=False)

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox", mailbox="nobody@enron.com")

        assert caught.value.permanent
        assert str(caught.value).startswith("mailbox not found: nobody@enron.com")
        assert "ErrorInvalidUser" in str(caught.value)

    def test_it_reports_a_rejected_token_as_permanent(self, make_sim):
        sim = make_sim(inbox=False)
        sim.faults.add(Fault("unauthorized", protocol="graph", times=-1))

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox")

        assert caught.value.permanent
        assert str(caught.value).startswith("the server refused the credentials")

    def test_it_reports_an_untrusted_certificate_as_permanent(self, make_sim, tmp_path):
        sim = make_sim(inbox=False)
        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox", ca_bundle=str(other_ca))

        assert caught.value.permanent
        assert "CA bundle" in str(caught.value)

    def test_it_reports_missing_app_credentials_without_a_request(self, make_sim):
        sim = make_sim(inbox=False)

        with pytest.raises(SourceError) as caught:
            GraphSource(settings_for(sim, tenant_id="", secret="")).test_connection(["inbox"])

        assert caught.value.permanent
        assert "tenant id, client secret" in str(caught.value)
        assert sim.requests == []


class TestTokens:
    def test_it_fetches_the_token_once_and_reuses_it_across_syncs(self, make_sim):
        sim = make_sim(inbox=True)

        first = pages_of(sim, "inbox")
        pages_of(sim, "inbox", first[-1].state)  # a second job in the same process: a new source

        assert sim.count("token", "token") == 1
        assert sim.count("token", "openid-configuration") == 1

    def test_it_gets_a_fresh_token_once_when_a_cached_one_is_rejected(self, make_sim):
        sim = make_sim(inbox=True)
        GraphSource(settings_for(sim)).test_connection(["inbox"])
        sim.faults.add(Fault("unauthorized", protocol="graph", operation="delta", times=1))

        pages = pages_of(sim, "inbox")

        assert len(messages_in(pages)) == 66
        assert sim.count("token", "token") == 2

    def test_a_token_that_expires_mid_scan_is_replaced_once_and_the_request_repeated(self, make_sim):
        sim = make_sim(inbox=True)
        # the token has read the folder and the first page; the second page's request finds it expired
        sim.faults.add(Fault("token_expired", protocol="graph", operation="delta", after=1))

        pages = pages_of(sim, "inbox", page_size=25)

        got = [m.message_id for m in messages_in(pages)]
        assert len(got) == len(set(got)) == 66
        assert sim.count("token", "token") == 2
        refused = [r for r in sim.requests if r.protocol == "graph" and r.status == 401]
        assert len(refused) == 1

    def test_a_fresh_token_refused_as_well_is_a_credentials_error(self, make_sim):
        sim = make_sim(inbox=True)
        sim.faults.add(Fault("token_expired", protocol="graph", operation="delta", after=1, times=2))

        with pytest.raises(SourceError) as caught:
            pages_of(sim, "inbox", page_size=25)

        assert caught.value.kind == ErrorKind.CREDENTIALS and caught.value.permanent
        assert "refused the credentials" in str(caught.value)
        assert sim.count("token", "token") == 2

    def test_it_passes_the_ca_bundle_per_request_whatever_requests_ca_bundle_says(
        self, make_sim, monkeypatch, tmp_path
    ):
        sim = make_sim(inbox=True)
        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
        monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca))

        assert len(messages_in(pages_of(sim, "inbox"))) == 66


class TestThreadingHeaders:
    def test_in_reply_to_and_references_arrive_from_inbox_and_sent_items(self, make_sim):
        sim = make_sim(inbox=False)
        sim.store.add_message(MAILBOX, "inbox", make_raw("<q1@customer.example>", "Quote request"))
        sim.store.add_message(
            MAILBOX,
            "sentitems",
            make_raw(
                "<a1@enron.com>",
                "RE: Quote request",
                sender=f"Phillip Allen <{MAILBOX}>",
                to="buyer@customer.example",
                in_reply_to="<q1@customer.example>",
                references="<q1@customer.example>",
            ),
        )
        sim.store.add_message(
            MAILBOX,
            "inbox",
            make_raw(
                "<q2@customer.example>",
                "RE: RE: Quote request",
                in_reply_to="<a1@enron.com>",
                references="<q1@customer.example> <a1@enron.com>",
            ),
        )

        inbox = {m.message_id: m for m in messages_in(pages_of(sim, "inbox"))}
        sent = {m.message_id: m for m in messages_in(pages_of(sim, "sentitems"))}

        answer = sent["<a1@enron.com>"]
        assert (answer.in_reply_to, answer.references) == (
            ("<q1@customer.example>",),
            ("<q1@customer.example>",),
        )
        reply = inbox["<q2@customer.example>"]
        assert reply.in_reply_to == ("<a1@enron.com>",)
        assert reply.references == ("<q1@customer.example>", "<a1@enron.com>")
        assert inbox["<q1@customer.example>"].in_reply_to == ()
        # Each reply's conversation index extends its parent's, as Exchange's do.
        assert answer.conversation_index.startswith(inbox["<q1@customer.example>"].conversation_index)
        assert reply.conversation_index.startswith(answer.conversation_index)
        assert len(reply.conversation_index) == len(answer.conversation_index) + 10

    def test_it_falls_back_to_internet_message_headers(self):
        entry = {
            "id": "AAMkADk0MGFkODE3LWEAAA=",
            "internetMessageId": "<b2@vendor.example>",
            "subject": "RE: Quote request",
            "from": {"emailAddress": {"name": "Sales", "address": "Sales@Vendor.example"}},
            "toRecipients": [{"emailAddress": {"name": "Alice", "address": "alice@customer.example"}}],
            "sentDateTime": "2026-10-01T09:00:00Z",
            "receivedDateTime": "2026-10-01T09:00:03.1234567Z",
            "internetMessageHeaders": [
                {"name": "In-Reply-To", "value": "<a1@customer.example>"},
                {"name": "References", "value": "<a0@customer.example> <a1@customer.example>"},
            ],
        }

        msg = message_from_graph(entry)

        assert isinstance(msg, ParsedMessage)
        assert msg.in_reply_to == ("<a1@customer.example>",)
        assert msg.references == ("<a0@customer.example>", "<a1@customer.example>")
        assert msg.sender is not None and msg.sender.address == "sales@vendor.example"
        assert msg.received_at is not None and msg.received_at.microsecond == 123456


class TestFolders:
    def test_test_connection_reads_each_folder_once(self, make_sim):
        sim = make_sim(inbox=False)

        GraphSource(settings_for(sim)).test_connection(["inbox", "sentitems"])

        assert sim.count("graph", "folder") == 2
        assert sim.count("token", "token") == 1

    def test_it_finds_an_inbox_sub_folder_by_name_and_syncs_it(self, make_sim):
        sim = make_sim(inbox=False)
        sim.store.add_message(MAILBOX, "projects", make_raw("<p1@customer.example>", "Project kickoff"))
        source = GraphSource(settings_for(sim))

        source.test_connection(["Projects"])
        pages = list(source.sync("Projects", ""))

        assert [m.message_id for m in messages_in(pages)] == ["<p1@customer.example>"]
        assert pages[0].estimated_total == 1

    def test_it_reports_a_missing_folder_as_permanent(self, make_sim):
        sim = make_sim(inbox=False)

        with pytest.raises(SourceError) as caught:
            GraphSource(settings_for(sim)).test_connection(["inbox", "No Such Folder"])

        assert caught.value.permanent
        assert str(caught.value) == f"folder 'No Such Folder' not found in mailbox {MAILBOX}"


def test_it_keeps_at_most_four_requests_in_flight_per_mailbox(make_sim, monkeypatch):
    sim = make_sim(inbox=True)
    GraphSource(settings_for(sim)).test_connection([])  # the token first; the threads then share it
    real_handle = graph_sim.handle
    lock = threading.Lock()
    four_in_flight = threading.Event()
    counts = {"now": 0, "max": 0}

    def counting_handle(sim_, request, described):
        with lock:
            counts["now"] += 1
            counts["max"] = max(counts["max"], counts["now"])
            if counts["now"] >= 4:
                four_in_flight.set()
        try:
            # Hold each request until four are in flight, so a fifth would show if the limit leaked.
            four_in_flight.wait(timeout=5)
            return real_handle(sim_, request, described)
        finally:
            with lock:
                counts["now"] -= 1

    monkeypatch.setattr(graph_sim, "handle", counting_handle)
    sources = [GraphSource(settings_for(sim, max_connections=10)) for _ in range(8)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(lambda s: len(messages_in(list(s.sync("inbox", "")))), sources))

    assert sizes == [66] * 8
    assert counts["max"] == 4
    assert sim.count("graph") == 8 * (1 + math.ceil(66 / 100))
