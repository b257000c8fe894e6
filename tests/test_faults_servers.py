"""Server faults and hostile server input, end to end (issue #7): real scans through the simulator.

Every case scans two mailboxes holding the same Enron mail: `clean` without a fault, `faulty` with one
injected after its first page. The faulted cycle must end in the right mailbox state (permanent or
transient, the server's back-off honoured, the pages before the fault kept, the rest not stored); once
the fault is cleared, the next cycle (after Test & Enable when the fault disabled the mailbox) must leave
exactly the Decisions and TrackedEmails of the clean mailbox: no message skipped, none twice.

The connectors' own reading of each fault is in tests/test_sources_ews.py and tests/test_sources_graph.py.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core import serializers
from django.utils import timezone

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tracking import scanning
from tracking.choices import ErrorKind, ScanStatus
from tracking.models import (
    Alert,
    AuditEvent,
    Decision,
    FolderSyncState,
    Mailbox,
    ScanRun,
    TrackedEmail,
)
from tracking.scanning import run_scan_cycle, run_test_and_enable

COUNT = 12
PAGE = 5  # pages of 5, 5 and 2 messages
TIMEOUT = 2.0
CLEAN = "clean@contoso.example"
FAULTY = "faulty@contoso.example"
KINDS = {"ews": "exchange_ews", "graph": "exchange_graph"}
PAGE_REQUEST = {"ews": "SyncFolderItems", "graph": "delta"}
RETRY_MINUTES = 5  # TransientFailureRetryMinutes, default
LONG_WAIT = 900  # a back-off longer than the retry interval, so honouring it shows

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim(fresh_sim: Simulator) -> Simulator:
    return fresh_sim


@pytest.fixture(autouse=True)
def small_pages_and_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server profile has no page size or timeout: these make three pages of twelve messages and let a
    # timeout happen within seconds. Everything else of the connection is the profile's.
    real = scanning.connection_settings
    monkeypatch.setattr(
        scanning,
        "connection_settings",
        lambda mailbox: replace(real(mailbox), page_size=PAGE, timeout=TIMEOUT),
    )


@dataclass
class Pair:
    clean: Mailbox
    faulty: Mailbox


# EWS with OAuth 2.0 client credentials (an app token from the simulator's identity platform), not Basic
EWS_OAUTH = {
    "auth_method": "oauth2",
    "username": "",
    "tenant_id": "contoso.example",
    "client_id": h.GRAPH_CLIENT,
    "authority": "",  # the simulator's URL, filled in by make_pair
    "use_impersonation": False,
}


def make_pair(sim: Simulator, protocol: str, **profile_options: object) -> Pair:
    if profile_options.get("authority") == "":
        profile_options["authority"] = sim.url
    profile = h.add_sim_profile(sim, protocol, KINDS[protocol], **profile_options)
    boxes = []
    for address in (CLEAN, FAULTY):
        h.fill(sim, address, count=COUNT)
        boxes.append(h.add_enabled_mailbox(address, profile))
    return Pair(*boxes)


def scan(mailbox: Mailbox, **options: object) -> tuple[str, datetime, datetime]:
    before = timezone.now()
    said = run_scan_cycle(mailbox.pk, **options)  # type: ignore[arg-type]
    return said, before, timezone.now()


def assert_same_as_clean(pair: Pair, *, missing: int = 0) -> None:
    """The faulty mailbox decided and tracked what the clean one did, each message once; `missing`
    messages fewer (not read yet, or deleted on the server before they could be)."""
    faulty, clean = h.decision_keys(pair.faulty), h.decision_keys(pair.clean)
    assert len(faulty) == len(set(faulty)), "a message was decided twice"
    assert set(faulty) <= set(clean) and len(clean) - len(faulty) == missing
    decided = {key[1] for key in faulty}
    assert h.tracked_keys(pair.faulty) == [k for k in h.tracked_keys(pair.clean) if k[0] in decided]


def assert_healthy(mailbox: Mailbox) -> None:
    mailbox.refresh_from_db()
    assert (
        mailbox.enabled,
        mailbox.incoming_status,
        mailbox.transient_failure_count,
        mailbox.last_error,
    ) == (
        True,
        "success",
        0,
        "",
    )
    last = ScanRun.objects.filter(mailbox=mailbox).latest("pk")
    assert last.status == ScanStatus.SUCCEEDED and last.error == ""


def scanned_clean(sim: Simulator, protocol: str, **profile_options: object) -> Pair:
    pair = make_pair(sim, protocol, **profile_options)
    said, _, _ = scan(pair.clean)
    assert said == "scanned inbox"
    assert len(h.decision_keys(pair.clean)) == COUNT
    sim.clear_requests()
    return pair


# -- server faults: each protocol × each fault, after the first page ---------------------------------------


@dataclass(frozen=True)
class ServerFault:
    protocol: str
    fault: dict[str, object]
    permanent: bool
    words: str  # in the ScanRun's error, the mailbox's last error and the alert
    retry_after: float | None = None
    operation: str = ""  # default: the request that reads a page (SyncFolderItems, delta)

    def make(self) -> Fault:
        options: dict[str, object] = {"after": 1, **self.fault}
        options.setdefault("operation", self.operation or PAGE_REQUEST[self.protocol])
        return Fault(protocol=self.protocol, mailbox=FAULTY, **options)  # type: ignore[arg-type]


SERVER_FAULTS = {
    # EWS (exchangelib with FailFast)
    "ews-timeout": ServerFault("ews", {"kind": "slow", "delay": TIMEOUT + 2}, False, "no answer within 2 s"),
    "ews-drop": ServerFault("ews", {"kind": "drop"}, False, "closed before the server answered"),
    "ews-500": ServerFault("ews", {"kind": "http_status", "status": 500}, False, "HTTP 500"),
    "ews-503-retry-after": ServerFault(
        "ews", {"kind": "http_status", "status": 503, "retry_after": LONG_WAIT}, False, "HTTP 503", LONG_WAIT
    ),
    "ews-429-retry-after": ServerFault(
        "ews", {"kind": "http_status", "status": 429, "retry_after": LONG_WAIT}, False, "HTTP 429", LONG_WAIT
    ),
    "ews-server-busy": ServerFault(
        "ews", {"kind": "server_busy", "back_off_ms": LONG_WAIT * 1000}, False, "ErrorServerBusy", LONG_WAIT
    ),
    "ews-401-revoked": ServerFault(
        # every request after page one (SyncFolderItems and GetItem): the password was changed
        "ews",
        {"kind": "unauthorized", "times": -1, "operation": "", "after": 2},
        True,
        "refused the credentials",
    ),
    # counted from the first request that carries a sync state: the second page's. A state refused in the
    # middle of a folder's first scan fails that cycle (a transient error); the next one resumes from the
    # last committed page, or resyncs in full if the server still refuses it (the test after this one).
    "ews-malformed": ServerFault("ews", {"kind": "malformed"}, False, "not valid EWS"),
    "ews-truncated": ServerFault("ews", {"kind": "truncated"}, False, "not valid EWS"),
    "ews-getitem-timeout": ServerFault(
        "ews", {"kind": "slow", "delay": TIMEOUT + 2}, False, "no answer within 2 s", operation="GetItem"
    ),
    "ews-getitem-drop": ServerFault(
        "ews", {"kind": "drop"}, False, "closed before the server answered", operation="GetItem"
    ),
    "ews-getitem-500": ServerFault(
        "ews", {"kind": "http_status", "status": 500}, False, "HTTP 500", operation="GetItem"
    ),
    "ews-getitem-server-busy": ServerFault(
        "ews",
        {"kind": "server_busy", "back_off_ms": LONG_WAIT * 1000},
        False,
        "ErrorServerBusy",
        LONG_WAIT,
        operation="GetItem",
    ),
    "ews-getitem-malformed": ServerFault(
        "ews", {"kind": "malformed"}, False, "not valid EWS", operation="GetItem"
    ),
    "ews-getitem-truncated": ServerFault(
        "ews", {"kind": "truncated"}, False, "not valid EWS", operation="GetItem"
    ),
    # Graph (requests + msal)
    "graph-timeout": ServerFault(
        "graph", {"kind": "slow", "delay": TIMEOUT + 2}, False, "no answer within 2 s"
    ),
    "graph-drop": ServerFault("graph", {"kind": "drop"}, False, "closed without an answer"),
    "graph-500": ServerFault("graph", {"kind": "http_status", "status": 500}, False, "HTTP 500"),
    "graph-503-retry-after": ServerFault(
        "graph",
        {"kind": "http_status", "status": 503, "retry_after": LONG_WAIT},
        False,
        "HTTP 503",
        LONG_WAIT,
    ),
    "graph-429-retry-after": ServerFault(
        "graph",
        {"kind": "http_status", "status": 429, "retry_after": LONG_WAIT},
        False,
        "HTTP 429",
        LONG_WAIT,
    ),
    "graph-throttled": ServerFault(
        "graph", {"kind": "server_busy", "retry_after": LONG_WAIT}, False, "ApplicationThrottled", LONG_WAIT
    ),
    "graph-401-revoked": ServerFault(
        "graph", {"kind": "unauthorized", "times": -1}, True, "refused the credentials"
    ),
    "graph-malformed": ServerFault("graph", {"kind": "malformed"}, False, "malformed answer"),
    "graph-truncated": ServerFault("graph", {"kind": "truncated"}, False, "malformed answer"),
}


@pytest.mark.parametrize("case", SERVER_FAULTS.values(), ids=SERVER_FAULTS.keys())
def test_a_server_fault_mid_scan_ends_in_the_right_state_and_a_rescan_misses_nothing(sim, case):
    pair = scanned_clean(sim, case.protocol)
    sim.faults.add(case.make())

    said, before, after = scan(pair.faulty)

    box = pair.faulty
    box.refresh_from_db()
    run = ScanRun.objects.get(mailbox=box)
    assert run.status == ScanStatus.FAILED and case.words in run.error, run.error
    assert case.words in box.last_error and box.incoming_status == "failure"
    # the first page is committed with the state that resumes after it; nothing of the failed page is
    assert len(h.decision_keys(box)) == run.items_done == PAGE
    assert FolderSyncState.objects.get(mailbox=box, folder="inbox").state
    assert_same_as_clean(pair, missing=COUNT - PAGE)
    if case.permanent:
        assert said == "disabled"
        assert (box.enabled, box.next_run_at, box.transient_failure_count) == (False, None, 0)
        assert case.words in Alert.objects.get(mailbox=box, level="error").message
        assert not Alert.objects.filter(mailbox=box, level="warning").exists()
    else:
        assert said.startswith("retry at ")
        assert (box.enabled, box.transient_failure_count) == (True, 1)
        wait = timedelta(seconds=max(RETRY_MINUTES * 60, case.retry_after or 0))
        assert box.next_run_at is not None and before + wait <= box.next_run_at <= after + wait
        assert "retry 1 of 10" in Alert.objects.get(mailbox=box, level="warning").message

    sim.faults.clear()
    if case.permanent:
        ok, message = run_test_and_enable(box.pk)
        assert ok, message
    assert scan(box)[0] == "scanned inbox"

    assert_same_as_clean(pair)
    assert_healthy(box)


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_request_held_back_by_a_slow_fault_does_not_use_up_faults_armed_while_it_slept(sim, protocol):
    # A timed-out request wakes up on the server after its client gave up; the faults armed meanwhile (by
    # the next test, in a real run) are for the requests that come after it.
    pair = scanned_clean(sim, protocol)
    operation = "GetItem" if protocol == "ews" else PAGE_REQUEST[protocol]
    slow = Fault(protocol=protocol, mailbox=FAULTY, operation=operation, kind="slow", delay=TIMEOUT + 1)
    sim.faults.add(slow)
    assert scan(pair.faulty)[0].startswith("retry at ")
    armed = Fault(protocol=protocol, mailbox=FAULTY, operation=operation, kind="server_busy", after=1)
    sim.faults.clear()
    sim.faults.add(armed)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        r.operation == operation and r.mailbox == FAULTY for r in list(sim.requests)
    ):
        time.sleep(0.1)
    assert (armed.after, armed.times) == (1, Fault(kind="server_busy").times)


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_sync_state_refused_in_the_middle_of_a_first_scan_is_replaced_by_a_full_resync_at_once(
    sim, protocol, caplog
):
    # ErrorInvalidSyncStateData / 410 Gone on the request after page 1, which carries page 1's state
    caplog.set_level(logging.INFO, logger="tracking.scanning")
    pair = scanned_clean(sim, protocol)
    sim.faults.add(ServerFault(protocol, {"kind": "invalid_sync_state", "after": 0}, False, "").make())

    assert scan(pair.faulty)[0] == "scanned inbox"

    assert_same_as_clean(pair)
    assert_healthy(pair.faulty)
    assert "full resync" in caplog.text


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_sync_state_the_server_forgot_is_replaced_by_a_full_resync_in_the_same_cycle(sim, protocol, caplog):
    caplog.set_level(logging.INFO, logger="tracking.scanning")
    pair = scanned_clean(sim, protocol)
    assert scan(pair.faulty)[0] == "scanned inbox"
    for address in (CLEAN, FAULTY):
        for raw in h.enron("kuykendall-t", count=COUNT + 3)[COUNT:]:
            sim.store.add_message(address, "inbox", h.rewritten(raw, h.tag_of(address)))
    assert scan(pair.clean)[0] == "scanned inbox"
    sim.store.invalidate_sync_states(FAULTY, "inbox")  # as a server does after a mailbox move or restore

    assert scan(pair.faulty)[0] == "scanned inbox"

    assert len(h.decision_keys(pair.faulty)) == COUNT + 3
    assert_same_as_clean(pair)
    assert_healthy(pair.faulty)
    assert "full resync" in caplog.text


# -- an access token refused mid-scan, sync states refused by error code (issue 12) --------------------------

TOKEN_OPTIONS = {"ews": EWS_OAUTH, "graph": {}}


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_token_that_expires_mid_scan_is_renewed_once_and_the_scan_completes(sim, protocol):
    pair = scanned_clean(sim, protocol, **TOKEN_OPTIONS[protocol])
    sim.faults.add(ServerFault(protocol, {"kind": "token_expired"}, False, "").make())

    assert scan(pair.faulty)[0] == "scanned inbox"

    assert [r.status for r in sim.requests if r.mailbox == FAULTY].count(401) == 1
    assert_same_as_clean(pair)
    assert_healthy(pair.faulty)
    assert not Alert.objects.filter(mailbox=pair.faulty, level__in=["error", "warning"]).exists()


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_token_refused_twice_in_a_row_disables_the_mailbox_as_a_credentials_error(sim, protocol):
    pair = scanned_clean(sim, protocol, **TOKEN_OPTIONS[protocol])
    sim.faults.add(ServerFault(protocol, {"kind": "token_expired", "times": 2}, True, "").make())

    assert scan(pair.faulty)[0] == "disabled"

    box = pair.faulty
    box.refresh_from_db()
    assert box.last_error_kind == ErrorKind.CREDENTIALS and "refused the credentials" in box.last_error
    assert ScanRun.objects.get(mailbox=box).error_kind == ErrorKind.CREDENTIALS
    assert len(h.decision_keys(box)) == PAGE
    assert_same_as_clean(pair, missing=COUNT - PAGE)


@pytest.mark.parametrize("code", ["sync_state_not_found", "resync_required"])
def test_a_graph_sync_state_error_code_is_a_full_resync_not_a_failure(sim, code, caplog):
    caplog.set_level(logging.INFO, logger="tracking.scanning")
    pair = scanned_clean(sim, "graph")
    assert scan(pair.faulty)[0] == "scanned inbox"
    for address in (CLEAN, FAULTY):
        for raw in h.enron("kuykendall-t", count=COUNT + 3)[COUNT:]:
            sim.store.add_message(address, "inbox", h.rewritten(raw, h.tag_of(address)))
    assert scan(pair.clean)[0] == "scanned inbox"
    sim.faults.add(Fault(code, protocol="graph", operation="delta", mailbox=FAULTY))  # HTTP 400

    assert scan(pair.faulty)[0] == "scanned inbox"

    assert len(h.decision_keys(pair.faulty)) == COUNT + 3
    assert_same_as_clean(pair)
    assert_healthy(pair.faulty)
    assert "full resync" in caplog.text


def assert_missing_is_deleted(pair: Pair, sim: Simulator) -> None:
    """The one message the faulty mailbox lacks is the one no longer on the server."""
    (gone,) = set(h.decision_keys(pair.clean)) - set(h.decision_keys(pair.faulty))
    on_server = {h.untagged(m.parsed.message_id) for m in sim.store.all_messages(FAULTY, "inbox") if m.parsed}
    assert gone[1] not in on_server and len(on_server) == COUNT - 1


def test_an_item_deleted_between_sync_and_fetch_is_passed_over_ews(sim):
    pair = scanned_clean(sim, "ews")
    # GetItem of the second page: its first item is deleted just before the server answers
    sim.faults.add(Fault("item_not_found", protocol="ews", operation="GetItem", mailbox=FAULTY, after=1))

    assert scan(pair.faulty)[0] == "scanned inbox"

    assert_same_as_clean(pair, missing=1)
    assert not Decision.objects.filter(mailbox=pair.faulty, outcome="failed").exists()
    assert_healthy(pair.faulty)
    assert_missing_is_deleted(pair, sim)
    assert scan(pair.faulty)[0] == "scanned inbox"  # the next sync reports the deletion: nothing new
    assert_same_as_clean(pair, missing=1)


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_a_message_deleted_between_two_pages_is_passed_over(sim, protocol):
    # Graph's delta carries each message whole, so there is no fetch to miss; the nearest fault is a
    # message deleted while its round is being read.
    pair = scanned_clean(sim, protocol)
    last = list(sim.store.all_messages(FAULTY, "inbox"))[-1]
    deleted: list[str] = []

    def delete_once(run: ScanRun) -> None:
        if not deleted:
            sim.store.delete_message(FAULTY, "inbox", last.item_id)
            deleted.append(last.item_id)

    assert scan(pair.faulty, on_page=delete_once)[0] == "scanned inbox"

    assert deleted
    assert_same_as_clean(pair, missing=1)
    assert_missing_is_deleted(pair, sim)
    assert not Decision.objects.filter(mailbox=pair.faulty, outcome="failed").exists()
    assert_healthy(pair.faulty)


# -- hostile answers: served instead of the second page ---------------------------------------------------

SOAP_HEAD = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<m:GetItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages>'
    '<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items>'
    '<t:Message><t:ItemId Id="AAMkADhostile" ChangeKey="CQAAAA=="/>'
)
SOAP_TAIL = (
    "<t:InternetMessageId>&lt;hostile@attacker.example&gt;</t:InternetMessageId></t:Message></m:Items>"
    "</m:GetItemResponseMessage></m:ResponseMessages></m:GetItemResponse></s:Body></s:Envelope>"
)
PASSWD_LINE = "root:x:0:0"


def ews_with(dtd: str, subject: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{dtd}{SOAP_HEAD}<t:Subject>{subject}</t:Subject>{SOAP_TAIL}'
    )


def billion_laughs() -> str:
    entities = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    return ews_with(f"<!DOCTYPE s:Envelope [{entities}]>", "&l9;")


@dataclass(frozen=True)
class Hostile:
    protocol: str
    body: str | Callable[[Simulator, int], str]  # a callable gets the simulator and the listener's port
    words: str
    repeat: int = 1
    content_length: bool = True
    operation: str = ""


MB = 1024 * 1024
CHUNK = "A" * (64 * 1024)
GRAPH_LINK = "{url}/v1.0/users/" + FAULTY + "/mailFolders/inbox/messages/delta?$deltatoken=x"


def graph_page(
    value: str, links: str = '"@odata.deltaLink": "' + GRAPH_LINK + '"'
) -> Callable[[Simulator, int], str]:
    return lambda sim, port: ("{" + f'"value": {value}, {links}' + "}").replace("{url}", sim.url)


HOSTILE = {
    # EWS: XML with a DTD is refused before any entity is declared, let alone expanded or fetched
    "ews-billion-laughs": Hostile("ews", billion_laughs(), "declares a DTD", operation="GetItem"),
    "ews-quadratic-blowup": Hostile(
        "ews",
        ews_with(f'<!DOCTYPE s:Envelope [<!ENTITY a "{"x" * 100_000}">]>', "&a;" * 10_000),
        "declares a DTD",
        operation="GetItem",
    ),
    "ews-xxe-file": Hostile(
        "ews",
        ews_with('<!DOCTYPE s:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
        "declares a DTD",
        operation="GetItem",
    ),
    "ews-xxe-http": Hostile(
        "ews",
        lambda sim, port: ews_with(
            f'<!DOCTYPE s:Envelope [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/secret">]>', "&x;"
        ),
        "declares a DTD",
        operation="GetItem",
    ),
    "ews-xxe-parameter-entity": Hostile(
        "ews",
        lambda sim, port: ews_with(
            f'<!DOCTYPE s:Envelope [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/evil.dtd"> %p;]>', "x"
        ),
        "declares a DTD",
        operation="GetItem",
    ),
    "ews-external-dtd": Hostile(
        "ews",
        lambda sim, port: ews_with(f'<!DOCTYPE s:Envelope SYSTEM "http://127.0.0.1:{port}/soap.dtd">', "x"),
        "declares a DTD",
        operation="GetItem",
    ),
    "ews-plain-doctype": Hostile("ews", ews_with("<!DOCTYPE s:Envelope>", "hello"), "declares a DTD"),
    "ews-deeply-nested": Hostile(
        "ews", "<a>" * 100_000 + "</a>" * 100_000, "not valid EWS", operation="GetItem"
    ),
    "ews-html-200": Hostile("ews", "<html><body>Service Unavailable</body>", "not valid EWS"),
    "ews-empty-200": Hostile("ews", "", "not valid EWS"),
    "ews-huge-declared": Hostile("ews", CHUNK, "larger than 50 MB", repeat=200 * MB // len(CHUNK)),
    "ews-huge-streamed": Hostile(
        "ews", CHUNK, "larger than 50 MB", repeat=200 * MB // len(CHUNK), content_length=False
    ),
    # Graph
    "graph-nested-100000": Hostile("graph", '{"value": ' + "[" * 100_000 + "]" * 100_000 + "}", "malformed"),
    "graph-value-object": Hostile("graph", graph_page('{"id": "AAMkAD1"}'), "without value"),
    "graph-value-string": Hostile("graph", graph_page('"AAMkAD1"'), "without value"),
    "graph-value-null": Hostile("graph", graph_page("null"), "without value"),
    "graph-id-number": Hostile(
        "graph",
        graph_page('[{"id": 42, "subject": "x", "internetMessageId": "<x@attacker.example>"}]'),
        "string id",
    ),
    "graph-id-null": Hostile("graph", graph_page('[{"id": null, "subject": "x"}]'), "string id"),
    "graph-id-missing": Hostile("graph", graph_page('[{"subject": "x"}]'), "string id"),
    "graph-entry-not-object": Hostile("graph", graph_page('[1, "two", null]'), "string id"),
    "graph-no-odata-links": Hostile("graph", graph_page("[]", '"@odata.count": 0'), "without value"),
    "graph-next-link-number": Hostile("graph", graph_page("[]", '"@odata.nextLink": 5'), "without value"),
    "graph-top-level-array": Hostile("graph", "[]", "not a JSON object"),
    "graph-top-level-string": Hostile("graph", '"value"', "not a JSON object"),
    "graph-html-200": Hostile("graph", "<html><body>Service Unavailable</body>", "not a JSON object"),
    "graph-empty-200": Hostile("graph", "", "not a JSON object"),
    "graph-huge-declared": Hostile("graph", CHUNK, "larger than 50 MB", repeat=200 * MB // len(CHUNK)),
    "graph-huge-streamed": Hostile(
        "graph", CHUNK, "larger than 50 MB", repeat=200 * MB // len(CHUNK), content_length=False
    ),
}


def peak_rss_kb() -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match is not None
    return int(match.group(1))


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port an external entity could point at: nothing may ever connect to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def stored_text() -> str:
    """Every row a scan writes, as text."""
    return "".join(
        serializers.serialize("json", model.objects.all())
        for model in (Decision, TrackedEmail, ScanRun, Mailbox, Alert, FolderSyncState, AuditEvent)
    )


def scan_refused_in_bounded_memory(box: Mailbox, words: str) -> tuple[Mailbox, ScanRun]:
    """Scan `box`, whose server answers with something hostile: a transient failure that says `words`,
    with the process's peak memory grown by less than 100 MB."""
    reset_peak_rss()
    start = peak_rss_kb()

    said, _, _ = scan(box)

    grown_mb = (peak_rss_kb() - start) / 1024
    assert grown_mb < 100, f"peak RSS grew by {grown_mb:.0f} MB"
    box.refresh_from_db()
    run = ScanRun.objects.get(mailbox=box)
    assert said.startswith("retry at ") and box.enabled and box.transient_failure_count == 1
    assert run.status == ScanStatus.FAILED and words in run.error, run.error
    return box, run


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_answer_is_refused_with_a_clear_error_and_nothing_of_it_is_stored(sim, listener, case):
    pair = scanned_clean(sim, case.protocol)
    port = listener.getsockname()[1]
    body = case.body(sim, port) if callable(case.body) else case.body
    sim.faults.add(
        Fault(
            "raw_body",
            protocol=case.protocol,
            operation=case.operation or PAGE_REQUEST[case.protocol],
            mailbox=FAULTY,
            after=1,
            status=200,
            body=body,
            repeat=case.repeat,
            content_length=case.content_length,
            content_type="text/xml; charset=utf-8" if case.protocol == "ews" else "application/json",
        )
    )
    box, run = scan_refused_in_bounded_memory(pair.faulty, case.words)
    assert len(h.decision_keys(box)) == run.items_done == PAGE
    text = stored_text()
    assert PASSWD_LINE not in text and "attacker.example" not in text and "lollollol" not in text
    with pytest.raises(BlockingIOError):
        listener.accept()  # no entity was fetched

    sim.faults.clear()
    assert scan(box)[0] == "scanned inbox"
    assert_same_as_clean(pair)
    assert_healthy(box)


@pytest.mark.parametrize("protocol", ["ews", "graph"])
def test_the_response_limit_is_the_setting(sim, protocol, settings):
    settings.SOURCE_MAX_RESPONSE_BYTES = 1 * MB
    pair = scanned_clean(sim, protocol)  # pages of a few messages stay far below it
    sim.faults.add(
        Fault(
            "raw_body",
            protocol=protocol,
            operation=PAGE_REQUEST[protocol],
            mailbox=FAULTY,
            after=1,
            status=200,
            body=CHUNK,
            repeat=2 * MB // len(CHUNK),
            content_length=False,
        )
    )

    said, _, _ = scan(pair.faulty)

    assert said.startswith("retry at ")
    assert "larger than 1 MB" in ScanRun.objects.get(mailbox=pair.faulty).error
    sim.faults.clear()
    assert scan(pair.faulty)[0] == "scanned inbox"
    assert_same_as_clean(pair)


# -- hostile answers from the identity platform (Graph's token endpoint and OpenID configuration) ----------

IDENTITY_HOSTILE = {
    "token-nested-100000": ("token", '{"a": ' * 100_000 + "1" + "}" * 100_000, "malformed token answer"),
    "token-html-200": ("token", "<html><body>Sign-in unavailable</body>", "malformed token answer"),
    "token-array": ("token", "[]", "malformed token answer"),
    "token-access-token-number": (
        "token",
        '{"token_type": "Bearer", "expires_in": 3599, "access_token": 42}',
        "malformed token answer",
    ),
    "token-neither-token-nor-error": ("token", '{"token_type": "Bearer"}', "malformed token answer"),
    "token-huge-streamed": ("token", None, "larger than 50 MB"),
    "openid-nested-100000": (
        "openid-configuration",
        '{"a": ' * 100_000 + "1" + "}" * 100_000,
        "malformed OpenID configuration",
    ),
    "openid-array": ("openid-configuration", "[]", "malformed OpenID configuration"),
    "openid-missing-endpoints": ("openid-configuration", '{"issuer": "x"}', "malformed OpenID configuration"),
    "openid-huge-streamed": ("openid-configuration", None, "larger than 50 MB"),
}


@pytest.mark.parametrize(
    ("operation", "body", "words"), IDENTITY_HOSTILE.values(), ids=IDENTITY_HOSTILE.keys()
)
def test_a_hostile_identity_platform_answer_is_a_transient_error(sim, operation, body, words):
    pair = scanned_clean(sim, "graph")
    # a profile of its own (another tenant), so that the faulty mailbox needs a token of its own
    profile = h.add_sim_profile(sim, "graph-2", "exchange_graph", tenant_id=f"t{uuid.uuid4().hex}.example")
    Mailbox.objects.filter(pk=pair.faulty.pk).update(profile=profile)
    sim.faults.add(
        Fault(
            "raw_body",
            protocol="token",
            operation=operation,
            status=200,
            body=body if body is not None else CHUNK,
            repeat=1 if body is not None else 200 * MB // len(CHUNK),
            content_length=body is not None,
            content_type="application/json",
        )
    )
    box, _ = scan_refused_in_bounded_memory(pair.faulty, words)
    assert not Decision.objects.filter(mailbox=box).exists()

    sim.faults.clear()
    assert scan(box)[0] == "scanned inbox"
    assert_same_as_clean(pair)
    assert_healthy(box)
