"""A stored secret stays with its host (issue 12, item 4): changing where a profile's secret goes (endpoint,
authority, tenant, user name, authentication, CA bundle) needs the secret again, on the web form, the CLI
and the Django admin. A loopback HTTPS listener, trusted by the profile's CA bundle, records every
Authorization header it is sent: the old secret never reaches it, the re-entered one does.
"""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from django.contrib.auth.models import User
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests import rq_helpers as h
from tracking.actions import ProfileValues
from tracking.models import AuditEvent, EmailServerProfile, Mailbox
from tracking.scanning import run_test_and_enable

pytestmark = pytest.mark.django_db
OLD, NEW = "old-Pa55-of-the-real-server", "new-Pa55-typed-again"
ADDRESS = "pat@contoso.example"


class Listener:
    """An HTTPS server on loopback that answers 401 to everything and keeps the Authorization headers."""

    def __init__(self, cert_dir: Path) -> None:
        self.ca = trustme.CA()
        self.ca_file = cert_dir / "listener-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.authorizations: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                listener.authorizations.append(self.headers.get("Authorization", ""))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="listener"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _refuse

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/EWS/Exchange.asmx"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def saw(self, secret: str) -> bool:
        basic = base64.b64encode(f"{h.SIM_USER}:{secret}".encode()).decode()
        return any(secret in a or basic in a for a in self.authorizations)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    credentials = {**h.SIM_CREDENTIALS, h.SIM_USER: OLD}
    with Simulator(
        MailStore(), cert_dir=tmp_path_factory.mktemp("sim"), credentials=credentials
    ) as simulator:
        yield simulator


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    with Listener(tmp_path) as running:
        yield running


@pytest.fixture
def mailbox(sim: Simulator, listener: Listener, tmp_path: Path) -> Mailbox:
    """An EWS mailbox whose profile trusts the simulator's CA and the listener's, so that only the
    re-entry rule (not TLS) stands between the stored secret and the listener."""
    both = tmp_path / "both-cas.pem"
    both.write_bytes(sim.ca_file.read_bytes() + listener.ca_file.read_bytes())
    profile = h.add_sim_profile(sim, "ews", "exchange_ews", secret=OLD, ca_bundle=str(both))
    h.fill(sim, ADDRESS)
    mailbox = h.add_enabled_mailbox(ADDRESS, profile)
    ok, message = run_test_and_enable(mailbox.pk)
    assert ok, message
    return mailbox


def stored(mailbox: Mailbox) -> tuple[str, str]:
    profile = EmailServerProfile.objects.get(pk=mailbox.profile_id)
    return profile.endpoint, profile.get_secret()


def edit_form(profile: EmailServerProfile, **changes: object) -> dict[str, object]:
    data = {k: ("" if v is None else v) for k, v in ProfileValues.of(profile).as_dict().items()}
    data.pop("use_impersonation")
    data.update({"use_impersonation": "on", "secret": "", **changes})
    return data


def test_the_web_form_keeps_the_secret_from_a_new_endpoint_until_it_is_typed_again(
    client: Client, admin: User, mailbox: Mailbox, listener: Listener, sim: Simulator
) -> None:
    profile = mailbox.profile
    endpoint = profile.endpoint
    client.force_login(admin)
    url = reverse("web-profile-edit", args=[profile.pk])
    assert "requires it again" in client.get(url).content.decode()  # the form says so

    refused = client.post(url, edit_form(profile, endpoint=listener.url))

    assert refused.status_code == 400  # the form again, with the error on the secret
    assert "secret" in refused.context["form"].errors
    assert "enter the password or client secret again" in refused.content.decode()
    assert stored(mailbox) == (endpoint, OLD)
    assert run_test_and_enable(mailbox.pk)[0]  # still the real server
    assert listener.authorizations == []

    saved = client.post(url, edit_form(profile, endpoint=listener.url, secret=NEW))

    assert saved.status_code == 302
    assert stored(mailbox) == (listener.url, NEW)
    event = AuditEvent.objects.get(action="profile_changed", target="ews.secret")
    assert (event.actor, event.new_value) == (admin, "secret re-entered (endpoint changed)")
    ok, message = run_test_and_enable(mailbox.pk)
    assert not ok and "refused the credentials" in message
    assert listener.saw(NEW) and not listener.saw(OLD)


def test_the_cli_refuses_a_new_endpoint_without_the_secret(
    cmd: Any, mailbox: Mailbox, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = mailbox.profile.endpoint

    with pytest.raises(CommandError) as refused:
        cmd("profile", "update", "ews", "--endpoint", listener.url)

    assert "--secret-env" in str(refused.value) and "--secret-prompt" in str(refused.value)
    assert stored(mailbox) == (endpoint, OLD)
    assert run_test_and_enable(mailbox.pk)[0]
    assert listener.authorizations == []

    monkeypatch.setenv("EWS_SECRET", NEW)
    done = cmd("profile", "update", "ews", "--endpoint", listener.url, "--secret-env", "EWS_SECRET")

    assert "changed endpoint, secret" in done.out
    assert stored(mailbox) == (listener.url, NEW)
    event = AuditEvent.objects.get(action="profile_changed", target="ews.secret")
    assert event.new_value == "secret re-entered (endpoint changed)" and event.actor_label == "cli"
    assert not run_test_and_enable(mailbox.pk)[0]
    assert listener.saw(NEW) and not listener.saw(OLD)


@pytest.mark.parametrize(
    "option",
    [
        ["--username", "someone-else"],
        ["--auth", "ntlm"],
        ["--authority", "https://login.example.net"],
        ["--tenant-id", "other-tenant"],
        ["--ca-bundle", "/etc/ssl/certs/ca-certificates.crt"],
    ],
)
def test_each_field_that_decides_where_the_secret_goes_needs_it_again(
    cmd: Any, mailbox: Mailbox, option: list[str]
) -> None:
    before = EmailServerProfile.objects.filter(pk=mailbox.profile_id).values().get()

    with pytest.raises(CommandError):
        cmd("profile", "update", "ews", *option)

    assert EmailServerProfile.objects.filter(pk=mailbox.profile_id).values().get() == before


def test_other_changes_and_clearing_the_secret_need_no_secret(cmd: Any, mailbox: Mailbox) -> None:
    assert (
        "changed max_concurrent_connections" in cmd("profile", "update", "ews", "--max-connections", "3").out
    )
    done = cmd("profile", "update", "ews", "--endpoint", "https://mail.example.net/EWS", "--clear-secret")
    assert "changed endpoint, secret" in done.out
    assert stored(mailbox) == ("https://mail.example.net/EWS", "")


def test_the_django_admin_refuses_a_new_endpoint_without_the_secret(
    client: Client, mailbox: Mailbox, listener: Listener
) -> None:
    client.force_login(User.objects.create_superuser("root", "root@contoso.com", "pw-root-123"))
    profile = mailbox.profile
    endpoint = profile.endpoint
    data = edit_form(profile, endpoint=listener.url)

    refused = client.post(f"/admin/tracking/emailserverprofile/{profile.pk}/change/", data)

    assert refused.status_code == 200
    assert "enter the password or client secret again" in refused.content.decode()
    assert stored(mailbox) == (endpoint, OLD)
