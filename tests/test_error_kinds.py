"""Every kind of source error (tracking-rules §9, issue 12), from the place it is raised to the words on the
mailbox
page: real connectors against the simulator (or a loopback service), Test & Enable or a scan cycle, then
the page an admin reads. No error is shown as another kind, and no raw server bytes reach the page.
"""

from __future__ import annotations

import contextlib
import html
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.web.views.mailboxes import ERROR_WORDS
from tests import rq_helpers as h
from tracking import scanning
from tracking.actions import check_set_org_setting, do_set_personal_options
from tracking.choices import ErrorKind
from tracking.models import Alert, Mailbox, ScanRun
from tracking.scanning import run_scan_cycle, run_test_and_enable, scan_folder
from tracking.sources.base import SyncPage

pytestmark = pytest.mark.django_db
ADDRESS = "pat@contoso.example"
BANNER = b'INFO {"server_id":"NDQ3X2-banner-id","version":"2.10.4","auth_required":true}\r\n'


@pytest.fixture
def sim(fresh_sim: Simulator) -> Simulator:
    return fresh_sim


@pytest.fixture(autouse=True)
def small_pages_and_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    real = scanning.connection_settings
    monkeypatch.setattr(
        scanning, "connection_settings", lambda mailbox: replace(real(mailbox), page_size=5, timeout=3.0)
    )


@pytest.fixture
def banner_service() -> Iterator[int]:
    """A loopback service that is not IMAP: it greets every connection with a NATS-like banner."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(BANNER)
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    listener.close()


class KeyErrorSource:
    """A source whose sync fails inside SyncAdmin, not on the server (a bug: a KeyError)."""

    def test_connection(self, folders: Sequence[str]) -> None:
        pass

    def sync(self, folder: str, state: str) -> Iterator[SyncPage]:
        raise KeyError("missing")
        yield  # pragma: no cover


def mailbox_on(
    sim: Simulator, kind: str = "exchange_ews", *, fill: bool = True, **options: object
) -> Mailbox:
    profile = h.add_sim_profile(sim, f"p-{kind}", kind, **options)
    if fill:
        h.fill(sim, ADDRESS, count=12)
    return h.add_enabled_mailbox(ADDRESS, profile)


def enable(mailbox: Mailbox) -> None:
    ok, message = run_test_and_enable(mailbox.pk)
    assert not ok, message


def scan_cycle(mailbox: Mailbox) -> None:
    said = run_scan_cycle(mailbox.pk)
    assert said == "disabled" or said.startswith("retry at "), said


@dataclass(frozen=True)
class Case:
    kind: ErrorKind
    make: Callable[[Simulator], Mailbox]
    run: Callable[[Mailbox], None]
    scanned: bool = False  # a scan ran, so its ScanRun carries the kind too


def faulty(fault: Fault, kind: str = "exchange_ews") -> Callable[[Simulator], Mailbox]:
    def make(sim: Simulator) -> Mailbox:
        sim.faults.add(replace(fault))
        return mailbox_on(sim, kind)

    return make


def _too_large(sim: Simulator) -> Mailbox:
    mailbox = mailbox_on(sim, "exchange_graph")
    sim.faults.add(
        Fault("raw_body", protocol="graph", operation="delta", status=200, body="x" * 4096, repeat=64)
    )
    return mailbox


def _sync_state(sim: Simulator) -> Mailbox:
    mailbox = mailbox_on(sim, "exchange_graph")
    # every request that carries a state is refused: the full resync the first refusal starts fails too
    sim.faults.add(Fault("invalid_sync_state", protocol="graph", operation="delta", times=-1))
    return mailbox


def _not_approved(sim: Simulator) -> Mailbox:
    check_set_org_setting("RequireApprovalForUserEmail", "true")
    profile = h.add_sim_profile(sim, "p", "exchange_ews")
    h.fill(sim, ADDRESS)
    return h.add_enabled_mailbox(ADDRESS, profile, approve=False)


def _internal(mailbox: Mailbox) -> None:
    with pytest.raises(KeyError):
        scan_folder(mailbox.pk, "inbox", source=KeyErrorSource())


CASES = [
    Case(ErrorKind.CREDENTIALS, lambda sim: mailbox_on(sim, secret="wrong-secret"), enable),
    Case(
        ErrorKind.PERMISSION,
        faulty(Fault("http_status", protocol="graph", status=403, times=-1), "exchange_graph"),
        enable,
    ),
    Case(ErrorKind.NOT_FOUND, lambda sim: mailbox_on(sim, fill=False), enable),
    # Graph: requests verifies per request (EWS's adapter keeps, per process, the CA an origin was given)
    Case(ErrorKind.TLS, lambda sim: mailbox_on(sim, "exchange_graph", ca_bundle=""), enable),
    Case(
        ErrorKind.UNREACHABLE,
        lambda sim: mailbox_on(sim, endpoint=f"https://127.0.0.1:{h.free_port()}/EWS/Exchange.asmx"),
        enable,
    ),
    Case(
        ErrorKind.THROTTLED,
        faulty(Fault("server_busy", protocol="ews", operation="SyncFolderItems")),
        scan_cycle,
        scanned=True,
    ),
    Case(
        ErrorKind.SERVER_ERROR,  # a Graph 400 that is no sync-state error
        faulty(Fault("http_status", protocol="graph", operation="delta", status=400), "exchange_graph"),
        scan_cycle,
        scanned=True,
    ),
    Case(ErrorKind.TOO_LARGE, _too_large, scan_cycle, scanned=True),
    Case(ErrorKind.SYNC_STATE, _sync_state, scan_cycle, scanned=True),
    Case(ErrorKind.INTERNAL, lambda sim: mailbox_on(sim), _internal, scanned=True),
    Case(ErrorKind.NOT_APPROVED, _not_approved, enable),
]


def page_of(client: Client, user: User, mailbox: Mailbox, language: str = "en") -> str:
    client.force_login(user)
    response = client.get(reverse("web-mailbox", args=[mailbox.pk]), HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


@pytest.mark.parametrize("case", CASES, ids=[c.kind.value for c in CASES])
def test_each_kind_of_error_is_stored_and_shown_in_its_own_words(sim, client, admin, settings, case):
    settings.SOURCE_MAX_RESPONSE_BYTES = 64 * 1024  # the too_large case's answer is 256 KiB
    mailbox = case.make(sim)

    case.run(mailbox)

    mailbox.refresh_from_db()
    assert mailbox.last_error_kind == case.kind, mailbox.last_error
    if case.scanned:
        assert ScanRun.objects.filter(mailbox=mailbox).latest("pk").error_kind == case.kind
    body = page_of(client, admin, mailbox)
    assert str(case.kind.label) in body
    assert str(ERROR_WORDS[case.kind]) in body
    others = [words for kind, words in ERROR_WORDS.items() if kind != case.kind]
    assert not any(str(words) in body for words in others), "shown as another kind too"


def test_the_kind_is_shown_in_german_to_a_german_reader(sim, client, admin):
    mailbox = mailbox_on(sim, secret="wrong-secret")
    enable(mailbox)
    do_set_personal_options(admin, language="de")

    body = page_of(client, admin, mailbox, "de")

    assert "Anmeldedaten abgelehnt" in body and "Der Server hat die Anmeldung von SyncAdmin abgelehnt" in body


def test_a_service_that_is_not_imap_shows_its_kind_and_address_never_its_banner(
    sim, client, admin, auditor, banner_service, caplog
):
    caplog.set_level(logging.DEBUG, logger="tracking.sources.imap")
    profile = h.add_sim_profile(
        sim,
        "not-imap",
        "imap",
        endpoint=f"imap://127.0.0.1:{banner_service}",
        auth_method="password",
        username="pat",
        ca_bundle="",
    )
    mailbox = h.add_enabled_mailbox(ADDRESS, profile)

    enable(mailbox)

    mailbox.refresh_from_db()
    alert = Alert.objects.filter(mailbox=mailbox).latest("pk")
    assert mailbox.last_error_kind == ErrorKind.UNREACHABLE
    assert f"127.0.0.1:{banner_service}" in mailbox.last_error and "server_id" not in mailbox.last_error
    assert "server_id" not in alert.message and "INFO" not in alert.message
    assert mailbox.user is not None
    for reader in (admin, auditor, mailbox.user):
        body = page_of(client, reader, mailbox)
        assert "server_id" not in body and "NDQ3X2" not in body
        assert f"127.0.0.1:{banner_service}" in body and str(ErrorKind.UNREACHABLE.label) in body
    assert "NDQ3X2-banner-id" in caplog.text  # the raw answer is in the worker's log, at debug level


def test_a_graph_error_that_is_not_graphs_json_never_reaches_the_page(sim, client, admin, caplog):
    caplog.set_level(logging.DEBUG, logger="tracking.sources.graph")
    mailbox = mailbox_on(sim, "exchange_graph")
    sim.faults.add(
        Fault(
            "raw_body",
            protocol="graph",
            operation="delta",
            status=400,
            body="SSH-2.0-OpenSSH_9.2p1 banner-xyz",
        )
    )

    scan_cycle(mailbox)

    mailbox.refresh_from_db()
    assert mailbox.last_error_kind == ErrorKind.SERVER_ERROR and "HTTP 400" in mailbox.last_error
    assert "banner-xyz" not in page_of(client, admin, mailbox)
    assert "banner-xyz" in caplog.text
